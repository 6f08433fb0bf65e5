#!/usr/bin/env bash
# Copyright (c) vault-plugin-secrets-github-app contributors
# SPDX-License-Identifier: MPL-2.0
# make demo: the plugin's main job end to end, in a real Vault against the built-in GitHub emulator.
# make dev (demo.sh --dev): the same setup, left running until Ctrl-C.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

: "${VAULT_BIN:?set VAULT_BIN (make demo does)}" "${BIN:?set BIN (make demo does)}" "${PLUGIN_VERSION:?}"
command -v curl >/dev/null || die "the demo needs curl to ask the emulator about a token"
dev=false
[ "${1:-}" = "--dev" ] && dev=true

WORK=$(mktemp -d "${TMPDIR:-/tmp}/github-app-demo.XXXXXX")
cleanup() { stack_stop; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# run prints a command, then runs it.
run() {
	printf '\n\033[1m$ %s\033[0m\n' "$*"
	"$@"
}

log "starting the GitHub emulator and Vault $("$VAULT_BIN" version | cut -d' ' -f2) on 127.0.0.1"
stack_start "$WORK"
vault() { "$VAULT_BIN" "$@"; }
cd "$WORK"
log "GitHub emulator at $GITHUB_URL; Vault at $VAULT_ADDR; App key in $KEY_FILE"

run vault plugin info -version="$PLUGIN_VERSION" secret "$PLUGIN_NAME"
run vault write github/config app_id=1001 private_key=@app.private-key.pem base_url="$GITHUB_URL"
run vault read github/config
run vault list -detailed github/installations
run vault write github/roles/ci owner=acme repositories=api,web \
	permissions=contents=read,pull_requests=write ttl=10m
run vault read github/token/ci
run vault write github/token/ci repositories=api permissions=contents=read ttl=2m

printf '\n\033[1m# a token, kept to show its revocation\033[0m\n'
out=$(vault write -format=json github/token/ci repositories=web permissions=contents=read)
lease=$(printf '%s' "$out" | sed -n 's/.*"lease_id": *"\([^"]*\)".*/\1/p')
token=$(printf '%s' "$out" | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
[ -n "$lease" ] && [ -n "$token" ] || die "could not read the lease and token from: $out"
echo "lease_id: $lease"

printf '\n\033[1m$ curl -H "Authorization: Bearer <token>" %s/installation/repositories\033[0m\n' "$GITHUB_URL"
status=$(curl -sS -o "$WORK/answer.json" -w '%{http_code}' -H "Authorization: Bearer $token" -H 'User-Agent: demo' \
	"$GITHUB_URL/installation/repositories")
echo "HTTP $status: $(head -c 300 "$WORK/answer.json")"
[ "$status" = 200 ] || die "the emulator refused a fresh token"

run vault lease revoke -sync "$lease"

printf '\n\033[1m$ curl -H "Authorization: Bearer <token>" %s/installation/repositories\033[0m\n' "$GITHUB_URL"
status=$(curl -sS -o "$WORK/answer.json" -w '%{http_code}' -H "Authorization: Bearer $token" -H 'User-Agent: demo' \
	"$GITHUB_URL/installation/repositories")
echo "HTTP $status: $(cat "$WORK/answer.json")"
[ "$status" = 401 ] || die "the revoked token still works at the emulator (HTTP $status)"
log "the revoked token is dead at GitHub (the emulator says 401 Bad credentials)"

if $dev; then
	cat <<MSG

Vault and the GitHub emulator keep running. In another shell:

  export VAULT_ADDR=$VAULT_ADDR VAULT_TOKEN=$VAULT_TOKEN
  vault read github/token/ci

Emulator state: curl $GITHUB_URL/_fake/stats    Logs: $WORK/*.log
Press Ctrl-C to stop.
MSG
	wait "$VAULT_PID"
else
	log "demo finished; stopping Vault and the emulator"
fi
