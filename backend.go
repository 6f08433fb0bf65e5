// Package githubapp is a Vault secrets engine that mints short-lived GitHub App installation access tokens under
// Vault leases and revokes them at GitHub when the lease ends.
package githubapp

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
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
// connection pool and App JWT; it is replaced as a whole when the config changes, so a mint in flight uses either
// the old config or the new one, never a mix.
type backend struct {
	*framework.Backend

	// configMu serialises config writes and deletes.
	configMu sync.Mutex
	// lock guards client, revokers and installations. Mints take the read side; config changes the write side.
	lock    sync.RWMutex
	client  *github.Client
	config  *githubConfig // the config client was built from
	revoker map[string]*github.Client

	installations *installationCache
	roles         *roleCache
	roleLocks     []*locksutil.LockEntry
	now           func() time.Time
	// clientOptions lets tests wrap the HTTP transport; nil in production.
	clientOptions func(*github.Options)
}

// Factory builds and sets up the backend; Vault calls it when the plugin is mounted or loaded.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend()
	if err := b.Setup(ctx, conf); err != nil {
		return nil, fmt.Errorf("setting up the GitHub App backend: %w", err)
	}
	return b, nil
}

func newBackend() *backend {
	b := &backend{
		revoker:       map[string]*github.Client{},
		installations: newInstallationCache(),
		roles:         newRoleCache(),
		roleLocks:     locksutil.CreateLocks(),
		now:           time.Now,
	}
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			SealWrapStorage: []string{configStoragePath},
		},
		Paths: framework.PathAppend(
			[]*framework.Path{pathConfig(b)},
			pathRoles(b),
			[]*framework.Path{pathToken(b), pathInstallations(b)},
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
	if key == configStoragePath {
		b.reset()
	}
	b.roles.invalidate(key)
}

// reset forgets the cached client, revocation clients and installation IDs.
func (b *backend) reset() {
	b.lock.Lock()
	defer b.lock.Unlock()
	b.resetLocked()
}

// The replaced client stays on as the revocation client for its base URL: it knows the CA bundle and proxy that
// reach that GitHub, which leases minted there still need after the config moved elsewhere or was deleted.
func (b *backend) resetLocked() {
	if b.client != nil {
		if old, ok := b.revoker[b.client.BaseURL()]; ok {
			old.CloseIdleConnections()
		}
		b.revoker[b.client.BaseURL()] = b.client
	}
	b.client, b.config = nil, nil
	b.installations.clear()
}

// getClient returns the client for the stored config, building it on first use. It returns (nil, nil, nil) when
// no config is stored.
func (b *backend) getClient(ctx context.Context, s logical.Storage) (*github.Client, *githubConfig, error) {
	b.lock.RLock()
	c, cfg := b.client, b.config
	b.lock.RUnlock()
	if c != nil {
		return c, cfg, nil
	}

	b.lock.Lock()
	defer b.lock.Unlock()
	if b.client != nil {
		return b.client, b.config, nil
	}
	cfg, err := getConfig(ctx, s)
	if err != nil || cfg == nil {
		return nil, nil, err
	}
	c, err = b.newClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	b.client, b.config = c, cfg
	return c, cfg, nil
}

// revocationClient returns a client able to revoke tokens minted at baseURL: the configured client when it talks
// to that URL (it knows the CA bundle and proxy), else the last client used with that URL, else a plain one kept per
// URL, so that leases can be revoked after the config was deleted or moved to another GitHub.
func (b *backend) revocationClient(ctx context.Context, s logical.Storage, baseURL string) (*github.Client, error) {
	c, _, err := b.getClient(ctx, s)
	if err != nil {
		b.Logger().Warn("config unreadable; revoking without it", "error", err)
	}
	if c != nil && c.BaseURL() == baseURL {
		return c, nil
	}

	b.lock.Lock()
	defer b.lock.Unlock()
	if rc, ok := b.revoker[baseURL]; ok {
		return rc, nil
	}
	opts := github.Options{
		BaseURL:   baseURL,
		UserAgent: userAgent(),
		Logger:    b.Logger().Named("github"),
		Now:       b.now,
	}
	if b.clientOptions != nil {
		b.clientOptions(&opts)
	}
	rc, err := github.NewClient(opts)
	if err != nil {
		return nil, fmt.Errorf("building a revocation client for %s: %w", baseURL, err)
	}
	b.revoker[baseURL] = rc
	return rc, nil
}

// newClient builds a GitHub client from a config.
func (b *backend) newClient(cfg *githubConfig) (*github.Client, error) {
	key, err := github.ParsePrivateKey(cfg.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("stored private key: %w", err)
	}
	opts := github.Options{
		BaseURL:        cfg.BaseURL,
		AppID:          cfg.AppID,
		ClientID:       cfg.ClientID,
		PrivateKey:     key,
		CACertificate:  cfg.CACertificate,
		ProxyURL:       cfg.ProxyURL,
		RequestTimeout: cfg.RequestTimeout,
		UserAgent:      userAgent(),
		Logger:         b.Logger().Named("github"),
		Now:            b.now,
	}
	if b.clientOptions != nil {
		b.clientOptions(&opts)
	}
	return github.NewClient(opts)
}

// userAgent names the plugin and its version to GitHub, which refuses requests without a User-Agent.
func userAgent() string {
	v := Version
	if v == "" {
		v = "dev"
	}
	return github.DefaultUserAgent + "/" + v
}
