# Vault Agent for a CI job that commits as the GitHub App. Both templates read
# the same secret, so Agent mints one token of role "ci" for both: the token
# (for git-credential-github-app.sh) and the App's bot identity as a git config
# file (git-identity.ctmpl). It renders both again before the token's lease
# ends. The Vault token in token_file_path needs a policy such as
# policy-ci-read.hcl.
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

template {
  source      = "/etc/vault-agent/git-identity.ctmpl"
  destination = "/run/secrets/git-identity"
}
