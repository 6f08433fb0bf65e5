// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

// Package integrationtest runs the plugin in a real Vault server and a real Vault Agent against the GitHub emulator
// (internal/testing/cmd/fakegithub), and drives them through the vault CLI and github.com/hashicorp/vault/api.
//
// `make integration` builds everything and runs the tests. They also run alone (go test ./integrationtest/); then
// TestMain builds the plugin (with the Version ldflag from the VERSION file) and the emulator into a temporary
// directory and gets Vault from scripts/vault.sh. These variables override what TestMain finds:
//
//	VAULT_BIN        the vault binary
//	PLUGIN_BIN       the plugin binary, built with -X <module>.Version=$PLUGIN_VERSION
//	PLUGIN_VERSION   the version to register the plugin with (default: the VERSION file)
//	FAKEGITHUB_BIN   the emulator binary
//	CI               when true, nothing skips: a missing piece fails the run
//	HA_FAILOVER_REPORT  TestCluster/failover appends its report to this file as a JSON line (make bench-ha)
//	HA_KEEP_LOGS     a directory where TestCluster copies its nodes' server logs
//	HA_PERFORMANCE_MULTIPLIER  Raft's performance_multiplier in TestCluster (default 3; Vault advises 1 on
//	                 production hardware, which three nodes on two shared cores are not)
//
// Without CI, the tests skip (with the reason) only when no Vault binary can be obtained.
//
// One emulator and one Vault dev server are shared by the tests; each test mounts the plugin at its own path
// (gh-<test>-<n>) and disables it when done, which revokes its leases. The restart test runs a second Vault with file
// storage of its own. TestCluster runs a 3-node cluster on integrated storage with an emulator of its own
// (cluster_test.go), shared by its subtests (ha_test.go): standbys, a rolling restart, failover under load, a plugin
// upgrade and downgrade, a snapshot restore, the audit logs, and docs/production.md's commands. Tests run one after
// another: the crash test kills the plugin process that every mount of the shared server uses.
//
// The files in examples/ are the docs' policy, Vault Agent and GitHub Actions examples, and the tests use them as they
// are, with two kinds of textual substitution: the mount path "github/" becomes the test's mount, and in agent.hcl the
// example address and file paths (see agentPlaceholders in agent_test.go) become the test's. A change to an example
// that the substitution no longer fits fails the tests, so the docs cannot drift from what is tested.
//
// TestInstallFromRelease builds the release zip for this machine with `make release` and runs the shell block of
// the README's "Install" section as it is, with the example version, platform, plugin directory and download URL
// replaced (see the readme* constants in install_test.go), against a Vault dev server of its own.
//
// TestDocsCommands (docs_test.go) reads every command of the shell blocks of README.md, docs/*.md and SECURITY.md. It
// runs those that stand alone on the shared dev server, in document order at the docs' mount path github/ (free:
// the other tests use gh-* mounts) with the example values replaced (docsSubstitutions); checks, for the others,
// that the test it names for each runs it; and that the documentation labels what no test can run as an untested
// example. A newly documented command fails it until it is put in one of its three tables.
//
// Token values never reach the test log: the harness redacts GitHub and Vault tokens from every output it prints.
package integrationtest
