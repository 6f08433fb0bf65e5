#!/usr/bin/env bash
# Copyright (c) vault-plugin-secrets-github-app contributors
# SPDX-License-Identifier: MPL-2.0
# make fuzz: every fuzz target (func FuzzXxx in a *_fuzz_test.go) for FUZZTIME each, one after another: go test fuzzes
# one target per run. A failing target does not stop the others; the summary at the end names each target's last
# progress line and result, and the exit status is non-zero if any failed.
#
# Inputs that find new coverage go to the Go build cache ($(go env GOCACHE)/fuzz), never into the repository. Only a
# failing input is written, by go test itself, to the package's testdata/fuzz/FuzzXxx/: once the bug is fixed, commit
# it there as a regression seed (`make unit` runs every seed as an ordinary test).
#
# Knobs (environment), with their defaults:
#
#   FUZZTIME=30s     -fuzztime of each target (a duration, or Nx for N executions)
#   FUZZMINIMIZETIME=5s
#                    -fuzzminimizetime: how long an input that finds new coverage, or fails, is minimized. Go's
#                    default of 60s is meant for long runs: in a 30s run the workers spend most of it minimizing, and
#                    the progress lines show "0/sec" meanwhile (golang/go#51484), though they are busy.
#   FUZZFLAGS=       more go test flags, for example -parallel=1 on a busy machine
#   FUZZTARGETS=     an extended regular expression; only targets whose name matches run (default: all)
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-30s}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-5s}
FUZZFLAGS=${FUZZFLAGS:-}
FUZZTARGETS=${FUZZTARGETS:-.}

log=$(mktemp)
trap 'rm -f "$log"' EXIT
summary=()
failed=0
for dir in $(git ls-files --cached --others --exclude-standard '*fuzz_test.go' | xargs -r -n1 dirname | sort -u); do
	pkg=./$dir
	[ "$dir" = . ] && pkg=.
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' | grep -E "$FUZZTARGETS"); do
		echo "== $pkg $target ($FUZZTIME)"
		# shellcheck disable=SC2086 # FUZZFLAGS holds several flags
		go test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" \
			$FUZZFLAGS "$pkg" 2>&1 | tee "$log"
		status=${PIPESTATUS[0]}
		last=$(grep '^fuzz: elapsed:' "$log" | tail -n 1)
		result=ok
		if [ "$status" -ne 0 ]; then
			result=FAIL
			failed=1
		fi
		summary+=("$(printf '%-4s %-40s %s' "$result" "$pkg $target" "${last#fuzz: }")")
	done
done

echo
echo "== fuzz summary (FUZZTIME=$FUZZTIME, FUZZMINIMIZETIME=$FUZZMINIMIZETIME)"
printf '%s\n' "${summary[@]}"
exit "$failed"
