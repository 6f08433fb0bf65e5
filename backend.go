// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

// Package githubapp is a Vault secrets engine that mints short-lived GitHub App installation access tokens under
// Vault leases and revokes them at GitHub when the lease ends.
package githubapp

import (
	"context"
	"fmt"
	"reflect"
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

	roles     *roleCache
	roleLocks []*locksutil.LockEntry
	now       func() time.Time
	// clientOptions lets tests wrap the HTTP transport; nil in production.
	clientOptions func(*github.Options)
}

// appClient is the GitHub client of one stored config and what was learned through it. Nothing learned with one
// config's client is used with another's.
type appClient struct {
	*github.Client
	installations *installationCache
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
		revokers:  map[string]*github.Client{},
		roles:     newRoleCache(),
		roleLocks: locksutil.CreateLocks(),
		now:       time.Now,
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

// HandleRequest refuses input the SDK's conversion would quote in its error (a long, multi-line or structured value
// of the wrong type), or an oversized value.
func (b *backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if msg := b.inputProblem(req); msg != "" {
		return logical.ErrorResponse(msg), nil
	}
	return b.Backend.HandleRequest(ctx, req)
}

// HandleExistenceCheck runs before HandleRequest, and Vault logs its error. With such input the check is answered
// without the request's data (it only reads storage); HandleRequest then refuses the request.
func (b *backend) HandleExistenceCheck(ctx context.Context, req *logical.Request) (bool, bool, error) {
	if b.inputProblem(req) != "" {
		data := req.Data
		req.Data = nil
		defer func() { req.Data = data }()
	}
	return b.Backend.HandleExistenceCheck(ctx, req)
}

// inputProblem names the first field of req whose value the SDK could not convert to the field's type and would
// quote in its error (typeProblem); or, on role and token paths, the first value longer than maxValueBytes or with
// more than maxRepositories entries.
func (b *backend) inputProblem(req *logical.Request) string {
	if len(req.Data) == 0 {
		return ""
	}
	if path := b.Route(req.Path); path != nil {
		if msg := typeProblem(path.Fields, req.Data); msg != "" {
			return msg
		}
	}
	if !strings.HasPrefix(req.Path, roleStoragePrefix) && !strings.HasPrefix(req.Path, "token/") {
		return ""
	}
	for _, field := range sortedKeys(req.Data) {
		if msg := sizeProblem(field, reflect.ValueOf(req.Data[field])); msg != "" {
			return msg
		}
	}
	return ""
}

// maxValueBytes bounds one string of a role or token write: 500 repository names of 100 characters fit.
const maxValueBytes = 64 << 10

// listFields are the list parameters of role and token writes, which a string gives as comma-separated entries.
var listFields = map[string]bool{"repositories": true, "repository_ids": true, "permissions": true}

// sizeProblem checks a value's strings and entries, and those it holds.
func sizeProblem(field string, v reflect.Value) string {
	switch v.Kind() {
	case reflect.String:
		if listFields[field] {
			if n := strings.Count(v.String(), ",") + 1; n > maxRepositories {
				return tooManyEntries(field, n).Error()
			}
		}
		if v.Len() > maxValueBytes {
			return fmt.Sprintf("%s holds a value of %d bytes: at most %d are accepted", field, v.Len(), maxValueBytes)
		}
	case reflect.Slice, reflect.Array, reflect.Map:
		if v.Len() > maxRepositories {
			return tooManyEntries(field, v.Len()).Error()
		}
		if v.Kind() == reflect.Map {
			for it := v.MapRange(); it.Next(); {
				if msg := sizeProblem(field, it.Key()); msg != "" {
					return msg
				}
				if msg := sizeProblem(field, it.Value()); msg != "" {
					return msg
				}
			}
			return ""
		}
		for i := range v.Len() {
			if msg := sizeProblem(field, v.Index(i)); msg != "" {
				return msg
			}
		}
	case reflect.Interface, reflect.Pointer:
		if !v.IsNil() {
			return sizeProblem(field, v.Elem())
		}
	}
	return ""
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
	}
	b.client = nil
	b.gate.Forget()
}

// getClient returns the client for the stored config, building it on first use; nil when no config is stored.
func (b *backend) getClient(ctx context.Context, s logical.Storage) (*appClient, error) {
	b.lock.RLock()
	c := b.client
	b.lock.RUnlock()
	if c != nil {
		return c, nil
	}

	b.lock.Lock()
	defer b.lock.Unlock()
	if b.client != nil {
		return b.client, nil
	}
	cfg, err := getConfig(ctx, s)
	if err != nil || cfg == nil {
		return nil, err
	}
	// A config saved by an earlier version has no target stored under its destination's name yet.
	if err := b.putRevocationTarget(ctx, s, cfg); err != nil {
		return nil, err
	}
	dest, err := b.destinationName(ctx, s, cfg)
	if err != nil {
		return nil, err
	}
	gh, err := b.newClient(cfg, b.gate)
	if err != nil {
		return nil, err
	}
	b.gate.SetCapacity(cfg.MaxConcurrentRequests)
	b.client = &appClient{Client: gh, installations: newInstallationCache(), destination: dest,
		bot: newBotIdentityCache(cfg, b.Logger())}
	return b.client, nil
}

// newClient builds a GitHub client from a config. gate is the mount's, or nil for a client of its own (the
// verification of a config not yet saved must not teach the mount anything).
func (b *backend) newClient(cfg *githubConfig, gate *github.Gate) (*github.Client, error) {
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
		Gate:           gate,
	}
	return b.buildClient(opts)
}

// buildClient completes options with what every client of this backend shares.
func (b *backend) buildClient(opts github.Options) (*github.Client, error) {
	opts.UserAgent = userAgent()
	opts.Logger = b.Logger().Named("github")
	opts.Now = b.now
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
