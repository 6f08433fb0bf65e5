// Command noopplugin is the benchmarks' yardstick: the cheapest leased secret a Vault secrets plugin can hand out.
//
// It has one path, creds, whose read returns a small secret under a lease, and a Revoke that does nothing. It runs
// in the same plugin process model as the GitHub App plugin (ServeMultiplex, registered by sha256 and version), so
// everything it costs is Vault's own work for a leased read: routing, the gRPC round trip to the plugin, lease
// creation and its storage writes, and the lease's revocation. No leased-secret plugin can be faster; the GitHub
// App plugin is measured as a ratio against it.
package main

import (
	"context"
	"crypto/rand"
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
		Paths: []*framework.Path{{
			Pattern: "creds",
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{Callback: b.read},
			},
			HelpSynopsis:    "Read a meaningless leased secret.",
			HelpDescription: "Each read returns a random value under a 30-minute lease whose revocation does nothing.",
		}},
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
