// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// redirect sends every request to the emulator while keeping the URL the client built, so that a test sees where a
// call would have gone on the real network.
type redirect struct {
	to   *url.URL
	next http.RoundTripper

	mu   sync.Mutex
	seen []string
}

func (r *redirect) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.seen = append(r.seen, req.URL.String())
	r.mu.Unlock()
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host, out.Host = r.to.Scheme, r.to.Host, r.to.Host
	return r.next.RoundTrip(out)
}

func (r *redirect) urls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

// TestGHEComBaseURL: GitHub Enterprise Cloud with data residency serves the API at the root of
// https://api.SUBDOMAIN.ghe.com, like github.com: the base URL is accepted as it is, and every call goes right below
// it, with no /api/v3.
func TestGHEComBaseURL(t *testing.T) {
	t.Parallel()
	const base = "https://api.octo-corp.ghe.com"
	for _, raw := range []string{base, base + "/", " " + base + "/ "} {
		t.Run(strings.TrimSpace(raw), func(t *testing.T) {
			t.Parallel()
			if got, err := github.NormalizeBaseURL(raw); err != nil || got != base {
				t.Fatalf("NormalizeBaseURL(%q) = %q, %v; want %q", raw, got, err, base)
			}
			h := newHarness(t)
			to, err := url.Parse(h.srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			rd := &redirect{to: to}
			c := h.newClient(t, func(o *github.Options) {
				o.BaseURL = raw
				wrap := o.WrapTransport
				o.WrapTransport = func(next http.RoundTripper) http.RoundTripper {
					rd.next = wrap(next)
					return rd
				}
			})
			if c.BaseURL() != base {
				t.Fatalf("BaseURL() = %q, want %q", c.BaseURL(), base)
			}
			exercise(t, c)

			var paths []string
			for _, u := range rd.urls() {
				pu, err := url.Parse(u)
				if err != nil {
					t.Fatal(err)
				}
				if pu.Scheme+"://"+pu.Host != base || strings.HasPrefix(pu.Path, "/api/v3") ||
					strings.Contains(pu.Path, "//") {
					t.Errorf("a call went to %s, not right below %s", u, base)
				}
				paths = append(paths, pu.Path)
			}
			for _, want := range []string{"/app", "/app/installations", "/app/installations/2001",
				"/app/installations/2001/access_tokens", "/orgs/octocat/installation", "/users/octocat/installation",
				"/installation/repositories", "/installation/token"} {
				if !slices.Contains(paths, want) {
					t.Errorf("no call to %s%s; saw %v", base, want, paths)
				}
			}
		})
	}
}
