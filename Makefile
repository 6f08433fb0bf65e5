# Copyright (c) vault-plugin-secrets-github-app contributors
# SPDX-License-Identifier: MPL-2.0
# vault-plugin-secrets-github-app
#
# The two commands a newcomer needs: `make demo` (the plugin minting and revoking tokens in a real Vault against
# the built-in GitHub emulator) and `make test` (unit, contract and integration tests).

SHELL       := /usr/bin/env bash
PLUGIN      := vault-plugin-secrets-github-app
MODULE      := $(shell go list -m 2>/dev/null)
# A release tag wins; otherwise the VERSION file. Vault needs a semantic version to register a plugin with -version.
VERSION     ?= $(shell git describe --tags --match 'v[0-9]*' --exact-match 2>/dev/null || cat VERSION)
LDFLAGS     := -s -w -X $(MODULE).Version=$(VERSION)
BIN         := $(CURDIR)/bin
DIST        ?= $(CURDIR)/dist
# The platforms `make release` builds, as GOOS/GOARCH; -pkcs11 is the cgo build with the PKCS#11 signer (an arm64 one
# built on amd64 needs Debian's gcc-aarch64-linux-gnu).
PLATFORMS   ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64 \
               linux/amd64-pkcs11 linux/arm64-pkcs11
# The modification time of the files in the release zips: the last commit's, so that rebuilding a commit gives the
# same bytes (see reproducible-builds.org's SOURCE_DATE_EPOCH). Without git history, 1980-01-01, the earliest time
# a zip can hold.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 315532800)
GOTEST      ?= go test
TESTFLAGS   ?= -race -count=1
# make fuzz: how long each fuzz target runs and minimizes a new input (see scripts/fuzz.sh), more go test flags
# (-parallel=1), and a regular expression of targets.
FUZZTIME    ?= 30s
FUZZMINIMIZETIME ?= 5s
FUZZFLAGS   ?=
FUZZTARGETS ?= .

export CGO_ENABLED ?= 1

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-zA-Z_-]*:.*## / {printf "  \033[1m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the plugin and the GitHub emulator into bin/.
	@mkdir -p $(BIN)
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/$(PLUGIN) ./cmd/$(PLUGIN)
	CGO_ENABLED=0 go build -trimpath -o $(BIN)/fakegithub ./internal/testing/cmd/fakegithub

.PHONY: release
release: ## Reproducible release zips and their SHA256SUMS for every platform, into dist/.
	@mkdir -p $(DIST)
	rm -f $(DIST)/$(PLUGIN)_*
	go run ./tools/release -version '$(VERSION)' -ldflags '$(LDFLAGS)' -mtime '$(SOURCE_DATE_EPOCH)' \
		-out '$(DIST)' $(PLATFORMS)
	@cat $(DIST)/$(PLUGIN)_*_SHA256SUMS

.PHONY: vault
vault: ## Print the Vault binary the tests and demo use (builds Vault v1.21.4 into .cache/ if none is found).
	@bash scripts/vault.sh

.PHONY: unit
unit: ## Unit and contract tests (no Vault needed).
	$(GOTEST) $(TESTFLAGS) $$(go list ./... | grep -v /integrationtest)

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (default 30s) each, one after another; `unit` runs their seeds.
	FUZZTIME=$(FUZZTIME) FUZZMINIMIZETIME=$(FUZZMINIMIZETIME) FUZZFLAGS='$(FUZZFLAGS)' FUZZTARGETS='$(FUZZTARGETS)' \
		bash scripts/fuzz.sh

.PHONY: integration
integration: build ## Integration tests against a real Vault server and Vault Agent.
	VAULT_BIN="$$(bash scripts/vault.sh)" PLUGIN_BIN=$(BIN)/$(PLUGIN) PLUGIN_VERSION=$(VERSION) \
		FAKEGITHUB_BIN=$(BIN)/fakegithub $(GOTEST) -count=1 -timeout 20m ./integrationtest/...

.PHONY: test
test: unit integration ## Everything: unit, contract and integration tests.

.PHONY: demo
demo: build ## Mint, narrow and revoke a token in a real Vault against the GitHub emulator, then stop.
	VAULT_BIN="$$(bash scripts/vault.sh)" BIN=$(BIN) PLUGIN_VERSION=$(VERSION) bash scripts/demo.sh

.PHONY: dev
dev: build ## Like demo, but keep Vault and the emulator running until Ctrl-C.
	VAULT_BIN="$$(bash scripts/vault.sh)" BIN=$(BIN) PLUGIN_VERSION=$(VERSION) bash scripts/demo.sh --dev

.PHONY: cluster
cluster: build ## A 3-node Vault cluster (integrated storage) with the plugin and an audit log, until Ctrl-C.
	VAULT_BIN="$$(bash scripts/vault.sh)" BIN=$(BIN) PLUGIN_VERSION=$(VERSION) bash scripts/cluster.sh

.PHONY: bench
bench: build ## Benchmarks: load against a real Vault, baselines, revocation storm, limits, App pools, Go benchmarks.
	VAULT_BIN="$$(bash scripts/vault.sh)" BIN=$(BIN) PLUGIN_VERSION=$(VERSION) bash scripts/bench.sh

.PHONY: bench-pools
bench-pools: build ## App pools only: a single-App mount against v0.2.0, a pool with one App limited, budget shares.
	VAULT_BIN="$$(bash scripts/vault.sh)" BIN=$(BIN) PLUGIN_VERSION=$(VERSION) bash scripts/bench-pools.sh

.PHONY: bench-ha
bench-ha: build ## Benchmarks on a 3-node cluster: mints via the active node and a standby, failover runs.
	VAULT_BIN="$$(bash scripts/vault.sh)" BIN=$(BIN) PLUGIN_VERSION=$(VERSION) bash scripts/bench-ha.sh

.PHONY: generate
generate: ## Regenerate the permission table from GitHub's OpenAPI descriptions.
	go generate ./...

.PHONY: fmt
fmt: ## Format the code.
	gofmt -w $$(git ls-files '*.go')

.PHONY: lint
lint: ## gofmt check and go vet.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./...

.PHONY: clean
clean: ## Remove built binaries (bin/) and release artefacts (dist/). The Vault build in .cache/ stays.
	rm -rf $(BIN) $(DIST)
