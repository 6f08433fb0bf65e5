#!/usr/bin/env bash
# Copyright (c) vault-plugin-secrets-github-app contributors
# SPDX-License-Identifier: MPL-2.0
# make bench-pools (and the last part of make bench): the App pool scenarios (BENCHMARKS.md, "App pools") in a real
# Vault dev server against the GitHub emulator serving three Apps on acme (fixture.pool.example.json), printed, never asserted:
#
#   single  a single-App mount of this build against the same role on the earlier release (BENCH_PREV_VERSION,
#           built from git history) and the no-op leased plugin, all in the same Vault, in interleaved rounds:
#           plugin CPU per token (target: within 5 % of the earlier release's) and throughput against the no-op
#           plugin (target: at least 0.7)
#   pool    a role over the three Apps, one of them (a2) limited by GitHub for the whole run, once with a primary
#           and once with a secondary rate limit (per-App faults of the emulator), each on a mount of its own, each
#           window between two windows of a healthy single-App mount: client errors (target 0), throughput (target
#           at least 0.9 of the single-App mount's) and the calls the limited App saw per second (target at most 1)
#   budget  a role over the three Apps whose installations have 10 %, 50 % and 90 % of their budget left,
#           rate_limit_refresh 1s, one load from a cold mount: the share of mints per App; half-way the 90 % one
#           drops to 5 %, and the report says how long until the shares follow
#
# Everything listens on 127.0.0.1 and stops by itself. Knobs (environment), with their defaults:
#
#   BENCH_POOLS_SCENARIOS=single,pool,budget
#   BENCH_POOLS_DURATION=10s     measured time of each window (the budget load runs twice as long)
#   BENCH_POOLS_WARMUP=1s        unmeasured warm-up before each window (none in the budget scenario)
#   BENCH_POOLS_CONCURRENCY=16
#   BENCH_POOLS_ROUNDS=2         rounds of the single-App comparison
#   BENCH_POOL_LIMITS=primary,secondary
#   BENCH_PREV_VERSION=v0.2.0    the release to compare with: its tag, else the commit that set VERSION to it
#   BENCH_OUT=$BIN/bench-pools   where pools.json and report.md go
#
# A quick smoke run: BENCH_POOLS_DURATION=2s BENCH_POOLS_WARMUP=0s BENCH_POOLS_ROUNDS=1 make bench-pools
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"

: "${VAULT_BIN:?set VAULT_BIN (make bench-pools does)}" "${BIN:?set BIN (make bench-pools does)}" "${PLUGIN_VERSION:?}"
BENCH_POOLS_SCENARIOS=${BENCH_POOLS_SCENARIOS:-single,pool,budget}
BENCH_POOLS_DURATION=${BENCH_POOLS_DURATION:-10s}
BENCH_POOLS_WARMUP=${BENCH_POOLS_WARMUP:-1s}
BENCH_POOLS_CONCURRENCY=${BENCH_POOLS_CONCURRENCY:-16}
BENCH_POOLS_ROUNDS=${BENCH_POOLS_ROUNDS:-2}
BENCH_POOL_LIMITS=${BENCH_POOL_LIMITS:-primary,secondary}
BENCH_PREV_VERSION=${BENCH_PREV_VERSION:-v0.2.0}
BENCH_OUT=${BENCH_OUT:-$BIN/bench-pools}

NOOP_NAME=bench-noop
NOOP_VERSION=v0.0.1 # bench/noopplugin's Version
PREV_NAME=github-app-prev
# The pool: the App of config (default) and two more, each installed on acme (fixture.pool.example.json).
POOL_APPS=default=1001=2001,a2=1002=2102,a3=1003=2103
ROLE_ARGS=(owner=acme repositories=api,web permissions=contents=read,pull_requests=write ttl=30m)

started=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/github-app-bench-pools.XXXXXX")
cleanup() {
	stack_stop
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$BENCH_OUT"
rm -f "$BENCH_OUT"/{pools.json,meta.txt,report.md}
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)

