# Mint tokens of role "ci" that cover the repository "api" only:
#   vault write github/token/ci repositories=api [permissions=contents=read] [ttl=5m]
# A write to token/<role> asks for less than the role allows, and needs "update".
# Vault checks every name in "repositories" (a list or a comma-separated string)
# against the allowed values. Keep them exact: Vault first matches a glob such as
# "api*" against the whole string, so it would allow repositories=api,infra.
# required_parameters refuses a write without "repositories", which would get
# every repository of the role. Parameters not listed (repository_ids) are refused.
path "github/token/ci" {
  capabilities        = ["update"]
  required_parameters = ["repositories"]
  allowed_parameters = {
    "repositories" = ["api"]
    "permissions"  = []
    "ttl"          = []
  }
}
