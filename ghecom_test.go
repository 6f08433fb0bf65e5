// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// hostRedirect sends every request of the backend's clients to the emulator and keeps the URLs they were built for.
type hostRedirect struct {
	to   *url.URL
	next http.RoundTripper

	mu   *sync.Mutex
	seen *[]string
}

func (h hostRedirect) RoundTrip(req *http.Request) (*http.Response, error) {
	h.mu.Lock()
	*h.seen = append(*h.seen, req.URL.String())
	h.mu.Unlock()
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host, out.Host = h.to.Scheme, h.to.Host, h.to.Host
	return h.next.RoundTrip(out)
}

// TestGHEComBaseURL: a GHE.com (data residency) base URL, https://api.SUBDOMAIN.ghe.com, is accepted as it is,
// verified, stored without its trailing slash, and every call (verification, lookup, mint, revocation) goes right
// below it, with no /api/v3.
func TestGHEComBaseURL(t *testing.T) {
	const base = "https://api.octo-corp.ghe.com"
	e := newTestEnv(t)
	to, err := url.Parse(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	e.b.clientOptions = func(o *github.Options) {
		o.WrapTransport = func(next http.RoundTripper) http.RoundTripper {
			return hostRedirect{to: to, next: next, mu: &mu, seen: &seen}
		}
	}

	e.configure(map[string]any{"base_url": base + "/"})
	resp, err := e.do(logical.ReadOperation, "config", nil)
	mustOK(t, resp, err)
	if resp.Data["base_url"] != base {
		t.Fatalf("config base_url = %v, want %s", resp.Data["base_url"], base)
	}
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	minted := e.mint("ci")
	if got := minted.Secret.InternalData["base_url"]; got != base {
		t.Fatalf("the lease's base_url = %v, want %s", got, base)
	}
	if err := e.revoke(minted); err != nil {
		t.Fatalf("revoke: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	var paths []string
	for _, u := range seen {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		if pu.Scheme+"://"+pu.Host != base || strings.HasPrefix(pu.Path, "/api/v3") || strings.Contains(pu.Path, "//") {
			t.Errorf("a call went to %s, not right below %s", u, base)
		}
		paths = append(paths, pu.Path)
	}
	for _, want := range []string{"/app", "/orgs/acme/installation", "/app/installations/2001/access_tokens",
		"/installation/token"} {
		if !slices.Contains(paths, want) {
			t.Errorf("no call to %s%s; saw %v", base, want, paths)
		}
	}
}
