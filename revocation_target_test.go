// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestRevocationGoesWhereTheTokenWasMinted: someone who may write config but holds no App key replaces the config
// at the same base_url with their own proxy, CA and key. Leases minted before are still revoked at GitHub through
// the destination they were minted from, and the new proxy never sees their tokens: with the replaced config in
// place, after it was deleted, and after a restart.
func TestRevocationGoesWhereTheTokenWasMinted(t *testing.T) {
	for _, tt := range []struct {
		name            string
		delete, restart bool
	}{
		{name: "replaced"},
		{name: "replaced, then deleted", delete: true},
		{name: "replaced, then restarted", restart: true},
		{name: "replaced, deleted, restarted", delete: true, restart: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(nil)
			e.role("ci", map[string]any{"owner": "acme"})
			lease := e.mint("ci")

			p := newRecordingProxy(t)
			p.takeOver(e, e.srv.URL)
			loseConfig(t, e, tt.delete, tt.restart)

			if err := e.revoke(lease); err != nil {
				t.Fatalf("revocation: %v", err)
			}
			seen := p.requests()
			if info, _ := e.gh.Token(lease.Data["token"].(string)); !info.Revoked {
				t.Fatalf("the token is not revoked at GitHub; the replaced config's proxy saw %v", seen)
			}
			if len(seen) != 0 {
				t.Fatalf("the replaced config's proxy saw %v", seen)
			}
		})
	}
}

// TestRevocationOfEarlierLeases: a lease minted by v0.2.0 holds no destination, only its base URL. It is revoked
// through what v0.2.0 stored for that base URL, never through a newer config's proxy; without such an entry, straight
// to the base URL.
func TestRevocationOfEarlierLeases(t *testing.T) {
	for _, tt := range []struct {
		name         string
		v020Target   bool
		del, restart bool
	}{
		{name: "target stored by v0.2.0", v020Target: true},
		{name: "target stored by v0.2.0, restarted", v020Target: true, restart: true},
		{name: "no target stored", del: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(nil)
			e.role("ci", map[string]any{"owner": "acme"})
			lease := e.mint("ci")
			// What v0.2.0 left: a lease that names its base URL but no destination, and the revocation target keyed
			// by the base URL.
			delete(lease.Secret.InternalData, "destination")
			if tt.v020Target {
				sum := sha256.Sum256([]byte(e.srv.URL))
				entry, err := logical.StorageEntryJSON("revocation/"+hex.EncodeToString(sum[:]), map[string]string{"base_url": e.srv.URL})
				if err != nil {
					t.Fatal(err)
				}
				if err := e.storage.Put(context.Background(), entry); err != nil {
					t.Fatal(err)
				}
			}

			p := newRecordingProxy(t)
			p.takeOver(e, e.srv.URL)
			loseConfig(t, e, tt.del, tt.restart)

			if err := e.revoke(lease); err != nil {
				t.Fatalf("revocation: %v", err)
			}
			seen := p.requests()
			if info, _ := e.gh.Token(lease.Data["token"].(string)); !info.Revoked {
				t.Fatalf("the token is not revoked at GitHub; the newer config's proxy saw %v", seen)
			}
			if len(seen) != 0 {
				t.Fatalf("the newer config's proxy saw %v", seen)
			}
		})
	}
}

