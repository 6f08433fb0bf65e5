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
	"sync/atomic"
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

// backend is the secrets engine. It serves one or more GitHub Apps (path_apps.go; config is the App named
// "default"). Each App's client is built from its stored config on first use and cached with its connection pool,
// App JWT, installation IDs and its own view of GitHub; it is replaced as a whole when that App's config changes, so
// a mint in flight uses either the old config or the new one, never a mix.
type backend struct {
	*framework.Backend

	// configMu serialises App writes and deletes.
	configMu sync.Mutex
	// lock guards apps and revokers. Mints take the read side; config changes the write side.
	lock sync.RWMutex
	apps map[string]*appClient
	// revokers revoke tokens minted through other destinations than those of the Apps' clients: key-less clients
	// built from the stored revocation targets, by destination name (revocation_target.go).
	revokers map[string]*github.Client
	// revokeGate is the view of GitHub of the revokers.
	revokeGate *github.Gate
	// destKey names destinations; read or created once (revocation_target.go).
	destKeyMu sync.Mutex
	destKey   []byte
	// metrics is the mount's registry (path_metrics.go): one per mount, since one plugin process serves many.
	metrics *metrics
	// background bounds the work done off a request's path (budget refreshes); cancelled by Clean.
	backgroundMu   sync.Mutex
	background     context.Context
	stopBackground context.CancelFunc
	backgroundWG   sync.WaitGroup
	// turn takes Apps of equal rank in turn, and unusable holds the Apps whose client could not be built, which
	// pools pass over for a while (app_pool.go).
	turn       atomic.Uint64
	unusableMu sync.Mutex
	unusable   map[string]unusableApp

	roles *roleStore
	now   func() time.Time
	// pkcs11Libraries are the PKCS#11 libraries the operator allows (signer.LibrariesEnv), read once.
	pkcs11Libraries []string
	// clientOptions lets tests wrap the HTTP transport; nil in production.
	clientOptions func(*github.Options)
}

// appClient is the GitHub client of one stored App config and what was learned through it. Nothing learned with
// one config's client is used with another's.
type appClient struct {
	*github.Client
	// name is the App's name on the mount, appID its ID at GitHub (0 when neither written nor learned yet).
	name  string
	appID int64
	// gate is the App's own view of GitHub: rate limits, outages, calls in flight.
	gate          *github.Gate
	installations *installationCache
	repositories  *repositoryCache
	budgets       *budgetBook
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
		apps:     map[string]*appClient{},
		unusable: map[string]unusableApp{},
		revokers: map[string]*github.Client{},
		roles:    newRoleStore(),
		now:      time.Now,

		pkcs11Libraries: signer.ParseLibraries(os.Getenv(signer.LibrariesEnv)),
	}
	b.background, b.stopBackground = context.WithCancel(context.Background())
	b.metrics = newMetrics(b.appViews)
	b.revokeGate = github.NewGate(github.DefaultMaxConcurrent, b.now)
	b.revokeGate.Observe(b.metrics.observer(revocationAppLabel, ""))
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			SealWrapStorage: []string{configStoragePath, appStoragePrefix, revocationTargetPrefix},
		},
		Paths: framework.PathAppend(
			[]*framework.Path{pathConfig(b)},
			pathApps(b),
			pathRoles(b),
			[]*framework.Path{pathToken(b), pathInstallations(b), pathStatus(b), pathMetrics(b)},
		),
		Secrets:        []*framework.Secret{secretToken(b)},
		Invalidate:     b.invalidate,
		Clean:          b.clean,
		RunningVersion: Version,
	}
	return b
}

// invalidate drops what was built from a storage entry that another node changed.
func (b *backend) invalidate(_ context.Context, key string) {
	switch {
	case key == configStoragePath:
		b.reset(defaultAppName)
		b.metrics.forgetApp(defaultAppName)
	case strings.HasPrefix(key, appStoragePrefix):
		// As for roles below: whether the App was written or deleted, this node counted its series before it
		// stopped serving it.
		name := strings.TrimPrefix(key, appStoragePrefix)
		b.reset(name)
		b.metrics.forgetApp(name)
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

// clean stops the background work and releases every client, when Vault unmounts or reloads the plugin.
func (b *backend) clean(context.Context) {
	b.backgroundMu.Lock()
	b.stopBackground()
	b.backgroundMu.Unlock()
	b.backgroundWG.Wait()
	b.lock.Lock()
	defer b.lock.Unlock()
	for name := range b.apps {
		b.resetLocked(name)
	}
}

// reset forgets the client built from an App's config, and with it the JWT, installation IDs and view of GitHub
// learned through it (the config may now name another GitHub or App).
func (b *backend) reset(name string) {
	b.lock.Lock()
	defer b.lock.Unlock()
	b.resetLocked(name)
}

func (b *backend) resetLocked(name string) {
	b.unusableMu.Lock()
	delete(b.unusable, name)
	b.unusableMu.Unlock()
	c := b.apps[name]
	if c == nil {
		return
	}
	c.CloseIdleConnections()
	if s := c.Signer(); s != nil {
		// A KMS or HSM signer was opened for this client alone (appClientFor).
		s.Close()
	}
	delete(b.apps, name)
}
