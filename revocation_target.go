// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// A token is revoked through exactly the destination it was minted through: its base URL, reached with the CA bundle
// and the proxy of the config that minted it. Whoever may write config can name another proxy and CA for the same
// base URL; were revocation to follow the config, that proxy would receive every outstanding token and could answer
// 204 while the token stays valid at GitHub.
//
// So each lease records its destination's name, and what revoking through a destination needs (revocation
// authenticates with the token itself, so no key) is stored under that name. The name is a MAC of the destination
// under a random key of the mount, so that a lease never holds a proxy password, nor anything a guess of one could be
// checked against. An entry is written once: its name covers its content, so nobody can change what a name leads
// to. The entries outlive the config, its deletion and plugin restarts, and are seal-wrapped: a proxy URL may hold a
// password.
const (
	revocationTargetPrefix = "revocation/"
	destinationPrefix      = revocationTargetPrefix + "destination/"
	destinationKeyPath     = revocationTargetPrefix + "destination-key"
)

// leaseDestinationField is the lease's internal data field that names its destination.
const leaseDestinationField = "destination"

// revocationTarget is how to reach one GitHub for revocation.
type revocationTarget struct {
	BaseURL       string `json:"base_url"`
	CACertificate string `json:"ca_certificate,omitempty"`
	ProxyURL      string `json:"proxy_url,omitempty"`
}

func targetOf(cfg *githubConfig) revocationTarget {
	return revocationTarget{BaseURL: cfg.BaseURL, CACertificate: cfg.CACertificate, ProxyURL: cfg.ProxyURL}
}

// name is the destination's name under the mount's key.
func (t revocationTarget) name(key []byte) string {
	mac := hmac.New(sha256.New, key)
	for _, part := range []string{t.BaseURL, t.CACertificate, t.ProxyURL} {
		// Length-prefixed, so that no two different destinations give the same input.
		fmt.Fprintf(mac, "%d:%s", len(part), part)
	}
	return hex.EncodeToString(mac.Sum(nil))
}

// destinationKey returns the mount's key for naming destinations, creating it on first use. It never changes: the
// names in outstanding leases depend on it.
func (b *backend) destinationKey(ctx context.Context, s logical.Storage) ([]byte, error) {
	b.destKeyMu.Lock()
	defer b.destKeyMu.Unlock()
	if b.destKey != nil {
		return b.destKey, nil
	}
	entry, err := s.Get(ctx, destinationKeyPath)
	if err != nil {
		return nil, fmt.Errorf("reading the destination key: %w", err)
	}
	if entry != nil {
		if len(entry.Value) != sha256.Size {
			return nil, fmt.Errorf("the destination key holds %d bytes, want %d", len(entry.Value), sha256.Size)
		}
		b.destKey = entry.Value
		return b.destKey, nil
	}
	key := make([]byte, sha256.Size)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generating the destination key: %w", err)
	}
	if err := s.Put(ctx, &logical.StorageEntry{Key: destinationKeyPath, Value: key}); err != nil {
		return nil, fmt.Errorf("storing the destination key: %w", err)
	}
	b.destKey = key
	return key, nil
}

// destinationName names where cfg reaches GitHub.
func (b *backend) destinationName(ctx context.Context, s logical.Storage, cfg *githubConfig) (string, error) {
	key, err := b.destinationKey(ctx, s)
	if err != nil {
		return "", err
	}
	return targetOf(cfg).name(key), nil
}

// putRevocationTarget records how the config reaches its GitHub, unless that destination is recorded already. It
// also leaves the entry that the previous release keys by base URL, when there is none, so that a downgrade can still
// revoke what this version minted; never overwriting it, so that no later config can redirect it.
func (b *backend) putRevocationTarget(ctx context.Context, s logical.Storage, cfg *githubConfig) error {
	name, err := b.destinationName(ctx, s, cfg)
	if err != nil {
		return err
	}
	if err := putTargetOnce(ctx, s, destinationPrefix+name, targetOf(cfg)); err != nil {
		return err
	}
	return putTargetOnce(ctx, s, earlierTargetPath(cfg.BaseURL), targetOf(cfg))
}

