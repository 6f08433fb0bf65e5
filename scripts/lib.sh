# Shared shell helpers for demo.sh and bench.sh: start the GitHub emulator and a Vault dev server on 127.0.0.1 with
# the plugin registered by sha256 and version, and stop both on exit. Source it; it defines functions only.

PLUGIN_NAME=vault-plugin-secrets-github-app

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# free_port prints a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
	local p
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 20000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found on 127.0.0.1"
}

# wait_for CMD... retries a command for up to 60 seconds.
wait_for() {
	for _ in $(seq 1 120); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.5
	done
	return 1
}

# stack_start WORKDIR: starts fakegithub and Vault, registers and mounts the plugin at github/.
# Needs VAULT_BIN, BIN (with the plugin and fakegithub), PLUGIN_VERSION. Sets GITHUB_URL, VAULT_ADDR,
# VAULT_TOKEN, KEY_FILE, and the PIDs for stack_stop.
stack_start() {
	WORK=$1
	mkdir -p "$WORK/plugins"
	cp "$BIN/$PLUGIN_NAME" "$WORK/plugins/$PLUGIN_NAME"
	KEY_FILE="$WORK/app.private-key.pem"

	"$BIN/fakegithub" -listen 127.0.0.1:0 -generate-key "$KEY_FILE" -addr-file "$WORK/github.addr" \
		${FAKEGITHUB_FIXTURE:+-fixture "$FAKEGITHUB_FIXTURE"} >"$WORK/fakegithub.log" 2>&1 &
	FAKEGITHUB_PID=$!
	wait_for test -s "$WORK/github.addr" || { cat "$WORK/fakegithub.log" >&2; die "fakegithub did not start"; }
	GITHUB_URL=$(cat "$WORK/github.addr")

	local port
	port=$(free_port)
	export VAULT_ADDR="http://127.0.0.1:$port" VAULT_TOKEN=root
	cat >"$WORK/vault.hcl" <<HCL
plugin_directory = "$WORK/plugins"
HCL
	"$VAULT_BIN" server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$port" \
		-config="$WORK/vault.hcl" -log-level="${VAULT_LOG_LEVEL:-info}" >"$WORK/vault.log" 2>&1 &
	VAULT_PID=$!
	wait_for "$VAULT_BIN" status || { tail -20 "$WORK/vault.log" >&2; die "vault did not start"; }

	local sha
	sha=$(sha256sum "$WORK/plugins/$PLUGIN_NAME" | cut -d' ' -f1)
	"$VAULT_BIN" plugin register -sha256="$sha" -version="$PLUGIN_VERSION" secret "$PLUGIN_NAME" >/dev/null
	"$VAULT_BIN" secrets enable -path=github -plugin-version="$PLUGIN_VERSION" "$PLUGIN_NAME" >/dev/null
}

stack_stop() {
	[ -n "${VAULT_PID:-}" ] && kill "$VAULT_PID" 2>/dev/null && wait "$VAULT_PID" 2>/dev/null
	[ -n "${FAKEGITHUB_PID:-}" ] && kill "$FAKEGITHUB_PID" 2>/dev/null && wait "$FAKEGITHUB_PID" 2>/dev/null
	VAULT_PID="" FAKEGITHUB_PID=""
	return 0
}
