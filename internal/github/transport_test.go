// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

// exercise runs every call the client has against the emulator, so that transport tests cover all of them.
func exercise(t *testing.T, c *github.Client) {
	t.Helper()
	ctx := t.Context()
	if _, err := c.App(ctx); err != nil {
		t.Fatalf("App: %v", err)
	}
	if all, _, err := c.Installations(ctx); err != nil || len(all) != 3 {
		t.Fatalf("Installations: %d, %v", len(all), err)
	}
	if _, err := c.Installation(ctx, orgInstallation); err != nil {
		t.Fatalf("Installation: %v", err)
	}
	if in, err := c.FindInstallation(ctx, "octocat"); err != nil || in.ID != userInstallation {
		t.Fatalf("FindInstallation: %v", err)
	}
	tok, err := c.CreateToken(ctx, orgInstallation, github.TokenRequest{Repositories: []string{"api"}})
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	if _, err := c.CreateToken(ctx, orgInstallation, github.TokenRequest{}); err != nil {
		t.Fatalf("CreateToken without a body: %v", err)
	}
	if repos, err := c.TokenRepositories(ctx, tok.Token); err != nil || len(repos) != 1 {
		t.Fatalf("TokenRepositories: %v", err)
	}
	if err := c.RevokeToken(ctx, tok.Token); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
}

// exercisedRequests is how many requests exercise sends: FindInstallation("octocat") takes two.
const exercisedRequests = 9

// TestHeaders checks what GitHub requires of every request, on the wire as the server received it.
func TestHeaders(t *testing.T) {
	t.Parallel()
	for _, ua := range []string{testUserAgent, ""} {
		t.Run(fmt.Sprintf("user agent %q", ua), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			exercise(t, h.newClient(t, func(o *github.Options) { o.UserAgent = ua }))
			wantUA := ua
			if wantUA == "" {
				wantUA = github.DefaultUserAgent
			}
			reqs := h.log.all()
			if len(reqs) != exercisedRequests {
				t.Fatalf("the server saw %d requests, want %d", len(reqs), exercisedRequests)
			}
			bodies := 0
			for _, r := range reqs {
				where := r.Method + " " + r.Path
				for name, want := range map[string]string{
					"Accept":               "application/vnd.github+json",
					"X-Github-Api-Version": "2022-11-28",
					"User-Agent":           wantUA,
				} {
					if got := r.Header.Values(name); len(got) != 1 || got[0] != want {
						t.Errorf("%s: %s = %q, want %q", where, name, got, want)
					}
				}
				if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
					t.Errorf("%s: Authorization is not a Bearer credential", where)
				}
				// Content-Type says what the body is; a request without a body has none to describe.
				hasBody := r.Header.Get("Content-Length") != "" && r.Header.Get("Content-Length") != "0"
				if ct := r.Header.Get("Content-Type"); hasBody && ct != "application/json" || !hasBody && ct != "" {
					t.Errorf("%s: Content-Type %q with a body of %q bytes", where, ct, r.Header.Get("Content-Length"))
				}
				if hasBody {
					bodies++
				}
			}
			// One narrowed mint sent a body; the unnarrowed one sent none.
			if bodies != 1 {
				t.Errorf("%d requests carried a body, want 1", bodies)
			}
		})
	}
}

// TestGHESBaseURL: a GitHub Enterprise Server base URL keeps its /api/v3 path, with or without a trailing slash,
// and every call lands below it.
func TestGHESBaseURL(t *testing.T) {
	t.Parallel()
	for _, suffix := range []string{"/api/v3", "/api/v3/"} {
		t.Run(suffix, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			c := h.newClient(t, func(o *github.Options) { o.BaseURL = h.srv.URL + suffix })
			if got, want := c.BaseURL(), h.srv.URL+"/api/v3"; got != want {
				t.Fatalf("BaseURL() = %q, want %q", got, want)
			}
			exercise(t, c)
			reqs := h.log.all()
			var paths []string
			for _, r := range reqs {
				paths = append(paths, r.Path)
				if !strings.HasPrefix(r.Path, "/api/v3/") || strings.Contains(r.Path, "//") {
					t.Errorf("request went to %q, not below /api/v3/", r.Path)
				}
			}
			for _, want := range []string{"/api/v3/app", "/api/v3/app/installations", "/api/v3/app/installations/2001",
				"/api/v3/app/installations/2001/access_tokens", "/api/v3/orgs/octocat/installation",
				"/api/v3/users/octocat/installation", "/api/v3/installation/repositories", "/api/v3/installation/token"} {
				if !slices.Contains(paths, want) {
					t.Errorf("no request to %s; saw %v", want, paths)
				}
			}
			// The emulator routed every call (none fell through to "no route").
			for key := range h.fake.Stats().Calls {
				if strings.Contains(key, "no route") {
					t.Errorf("the emulator saw an unrouted call: %s", key)
				}
			}
		})
	}
}

