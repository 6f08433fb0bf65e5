#!/usr/bin/env bash
# Copyright (c) vault-plugin-secrets-github-app contributors
# SPDX-License-Identifier: MPL-2.0
# Print the absolute path of a usable `vault` binary (last and only line on
# stdout; progress and errors go to stderr).
#
# Resolution order:
#   1. $VAULT_BIN, if set (it must be executable and `version` must work,
#      otherwise this script fails: an explicit choice is never ignored).
#   2. `vault` on PATH, if it reports version >= 1.15.
#   3. Vault v1.21.4 built from the Go module proxy into
#      <repo>/.cache/vault/bin/vault (reused on later runs; no go invocation
#      when that binary exists and reports the expected version).
#
# Vault is BUSL-licensed: its source and binary live only under .cache/,
# which must stay out of git.
#
# The build uses the default GOMODCACHE/GOCACHE on purpose (shared by all
# clones on the machine) and -trimpath so that the compile cache is reused
# even by a fresh clone at another path. Cold: ~10+ minutes, several GB of
# Go caches; warm: seconds.
set -euo pipefail

VAULT_VERSION="v1.21.4"
VAULT_MODULE="github.com/hashicorp/vault"
# The published SDK that MVS selects for vault v1.21.4; the source
# adaptations below are written against it.
VAULT_SDK_VERSION="v0.21.0"
MIN_MAJOR=1
MIN_MINOR=15

log() { printf 'vault.sh: %s\n' "$*" >&2; }
die() {
	printf 'vault.sh: ERROR: %s\n' "$*" >&2
	exit 1
}

# vault_version BIN: print "X.Y.Z" as reported by `BIN version`, or fail.
vault_version() {
	local out
	out=$(timeout 60 "$1" version 2>/dev/null) || return 1
	[[ $out =~ Vault\ v([0-9]+\.[0-9]+\.[0-9]+) ]] || return 1
	printf '%s\n' "${BASH_REMATCH[1]}"
}