// TestLeaseHoldsNoProxyPassword: the destination a lease records names the proxy without holding its URL or
// password, and revocation finds the proxy, password included, from it.
func TestLeaseHoldsNoProxyPassword(t *testing.T) {
	e := newTestEnv(t)
	target, err := url.Parse(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	const password = "s3cret-proxy-pw"
	var authorized atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := parseProxyAuth(r.Header.Get("Proxy-Authorization"))
		if !ok || user != "ci" || pass != password {
			http.Error(w, "proxy authentication required", http.StatusProxyAuthRequired)
			return
		}
		authorized.Add(1)
		httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	proxyURL := strings.Replace(proxy.URL, "http://", "http://ci:"+password+"@", 1)
	// Nothing listens at the base URL itself: GitHub is reachable only through the proxy.
	e.configure(map[string]any{"base_url": "http://127.0.0.1:1/api/v3", "proxy_url": proxyURL})
	e.role("ci", map[string]any{"owner": "acme"})
	lease := e.mint("ci")

	raw, err := json.Marshal(lease.Secret.InternalData)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(proxy.URL)
	for _, secret := range []string{password, u.Host} {
		if strings.Contains(string(raw), secret) {
			t.Fatalf("the lease's internal data holds %q", secret)
		}
	}
	if dest, _ := lease.Secret.InternalData["destination"].(string); len(dest) != 64 {
		t.Fatalf("the lease names its destination as %q, want 64 hex digits", dest)
	}

	if r, err := e.do(logical.DeleteOperation, "config", nil); err != nil || r != nil {
		t.Fatal(r, err)
	}
	e.restart()
	before := authorized.Load()
	if err := e.revoke(lease); err != nil {
		t.Fatalf("revocation: %v", err)
	}
	if info, _ := e.gh.Token(lease.Data["token"].(string)); !info.Revoked || authorized.Load() == before {
		t.Fatalf("not revoked through the proxy with its password (revoked %v)", info.Revoked)
	}
}

// TestRevocationOfLeasesOfAnEarlierConfig: a config saved by v0.2.0 left no revocation target under a destination
// name. Leases minted with it after the upgrade are still revoked through its proxy once it is gone.
func TestRevocationOfLeasesOfAnEarlierConfig(t *testing.T) {
	e := newTestEnv(t)
	target, err := url.Parse(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	// GitHub is reachable only through the proxy: nothing listens at the base URL itself.
	var proxied atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	e.configure(map[string]any{"base_url": "http://127.0.0.1:1/api/v3", "proxy_url": proxy.URL})
	// What v0.2.0 left: the config, and no entry under revocation/ that this version writes.
	keys, err := e.storage.List(context.Background(), "revocation/")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		sub, err := e.storage.List(context.Background(), "revocation/"+k)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sub {
			if err := e.storage.Delete(context.Background(), "revocation/"+k+s); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.storage.Delete(context.Background(), "revocation/"+k); err != nil {
			t.Fatal(err)
		}
	}
	e.restart() // the upgrade

	e.role("ci", map[string]any{"owner": "acme"})
	lease := e.mint("ci")
	loseConfig(t, e, true, true)
	before := proxied.Load()
	if err := e.revoke(lease); err != nil {
		t.Fatalf("revocation after the config was deleted: %v", err)
	}
	if info, _ := e.gh.Token(lease.Data["token"].(string)); !info.Revoked || proxied.Load() == before {
		t.Fatalf("not revoked through the proxy (revoked %v)", info.Revoked)
	}
}

// TestEarlierVersionFindsRevocationTarget: after a downgrade, the previous release revokes a lease through the target
// it keys by base URL. A config saved by this version leaves one there when none is, and never overwrites one, so
// that a later config cannot redirect what the previous release would revoke through.
func TestEarlierVersionFindsRevocationTarget(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	sum := sha256.Sum256([]byte(e.srv.URL))
	legacyKey := "revocation/" + hex.EncodeToString(sum[:])
	read := func() *revocationTarget {
		t.Helper()
		target, err := getTarget(context.Background(), e.storage, legacyKey)
		if err != nil {
			t.Fatal(err)
		}
		return target
	}
	first := read()
	if first == nil || first.BaseURL != e.srv.URL || first.ProxyURL != "" {
		t.Fatalf("the target keyed by base URL is %+v, want the first config's destination (%s, no proxy)", first, e.srv.URL)
	}

	p := newRecordingProxy(t)
	p.takeOver(e, e.srv.URL)
	if after := read(); after == nil || *after != *first {
		t.Fatalf("a later config changed the target keyed by base URL to %+v, want %+v", after, first)
	}
}
