// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"fmt"
	"maps"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/signer"
)

// The way from a stored App config to a GitHub client: one client per App, built on first use and replaced as a
// whole when the App's config changes (backend.reset).

// appClientFor returns the client of the named App, building it on first use; nil when the App is not configured.
func (b *backend) appClientFor(ctx context.Context, s logical.Storage, name string) (*appClient, error) {
	b.lock.RLock()
	c := b.apps[name]
	b.lock.RUnlock()
	if c != nil {
		return c, nil
	}

	b.lock.Lock()
	defer b.lock.Unlock()
	if c := b.apps[name]; c != nil {
		return c, nil
	}
	cfg, err := getAppConfig(ctx, s, name)
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
	sg, err := b.openSigner(ctx, cfg)
	if err != nil {
		b.metrics.signerFailed(cfg.signerKind(), err)
		if f := signerFailure(err, fmt.Sprintf("opening the signer of App %q", name)); f != nil {
			return nil, f
		}
		return nil, err
	}
	if sg != nil {
		cfg.signer = observedSigner{Signer: sg, m: b.metrics}
	}
	gate := github.NewGate(cfg.MaxConcurrentRequests, b.now)
	gate.Observe(b.metrics.observer(name, cfg.signerKind()))
	gh, err := b.newClient(cfg, gate)
	if err != nil {
		if sg != nil {
			sg.Close()
		}
		return nil, err
	}
	c = &appClient{
		Client:        gh,
		name:          name,
		appID:         cfg.AppID,
		gate:          gate,
		installations: newInstallationCache(),
		repositories:  newRepositoryCache(cfg.repositoryListTTL()),
		budgets:       newBudgetBook(cfg.rateLimitRefresh()),
		destination:   dest,
		bot:           newBotIdentityCache(cfg, b.Logger()),
	}
	b.apps[name] = c
	return c, nil
}

// cachedClients returns the clients built so far, by App name.
func (b *backend) cachedClients() map[string]*appClient {
	b.lock.RLock()
	defer b.lock.RUnlock()
	return maps.Clone(b.apps)
}

// newClient builds a GitHub client from a config. gate is the mount's, or nil for a client of its own (the
// verification of a config not yet saved must not teach the mount anything).
func (b *backend) newClient(cfg *githubConfig, gate *github.Gate) (*github.Client, error) {
	opts, err := clientOptions(cfg)
	if err != nil {
		return nil, err
	}
	opts.Gate = gate
	return b.buildClient(opts)
}

// clientOptions turns a config into what a client of its App needs: with signer=key, the key, parsed here only when
// the config was read from storage (a config write has parsed it already while checking it); with a KMS or HSM, the
// signer opened for the config, which the client's owner closes.
func clientOptions(cfg *githubConfig) (github.Options, error) {
	opts := github.Options{
		BaseURL:        cfg.BaseURL,
		AppID:          cfg.AppID,
		ClientID:       cfg.ClientID,
		CACertificate:  cfg.CACertificate,
		ProxyURL:       cfg.ProxyURL,
		RequestTimeout: cfg.RequestTimeout,
	}
	if cfg.signerKind() != signer.KindKey {
		if cfg.signer == nil {
			return github.Options{}, errNoSigner
		}
		opts.Signer = cfg.signer
		return opts, nil
	}
	key := cfg.parsedKey
	if key == nil {
		var err error
		if key, err = github.ParsePrivateKey(cfg.PrivateKey); err != nil {
			return github.Options{}, fmt.Errorf("stored private key: %w", err)
		}
	}
	opts.PrivateKey = key
	return opts, nil
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
