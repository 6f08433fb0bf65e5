// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

// Package githubapp is a Vault secrets engine that mints short-lived GitHub App installation access tokens under
// Vault leases and revokes them at GitHub when the lease ends.
package githubapp

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/signer"
)

// Version is the plugin's version, set at build time with
// -ldflags "-X github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app.Version=v1.2.3".
// Vault registers a plugin with -version only when the binary reports the same string; an empty Version reports
// nothing, which Vault accepts for an unversioned registration.
var Version = ""

// operationPrefix starts every OpenAPI operation ID of this plugin ("github-app-read-configuration", ...).
const operationPrefix = "github-app"

const backendHelp = `
The GitHub App secrets engine mints short-lived GitHub App installation access tokens.

Write the App's ID and private key to "config", define roles under "roles/" that bind an installation to the
repositories and permissions a token may carry, then read "token/<role>" to mint a token under a Vault lease. When
the lease ends, the token is revoked at GitHub.
`

// backend is the secrets engine. The GitHub client is built from the stored config on first use and cached with its
// connection pool, App JWT and installation IDs; it is replaced as a whole when the config changes, so a mint in
// flight uses either the old config or the new one, never a mix.
type backend struct {
	*framework.Backend

	// configMu serialises config writes and deletes.
	configMu sync.Mutex
	// lock guards client and revokers. Mints take the read side; config changes the write side.
	lock   sync.RWMutex
	client *appClient
	// revokers revoke tokens minted through other destinations than the config's: key-less clients built from
	// the stored revocation targets, by destination name (revocation_target.go).
	revokers map[string]*github.Client
	// destKey names destinations; read or created once (revocation_target.go).
	destKeyMu sync.Mutex
	destKey   []byte
	// gate is the mount's view of GitHub (rate limits and outages per destination, calls in flight), shared by all
	// its clients.
	gate *github.Gate
	// metrics is the mount's registry (path_metrics.go): one per mount, since one plugin process serves many.
	metrics *metrics

	roles *roleStore
	now   func() time.Time
	// pkcs11Libraries are the PKCS#11 libraries the operator allows (signer.LibrariesEnv), read once.
	pkcs11Libraries []string
	// clientOptions lets tests wrap the HTTP transport; nil in production.
	clientOptions func(*github.Options)
}

// appClient is the GitHub client of one stored config and what was learned through it. Nothing learned with one
// config's client is used with another's.
type appClient struct {
	*github.Client
	installations *installationCache
	repositories  *repositoryCache
	// destination names how the client reaches GitHub (base URL, CA bundle, proxy); its leases record it, and are
	// revoked through it.
	destination string
	bot         *botIdentityCache
}

// Factory builds and sets up the backend; Vault calls it when the plugin is mounted or loaded.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend()
	c := *conf
	c.System = newCachedSystemView(conf.System, b.now)
	if err := b.Setup(ctx, &c); err != nil {
		return nil, fmt.Errorf("setting up the GitHub App backend: %w", err)
	}
	return b, nil
}

func newBackend() *backend {
	b := &backend{
		revokers: map[string]*github.Client{},
		roles:    newRoleStore(),
		now:      time.Now,

		pkcs11Libraries: signer.ParseLibraries(os.Getenv(signer.LibrariesEnv)),
	}
	b.gate = github.NewGate(github.DefaultMaxConcurrent, b.now)
	b.metrics = newMetrics(b.gate)
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			SealWrapStorage: []string{configStoragePath, revocationTargetPrefix},
		},
		Paths: framework.PathAppend(
			[]*framework.Path{pathConfig(b)},
			pathRoles(b),
			[]*framework.Path{pathToken(b), pathInstallations(b), pathStatus(b), pathMetrics(b)},
		),
		Secrets:        []*framework.Secret{secretToken(b)},
		Invalidate:     b.invalidate,
		Clean:          func(context.Context) { b.reset() },
		RunningVersion: Version,
	}
	return b
}

// invalidate drops what was built from a storage entry that another node changed.
func (b *backend) invalidate(_ context.Context, key string) {
	switch {
	case key == configStoragePath:
		b.reset()
	case strings.HasPrefix(key, revocationTargetPrefix):
		// Targets are written once; a change here is a target or key appearing, or storage restored.
		b.lock.Lock()
		clear(b.revokers)
		b.lock.Unlock()
		b.destKeyMu.Lock()
		b.destKey = nil
		b.destKeyMu.Unlock()
	}
	b.roles.invalidate(key)
	// Invalidate does not say whether the role was deleted or written. Either way its series go: this node does not
	// mint (token paths are forwarded to the active node of the primary cluster), so they hold only what it counted
	// before it stopped serving them.
	if name, ok := strings.CutPrefix(key, roleStoragePrefix); ok {
		b.metrics.forgetRole(name)
	}
}

// reset forgets the client built from the config, and with it the JWT and installation IDs learned through it, and
// what the mount's Gate learned of GitHub (the config may now name another GitHub or App).
func (b *backend) reset() {
	b.lock.Lock()
	defer b.lock.Unlock()
	b.resetLocked()
}

func (b *backend) resetLocked() {
	if b.client != nil {
		b.client.CloseIdleConnections()
		if s := b.client.Signer(); s != nil {
			// A KMS or HSM signer was opened for this client alone (getClient).
			s.Close()
		}
	}
	b.client = nil
	b.gate.Forget()
}
