# GitHub Actions OIDC: every workflow job of the organization acme gets a GitHub
# token for its own repository, from one role. Run in examples/ as a Vault admin.
vault auth enable jwt
vault write auth/jwt/config \
    oidc_discovery_url=https://token.actions.githubusercontent.com \
    bound_issuer=https://token.actions.githubusercontent.com
vault write auth/jwt/role/ci @github-actions-jwt-role.json
vault policy write github-ci policy-ci-read.hcl

# Identity templates name the JWT auth method by its accessor (auth_jwt_...).
ACCESSOR=$(vault read -field=accessor sys/auth/jwt)
vault write github/roles/ci templated=true owner=acme \
    repositories="{{identity.entity.aliases.$ACCESSOR.metadata.repository}}" \
    permissions=contents=read,pull_requests=write ttl=30m
