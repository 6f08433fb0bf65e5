# Vault Agent renders a GitHub token of role "ci" to a file, and renders it again
# with a new token before the token's lease ends. The Vault token in
# token_file_path needs a policy such as policy-ci-read.hcl.
vault {
  address = "https://vault.example.com:8200"
}

auto_auth {
  method "token_file" {
    config = {
      token_file_path = "/etc/vault-agent/vault-token"
    }
  }
}

template {
  source      = "/etc/vault-agent/token.ctmpl"
  destination = "/run/secrets/github-token"
  perms       = "0600"
}
