#!/bin/sh
# git credential helper: answers git with the GitHub token that Vault Agent renders to a
# file (the destination of examples/agent.hcl), so that git push and clone over HTTPS use a
# fresh installation token. git runs it as "git-credential-github-app get" and reads
# username and password from its output. Install it on PATH and configure git:
#   git config --global credential.https://github.com.helper github-app
set -eu
token_file=${GITHUB_TOKEN_FILE:-/run/secrets/github-token}
[ "${1:-}" = get ] || exit 0
printf 'username=x-access-token\n'
printf 'password=%s\n' "$(cat "$token_file")"
