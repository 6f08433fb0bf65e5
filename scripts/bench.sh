#!/usr/bin/env bash
# Copyright (c) vault-plugin-secrets-github-app contributors
# SPDX-License-Identifier: MPL-2.0
# make bench: the plugin under load in a real Vault dev server against the GitHub emulator
# (internal/testing/cmd/fakegithub), next to baselines in the same Vault (a KV v1 read; the no-op leased plugin of
# bench/noopplugin, minimal and shaped like our answer), then a revocation storm, then the Go benchmarks, and one
# markdown summary at the end (also written to $BENCH_OUT/report.md).
#
# Everything listens on 127.0.0.1 and stops by itself. Knobs (environment), with their defaults:
#
#   BENCH_DURATION=10s          measured time of each load phase
#   BENCH_WARMUP=1s             unmeasured warm-up before each load phase
#   BENCH_CONCURRENCY=1,4,16    concurrencies of the load phases
#   BENCH_STORM_COUNT=20000     tokens the storm mints (0 skips the storm)
#   BENCH_STORM_CONCURRENCY=16
#   BENCH_STORM_TTL=30s         lease TTL of the storm role
#   BENCH_STORM_WAIT=10m        the longest wait for the storm's revocations
#   BENCH_GOBENCHTIME=2s        -benchtime of the Go benchmarks (0 skips them)
#   BENCH_LIMITS=1              GitHub at its limits: the four scenarios of integrationtest/limits_test.go at full
#                               size (secondary storm, primary limit, outage, cold burst; 0 skips them)
#   BENCH_POOLS=1               App pools: the scenarios of scripts/bench-pools.sh (a single-App mount against
#                               v0.2.0, a pool with one App limited, budget shares), with its BENCH_POOLS_* knobs;
#                               0 skips them, and `make bench-pools` runs only them
#   BENCH_OUT=$BIN/bench        where the JSON results and report.md go
#
# A quick smoke run: BENCH_DURATION=2s BENCH_WARMUP=0s BENCH_STORM_COUNT=500 BENCH_STORM_TTL=5s \
#   BENCH_GOBENCHTIME=100ms make bench
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"

: "${VAULT_BIN:?set VAULT_BIN (make bench does)}" "${BIN:?set BIN (make bench does)}" "${PLUGIN_VERSION:?}"
BENCH_DURATION=${BENCH_DURATION:-10s}
BENCH_WARMUP=${BENCH_WARMUP:-1s}
BENCH_CONCURRENCY=${BENCH_CONCURRENCY:-1,4,16}
BENCH_STORM_COUNT=${BENCH_STORM_COUNT:-20000}
BENCH_STORM_CONCURRENCY=${BENCH_STORM_CONCURRENCY:-16}
BENCH_STORM_TTL=${BENCH_STORM_TTL:-30s}
BENCH_STORM_WAIT=${BENCH_STORM_WAIT:-10m}
BENCH_GOBENCHTIME=${BENCH_GOBENCHTIME:-2s}
BENCH_LIMITS=${BENCH_LIMITS:-1}
BENCH_POOLS=${BENCH_POOLS:-1}
BENCH_OUT=${BENCH_OUT:-$BIN/bench}

NOOP_NAME=bench-noop
# Must match bench/noopplugin's Version: Vault registers a plugin with -version only if the binary reports it.
NOOP_VERSION=v0.0.1

