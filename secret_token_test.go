// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

func TestRevocation(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})

	t.Run("revokes at GitHub", func(t *testing.T) {
		resp := e.mint("ci")
		if err := e.revoke(resp); err != nil {
			t.Fatal(err)
		}
		if info, _ := e.gh.Token(resp.Data["token"].(string)); !info.Revoked {
			t.Fatal("the emulator does not report the token revoked")
		}
		// Revoking twice is fine: GitHub's 401 means already dead.
		if err := e.revoke(resp); err != nil {
			t.Fatalf("second revocation: %v", err)
		}
	})
	t.Run("expired token counts as revoked", func(t *testing.T) {
		e.gh.SetTokenLifetime(time.Second)
		defer e.gh.SetTokenLifetime(time.Hour)
		resp, err := e.do(logical.ReadOperation, "token/ci", nil)
		mustOK(t, resp, err)
		time.Sleep(1100 * time.Millisecond)
		before := e.gh.Stats().Calls["DELETE /installation/token"]
		if err := e.revoke(resp); err != nil {
			t.Fatalf("revoking an expired token: %v", err)
		}
		if e.gh.Stats().Calls["DELETE /installation/token"] != before+1 {
			t.Fatal("revocation did not reach GitHub")
		}
	})
	t.Run("after the config was deleted", func(t *testing.T) {
		resp := e.mint("ci")
		if r, err := e.do(logical.DeleteOperation, "config", nil); err != nil || r != nil {
			t.Fatal(r, err)
		}
		if err := e.revoke(resp); err != nil {
			t.Fatal(err)
		}
		if info, _ := e.gh.Token(resp.Data["token"].(string)); !info.Revoked {
			t.Fatal("not revoked after config delete")
		}
		e.configure(nil)
	})
	t.Run("GitHub down, then back", func(t *testing.T) {
		resp := e.mint("ci")
		e.gh.SetFaults(fakegithub.Faults{OutageUntil: time.Now().Add(time.Hour)})
		err := e.revoke(resp)
		if err == nil {
			t.Fatal("revocation succeeded while GitHub was down")
		}
		wantContains(t, err.Error(), "revoking the installation token", "ci")
		e.gh.SetFaults(fakegithub.Faults{})
		if err := e.revoke(resp); err != nil {
			t.Fatalf("revocation after GitHub came back: %v", err)
		}
		if info, _ := e.gh.Token(resp.Data["token"].(string)); !info.Revoked {
			t.Fatal("not revoked after GitHub came back")
		}
	})
}

func TestRenewRefused(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme"})
	resp := e.mint("ci")
	req := logical.RenewRequest("token/ci", resp.Secret, nil)
	req.Storage = e.storage
	out, err := e.b.HandleRequest(t.Context(), req)
	// A secret type without Renew is not renewable: the SDK answers that the operation is unsupported (and Vault
	// itself refuses before asking, since the lease says renewable=false; the CLI test checks that).
	if !errors.Is(err, logical.ErrUnsupportedOperation) || out != nil {
		t.Fatalf("renewal: %#v, %v; want %v", out, err, logical.ErrUnsupportedOperation)
	}
}