log "building the load generator and the no-op plugin"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$WORK/loadgen" ./bench/loadgen)
(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$WORK/$NOOP_NAME" ./bench/noopplugin)

# The earlier release, built from git history the way make build builds this one: its tag when there is one, else
# the commit that set VERSION to it (the release commit).
prev_commit=""
if [[ ",$BENCH_POOLS_SCENARIOS," == *,single,* ]]; then
	if prev_commit=$(cd "$root" && git rev-parse -q --verify "refs/tags/$BENCH_PREV_VERSION^{commit}" 2>/dev/null); then
		:
	else
		prev_commit=""
		for c in $(cd "$root" && git log --reverse --format=%H -- VERSION 2>/dev/null); do
			if [ "$(cd "$root" && git show "$c:VERSION" 2>/dev/null | tr -d '[:space:]')" = "$BENCH_PREV_VERSION" ]; then
				prev_commit=$c
				break
			fi
		done
	fi
	if [ -n "$prev_commit" ]; then
		log "building $BENCH_PREV_VERSION from commit ${prev_commit:0:7}"
		mkdir -p "$WORK/prev-src"
		(cd "$root" && git archive "$prev_commit") | tar -x -C "$WORK/prev-src"
		module=$(cd "$WORK/prev-src" && go list -m)
		(cd "$WORK/prev-src" && CGO_ENABLED=0 go build -trimpath \
			-ldflags "-s -w -X $module.Version=$BENCH_PREV_VERSION" -o "$WORK/$PREV_NAME" ./cmd/"$PLUGIN_NAME")
	else
		log "no commit of $BENCH_PREV_VERSION in the git history: the single-App mount is compared with the no-op plugin only"
	fi
fi

log "starting the GitHub emulator (three Apps on acme) and Vault $("$VAULT_BIN" version | cut -d' ' -f2) on 127.0.0.1"
FAKEGITHUB_FIXTURE="$root/internal/testing/cmd/fakegithub/fixture.pool.example.json" stack_start "$WORK"
vault() { "$VAULT_BIN" "$@"; }

# Both helpers are registered like ours: by sha256 and version, in the same plugin directory, each in its own process.
register() { # NAME VERSION
	cp "$WORK/$1" "$WORK/plugins/$1"
	vault plugin register -sha256="$(sha256sum "$WORK/plugins/$1" | cut -d' ' -f1)" -version="$2" secret "$1" >/dev/null
}
register "$NOOP_NAME" "$NOOP_VERSION"
vault secrets enable -path=noop -plugin-version="$NOOP_VERSION" "$NOOP_NAME" >/dev/null
prev_args=()
if [ -n "$prev_commit" ]; then
	register "$PREV_NAME" "$BENCH_PREV_VERSION"
	vault secrets enable -path=github-prev -plugin-version="$BENCH_PREV_VERSION" "$PREV_NAME" >/dev/null
	vault write github-prev/config app_id=1001 private_key=@"$KEY_FILE" base_url="$GITHUB_URL" >/dev/null
	vault write github-prev/roles/bench "${ROLE_ARGS[@]}" >/dev/null
	prev_args=(-prev-bin "$WORK/plugins/$PREV_NAME" -prev-path github-prev/token/bench)
fi

# The single-App mount (github/, from stack_start): the bench role of make bench.
vault write github/config app_id=1001 private_key=@"$KEY_FILE" base_url="$GITHUB_URL" >/dev/null
vault write github/roles/bench "${ROLE_ARGS[@]}" >/dev/null

# pool_mount PATH [REFRESH]: this build at PATH with the three Apps and the role pool over them (budget selection,
# the default for several Apps).
pool_mount() {
	local path=$1 refresh=${2:-} spec name app _
	vault secrets enable -path="$path" -plugin-version="$PLUGIN_VERSION" "$PLUGIN_NAME" >/dev/null
	for spec in ${POOL_APPS//,/ }; do
		IFS== read -r name app _ <<<"$spec"
		vault write "$path/apps/$name" app_id="$app" private_key=@"$KEY_FILE" base_url="$GITHUB_URL" \
			${refresh:+rate_limit_refresh="$refresh"} >/dev/null
	done
	vault write "$path/roles/pool" apps=default,a2,a3 app_selection=budget "${ROLE_ARGS[@]}" >/dev/null
}
if [[ ",$BENCH_POOLS_SCENARIOS," == *,pool,* ]]; then
	for kind in ${BENCH_POOL_LIMITS//,/ }; do pool_mount "pool-$kind"; done
fi
if [[ ",$BENCH_POOLS_SCENARIOS," == *,budget,* ]]; then
	pool_mount budget 1s
fi

log "scenarios $BENCH_POOLS_SCENARIOS: concurrency $BENCH_POOLS_CONCURRENCY, $BENCH_POOLS_DURATION per window"
"$WORK/loadgen" -mode pools -vault-addr "$VAULT_ADDR" -vault-token "$VAULT_TOKEN" -github-url "$GITHUB_URL" \
	-plugin-bin "$WORK/plugins/$PLUGIN_NAME" -noop-bin "$WORK/plugins/$NOOP_NAME" "${prev_args[@]}" \
	-vault-pid "$VAULT_PID" -emulator-pid "$FAKEGITHUB_PID" -version "$PLUGIN_VERSION" \
	-prev-version "$BENCH_PREV_VERSION" -pools-scenarios "$BENCH_POOLS_SCENARIOS" \
	-duration "$BENCH_POOLS_DURATION" -warmup "$BENCH_POOLS_WARMUP" -concurrency "$BENCH_POOLS_CONCURRENCY" \
	-pools-rounds "$BENCH_POOLS_ROUNDS" -pool-apps "$POOL_APPS" -pool-prefix pool- -pool-role pool \
	-pool-limited a2 -pool-limits "$BENCH_POOL_LIMITS" -budget-path budget/token/pool -budget-left 10,50,90 \
	-budget-change a3=5 -budget-limit 5000 -budget-refresh 1s -out "$BENCH_OUT/pools.json" ||
	log "the pool scenarios failed; reporting what there is"

vault_version=$(vault version)
stack_stop

commit=$(describe_commit)
{
	echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "Commit: $commit"
	echo "Plugin: $PLUGIN_NAME $PLUGIN_VERSION"
	if [ -n "$prev_commit" ]; then
		echo "Compared with: $BENCH_PREV_VERSION (commit ${prev_commit:0:7}, built from git history)"
	fi
	echo "Vault: $vault_version (dev server, in-memory storage, log level ${VAULT_LOG_LEVEL:-info})"
	echo "Go: $(go version | sed 's/^go version //')"
	echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores (nproc)"
	echo "Memory: $(awk '/MemTotal/ {printf "%.1f GB", $2/1024/1024}' /proc/meminfo)"
	echo "Kernel: $(uname -sr)"
	echo "Load average (1, 5, 15 min): $loadavg_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
	echo "Settings: scenarios $BENCH_POOLS_SCENARIOS; concurrency $BENCH_POOLS_CONCURRENCY; $BENCH_POOLS_DURATION per window after $BENCH_POOLS_WARMUP warm-up; $BENCH_POOLS_ROUNDS single-App rounds; limits $BENCH_POOL_LIMITS"
	echo "Runtime of bench-pools.sh: $(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s"
} >"$BENCH_OUT/meta.txt"

if [ -s "$BENCH_OUT/pools.json" ]; then
	"$WORK/loadgen" -mode pools-report -meta "$BENCH_OUT/meta.txt" -pools "$BENCH_OUT/pools.json" >"$BENCH_OUT/report.md"
	echo
	cat "$BENCH_OUT/report.md"
	log "report written to $BENCH_OUT/report.md"
else
	die "the pool scenarios produced no result"
fi
