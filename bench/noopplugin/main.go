// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

// Command noopplugin is the benchmarks' yardstick: the cheapest leased secret a Vault secrets plugin can hand out.
//
// Its path creds returns a small secret under a lease whose Revoke does nothing. A second path, shaped, returns a
// secret of the same shape and size as a GitHub token from token/<role> (response data and lease internal data),
// still without any work: the difference between creds and shaped is what Vault itself spends on a bigger lease,
// and the difference between shaped and the real plugin is what the plugin and GitHub add. It runs
// in the same plugin process model as the GitHub App plugin (ServeMultiplex, registered by sha256 and version), so
// everything it costs is Vault's own work for a leased read: routing, the gRPC round trip to the plugin, lease
// creation and its storage writes, and the lease's revocation. No leased-secret plugin can be faster; the GitHub
// App plugin is measured as a ratio against it.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin"
)

// Version is what the plugin reports to Vault; scripts/bench.sh registers it with the same -version.
const Version = "v0.0.1"

// leaseTTL is fixed rather than read from the mount, because asking Vault for the mount's TTLs is a gRPC call back
// to Vault and the yardstick must not pay for anything it can avoid. 30 minutes outlives every load phase; the
// benchmark revokes the leases between phases.
const leaseTTL = 30 * time.Minute

const secretType = "noop_creds"

func main() {
	meta := &api.PluginAPIClientMeta{}
	if err := meta.FlagSet().Parse(os.Args[1:]); err != nil {
		fatal(err)
	}
	err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: factory,
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	})
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("noop plugin shutting down", "error", err)
	os.Exit(1)
}

type backend struct {
	*framework.Backend
}

func factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := &backend{}
	b.Backend = &framework.Backend{
		Help:        "A secrets engine that hands out meaningless leased secrets, for benchmarks.",
		BackendType: logical.TypeLogical,
		Paths: []*framework.Path{
			{
				Pattern: "creds",
				Operations: map[logical.Operation]framework.OperationHandler{
					logical.ReadOperation: &framework.PathOperation{Callback: b.read},
				},
				HelpSynopsis:    "Read a meaningless leased secret.",
				HelpDescription: "Each read returns a random value under a 30-minute lease whose revocation does nothing.",
			},
			{
				Pattern: "shaped",
				Operations: map[logical.Operation]framework.OperationHandler{
					logical.ReadOperation: &framework.PathOperation{Callback: b.readShaped},
				},
				HelpSynopsis:    "Read a meaningless leased secret shaped like a GitHub installation token.",
				HelpDescription: "Each read returns made-up data with the fields and sizes of github/token/<role>.",
			},
		},
		Secrets: []*framework.Secret{{
			Type: secretType,
			Fields: map[string]*framework.FieldSchema{
				"value": {Type: framework.TypeString, Description: "A random value."},
			},
			Revoke: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
				return nil, nil
			},
		}},
		RunningVersion: Version,
	}
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

// readShaped returns what github/token/<role> returns for a role limited to two repositories and three
// permissions, with made-up values of the same sizes, and the same lease internal data. Nothing is computed that
// a real mint would not also compute (a random token and its SHA-256).
func (b *backend) readShaped(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
	var raw [27]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	token := "ghs_" + base64.RawURLEncoding.EncodeToString(raw[:])[:36]
	sum := sha256.Sum256([]byte(token))
	resp := b.Secret(secretType).Response(map[string]any{
		"token":                token,
		"expires_at":           time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		"installation_id":      int64(2001),
		"permissions":          map[string]string{"contents": "read", "metadata": "read", "pull_requests": "write"},
		"repository_selection": "selected",
		"repositories":         []string{"api", "web"},
		"role":                 "bench",
		"hashed_token":         base64.StdEncoding.EncodeToString(sum[:]),
	}, map[string]any{
		"token":           token,
		"base_url":        "http://127.0.0.1:40000",
		"installation_id": int64(2001),
		"role":            "bench",
	})
	resp.Secret.TTL = leaseTTL
	resp.Secret.MaxTTL = leaseTTL
	resp.Secret.Renewable = false
	return resp, nil
}

// read returns a value about the size of a classic installation token, so that the response and the lease entry
// weigh about what a minimal real secret would.
func (b *backend) read(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
	var raw [20]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	value := hex.EncodeToString(raw[:])
	resp := b.Secret(secretType).Response(map[string]any{"value": value}, map[string]any{"value": value})
	resp.Secret.TTL = leaseTTL
	resp.Secret.MaxTTL = leaseTTL
	resp.Secret.Renewable = false
	return resp, nil
}