// TestSecretsNeverLeak drives the engine through success and failure (bad keys, GitHub errors, revocation, refused
// config writes) with the log at trace level, GitHub reached through a proxy that wants a password. It then looks for
// the keys, every minted token, every App JWT GitHub received and the proxy's password anywhere but a response's
// token field.
func TestSecretsNeverLeak(t *testing.T) {
	e := newTestEnv(t)
	const proxyPassword = "pr0xy-Pa55w0rd-4-test"
	proxyURL, jwts := newPasswordProxy(t, e.srv.URL, "leaky", proxyPassword)
	// Nothing listens at the base URL itself: GitHub is reachable only through the proxy.
	viaProxy := map[string]any{"base_url": "http://127.0.0.1:1/api/v3", "proxy_url": proxyURL}
	e.configure(viaProxy)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	e.role("gone", map[string]any{"installation_id": 9999})

	var leases []*logical.Response
	for range 3 {
		leases = append(leases, e.mint("ci"))
	}
	e.gh.SetFaults(fakegithub.Faults{LongTokens: true})
	leases = append(leases, e.mint("ci"))
	e.gh.SetFaults(fakegithub.Faults{OverGrant: true})
	e.do(logical.ReadOperation, "token/ci", nil)
	e.gh.SetFaults(fakegithub.Faults{FailNext: 100})
	e.do(logical.ReadOperation, "token/ci", nil)
	e.revoke(leases[0])
	e.gh.SetFaults(fakegithub.Faults{})
	e.do(logical.ReadOperation, "token/gone", nil)
	e.do(logical.ReadOperation, "config", nil)
	e.do(logical.ReadOperation, "status", nil)
	e.do(logical.UpdateOperation, "config", map[string]any{"private_key": otherPEM})
	e.do(logical.UpdateOperation, "config", map[string]any{"private_key": "garbage" + testKeyPEM[40:200]})
	e.do(logical.UpdateOperation, "config", map[string]any{"proxy_url": "ftp://leaky:" + proxyPassword + "@proxy.internal"})
	e.do(logical.UpdateOperation, "config", map[string]any{"proxy_url": []any{proxyURL}})
	e.do(logical.UpdateOperation, "config", map[string]any{"proxy_url": proxyURL + "/", "verify": false})
	e.do(logical.UpdateOperation, "config", map[string]any{"app_id": testKeyPEM})
	e.do(logical.ListOperation, "installations/", nil)
	for _, l := range leases {
		e.revoke(l)
	}

	// Every line of the keys' base64 bodies, every token the emulator issued, every App JWT it received (whole, and
	// its signature) and the proxy's password.
	type secret struct{ what, value string }
	var secrets []secret
	for _, keyPEM := range []string{testKeyPEM, otherPEM} {
		lines := strings.Split(strings.TrimSpace(keyPEM), "\n")
		for _, l := range lines[1 : len(lines)-1] {
			secrets = append(secrets, secret{"a line of a private key", l})
		}
	}
	for _, tok := range e.gh.Tokens() {
		secrets = append(secrets, secret{"an installation token", tok.Value})
	}
	if len(e.gh.Tokens()) < 5 {
		t.Fatalf("only %d tokens minted; the test did not exercise enough", len(e.gh.Tokens()))
	}
	sent := jwts()
	if len(sent) == 0 {
		t.Fatal("GitHub received no App JWT through the proxy; the test did not exercise it")
	}
	for _, jwt := range sent {
		secrets = append(secrets, secret{"an App JWT", jwt}, secret{"an App JWT's signature", jwt[strings.LastIndex(jwt, ".")+1:]})
	}
	secrets = append(secrets, secret{"the proxy's password", proxyPassword})

	logs := e.logs.String()
	if !strings.Contains(logs, "[TRACE]") && !strings.Contains(logs, "[DEBUG]") && !strings.Contains(logs, "[WARN]") {
		t.Fatalf("the log captured nothing; the leak check would be empty:\n%s", logs)
	}
	e.mu.Lock()
	outputs := strings.Join(e.outputs, "\n")
	e.mu.Unlock()
	for _, s := range secrets {
		if strings.Contains(logs, s.value) {
			t.Errorf("the log holds %s", s.what)
		}
		if strings.Contains(outputs, s.value) {
			t.Errorf("a response or error holds %s outside the token field", s.what)
		}
	}
}

// newPasswordProxy starts a forward proxy that asks for user and password, sends every request to the GitHub at
// target, and records the App JWTs that pass through it. It returns the proxy's URL, with the credentials, and a
// function that lists the JWTs seen so far.
func newPasswordProxy(t *testing.T, target, user, password string) (string, func() []string) {
	t.Helper()
	to, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	forward := httputil.NewSingleHostReverseProxy(to)
	var mu sync.Mutex
	var jwts []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := parseProxyAuth(r.Header.Get("Proxy-Authorization")); !ok || u != user || p != password {
			w.Header().Set("Proxy-Authenticate", `Basic realm="test"`)
			http.Error(w, "proxy authentication required", http.StatusProxyAuthRequired)
			return
		}
		// An App JWT is three base64url parts; installation tokens have none of its dots.
		if cred, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && strings.Count(cred, ".") == 2 {
			mu.Lock()
			jwts = append(jwts, cred)
			mu.Unlock()
		}
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	u, err := url.Parse(proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, password)
	return u.String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(jwts)
	}
}