// putTargetOnce stores t at path unless an entry is there already.
func putTargetOnce(ctx context.Context, s logical.Storage, path string, t revocationTarget) error {
	existing, err := s.Get(ctx, path)
	if err != nil {
		return fmt.Errorf("reading the revocation target: %w", err)
	}
	if existing != nil {
		return nil
	}
	entry, err := logical.StorageEntryJSON(path, t)
	if err != nil {
		return fmt.Errorf("encoding the revocation target: %w", err)
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("storing the revocation target: %w", err)
	}
	return nil
}

// getTarget reads and decodes a revocation target; nil when none is stored at path.
func getTarget(ctx context.Context, s logical.Storage, path string) (*revocationTarget, error) {
	entry, err := s.Get(ctx, path)
	if err != nil || entry == nil {
		return nil, err
	}
	var t revocationTarget
	if err := entry.DecodeJSON(&t); err != nil {
		return nil, fmt.Errorf("decoding the revocation target %s: %w", path, err)
	}
	return &t, nil
}

// earlierLeaseTarget is the destination of a lease minted before leases named theirs (by v0.2.0 or earlier), which
// holds only its base URL. v0.2.0 kept one target per base URL and overwrote it with each config write; this version
// writes it only where there is none, so it is what the last config saved before the upgrade left, and no later
// config can change it.
// Without one, the base URL is reached directly (system CAs and proxy environment), never through a later config's
// proxy. Such leases end within an hour of the upgrade: GitHub's tokens live no longer, and lease TTLs are capped to
// them.
func earlierLeaseTarget(ctx context.Context, s logical.Storage, baseURL string) (*revocationTarget, error) {
	t, err := getTarget(ctx, s, earlierTargetPath(baseURL))
	if err != nil || t != nil {
		return t, err
	}
	return &revocationTarget{BaseURL: baseURL}, nil
}

// earlierTargetPath is where the previous release keeps the revocation target of a base URL.
func earlierTargetPath(baseURL string) string {
	sum := sha256.Sum256([]byte(baseURL))
	return revocationTargetPrefix + hex.EncodeToString(sum[:])
}

// revocationClient returns a client that revokes through the lease's destination, named dest (empty for a lease of
// v0.2.0 or earlier): the client of the lease's App when that App still reaches GitHub the same way, else a key-less
// client built from the stored revocation target, kept per destination.
func (b *backend) revocationClient(ctx context.Context, s logical.Storage, app, baseURL, dest string) (*github.Client, error) {
	var target *revocationTarget
	if dest == "" {
		t, err := earlierLeaseTarget(ctx, s, baseURL)
		if err != nil {
			return nil, err
		}
		key, err := b.destinationKey(ctx, s)
		if err != nil {
			return nil, err
		}
		target, dest = t, t.name(key)
	}

	c, err := b.appClientFor(ctx, s, app)
	if err != nil {
		b.Logger().Warn("the lease's App cannot be used; revoking without it", "app", app, "error", err)
	}
	if c != nil && c.destination == dest {
		return c.Client, nil
	}
	b.lock.RLock()
	rc := b.revokers[dest]
	b.lock.RUnlock()
	if rc != nil {
		return rc, nil
	}

	if target == nil {
		if target, err = getTarget(ctx, s, destinationPrefix+dest); err != nil {
			return nil, err
		}
		if target == nil {
			// Stored before any token was minted through it; gone only if storage lost it. The base URL
			// directly is the best left, and never another config's proxy.
			b.Logger().Warn("no revocation target stored for the lease's destination; revoking at its base URL "+
				"directly", "base_url", baseURL)
			target = &revocationTarget{BaseURL: baseURL}
		}
	}
	if target.BaseURL != baseURL {
		return nil, fmt.Errorf("the lease's destination is stored for %s, not for its base URL %s", target.BaseURL, baseURL)
	}
	rc, err = b.buildClient(github.Options{BaseURL: baseURL, CACertificate: target.CACertificate,
		ProxyURL: target.ProxyURL, Gate: b.revokeGate})
	if err != nil {
		return nil, fmt.Errorf("building a revocation client for %s: %w", baseURL, err)
	}
	b.lock.Lock()
	defer b.lock.Unlock()
	if existing := b.revokers[dest]; existing != nil {
		rc.CloseIdleConnections()
		return existing, nil
	}
	b.revokers[dest] = rc
	return rc, nil
}
