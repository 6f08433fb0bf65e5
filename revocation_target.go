// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// revocationTargetPrefix holds, per base URL a config was ever saved with, what revoking a token minted there needs:
// the CA bundle and the proxy. Revocation authenticates with the token itself, so no key is kept. These entries
// outlive the config, its deletion and plugin restarts, so that every lease can still be ended at GitHub. The entries
// are seal-wrapped: a proxy URL may hold a password.
const revocationTargetPrefix = "revocation/"

// revocationTarget is how to reach one GitHub for revocation.
type revocationTarget struct {
	BaseURL       string `json:"base_url"`
	CACertificate string `json:"ca_certificate,omitempty"`
	ProxyURL      string `json:"proxy_url,omitempty"`
}

func revocationTargetKey(baseURL string) string {
	sum := sha256.Sum256([]byte(baseURL))
	return revocationTargetPrefix + hex.EncodeToString(sum[:])
}

// putRevocationTarget records how the config reaches its GitHub.
func putRevocationTarget(ctx context.Context, s logical.Storage, cfg *githubConfig) error {
	entry, err := logical.StorageEntryJSON(revocationTargetKey(cfg.BaseURL), revocationTarget{
		BaseURL: cfg.BaseURL, CACertificate: cfg.CACertificate, ProxyURL: cfg.ProxyURL,
	})
	if err != nil {
		return fmt.Errorf("encoding the revocation target: %w", err)
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("storing the revocation target: %w", err)
	}
	return nil
}

// getRevocationTarget reads how to reach baseURL; nil when no config was saved with it.
func getRevocationTarget(ctx context.Context, s logical.Storage, baseURL string) (*revocationTarget, error) {
	entry, err := s.Get(ctx, revocationTargetKey(baseURL))
	if err != nil || entry == nil {
		return nil, err
	}
	var t revocationTarget
	if err := entry.DecodeJSON(&t); err != nil {
		return nil, fmt.Errorf("decoding the revocation target of %s: %w", baseURL, err)
	}
	return &t, nil
}

// revocationClient returns a client able to revoke tokens minted at baseURL: the config's client when it talks to
// that URL, else a key-less client built from the stored revocation target (or a plain one when none is stored) and
// kept per URL.
func (b *backend) revocationClient(ctx context.Context, s logical.Storage, baseURL string) (*github.Client, error) {
	c, err := b.getClient(ctx, s)
	if err != nil {
		b.Logger().Warn("config unreadable; revoking without it", "error", err)
	}
	if c != nil && c.BaseURL() == baseURL {
		return c.Client, nil
	}

	b.lock.RLock()
	rc := b.revokers[baseURL]
	b.lock.RUnlock()
	if rc != nil {
		return rc, nil
	}
	target, err := getRevocationTarget(ctx, s, baseURL)
	if err != nil {
		return nil, err
	}
	opts := github.Options{BaseURL: baseURL, Gate: b.gate}
	if target != nil {
		opts.CACertificate, opts.ProxyURL = target.CACertificate, target.ProxyURL
	}
	rc, err = b.buildClient(opts)
	if err != nil {
		return nil, fmt.Errorf("building a revocation client for %s: %w", baseURL, err)
	}
	b.lock.Lock()
	defer b.lock.Unlock()
	if existing := b.revokers[baseURL]; existing != nil {
		return existing, nil
	}
	b.revokers[baseURL] = rc
	return rc, nil
}
