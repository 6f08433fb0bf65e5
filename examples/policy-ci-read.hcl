# CI jobs: mint tokens with the whole scope of role "ci" (vault read github/token/ci).
# Nothing else: no other role, no narrowing write, no config.
path "github/token/ci" {
  capabilities = ["read"]
}