// TestTLS: a GHES with a private CA is reached when its certificate is configured and refused otherwise.
func TestTLS(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, harnessConfig{tls: true})
	exercise(t, h.newClient(t)) // newClient configures the emulator's certificate for a TLS harness

	// Without the CA, the system roots apply and the emulator's self-signed certificate is refused.
	c := h.newClient(t, func(o *github.Options) { o.CACertificate = ""; o.MaxRetries = -1 })
	h.fake.ResetStats()
	_, err := c.App(t.Context())
	e := assertKind(t, err, github.KindUnavailable)
	var unknownCA x509.UnknownAuthorityError
	if !errors.As(err, &unknownCA) || !strings.Contains(err.Error(), "x509") || e.StatusCode != 0 {
		t.Fatalf("error = %v (%T), want an x509 unknown-authority transport failure", err, e.Err)
	}
	if n := h.fake.Stats().TotalCalls; n != 0 {
		t.Fatalf("the emulator served %d calls to a client that should not trust it", n)
	}

	// A CA bundle that holds some other certificate is no better than none.
	c = h.newClient(t, func(o *github.Options) { o.CACertificate = string(otherCA(t)); o.MaxRetries = -1 })
	_, err = c.App(t.Context())
	assertKind(t, err, github.KindUnavailable)
	if !errors.As(err, &unknownCA) {
		t.Fatalf("with an unrelated CA: %v, want an x509 unknown-authority failure", err)
	}
}

// TestCertificateErrorsAreNotRetried: a TLS verification failure is configuration, not a passing fault: a client
// with retries on makes one attempt per call, and does not count it toward an outage.
func TestCertificateErrorsAreNotRetried(t *testing.T) {
	t.Parallel()
	var conns, served atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		served.Add(1)
		http.Error(w, "unreachable without trusting the certificate", http.StatusServiceUnavailable)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)

	// The system roots do not hold httptest's certificate.
	c, err := github.NewClient(github.Options{BaseURL: srv.URL, AppID: testAppID, PrivateKey: github.SharedKey(t),
		MaxRetries: github.DefaultMaxRetries})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	const calls = 4
	for range calls {
		_, err := c.App(t.Context())
		e := assertKind(t, err, github.KindUnavailable)
		if !errors.As(err, new(x509.UnknownAuthorityError)) {
			t.Fatalf("error = %v (%T), want an x509 unknown-authority failure", err, e.Err)
		}
	}
	if n := conns.Load(); n != calls || served.Load() != 0 {
		t.Fatalf("%d calls refused for the certificate opened %d connections (%d served), want %d: one attempt each",
			calls, n, served.Load(), calls)
	}
	if st := c.Gate().Status(); !st.FailingSince.IsZero() {
		t.Fatalf("certificate failures count as an outage since %s", st.FailingSince)
	}
}

// otherCA is a self-signed CA certificate that signed nothing the emulator uses. (httptest's TLS servers all share
// one certificate, so another httptest server would not do.)
func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "unrelated test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pemCert(der)
}

// TestProxy: with ProxyURL set, every request goes through the proxy (in absolute form, as HTTP proxies receive
// plain-http requests); without it, none does.
func TestProxy(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	var mu sync.Mutex
	var proxied []string // request URIs as the proxy received them
	forward := &http.Transport{Proxy: nil}
	t.Cleanup(forward.CloseIdleConnections)
	rp := &httputil.ReverseProxy{
		// A forward proxy: the request already names its absolute target.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = pr.In.URL.Scheme, pr.In.URL.Host
			pr.Out.Host = pr.In.Host
		},
		Transport: forward,
	}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		proxied = append(proxied, r.Method+" "+r.RequestURI)
		mu.Unlock()
		if !r.URL.IsAbs() {
			http.Error(w, "not a proxy request", http.StatusBadRequest)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)

	exercise(t, h.newClient(t, func(o *github.Options) { o.ProxyURL = proxy.URL }))
	mu.Lock()
	got := slices.Clone(proxied)
	mu.Unlock()
	if len(got) != exercisedRequests || len(h.log.all()) != exercisedRequests {
		t.Fatalf("the proxy forwarded %d requests and the emulator saw %d, want %d each: %v", len(got),
			len(h.log.all()), exercisedRequests, got)
	}
	for _, uri := range got {
		if _, target, _ := strings.Cut(uri, " "); !strings.HasPrefix(target, h.srv.URL+"/") {
			t.Errorf("the proxy received %q, want an absolute URI below %s", uri, h.srv.URL)
		}
	}
	if !slices.Contains(got, "POST "+h.srv.URL+"/app/installations/2001/access_tokens") {
		t.Errorf("the mint did not go through the proxy: %v", got)
	}

	// A client without ProxyURL goes direct (loopback is never proxied from the environment either).
	if _, err := h.newClient(t).App(t.Context()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(proxied) != exercisedRequests {
		t.Fatalf("a client without ProxyURL used the proxy")
	}
}