// TestRevocationAfterRestartKeepsCAAndProxy: after the config was deleted, or replaced at the same base_url by one
// with another proxy and CA (someone else's), and again after the plugin restarted too, leases are still revoked
// through the CA bundle and the proxy their tokens were minted with, and the other proxy sees none of them.
func TestRevocationAfterRestartKeepsCAAndProxy(t *testing.T) {
	type loss struct{ replace, del, restart bool }
	losses := []loss{{del: true}, {del: true, restart: true}, {replace: true}, {replace: true, restart: true},
		{replace: true, del: true, restart: true}}
	// mintThenLoseConfig mints with extra config, then replaces or deletes the config and restarts the backend as
	// asked. It returns the lease to revoke and the replacing proxy (nil when the config was not replaced).
	mintThenLoseConfig := func(t *testing.T, e *testEnv, extra map[string]any, l loss) (*logical.Response, *recordingProxy) {
		t.Helper()
		e.configure(extra)
		e.role("ci", map[string]any{"owner": "acme"})
		resp := e.mint("ci")
		var p *recordingProxy
		if l.replace {
			p = newRecordingProxy(t)
			p.takeOver(e, extra["base_url"].(string))
		}
		loseConfig(t, e, l.del, l.restart)
		return resp, p
	}
	// checkProxyIdle fails the test when a replacing proxy saw a request.
	checkProxyIdle := func(t *testing.T, p *recordingProxy) {
		t.Helper()
		if p == nil {
			return
		}
		if seen := p.requests(); len(seen) != 0 {
			t.Fatalf("the replacing config's proxy saw %v", seen)
		}
	}
	for _, l := range losses {
		t.Run(fmt.Sprintf("private CA, %+v", l), func(t *testing.T) {
			e := newTestEnv(t)
			tlsSrv := httptest.NewTLSServer(e.gh)
			t.Cleanup(tlsSrv.Close)
			ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}))
			resp, p := mintThenLoseConfig(t, e, map[string]any{"base_url": tlsSrv.URL + "/api/v3", "ca_certificate": ca}, l)
			if err := e.revoke(resp); err != nil {
				t.Fatalf("revocation after the config was lost: %v", err)
			}
			if info, _ := e.gh.Token(resp.Data["token"].(string)); !info.Revoked {
				t.Fatal("not revoked")
			}
			checkProxyIdle(t, p)
		})
	}
	for _, l := range losses {
		if !l.restart {
			continue
		}
		t.Run(fmt.Sprintf("required proxy, %+v", l), func(t *testing.T) {
			e := newTestEnv(t)
			target, err := url.Parse(e.srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			// GitHub is reachable only through the proxy: nothing listens at the base URL itself.
			var proxied atomic.Int64
			proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Host != "127.0.0.1:1" {
					http.Error(w, "unknown host", http.StatusBadGateway)
					return
				}
				proxied.Add(1)
				httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
			}))
			t.Cleanup(proxy.Close)
			resp, p := mintThenLoseConfig(t, e, map[string]any{"base_url": "http://127.0.0.1:1/api/v3", "proxy_url": proxy.URL}, l)
			before := proxied.Load()
			if err := e.revoke(resp); err != nil {
				t.Fatalf("revocation after the config was lost and a restart: %v", err)
			}
			if info, _ := e.gh.Token(resp.Data["token"].(string)); !info.Revoked || proxied.Load() == before {
				t.Fatalf("not revoked through the proxy (revoked %v, %d proxied calls)", info.Revoked, proxied.Load()-before)
			}
			checkProxyIdle(t, p)
		})
	}
}

// TestFailedRevocationLogCarriesHashedToken: an operator who sees a failed revocation in the
// log can find the token in Vault's audit log and GitHub's by its hashed_token.
func TestFailedRevocationLogCarriesHashedToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme"})
	resp := e.mint("ci")
	e.gh.SetFaults(fakegithub.Faults{OutageUntil: time.Now().Add(time.Hour)})
	defer e.gh.SetFaults(fakegithub.Faults{})
	if err := e.revoke(resp); err == nil {
		t.Fatal("revocation succeeded while GitHub was down")
	}
	var line string
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(l, "revoking a token at GitHub failed") {
			line = l
		}
	}
	wantContains(t, line, "hashed_token=", resp.Data["hashed_token"].(string))
}

