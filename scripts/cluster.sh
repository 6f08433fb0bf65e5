#!/usr/bin/env bash
# Copyright (c) vault-plugin-secrets-github-app contributors
# SPDX-License-Identifier: MPL-2.0
# make cluster: a 3-node Vault cluster on integrated storage (Raft) on 127.0.0.1 with the plugin mounted at github/
# against the GitHub emulator and a file audit device on each node, running until Ctrl-C; then everything stops and
# its directory is removed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

: "${VAULT_BIN:?set VAULT_BIN (make cluster does)}" "${BIN:?set BIN (make cluster does)}" "${PLUGIN_VERSION:?}"
command -v curl >/dev/null || die "the cluster script needs curl"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/github-app-cluster.XXXXXX")
cleanup() { cluster_stop; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting the GitHub emulator and three Vault $("$VAULT_BIN" version | cut -d' ' -f2) nodes on 127.0.0.1"
cluster_start "$WORK"

"$VAULT_BIN" operator raft list-peers
cat <<MSG

A 3-node Vault cluster on integrated storage runs, with the plugin mounted at github/ (role ci) on every node.

  node1  ${NODE_ADDRS[0]}  pid ${NODE_PIDS[0]}  $WORK/node1
  node2  ${NODE_ADDRS[1]}  pid ${NODE_PIDS[1]}  $WORK/node2
  node3  ${NODE_ADDRS[2]}  pid ${NODE_PIDS[2]}  $WORK/node3

  root token:  $VAULT_TOKEN
  unseal key:  in $WORK/init.txt
  emulator:    $GITHUB_URL  (curl $GITHUB_URL/_fake/stats)
  audit logs:  $WORK/node*/audit.log   server logs: $WORK/node*/vault.log

In another shell (any node serves; standbys forward to the active node):

  export VAULT_ADDR=${NODE_ADDRS[1]} VAULT_TOKEN=$VAULT_TOKEN
  vault read github/token/ci
  vault operator raft autopilot state

To watch a failover, kill the active node (vault status shows which); to bring a node back, start it again in its
directory and unseal it with the key from init.txt:

  (cd $WORK/node1 && $VAULT_BIN server -config=vault.hcl >>vault.log 2>&1 &)
  VAULT_ADDR=${NODE_ADDRS[0]} vault operator unseal

Press Ctrl-C to stop the cluster and the emulator.
MSG
wait