// TestPagination: 250 installations come in pages of 100, so three calls, following GitHub's Link header.
func TestPagination(t *testing.T) {
	t.Parallel()
	f := testFixture(t)
	for i := len(f.Installations); i < 250; i++ {
		f.Installations = append(f.Installations, fakegithub.Installation{
			ID: int64(10_000 + i), AppID: testAppID, Account: fmt.Sprintf("org-%03d", i),
			Permissions: map[string]string{"metadata": "read"},
		})
	}
	h := newHarnessWith(t, harnessConfig{fixture: &f})
	c := h.newClient(t)
	all, complete, err := c.Installations(t.Context())
	if err != nil || !complete {
		t.Fatalf("Installations: complete %v, %v", complete, err)
	}
	seen := map[int64]bool{}
	for _, in := range all {
		seen[in.ID] = true
	}
	if len(all) != 250 || len(seen) != 250 {
		t.Fatalf("Installations returned %d (%d distinct), want 250", len(all), len(seen))
	}
	if n := h.calls(installationsRt); n != 3 {
		t.Fatalf("GET /app/installations called %d times, want 3", n)
	}
	// The client builds each page's URL itself (the JWT never follows a Link header elsewhere).
	var queries []string
	for _, r := range h.log.all() {
		_, q, _ := strings.Cut(r.RequestURI, "?")
		queries = append(queries, q)
	}
	if want := []string{"page=1&per_page=100", "page=2&per_page=100", "page=3&per_page=100"}; !slices.Equal(queries, want) {
		t.Fatalf("queries = %v, want %v", queries, want)
	}
}

// TestTokenRepositoriesPagination: a token reaching more than a page of repositories is listed in full.
func TestTokenRepositoriesPagination(t *testing.T) {
	t.Parallel()
	f := testFixture(t)
	var repos []fakegithub.Repository
	for i := range 130 {
		repos = append(repos, fakegithub.Repository{Name: fmt.Sprintf("repo-%03d", i)})
	}
	f.Installations = append(f.Installations, fakegithub.Installation{
		ID: 2100, AppID: testAppID, Account: "bigco", Repositories: repos,
		Permissions: map[string]string{"metadata": "read", "contents": "read"},
	})
	h := newHarnessWith(t, harnessConfig{fixture: &f})
	c := h.newClient(t)
	tok, err := c.CreateToken(t.Context(), 2100, github.TokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.TokenRepositories(t.Context(), tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 130 || got[0].Name != "repo-000" || got[129].Name != "repo-129" {
		t.Fatalf("TokenRepositories returned %d repositories", len(got))
	}
	if n := h.calls(tokenReposRoute); n != 2 {
		t.Fatalf("GET /installation/repositories called %d times, want 2", n)
	}
}

// TestListingsStopAfterPageLimit: a server that always says there is another page cannot keep
// the client listing forever.
func TestListingsStopAfterPageLimit(t *testing.T) {
	t.Parallel()
	var pages atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := pages.Add(1)
		w.Header().Set("Link", fmt.Sprintf(`<%s%s?page=%d>; rel="next"`, "http://"+r.Host, r.URL.Path, n+1))
		w.Header().Set("Content-Type", "application/json")
		if strings.HasPrefix(r.URL.Path, "/installation/") {
			fmt.Fprintf(w, `{"total_count": 1000000, "repositories": [{"id": %d, "name": "r%d"}]}`, n, n)
			return
		}
		fmt.Fprintf(w, `[{"id": %d, "account": {"login": "org%d", "id": %d}}]`, n, n, n)
	}))
	t.Cleanup(srv.Close)
	c, err := github.NewClient(github.Options{BaseURL: srv.URL, AppID: testAppID, PrivateKey: github.SharedKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	list, complete, err := c.Installations(ctx)
	if err != nil {
		t.Fatalf("Installations: %v (after %d pages)", err, pages.Load())
	}
	if complete || int64(len(list)) != pages.Load() || len(list) != github.MaxPages {
		t.Fatalf("Installations read %d pages, returned %d installations (complete %v), want %d and incomplete",
			pages.Load(), len(list), complete, github.MaxPages)
	}

	pages.Store(0)
	repos, err := c.TokenRepositories(ctx, "ghs_"+strings.Repeat("x", 36))
	if err == nil || !strings.Contains(err.Error(), "more repositories than") || pages.Load() != github.MaxPages {
		t.Fatalf("TokenRepositories: %d repositories after %d pages, error %v; want an error after %d pages",
			len(repos), pages.Load(), err, github.MaxPages)
	}
}