# abs_path PATH: PATH if absolute, else made absolute (leaf symlink kept).
abs_path() {
	local dir
	if [[ $1 == /* ]]; then
		printf '%s\n' "$1"
		return
	fi
	dir=$(cd "$(dirname -- "$1")" && pwd -P) || return 1
	printf '%s/%s\n' "$dir" "$(basename -- "$1")"
}

# ---------------------------------------------------------------- 1. VAULT_BIN
if [[ -n ${VAULT_BIN:-} ]]; then
	bin=$VAULT_BIN
	if [[ $bin != */* ]]; then
		bin=$(command -v -- "$bin") || die "VAULT_BIN=$VAULT_BIN: not found on PATH"
	fi
	[[ -f $bin && -x $bin ]] || die "VAULT_BIN=$VAULT_BIN is not an executable file"
	bin=$(abs_path "$bin")
	ver=$(vault_version "$bin") || die "VAULT_BIN=$VAULT_BIN: '$bin version' failed or printed no 'Vault vX.Y.Z'"
	log "using VAULT_BIN ($bin, Vault v$ver)"
	printf '%s\n' "$bin"
	exit 0
fi

# ------------------------------------------------------------ 2. vault on PATH
if path_bin=$(command -v vault 2>/dev/null) && [[ $path_bin == */* ]]; then
	if ver=$(vault_version "$path_bin"); then
		IFS=. read -r major minor _ <<<"$ver"
		if ((major > MIN_MAJOR || (major == MIN_MAJOR && minor >= MIN_MINOR))); then
			path_bin=$(abs_path "$path_bin")
			log "using vault from PATH ($path_bin, Vault v$ver)"
			printf '%s\n' "$path_bin"
			exit 0
		fi
		log "ignoring $path_bin: Vault v$ver is older than $MIN_MAJOR.$MIN_MINOR"
	else
		log "ignoring $path_bin: '$path_bin version' failed"
	fi
fi

# --------------------------------------------------------- 3. cached / build
script_dir=$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$script_dir/.." && pwd -P)
cache="$repo/.cache/vault"
bin="$cache/bin/vault"
want=${VAULT_VERSION#v}

# Fast path: no lock, no go invocation.
if [[ -x $bin ]] && ver=$(vault_version "$bin") && [[ $ver == "$want" ]]; then
	printf '%s\n' "$bin"
	exit 0
fi

command -v go >/dev/null 2>&1 || die "no usable vault found and 'go' is not on PATH to build $VAULT_MODULE@$VAULT_VERSION"
command -v flock >/dev/null 2>&1 || die "'flock' (util-linux) is required"

mkdir -p "$cache/bin"
exec 9>"$cache/lock"
if ! flock -n 9; then
	log "another invocation is building vault; waiting for $cache/lock ..."
	flock -w 3600 9 || die "timed out waiting for $cache/lock"
fi

# Someone else may have built it while we waited.
if [[ -x $bin ]] && ver=$(vault_version "$bin") && [[ $ver == "$want" ]]; then
	printf '%s\n' "$bin"
	exit 0
fi

tmp_bin="$cache/bin/.vault.tmp.$$"
trap 'rm -rf "$tmp_bin" "$cache/src.tmp"' EXIT

# Our go invocations: module mode with our own tools module, no workspace,
# no VCS stamping (the build dir is inside this repo's git work tree).
export GOWORK=off GO111MODULE=on GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0

start=$SECONDS
log "building Vault $VAULT_VERSION into $cache (cold: ~10+ min and several GB of Go caches; warm: seconds)"

# --- source: pristine copy of the module, adapted to the published SDK.
dl_json=$(cd / && go mod download -json "$VAULT_MODULE@$VAULT_VERSION") ||
	die "go mod download $VAULT_MODULE@$VAULT_VERSION failed"
json_field() { sed -n 's/^[[:space:]]*"'"$1"'": "\(.*\)",\{0,1\}$/\1/p' <<<"$dl_json"; }
mod_dir=$(json_field Dir)
info_file=$(json_field Info)
[[ -n $mod_dir && -d $mod_dir ]] || die "could not locate $VAULT_MODULE@$VAULT_VERSION in the module cache (got '$mod_dir')"
build_date=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info_file" 2>/dev/null || true)
[[ -n $build_date ]] || build_date="1970-01-01T00:00:00Z"

rm -rf "$cache/src" "$cache/src.tmp"
cp -R "$mod_dir" "$cache/src.tmp"
chmod -R u+w "$cache/src.tmp"

# adapt FILE OLD NEW: replace the single occurrence of the literal line
# fragment OLD by NEW in FILE (relative to the source copy); fail loudly if
# OLD does not occur exactly once.
adapt() {
	local file="$cache/src.tmp/$1" old=$2 new=$3 content n
	[[ -f $file ]] || die "adaptation no longer applies: $1 does not exist in $VAULT_MODULE@$VAULT_VERSION"
	n=$(grep -cF -- "$old" "$file" || true)
	[[ $n == 1 ]] || die "adaptation no longer applies: expected exactly 1 line containing '$old' in $1, found ${n:-0}"
	content=$(<"$file")
	printf '%s\n' "${content/"$old"/"$new"}" >"$file"
	grep -qF -- "$new" "$file" || die "adaptation failed in $1"
}

# sdk v0.21.0: framework.Backend.ActivationFunc is
# func(context.Context, *logical.Request, string) error (in-tree sdk: no string).
adapt vault/identity_store.go \
	'ActivationFunc: iStore.activateDeduplication,' \
	'ActivationFunc: func(ctx context.Context, req *logical.Request, _ string) error { return iStore.activateDeduplication(ctx, req) }, // adapted by scripts/vault.sh for sdk '"$VAULT_SDK_VERSION"
adapt vault/logical_system_activation_flags.go \
	'b.idStoreBackend.ActivationFunc(ctx, nil)' \
	'b.idStoreBackend.ActivationFunc(ctx, nil, "") /* adapted by scripts/vault.sh for sdk '"$VAULT_SDK_VERSION"' */'
# sdk v0.21.0: keysutil.LockManager.RestorePolicy returns only an error
# (in-tree sdk: also the restored key name).
adapt builtin/logical/transit/path_restore.go \
	'restoredKeyName, err := b.lm.RestorePolicy(ctx, req.Storage, keyName, backupB64, force)' \
	'restoredKeyName, err := keyName, b.lm.RestorePolicy(ctx, req.Storage, keyName, backupB64, force) // adapted by scripts/vault.sh for sdk '"$VAULT_SDK_VERSION"

mv "$cache/src.tmp" "$cache/src"

# --- tools module that builds the (replaced) vault main package.
build_dir="$cache/build"
mkdir -p "$build_dir"
gomod_tmpl="module vaultbuild

go 1.25

require $VAULT_MODULE $VAULT_VERSION

// Source copy adapted to the published sdk (see scripts/vault.sh).
replace $VAULT_MODULE => ../src

// Vault's own non-local replace directives.
replace github.com/99designs/keyring => github.com/Jeffail/keyring v1.2.3

replace github.com/ma314smith/signedxml v1.1.1 => github.com/moov-io/signedxml v1.1.1
"
cat >"$build_dir/tools.go" <<EOF
//go:build tools

// Package tools pins $VAULT_MODULE for scripts/vault.sh.
package tools

import _ "$VAULT_MODULE"
EOF
# Re-resolve dependencies only when the template changed (or on first use).
if [[ ! -f $build_dir/go.sum || ! -f $build_dir/go.mod.in ]] ||
	! cmp -s "$build_dir/go.mod.in" - <<<"$gomod_tmpl"; then
	printf '%s' "$gomod_tmpl" >"$build_dir/go.mod"
	rm -f "$build_dir/go.sum" "$build_dir/go.mod.in"
	log "resolving dependencies (go mod tidy) ..."
	(cd "$build_dir" && go mod tidy) || die "go mod tidy failed in $build_dir"
	printf '%s\n' "$gomod_tmpl" >"$build_dir/go.mod.in"
fi
grep -qE "^[[:space:]]*github\.com/hashicorp/vault/sdk $VAULT_SDK_VERSION( |$)" "$build_dir/go.mod" ||
	die "module graph selected $(grep -E 'github\.com/hashicorp/vault/sdk ' "$build_dir/go.mod" | xargs) but the source adaptations in $0 were written for sdk $VAULT_SDK_VERSION"

# --- compile.
log "compiling (go build -trimpath); progress is not shown, this can take a while on a cold cache ..."
(cd "$build_dir" && go build -trimpath \
	-ldflags "-s -w -X $VAULT_MODULE/version.BuildDate=$build_date" \
	-o "$tmp_bin" "$VAULT_MODULE") ||
	die "building $VAULT_MODULE@$VAULT_VERSION failed (see errors above); if they are in adapted files, update the adaptations in $0"

ver=$(vault_version "$tmp_bin") || die "freshly built $tmp_bin does not run '$tmp_bin version'"
[[ $ver == "$want" ]] || die "freshly built vault reports v$ver, expected $VAULT_VERSION"
mv -f "$tmp_bin" "$bin"
log "built Vault v$ver in $((SECONDS - start))s: $bin"
printf '%s\n' "$bin"
