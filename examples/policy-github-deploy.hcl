# GitHub Actions jobs may read github/token/deploy-<environment> for the
# environment their OIDC token names: a job of environment "production" gets
# role "deploy-production"; one of "staging" would get "deploy-staging" if that
# role existed; a job without an environment matches no path here.
# Replace auth_jwt_XXXXXXXX with the JWT auth method's accessor
# (vault read -field=accessor sys/auth/jwt), as github-actions-deploy.sh does.
path "github/token/deploy-{{identity.entity.aliases.auth_jwt_XXXXXXXX.metadata.environment}}" {
  capabilities = ["read"]
}
