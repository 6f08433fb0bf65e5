#!/bin/sh
# Commits the changes of a clone as the GitHub App, and pushes them. git takes
# the App's bot user as author and committer from the file that Vault Agent
# renders with git-identity.ctmpl (examples/agent-commit.hcl), and pushes with
# the token of the other template, through git-credential-github-app.sh. Run it
# in the clone, with the commit message as its argument.
set -eu
identity=${GIT_IDENTITY_FILE:-/run/secrets/git-identity}
git config include.path "$identity"
git add -A
git commit -m "$1"
git push
