# Deploy permissions for jobs of the GitHub environment "production" only. The
# role is a plain one; the templated policy decides which job may read it.
vault write github/roles/deploy-production owner=acme repositories=infra \
    permissions=contents=write ttl=30m
ACCESSOR=$(vault read -field=accessor sys/auth/jwt)
sed "s/auth_jwt_XXXXXXXX/$ACCESSOR/" policy-github-deploy.hcl |
    vault policy write github-deploy -
