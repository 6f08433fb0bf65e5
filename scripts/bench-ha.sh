#!/usr/bin/env bash
# Copyright (c) vault-plugin-secrets-github-app contributors
# SPDX-License-Identifier: MPL-2.0
# make bench-ha: the plugin in a 3-node Vault cluster on integrated storage (scripts/lib.sh cluster_start, the
# cluster of `make cluster`): mints sent to the active node and to a standby (which forwards them), next to the no-op
# leased plugin of bench/noopplugin on the same cluster, at several concurrencies; then the failover test of the
# integration tests (TestCluster/failover: the active node killed under load) run several times. One markdown
# summary at the end, also written to $BENCH_OUT/report.md.
#
# Everything listens on 127.0.0.1 and stops by itself. Knobs (environment), with their defaults:
#
#   BENCH_DURATION=10s          measured time of each load phase
#   BENCH_WARMUP=1s             unmeasured warm-up before each load phase
#   BENCH_CONCURRENCY=1,4,16    concurrencies of the load phases
#   BENCH_FAILOVER_RUNS=3       runs of TestCluster/failover per Raft multiplier (0 skips them)
#   BENCH_FAILOVER_MULTIPLIERS="3 1"  Raft performance_multipliers of the failover runs: the tests' 3, and 1,
#                               Vault's advice for production hardware
#   BENCH_OUT=$BIN/bench-ha     where the JSON results and report.md go
#   HA_PERFORMANCE_MULTIPLIER=3 Raft's performance_multiplier, for the load phases and the failover runs
#
# A quick smoke run: BENCH_DURATION=2s BENCH_WARMUP=0s BENCH_FAILOVER_RUNS=1 make bench-ha
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"

: "${VAULT_BIN:?set VAULT_BIN (make bench-ha does)}" "${BIN:?set BIN (make bench-ha does)}" "${PLUGIN_VERSION:?}"
command -v curl >/dev/null || die "the cluster needs curl"
BENCH_DURATION=${BENCH_DURATION:-10s}
BENCH_WARMUP=${BENCH_WARMUP:-1s}
BENCH_CONCURRENCY=${BENCH_CONCURRENCY:-1,4,16}
BENCH_FAILOVER_RUNS=${BENCH_FAILOVER_RUNS:-3}
BENCH_FAILOVER_MULTIPLIERS=${BENCH_FAILOVER_MULTIPLIERS:-3 1}
BENCH_OUT=${BENCH_OUT:-$BIN/bench-ha}

NOOP_NAME=bench-noop
# Must match bench/noopplugin's Version: Vault registers a plugin with -version only if the binary reports it.
NOOP_VERSION=v0.0.1

