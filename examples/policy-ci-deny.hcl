# Mint tokens of role "ci" for any of its repositories but "infra", never with
# contents=write: vault write github/token/ci repositories=api permissions=contents=read
# Vault compares the raw values of a request with denied_parameters; the plugin
# accepts only one spelling of each item on token writes (the role's repository
# names, name=level permissions in lower case), so Infra, acme/infra or
# contents=WRITE are refused rather than let through.
# Both parameters are required: without them a write gets the role's whole scope.
# repository_ids is denied entirely: an ID would name infra without its name.
path "github/token/ci" {
  capabilities        = ["update"]
  required_parameters = ["repositories", "permissions"]
  denied_parameters = {
    "repositories"   = ["infra"]
    "permissions"    = ["contents=write"]
    "repository_ids" = []
  }
}
