// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

var (
	wrongKeyOnce sync.Once
	wrongKey     *rsa.PrivateKey
)

// otherKey is a key GitHub does not know for the App. Its size does not matter to the emulator's signature check,
// and a small one keeps the test fast.
func otherKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	wrongKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			panic(err)
		}
		wrongKey = k
	})
	return wrongKey
}

// GitHub's messages, verbatim: the backend shows them to operators, so they must come through unchanged.
const (
	ghJWTUndecodable   = "A JSON web token could not be decoded"
	ghIntegrationNF    = "Integration not found"
	ghSuspended        = "This installation has been suspended"
	ghRepoInaccessible = "There is at least one repository that does not exist or is not accessible to the parent installation."
	ghPermNotGranted   = "The permissions requested are not granted to this installation."
	ghPermLevel        = "The level of access for permissions requested are not granted to this installation."
	ghBadCredentials   = "Bad credentials"
)

// TestErrorKinds drives every failure the backend tells apart and checks kind, status, GitHub's message, how
// often the emulator was called (4xx other than rate limits are never retried) and that no secret leaks into the
// error text.
func TestErrorKinds(t *testing.T) {
	t.Parallel()
	type op func(ctx context.Context, c *github.Client) error
	mint := func(id int64, req github.TokenRequest) op {
		return func(ctx context.Context, c *github.Client) error { _, err := c.CreateToken(ctx, id, req); return err }
	}
	getApp := func(ctx context.Context, c *github.Client) error { _, err := c.App(ctx); return err }

	tests := []struct {
		name       string
		options    func(*github.Options)
		faults     *fakegithub.Faults
		setup      func(t *testing.T, h *harness, c *github.Client) op // when the call needs state, e.g. a revoked token
		call       op
		wantKind   github.Kind
		wantStatus int
		wantMsg    string // exact, or a prefix when wantPrefix
		wantPrefix bool
		wantCalls  map[string]int
		wantRetry  time.Duration // Error.RetryAfter; -1: any positive
	}{
		{name: "bad key", options: func(o *github.Options) { o.PrivateKey = otherKey(t) }, call: getApp,
			wantKind: github.KindBadCredentials, wantStatus: 401, wantMsg: ghJWTUndecodable, wantCalls: map[string]int{appRoute: 1}},
		{name: "wrong app ID", options: func(o *github.Options) { o.AppID = 4242 }, call: getApp,
			wantKind: github.KindBadCredentials, wantStatus: 404, wantMsg: ghIntegrationNF, wantCalls: map[string]int{appRoute: 1}},
		{name: "wrong client ID", options: func(o *github.Options) { o.ClientID = "Iv23liNOSUCHAPP" }, call: mint(orgInstallation, github.TokenRequest{}),
			wantKind: github.KindBadCredentials, wantStatus: 404, wantMsg: ghIntegrationNF, wantCalls: map[string]int{mintRoute: 1}},
		{name: "unknown installation", call: mint(unknownInstallID, github.TokenRequest{}),
			wantKind: github.KindNotFound, wantStatus: 404, wantMsg: "Not Found", wantCalls: map[string]int{mintRoute: 1}},
		{name: "unknown installation lookup",
			call: func(ctx context.Context, c *github.Client) error {
				_, err := c.Installation(ctx, unknownInstallID)
				return err
			},
			wantKind: github.KindNotFound, wantStatus: 404, wantMsg: "Not Found", wantCalls: map[string]int{installationRoute: 1}},
		{name: "suspended", call: mint(suspendedInstall, github.TokenRequest{}),
			wantKind: github.KindSuspended, wantStatus: 403, wantMsg: ghSuspended, wantCalls: map[string]int{mintRoute: 1}},
		{name: "repository by name not in installation", call: mint(orgInstallation, github.TokenRequest{Repositories: []string{"api", "dotfiles"}}),
			wantKind: github.KindValidation, wantStatus: 422, wantMsg: ghRepoInaccessible, wantCalls: map[string]int{mintRoute: 1}},
		{name: "repository by ID not in installation", call: mint(orgInstallation, github.TokenRequest{RepositoryIDs: []int64{repoDotfiles}}),
			wantKind: github.KindValidation, wantStatus: 422, wantMsg: ghRepoInaccessible, wantCalls: map[string]int{mintRoute: 1}},
		{name: "permission not granted", call: mint(orgInstallation, github.TokenRequest{Permissions: map[string]string{"administration": "write"}}),
			wantKind: github.KindValidation, wantStatus: 422, wantMsg: ghPermNotGranted, wantCalls: map[string]int{mintRoute: 1}},
		{name: "permission level not granted", call: mint(orgInstallation, github.TokenRequest{Permissions: map[string]string{"pull_requests": "write"}}),
			wantKind: github.KindValidation, wantStatus: 422, wantMsg: ghPermLevel, wantCalls: map[string]int{mintRoute: 1}},
		{name: "revoked token",
			setup: func(t *testing.T, h *harness, c *github.Client) op {
				tok, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{})
				if err != nil {
					t.Fatal(err)
				}
				if err := c.RevokeToken(t.Context(), tok.Token); err != nil {
					t.Fatal(err)
				}
				return func(ctx context.Context, c *github.Client) error {
					_, err := c.TokenRepositories(ctx, tok.Token)
					return err
				}
			},
			wantKind: github.KindBadCredentials, wantStatus: 401, wantMsg: ghBadCredentials, wantCalls: map[string]int{tokenReposRoute: 1}},
		// Rate limits whose wait is longer than the caller's deadline fail at once, saying when to retry.
		{name: "secondary rate limit 429", faults: &fakegithub.Faults{SecondaryRateLimit: 429, RetryAfter: 30},
			call: mint(orgInstallation, github.TokenRequest{}), wantKind: github.KindRateLimited, wantStatus: 429,
			wantMsg: "You have exceeded a secondary rate limit", wantPrefix: true, wantCalls: map[string]int{mintRoute: 1},
			wantRetry: 30 * time.Second},
		{name: "secondary rate limit 403", faults: &fakegithub.Faults{SecondaryRateLimit: 403, RetryAfter: 45},
			call: getApp, wantKind: github.KindRateLimited, wantStatus: 403,
			wantMsg: "You have exceeded a secondary rate limit", wantPrefix: true, wantCalls: map[string]int{appRoute: 1},
			wantRetry: 45 * time.Second},
		{name: "primary rate limit", faults: &fakegithub.Faults{PrimaryRateLimit: true, RateLimitReset: time.Minute},
			call: mint(orgInstallation, github.TokenRequest{}), wantKind: github.KindRateLimited, wantStatus: 403,
			wantMsg: "API rate limit exceeded for app ID 1001", wantPrefix: true, wantCalls: map[string]int{mintRoute: 1},
			wantRetry: -1},
		// An outage drops connections: no status, a transport error, retried and then given up.
		{name: "unavailable", options: func(o *github.Options) { o.MaxRetries = 1 },
			faults: &fakegithub.Faults{OutageUntil: time.Now().Add(time.Hour)},
			call:   getApp, wantKind: github.KindUnavailable, wantStatus: 0,
			wantCalls: map[string]int{appRoute: 2}},
		// A mint whose connection broke after sending may have minted: it is not repeated.
		// A dropped connection may have followed a mint at GitHub: it is retried all the same (a possible duplicate).
		{name: "unavailable mint", options: func(o *github.Options) { o.MaxRetries = 1 },
			faults: &fakegithub.Faults{OutageUntil: time.Now().Add(time.Hour)},
			call:   mint(orgInstallation, github.TokenRequest{}), wantKind: github.KindUnavailable, wantStatus: 0,
			wantCalls: map[string]int{mintRoute: 2}},
		{name: "server errors", options: func(o *github.Options) { o.MaxRetries = 1 },
			faults: &fakegithub.Faults{ErrorRate: 1, ErrorStatus: 503},
			call:   getApp, wantKind: github.KindUnavailable, wantStatus: 503, wantMsg: "Service Unavailable",
			wantCalls: map[string]int{appRoute: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			good := h.newClient(t)
			// One good exchange first, so that every test also proves the contract check is live, and so that
			// state (tokens) exists where needed.
			if _, err := good.App(t.Context()); err != nil {
				t.Fatal(err)
			}
			call := tt.call
			if tt.setup != nil {
				call = tt.setup(t, h, good)
			}
			var mutate []func(*github.Options)
			if tt.options != nil {
				mutate = append(mutate, tt.options)
			}
			c := h.newClient(t, mutate...)
			if tt.faults != nil {
				h.fake.SetFaults(*tt.faults)
			}
			h.fake.ResetStats()

			// A generous deadline: long enough for a quick retry, far shorter than any rate-limit wait above.
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			start := time.Now()
			err := call(ctx, c)
			elapsed := time.Since(start)
			e := assertKind(t, err, tt.wantKind)

			if e.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d (%v)", e.StatusCode, tt.wantStatus, err)
			}
			if tt.wantPrefix && !strings.HasPrefix(e.Message, tt.wantMsg) || !tt.wantPrefix && e.Message != tt.wantMsg {
				t.Errorf("message = %q, want %q", e.Message, tt.wantMsg)
			}
			if tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Error() = %q does not carry GitHub's message %q", err, tt.wantMsg)
			}
			if tt.wantStatus != 0 && e.RequestID == "" {
				t.Errorf("no X-GitHub-Request-Id kept on the error")
			}
			if tt.wantStatus == 0 && e.Err == nil {
				t.Errorf("a transport failure keeps no cause: %+v", e)
			}
			switch {
			case tt.wantRetry > 0 && e.RetryAfter != tt.wantRetry:
				t.Errorf("RetryAfter = %s, want %s", e.RetryAfter, tt.wantRetry)
			case tt.wantRetry < 0 && (e.RetryAfter < 55*time.Second || e.RetryAfter > 61*time.Second):
				t.Errorf("RetryAfter = %s, want about a minute (X-RateLimit-Reset)", e.RetryAfter)
			case tt.wantRetry > 0 && !strings.Contains(err.Error(), "retry after"):
				t.Errorf("Error() = %q does not say when to retry", err)
			}
			if tt.wantKind == github.KindRateLimited && elapsed > time.Second {
				t.Errorf("a rate limit beyond the deadline took %s to fail, want at once", elapsed)
			}
			st := h.fake.Stats()
			for route, want := range tt.wantCalls {
				if got := st.Calls[route]; got != want {
					t.Errorf("%s called %d times, want %d", route, got, want)
				}
			}
			if total, want := st.TotalCalls, sum(tt.wantCalls); total != want {
				t.Errorf("the emulator saw %d calls, want %d: %v", total, want, st.Calls)
			}

			// Neither the App JWT nor any token may appear in an error: errors end up in logs and responses.
			var secrets []string
			for _, r := range h.log.all() {
				if cred, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
					secrets = append(secrets, cred)
				}
			}
			if len(secrets) == 0 {
				t.Fatal("no credentials were recorded, so the secret check would prove nothing")
			}
			assertNoSecret(t, err, secrets...)
			if strings.Contains(err.Error(), "eyJ") || strings.Contains(err.Error(), "ghs_") {
				t.Errorf("Error() looks like it holds a credential: %q", err)
			}
			t.Logf("%s: %v (after %s)", tt.name, err, elapsed.Round(time.Millisecond))
		})
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
