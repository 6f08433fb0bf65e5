# Copyright (c) vault-plugin-secrets-github-app contributors
# SPDX-License-Identifier: MPL-2.0
# Shared shell helpers for demo.sh and bench.sh: start the GitHub emulator and a Vault dev server on 127.0.0.1 with
# the plugin registered by sha256 and version, and stop both on exit. Source it; it defines functions only.

PLUGIN_NAME=vault-plugin-secrets-github-app

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# describe_commit prints the checkout's commit for a report, saying when the working tree holds uncommitted changes.
describe_commit() {
	local commit
	commit=$(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [ -n "$(cd "$root" && git status --porcelain 2>/dev/null)" ]; then
		commit="$commit (with uncommitted changes)"
	fi
	printf '%s\n' "$commit"
}

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

# github_start WORKDIR: starts fakegithub with a generated App key. Sets GITHUB_URL, KEY_FILE, FAKEGITHUB_PID.
github_start() {
	KEY_FILE="$1/app.private-key.pem"
	"$BIN/fakegithub" -listen 127.0.0.1:0 -generate-key "$KEY_FILE" -addr-file "$1/github.addr" \
		${FAKEGITHUB_FIXTURE:+-fixture "$FAKEGITHUB_FIXTURE"} >"$1/fakegithub.log" 2>&1 &
	FAKEGITHUB_PID=$!
	wait_for test -s "$1/github.addr" || { cat "$1/fakegithub.log" >&2; die "fakegithub did not start"; }
	GITHUB_URL=$(cat "$1/github.addr")
}

# stack_start WORKDIR: starts fakegithub and Vault, registers and mounts the plugin at github/.
# Needs VAULT_BIN, BIN (with the plugin and fakegithub), PLUGIN_VERSION. Sets GITHUB_URL, VAULT_ADDR,
# VAULT_TOKEN, KEY_FILE, and the PIDs for stack_stop.
stack_start() {
	WORK=$1
	mkdir -p "$WORK/plugins"
	cp "$BIN/$PLUGIN_NAME" "$WORK/plugins/$PLUGIN_NAME"
	github_start "$WORK"

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

# ------------------------------------------------------------------------------------------------ a 3-node cluster

# cluster_start WORKDIR: starts fakegithub and three `vault server` processes on 127.0.0.1 (node1..node3, each with
# its own API and cluster port, data and plugin directory in WORKDIR/nodeN) on integrated storage (Raft) with
# retry_join to each other; initialises the cluster with one Shamir key (in WORKDIR/init.txt, mode 0600), unseals
# every node, turns a file audit device on (audit.log in each node's directory), registers the plugin by sha256 and
# version, mounts it at github/ with hashed_token left out of the audit HMAC, configures it against the emulator
# and writes a role ci. Needs VAULT_BIN, BIN, PLUGIN_VERSION. Sets VAULT_ADDR (node1), VAULT_TOKEN (root),
# NODE_ADDRS, NODE_DIRS, NODE_PIDS, UNSEAL_KEY, GITHUB_URL, KEY_FILE; cluster_stop stops everything.
cluster_start() {
	local work=$1
	github_start "$work"

	local i j ports=() p
	while [ "${#ports[@]}" -lt 6 ]; do
		p=$(free_port)
		[[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
	done
	NODE_ADDRS=() NODE_DIRS=() NODE_PIDS=()
	for i in 0 1 2; do
		NODE_ADDRS+=("http://127.0.0.1:${ports[$i]}")
		NODE_DIRS+=("$work/node$((i + 1))")
	done
	for i in 0 1 2; do
		local dir=${NODE_DIRS[$i]} joins=""
		mkdir -p "$dir/plugins" "$dir/raft"
		cp "$BIN/$PLUGIN_NAME" "$dir/plugins/$PLUGIN_NAME"
		for j in 0 1 2; do
			[ "$j" = "$i" ] || joins="$joins
  retry_join {
    leader_api_addr = \"${NODE_ADDRS[$j]}\"
  }"
		done
		cat >"$dir/vault.hcl" <<HCL
storage "raft" {
  path    = "$dir/raft"
  node_id = "node$((i + 1))"
  # Vault advises 1 on production hardware; three nodes sharing two busy cores need more slack (the tests use 3).
  performance_multiplier = ${HA_PERFORMANCE_MULTIPLIER:-3}
$joins
}

listener "tcp" {
  address         = "127.0.0.1:${ports[$i]}"
  cluster_address = "127.0.0.1:${ports[$((i + 3))]}"
  tls_disable     = true
}

api_addr         = "${NODE_ADDRS[$i]}"
cluster_addr     = "https://127.0.0.1:${ports[$((i + 3))]}"
plugin_directory = "$dir/plugins"
disable_mlock    = true
ui               = false
HCL
		node_start "$i"
	done
	for i in 0 1 2; do
		wait_for curl -s -o /dev/null "${NODE_ADDRS[$i]}/v1/sys/health" ||
			{ tail -20 "${NODE_DIRS[$i]}/vault.log" >&2; die "node$((i + 1)) did not start"; }
	done

	export VAULT_ADDR=${NODE_ADDRS[0]}
	(umask 077 && "$VAULT_BIN" operator init -key-shares=1 -key-threshold=1 >"$work/init.txt") ||
		die "vault operator init failed"
	UNSEAL_KEY=$(sed -n 's/^Unseal Key 1: //p' "$work/init.txt")
	VAULT_TOKEN=$(sed -n 's/^Initial Root Token: //p' "$work/init.txt")
	export VAULT_TOKEN
	[ -n "$UNSEAL_KEY" ] && [ -n "$VAULT_TOKEN" ] || die "no unseal key or root token in $work/init.txt"
	node_unseal 0
	wait_for curl -sf -o /dev/null "$VAULT_ADDR/v1/sys/health" || die "node1 did not become active"
	# The others join node1 when they get the unseal key (it decrypts the join challenge), then unseal.
	node_unseal 1
	node_unseal 2

	local sha
	sha=$(sha256sum "${NODE_DIRS[0]}/plugins/$PLUGIN_NAME" | cut -d' ' -f1)
	# A relative file_path is relative to each node's working directory: one audit log per node, as on separate
	# machines, where it would be /var/log/vault/audit.log on each.
	"$VAULT_BIN" audit enable file file_path=audit.log >/dev/null
	"$VAULT_BIN" plugin register -sha256="$sha" -version="$PLUGIN_VERSION" secret "$PLUGIN_NAME" >/dev/null
	"$VAULT_BIN" secrets enable -path=github -plugin-version="$PLUGIN_VERSION" "$PLUGIN_NAME" >/dev/null
	"$VAULT_BIN" secrets tune -audit-non-hmac-response-keys=hashed_token github/ >/dev/null
	"$VAULT_BIN" write github/config app_id=1001 private_key=@"$KEY_FILE" base_url="$GITHUB_URL" >/dev/null
	"$VAULT_BIN" write github/roles/ci owner=acme repositories=api,web permissions=contents=read ttl=10m >/dev/null
	wait_for cluster_healthy || { "$VAULT_BIN" operator raft autopilot state >&2; die "the cluster is not healthy"; }
}

# node_start I: starts node I+1 in its directory (a relative audit file_path lands there).
node_start() {
	local dir=${NODE_DIRS[$1]}
	(cd "$dir" && exec "$VAULT_BIN" server -config=vault.hcl -log-level="${VAULT_LOG_LEVEL:-info}") >>"$dir/vault.log" 2>&1 &
	NODE_PIDS[$1]=$!
}

# node_unseal I: unseals node I+1 through the API (the key never goes on a command line) and waits until it is
# unsealed, as the active node or a standby.
node_unseal() {
	local addr=${NODE_ADDRS[$1]}
	for _ in $(seq 1 120); do
		printf '{"key": "%s"}' "$UNSEAL_KEY" | curl -s -o /dev/null -X PUT --data @- "$addr/v1/sys/unseal" || true
		if curl -sf -o /dev/null "$addr/v1/sys/health?standbyok=true"; then return 0; fi
		sleep 0.5
	done
	tail -20 "${NODE_DIRS[$1]}/vault.log" >&2
	die "node$(($1 + 1)) did not unseal"
}

# cluster_healthy: three voters, and autopilot says the cluster is healthy.
cluster_healthy() {
	local state
	state=$("$VAULT_BIN" operator raft autopilot state -format=json 2>/dev/null) || return 1
	grep -qi '"healthy": true' <<<"$state" && [ "$(grep -ci '"status": "\(leader\|voter\)"' <<<"$state")" = 3 ]
}

cluster_stop() {
	local pid
	for pid in "${NODE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${NODE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	NODE_PIDS=()
	[ -n "${FAKEGITHUB_PID:-}" ] && kill "$FAKEGITHUB_PID" 2>/dev/null && wait "$FAKEGITHUB_PID" 2>/dev/null
	FAKEGITHUB_PID=""
	return 0
}