// TestRevocationSkipsExpiredToken: a lease whose token is past its expires_at ends without a call to
// GitHub, which has killed the token already; even while GitHub is down.
func TestRevocationSkipsExpiredToken(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme"})
	fresh, stale := e.mint("ci"), e.mint("ci")
	e.gh.SetFaults(fakegithub.Faults{OutageUntil: time.Now().Add(time.Hour)})
	defer e.gh.SetFaults(fakegithub.Faults{})

	expires, _ := time.Parse(time.RFC3339, stale.Data["expires_at"].(string))
	e.b.now = func() time.Time { return expires.Add(expiryMargin + time.Second) }
	before := e.gh.Stats().TotalCalls
	if err := e.revoke(stale); err != nil {
		t.Fatalf("revoking an expired token's lease: %v", err)
	}
	if calls := e.gh.Stats().TotalCalls - before; calls != 0 {
		t.Fatalf("the revocation of an expired token made %d calls to GitHub", calls)
	}

	// Within the margin, GitHub is asked (and here fails): Vault's clock may be ahead of GitHub's.
	e.b.now = func() time.Time { return expires.Add(expiryMargin - time.Second) }
	if err := e.revoke(fresh); err == nil {
		t.Fatal("a revocation within the margin did not call the failing GitHub")
	}
	wantContains(t, metricsText(t, e), `github_app_revocations_total{outcome="skipped"} 1`, `github_app_revocations_total{outcome="failed"} 1`)
}

// TestMintsGoOnWhileAFormerGitHubIsDown: leases from a former GitHub (a GHES migration) whose host is down fail to
// revoke, and go on failing while mints at the healthy current GitHub all succeed: the dead host's failures are not
// the current one's, and status and metrics describe the current one.
func TestMintsGoOnWhileAFormerGitHubIsDown(t *testing.T) {
	e := newTestEnv(t)
	formerGH, _ := newEmulator(t, testFixture())
	// When down, the former host answers 503 after a while: a GHES behind a load balancer whose backend is gone.
	var down atomic.Bool
	former := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !down.Load() {
			formerGH.ServeHTTP(w, r)
			return
		}
		select {
		case <-time.After(time.Second):
		case <-r.Context().Done():
		}
		http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
	}))
	t.Cleanup(former.Close)
	e.configure(map[string]any{"base_url": former.URL})
	e.role("ci", map[string]any{"owner": "acme"})
	var leases []*logical.Response
	for range 4 {
		leases = append(leases, e.mint("ci"))
	}
	e.configure(nil) // the current GitHub
	e.mint("ci")
	down.Store(true)

	var failedRevocations atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, l := range leases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := e.revoke(l); err != nil {
					failedRevocations.Add(1)
				}
			}
		}()
	}
	// Mint once the former GitHub's failures are known.
	for deadline := time.Now().Add(30 * time.Second); failedRevocations.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	var failedMints []string
	for range 30 {
		resp, err := e.do(logical.ReadOperation, "token/ci", nil)
		switch {
		case err != nil:
			failedMints = append(failedMints, err.Error())
		case resp.IsError():
			failedMints = append(failedMints, resp.Error().Error())
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(done)
	wg.Wait()
	if failedRevocations.Load() == 0 {
		t.Fatal("no revocation at the former GitHub failed: the test did not exercise a dead host")
	}
	if len(failedMints) != 0 {
		t.Fatalf("%d of 30 mints at the current GitHub failed while revocations at the former one failed; first: %s",
			len(failedMints), failedMints[0])
	}

	// The former GitHub has just failed again: what status and metrics say is of the current one.
	if err := e.revoke(leases[0]); err == nil {
		t.Fatal("a revocation at the former GitHub succeeded while it was down")
	}
	resp, err := e.do(logical.ReadOperation, "status", nil)
	mustOK(t, resp, err)
	if gh := resp.Data["github"].(map[string]any); gh["failing_since"] != "" || gh["last_outcome"] != "ok" {
		t.Fatalf("status describes the current GitHub as failing since %q (last outcome %q)", gh["failing_since"], gh["last_outcome"])
	}
	wantContains(t, metricsText(t, e), `github_app_github_failing_since_timestamp_seconds{app="default"} 0`+"\n")
}
