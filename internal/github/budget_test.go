// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

const rateLimitRoute = "GET /rate_limit"

// InstallationRateLimit reads each installation's own budget with one of its tokens, without spending it.
func TestInstallationRateLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newClient(t)
	budgets := []struct {
		installation int64
		set          fakegithub.RateLimit
	}{
		{orgInstallation, fakegithub.RateLimit{Limit: 1000, Remaining: 100, ResetIn: 30 * time.Minute}},
		{userInstallation, fakegithub.RateLimit{Remaining: 4500}},
	}
	for _, b := range budgets {
		set, err := h.fake.SetInstallationRateLimit(b.installation, b.set)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := c.CreateToken(t.Context(), b.installation, github.TokenRequest{})
		if err != nil {
			t.Fatalf("CreateToken(%d): %v", b.installation, err)
		}
		rl, err := c.InstallationRateLimit(t.Context(), tok.Token)
		if err != nil {
			t.Fatalf("InstallationRateLimit(%d): %v", b.installation, err)
		}
		if rl.Limit != set.Limit || rl.Remaining != set.Remaining || rl.Used != set.Used || !rl.Reset.Equal(set.Reset) ||
			rl.Resource != "core" || time.Since(rl.Seen).Abs() > 5*time.Second {
			t.Errorf("installation %d: %+v, want %+v", b.installation, rl, set)
		}

		// Reading does not spend; a call with the token does.
		if again, err := c.InstallationRateLimit(t.Context(), tok.Token); err != nil || again.Remaining != set.Remaining {
			t.Errorf("installation %d, second read: %+v, %v; want %d remaining", b.installation, again, err, set.Remaining)
		}
		if _, err := c.TokenRepositories(t.Context(), tok.Token); err != nil {
			t.Fatal(err)
		}
		if after, err := c.InstallationRateLimit(t.Context(), tok.Token); err != nil || after.Remaining != set.Remaining-1 {
			t.Errorf("installation %d after one call with the token: %+v, %v; want %d remaining", b.installation, after, err, set.Remaining-1)
		}
	}

	// The reads went to GitHub with the token, never with the App's JWT, and were no mints.
	reads := 0
	for _, r := range h.log.all() {
		if r.Path != "/rate_limit" {
			continue
		}
		reads++
		if auth := r.Header.Get("Authorization"); !strings.HasPrefix(auth, "Bearer ghs_") {
			t.Errorf("GET /rate_limit sent Authorization %.12s…, want an installation token", auth)
		}
	}
	if reads != 6 || h.calls(rateLimitRoute) != 6 || h.calls(mintRoute) != 2 {
		t.Errorf("%d reads on the wire, %d GET /rate_limit and %d mints at the emulator; want 6, 6 and 2",
			reads, h.calls(rateLimitRoute), h.calls(mintRoute))
	}
}

// The read is not an App call: a rate limit GitHub set on the App neither holds it back nor is lifted or replaced
// by its answer, and its headers (the installation's) do not become the App's rate limit.
func TestInstallationRateLimitBypassesTheAppLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newClient(t)
	tok, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.fake.SetInstallationRateLimit(orgInstallation, fakegithub.RateLimit{Limit: 1000, Remaining: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.fake.SetAppRateLimit(testAppID, fakegithub.RateLimit{Remaining: 0}); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{})
	assertKind(t, err, github.KindRateLimited)
	before := c.Gate().Status()
	if before.LimitedUntil.IsZero() || before.Rate.Limit != 5000 || before.Rate.Remaining != 0 {
		t.Fatalf("the Gate after the App's limit: %+v", before)
	}

	rl, err := c.InstallationRateLimit(t.Context(), tok.Token)
	if err != nil {
		t.Fatalf("InstallationRateLimit while the App is limited: %v", err)
	}
	if rl.Limit != 1000 || rl.Remaining != 10 {
		t.Errorf("InstallationRateLimit = %+v, want 10 of 1000", rl)
	}
	after := c.Gate().Status()
	if !after.LimitedUntil.Equal(before.LimitedUntil) || after.Rate != before.Rate {
		t.Errorf("the Gate moved with the read: before %+v, after %+v", before, after)
	}
	// Mints stay refused: the App's budget is spent.
	_, err = c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{})
	assertKind(t, err, github.KindRateLimited)
}

func TestInstallationRateLimitRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newClient(t)
	tok, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RevokeToken(t.Context(), tok.Token); err != nil {
		t.Fatal(err)
	}
	_, err = c.InstallationRateLimit(t.Context(), tok.Token)
	assertKind(t, err, github.KindBadCredentials)
	assertNoSecret(t, err, tok.Token)

	// No token: refused before any call, never sent with the App's JWT instead.
	calls := h.calls(rateLimitRoute)
	if _, err := c.InstallationRateLimit(t.Context(), ""); err == nil || !strings.Contains(err.Error(), "installation token") {
		t.Errorf("InstallationRateLimit without a token: %v", err)
	}
	if h.calls(rateLimitRoute) != calls {
		t.Error("InstallationRateLimit without a token called GitHub")
	}
}

// An answer without a core counter is an error, not a budget of zero.
func TestInstallationRateLimitUnreadable(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, body string }{
		{"no core", `{"resources": {"search": {"limit": 30, "remaining": 30, "reset": 1, "used": 0}}}`},
		{"negative", `{"resources": {"core": {"limit": -1, "remaining": 0, "reset": 1, "used": 0}}}`},
		{"not JSON", `<html>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(tt.body))
			}))
			t.Cleanup(srv.Close)
			c, err := github.NewClient(github.Options{BaseURL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.InstallationRateLimit(t.Context(), "ghs_0123456789abcdefghijklmnopqrstuvwxyz")
			assertKind(t, err, github.KindOther)
			assertNoSecret(t, err, "ghs_0123456789abcdefghijklmnopqrstuvwxyz")
		})
	}

	// Before API version 2026-03-10 the top-level rate holds the same counter; it serves when core is missing.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"resources": {}, "rate": {"limit": 5000, "remaining": 42, "reset": 1893456000, "used": 4958}}`))
	}))
	t.Cleanup(srv.Close)
	c, err := github.NewClient(github.Options{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	rl, err := c.InstallationRateLimit(t.Context(), "ghs_0123456789abcdefghijklmnopqrstuvwxyz")
	if err != nil || rl.Remaining != 42 || rl.Limit != 5000 || rl.Reset.Unix() != 1893456000 {
		t.Errorf("from rate: %+v, %v", rl, err)
	}
}