started=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/github-app-bench.XXXXXX")
cleanup() {
	stack_stop
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$BENCH_OUT"
rm -f "$BENCH_OUT"/{load.json,storm.json,gobench.txt,limits.txt,meta.txt,report.md}
rm -rf "$BENCH_OUT/pools"

log "building the load generator and the no-op plugin"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$WORK/loadgen" ./bench/loadgen)
(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$WORK/$NOOP_NAME" ./bench/noopplugin)

log "starting the GitHub emulator and Vault $("$VAULT_BIN" version | cut -d' ' -f2) on 127.0.0.1"
stack_start "$WORK"
vault() { "$VAULT_BIN" "$@"; }

# The no-op plugin goes into the same plugin directory and is registered the same way as ours: by sha256 and
# version, multiplexed, in its own process.
cp "$WORK/$NOOP_NAME" "$WORK/plugins/$NOOP_NAME"
vault plugin register -sha256="$(sha256sum "$WORK/plugins/$NOOP_NAME" | cut -d' ' -f1)" -version="$NOOP_VERSION" \
	secret "$NOOP_NAME" >/dev/null
vault secrets enable -path=noop -plugin-version="$NOOP_VERSION" "$NOOP_NAME" >/dev/null
vault secrets enable -path=kv -version=1 kv >/dev/null
# A value the size of a classic installation token.
vault write kv/bench value=0123456789abcdef0123456789abcdef01234567 >/dev/null

# Both roles ask for the same narrowed scope (an owner resolved once and cached, two repositories, two
# permissions), so that every mint sends a body and the plugin checks the grant, as a typical CI role would.
# bench outlives every load phase (its leases are revoked between phases); storm expires quickly on purpose.
vault write github/config app_id=1001 private_key=@"$KEY_FILE" base_url="$GITHUB_URL" >/dev/null
vault write github/roles/bench owner=acme repositories=api,web permissions=contents=read,pull_requests=write \
	ttl=30m >/dev/null
vault write github/roles/storm owner=acme repositories=api,web permissions=contents=read,pull_requests=write \
	ttl="$BENCH_STORM_TTL" >/dev/null

common=(-vault-addr "$VAULT_ADDR" -vault-token "$VAULT_TOKEN" -github-url "$GITHUB_URL"
	-plugin-bin "$WORK/plugins/$PLUGIN_NAME" -noop-bin "$WORK/plugins/$NOOP_NAME"
	-vault-pid "$VAULT_PID" -emulator-pid "$FAKEGITHUB_PID")

log "load phases: concurrency $BENCH_CONCURRENCY, $BENCH_DURATION each (KV v1, no-op, shaped no-op, github)"
"$WORK/loadgen" -mode load "${common[@]}" -duration "$BENCH_DURATION" -warmup "$BENCH_WARMUP" \
	-concurrency "$BENCH_CONCURRENCY" -out "$BENCH_OUT/load.json" || log "the load phases failed; reporting what there is"

if [ "$BENCH_STORM_COUNT" -gt 0 ]; then
	log "revocation storm: $BENCH_STORM_COUNT tokens, TTL $BENCH_STORM_TTL, waiting at most $BENCH_STORM_WAIT"
	"$WORK/loadgen" -mode storm "${common[@]}" -storm-count "$BENCH_STORM_COUNT" \
		-storm-concurrency "$BENCH_STORM_CONCURRENCY" -storm-ttl "$BENCH_STORM_TTL" -storm-wait "$BENCH_STORM_WAIT" \
		-vault-log "$WORK/vault.log" -emulator-log "$WORK/fakegithub.log" -out "$BENCH_OUT/storm.json" ||
		log "the storm failed; reporting what there is"
fi

vault_version=$(vault version)
stack_stop

# The limit scenarios start a stack of their own (the integration tests' harness), after ours has stopped.
if [ "$BENCH_LIMITS" != 0 ]; then
	log "GitHub at its limits: secondary storm, primary limit, outage, cold burst (full size)"
	(cd "$root" && LIMITS_SCENARIO=full VAULT_BIN="$VAULT_BIN" PLUGIN_BIN="$BIN/$PLUGIN_NAME" \
		PLUGIN_VERSION="$PLUGIN_VERSION" FAKEGITHUB_BIN="$BIN/fakegithub" \
		go test -count=1 -timeout 20m -run '^TestLimits' -v ./integrationtest/) 2>&1 |
		tee "$BENCH_OUT/limits.log" | grep -o 'FIGURES .*' >"$BENCH_OUT/limits.txt" || log "the limit scenarios failed"
fi

# The pool scenarios also start a stack of their own (the emulator with three Apps), and write their own report.
if [ "$BENCH_POOLS" != 0 ]; then
	log "App pools: a single-App mount against v0.2.0, a pool with one App limited, budget shares"
	BENCH_OUT="$BENCH_OUT/pools" bash "$here/bench-pools.sh" >/dev/null || log "the pool scenarios failed"
fi

# The Go benchmarks run after the stack has stopped, so that nothing else competes for the cores.
if [ "$BENCH_GOBENCHTIME" != 0 ]; then
	log "Go benchmarks (-benchtime $BENCH_GOBENCHTIME)"
	(cd "$root" && go test -run '^$' -bench . -benchmem -count 1 -benchtime "$BENCH_GOBENCHTIME" \
		. ./internal/github) | tee "$BENCH_OUT/gobench.txt" >&2 || log "the Go benchmarks failed"
fi

commit=$(describe_commit)
settings="load $BENCH_DURATION per phase after $BENCH_WARMUP warm-up, concurrency $BENCH_CONCURRENCY;"
settings="$settings storm $BENCH_STORM_COUNT tokens at $BENCH_STORM_CONCURRENCY, TTL $BENCH_STORM_TTL;"
settings="$settings go test -benchtime $BENCH_GOBENCHTIME"
{
	echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "Commit: $commit"
	echo "Plugin: $PLUGIN_NAME $PLUGIN_VERSION"
	echo "Vault: $vault_version (dev server, in-memory storage, log level ${VAULT_LOG_LEVEL:-info})"
	echo "Go: $(go version | sed 's/^go version //')"
	echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores"
	echo "Memory: $(awk '/MemTotal/ {printf "%.1f GB", $2/1024/1024}' /proc/meminfo)"
	echo "Kernel: $(uname -sr)"
	echo "Settings: $settings"
	echo "Runtime of bench.sh: $(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s"
} >"$BENCH_OUT/meta.txt"

report_args=(-mode report -meta "$BENCH_OUT/meta.txt")
[ -s "$BENCH_OUT/load.json" ] && report_args+=(-load "$BENCH_OUT/load.json")
[ -s "$BENCH_OUT/storm.json" ] && report_args+=(-storm "$BENCH_OUT/storm.json")
[ -s "$BENCH_OUT/gobench.txt" ] && report_args+=(-gobench "$BENCH_OUT/gobench.txt")
"$WORK/loadgen" "${report_args[@]}" >"$BENCH_OUT/report.md"
if [ -s "$BENCH_OUT/limits.txt" ]; then
	{
		echo
		echo "#### GitHub at its limits (integrationtest/limits_test.go, LIMITS_SCENARIO=full)"
		echo
		echo "| scenario | figures |"
		echo "|---|---|"
		sed -E 's/^FIGURES scenario=([^ ]+) size=[^ ]+ (.*)$/| \1 | \2 |/' "$BENCH_OUT/limits.txt"
	} >>"$BENCH_OUT/report.md"
fi
if [ -s "$BENCH_OUT/pools/report.md" ]; then
	{
		echo
		cat "$BENCH_OUT/pools/report.md"
	} >>"$BENCH_OUT/report.md"
fi
echo
cat "$BENCH_OUT/report.md"
log "report written to $BENCH_OUT/report.md"
