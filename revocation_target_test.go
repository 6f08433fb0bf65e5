// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// recordingProxy is the proxy of someone who may write config but holds no App key: it answers GET /app as the App
// would, so that a config naming it verifies, answers every other request 204 (what GitHub answers a revocation),
// and records every request. It serves plain-http requests in absolute form and, for https, CONNECT tunnels whose
// TLS it terminates with its own certificate: ca is that certificate, the ca_certificate its owner configures.
type recordingProxy struct {
	srv  *httptest.Server
	ca   string
	cert tls.Certificate

	mu   sync.Mutex
	seen []string // "METHOD path" of every request
}

func newRecordingProxy(t *testing.T) *recordingProxy {
	t.Helper()
	p := &recordingProxy{}
	p.ca, p.cert = selfSignedCertificate(t)
	p.srv = httptest.NewServer(p)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *recordingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		p.tunnel(w)
		return
	}
	p.answer(w, r)
}

func (p *recordingProxy) answer(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.seen = append(p.seen, r.Method+" "+r.URL.Path)
	p.mu.Unlock()
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/app") {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%d,"slug":"vault-test","name":"Vault Test"}`, testAppID)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// tunnel accepts a CONNECT and serves the requests inside it with its own certificate.
func (p *recordingProxy) tunnel(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	tc := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{p.cert}, MinVersion: tls.VersionTLS12})
	rd := bufio.NewReader(tc)
	for {
		req, err := http.ReadRequest(rd)
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		p.answer(rec, req)
		_, _ = io.Copy(io.Discard, req.Body)
		resp := rec.Result()
		resp.ContentLength = int64(rec.Body.Len())
		if err := resp.Write(tc); err != nil {
			return
		}
	}
}

// requests returns what the proxy has seen and forgets it.
func (p *recordingProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := p.seen
	p.seen = nil
	return seen
}

// takeOver writes config as its owner would: the same base_url, their proxy, their CA and their own key (the key
// makes the write acceptable; the proxy makes it verify). It returns what the proxy saw of the write.
func (p *recordingProxy) takeOver(e *testEnv, baseURL string) []string {
	e.t.Helper()
	resp, err := e.do(logical.UpdateOperation, "config", map[string]any{
		"base_url": baseURL, "proxy_url": p.srv.URL, "ca_certificate": p.ca, "private_key": otherPEM,
	})
	mustOK(e.t, resp, err)
	seen := p.requests()
	if len(seen) == 0 {
		e.t.Fatal("the config write was not verified through the new proxy: the test does not take over as intended")
	}
	return seen
}

// selfSignedCertificate is a certificate of its own, for 127.0.0.1, and its PEM.
func selfSignedCertificate(t *testing.T) (string, tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "a config writer's proxy"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

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

// loseConfig deletes the config and restarts the backend, as asked.
func loseConfig(t *testing.T, e *testEnv, del, restart bool) {
	t.Helper()
	if del {
		if r, err := e.do(logical.DeleteOperation, "config", nil); err != nil || r != nil {
			t.Fatal(r, err)
		}
	}
	if restart {
		e.restart()
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

// parseProxyAuth reads a Basic Proxy-Authorization header.
func parseProxyAuth(header string) (user, pass string, ok bool) {
	r := &http.Request{Header: http.Header{"Authorization": {header}}}
	return r.BasicAuth()
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