started=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/github-app-bench-ha.XXXXXX")
cleanup() {
	cluster_stop
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$BENCH_OUT"
rm -f "$BENCH_OUT"/{load.json,failover.jsonl,failover-test.log,meta.txt,report.md}

log "building the load generator and the no-op plugin"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$WORK/loadgen" ./bench/loadgen)
(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$WORK/$NOOP_NAME" ./bench/noopplugin)

log "starting the GitHub emulator and a 3-node Vault $("$VAULT_BIN" version | cut -d' ' -f2) cluster on 127.0.0.1"
mkdir -p "$WORK/cluster"
cluster_start "$WORK/cluster"
vault() { "$VAULT_BIN" "$@"; }

# The no-op plugin goes into every node's plugin directory and is registered the same way as ours.
for dir in "${NODE_DIRS[@]}"; do cp "$WORK/$NOOP_NAME" "$dir/plugins/$NOOP_NAME"; done
vault plugin register -sha256="$(sha256sum "$WORK/$NOOP_NAME" | cut -d' ' -f1)" -version="$NOOP_VERSION" \
	secret "$NOOP_NAME" >/dev/null
vault secrets enable -path=noop -plugin-version="$NOOP_VERSION" "$NOOP_NAME" >/dev/null
# The role of make bench: an owner resolved once and cached, two repositories, two permissions; TTL 30 m outlives
# every phase (the leases of each phase are revoked after it).
vault write github/roles/bench owner=acme repositories=api,web permissions=contents=read,pull_requests=write \
	ttl=30m >/dev/null

# The load generator looks up the active node before every phase (a busy machine may change the leader) and sends
# the -standby targets to the node after it.
nodes=""
for i in 0 1 2; do
	nodes="$nodes${nodes:+,}node$((i + 1))=${NODE_ADDRS[$i]}=${NODE_PIDS[$i]}=${NODE_DIRS[$i]}/plugins"
done
log "load phases: concurrency $BENCH_CONCURRENCY, $BENCH_DURATION each; github and no-op, via the active node and a standby"
"$WORK/loadgen" -mode load -cluster "$nodes" -vault-token "$VAULT_TOKEN" -github-url "$GITHUB_URL" \
	-targets github,github-standby,noop,noop-standby \
	-plugin-bin "$PLUGIN_NAME" -noop-bin "$NOOP_NAME" -emulator-pid "$FAKEGITHUB_PID" \
	-duration "$BENCH_DURATION" -warmup "$BENCH_WARMUP" -concurrency "$BENCH_CONCURRENCY" \
	-out "$BENCH_OUT/load.json" || log "the load phases failed; reporting what there is"
vault_version=$(vault version)
cluster_stop

# The failover figures come from the integration test itself (it starts a cluster of its own each run).
if [ "$BENCH_FAILOVER_RUNS" -gt 0 ]; then
	for m in $BENCH_FAILOVER_MULTIPLIERS; do
		log "failover: $BENCH_FAILOVER_RUNS runs of TestCluster/failover, Raft performance_multiplier $m (about 100 s each)"
		(cd "$root" && VAULT_BIN="$VAULT_BIN" PLUGIN_BIN="$BIN/$PLUGIN_NAME" PLUGIN_VERSION="$PLUGIN_VERSION" \
			FAKEGITHUB_BIN="$BIN/fakegithub" HA_FAILOVER_REPORT="$BENCH_OUT/failover.jsonl" HA_PERFORMANCE_MULTIPLIER="$m" \
			go test -count="$BENCH_FAILOVER_RUNS" -timeout 30m -run 'TestCluster$/^failover$' -v ./integrationtest/) \
			>>"$BENCH_OUT/failover-test.log" 2>&1 || log "a failover run failed; see $BENCH_OUT/failover-test.log"
	done
	grep -E '^\s+ha_test.go:[0-9]+: (failover|accounting)' "$BENCH_OUT/failover-test.log" >&2 || true
fi

commit=$(describe_commit)
{
	echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "Commit: $commit"
	echo "Plugin: $PLUGIN_NAME $PLUGIN_VERSION"
	echo "Vault: $vault_version, 3 nodes, integrated storage (Raft), performance_multiplier ${HA_PERFORMANCE_MULTIPLIER:-3}, file audit device on, log level ${VAULT_LOG_LEVEL:-info}"
	echo "Go: $(go version | sed 's/^go version //')"
	echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores (shared by the three nodes, the emulator and the load generator)"
	echo "Memory: $(awk '/MemTotal/ {printf "%.1f GB", $2/1024/1024}' /proc/meminfo)"
	echo "Kernel: $(uname -sr)"
	echo "Settings: load $BENCH_DURATION per phase after $BENCH_WARMUP warm-up, concurrency $BENCH_CONCURRENCY; $BENCH_FAILOVER_RUNS failover runs per Raft performance_multiplier ($BENCH_FAILOVER_MULTIPLIERS)"
	echo "Runtime of bench-ha.sh: $(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s"
} >"$BENCH_OUT/meta.txt"

report_args=(-mode ha-report -meta "$BENCH_OUT/meta.txt")
[ -s "$BENCH_OUT/load.json" ] && report_args+=(-load "$BENCH_OUT/load.json")
[ -s "$BENCH_OUT/failover.jsonl" ] && report_args+=(-failover "$BENCH_OUT/failover.jsonl")
"$WORK/loadgen" "${report_args[@]}" >"$BENCH_OUT/report.md"
echo
cat "$BENCH_OUT/report.md"
log "report written to $BENCH_OUT/report.md"
