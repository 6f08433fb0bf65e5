// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

// TestTokenSteadyStateCalls: an owner-bound role costs one lookup and the App one bot user lookup, then one GitHub
// call per mint, and one JWT.
func TestTokenSteadyStateCalls(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "ACME", "repositories": "api", "permissions": "contents=read"})
	e.gh.ResetStats()
	for range 50 {
		e.mint("ci")
	}
	st := e.gh.Stats()
	t.Logf("50 mints: %d GitHub calls (%v), %d distinct JWTs", st.TotalCalls, st.Calls, st.DistinctJWTs)
	if st.TotalCalls > 52 || st.Calls[mintRoute] != 50 || st.Calls[userRoute] != 1 {
		t.Fatalf("50 mints cost %d calls (%v), want at most 52", st.TotalCalls, st.Calls)
	}
	if st.DistinctJWTs != 1 || e.b.cachedDefault().JWTSignatures() != 1 {
		t.Fatalf("%d distinct JWTs, %d signatures", st.DistinctJWTs, e.b.cachedDefault().JWTSignatures())
	}
}

// TestConcurrentMintsDuringConfigRewrite: mints run while the config is rewritten back and forth between two Apps,
// each with its own key on its own GitHub. Each mint must use one config whole: its token was issued by the GitHub
// its lease names, to the installation of that GitHub's App, and is revoked there.
func TestConcurrentMintsDuringConfigRewrite(t *testing.T) {
	e := newTestEnv(t)
	// The other App, installed on the same organization (the emulators derive the same account ID from the login).
	const otherInstall = 7002
	gh2, srv2 := newEmulator(t, fakegithub.Fixture{
		Apps: []fakegithub.App{{ID: otherAppID, ClientID: otherClientID, Slug: "other-app", Name: "Other App", Owner: "acme"}},
		Installations: []fakegithub.Installation{{
			ID: otherInstall, AppID: otherAppID, Account: "acme", AccountType: "Organization", RepositorySelection: "selected",
			Repositories: []fakegithub.Repository{{ID: 3001, Name: "api"}}, Permissions: map[string]string{"contents": "read"},
		}},
	})
	configs := []map[string]any{
		{"app_id": testAppID, "private_key": testKeyPEM, "base_url": e.srv.URL},
		{"app_id": otherAppID, "private_key": otherPEM, "base_url": srv2.URL},
	}
	emulators := map[string]*fakegithub.Server{e.srv.URL: e.gh, srv2.URL: gh2}
	installations := map[string]int64{e.srv.URL: testOrgInstall, srv2.URL: otherInstall}
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})

	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			data := maps.Clone(configs[i%2])
			data["verify"] = i%3 == 0
			resp, err := e.do(logical.UpdateOperation, "config", data)
			if err != nil || (resp != nil && resp.IsError()) {
				t.Errorf("config rewrite: %v %v", resp, err)
				return
			}
		}
	}()
	// Five readers mint until each config has been used, and at least 50 times.
	var mints sync.WaitGroup
	results := make(chan *logical.Response, 10_000)
	var minted atomic.Int64
	deadline := time.Now().Add(20 * time.Second)
	for range 5 {
		mints.Add(1)
		go func() {
			defer mints.Done()
			for time.Now().Before(deadline) {
				if minted.Load() >= 50 && e.gh.Stats().TokensIssued > 0 && gh2.Stats().TokensIssued > 0 {
					return
				}
				resp, err := e.do(logical.ReadOperation, "token/ci", nil)
				if err != nil || resp == nil || resp.IsError() {
					t.Errorf("mint during rewrite: %v %v", resp, err)
					return
				}
				minted.Add(1)
				results <- resp
			}
		}()
	}
	mints.Wait()
	close(stop)
	wg.Wait()
	close(results)
	n := 0
	for resp := range results {
		n++
		base := resp.Secret.InternalData["base_url"].(string)
		gh, ok := emulators[base]
		if !ok {
			t.Fatalf("lease names base URL %v", base)
		}
		tok := resp.Data["token"].(string)
		info, issued := gh.Token(tok)
		if !issued || info.InstallationID != installations[base] || resp.Data["installation_id"] != installations[base] {
			t.Fatalf("a token leased for %s: issued there %v, installation %d (response %v), want %d",
				base, issued, info.InstallationID, resp.Data["installation_id"], installations[base])
		}
		if err := e.revoke(resp); err != nil {
			t.Fatalf("revoke: %v", err)
		}
		if info, _ := gh.Token(tok); !info.Revoked {
			t.Fatalf("a token of %s was not revoked there", base)
		}
	}
	first, second := e.gh.Stats().TokensRevoked, gh2.Stats().TokensRevoked
	t.Logf("%d mints: %d tokens from the first App, %d from the second", n, first, second)
	if n < 50 || first == 0 || second == 0 || first+second != n {
		t.Fatalf("%d mints, %d revoked at the first GitHub and %d at the second: want at least 50, from both", n, first, second)
	}
}

// TestBurstOfColdReads: 200 concurrent first reads of an owner-bound role after a start share one owner
// lookup and one JWT signature, and never have more than max_concurrent_requests calls in flight at GitHub.
func TestBurstOfColdReads(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"max_concurrent_requests": 8})
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	e.restart() // nothing cached: no client, JWT, installation or role
	e.gh.SetFaults(fakegithub.Faults{Latency: 20 * time.Millisecond})
	e.gh.ResetStats()

	var wg sync.WaitGroup
	var served atomic.Int64
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.do(logical.ReadOperation, "token/ci", nil)
			if err != nil || resp == nil || resp.IsError() {
				t.Errorf("read: %v %v", resp, err)
				return
			}
			served.Add(1)
		}()
	}
	wg.Wait()
	st := e.gh.Stats()
	t.Logf("200 cold reads: %d served, GitHub calls %v, at most %d in flight, %d distinct JWTs, %d signatures",
		served.Load(), st.Calls, st.MaxInFlight, st.DistinctJWTs, e.b.cachedDefault().JWTSignatures())
	if served.Load() != 200 || st.Calls["GET /orgs/{org}/installation"] != 1 || st.Calls[mintRoute] != 200 {
		t.Fatalf("%d served; calls %v; want 200 served, 1 owner lookup, 200 mints", served.Load(), st.Calls)
	}
	if st.MaxInFlight > 8 || e.b.cachedDefault().JWTSignatures() != 1 {
		t.Fatalf("%d in flight at GitHub (max 8), %d JWT signatures (want 1)", st.MaxInFlight, e.b.cachedDefault().JWTSignatures())
	}
}

// TestUnboundedNarrowingInputRefused: an update caller cannot make the engine do work, or write
// an error, in proportion to an arbitrarily long list.
func TestUnboundedNarrowingInputRefused(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api,web", "permissions": "contents=read"})
	names := make([]string, 100_000)
	ids := make([]string, len(names))
	for i := range names {
		names[i] = fmt.Sprintf("r%d", i)
		ids[i] = strconv.Itoa(i + 1)
	}
	for _, tt := range []struct {
		name, path string
		data       map[string]any
	}{
		{"names in a string", "token/ci", map[string]any{"repositories": strings.Join(names, ",")}},
		{"names in a list", "token/ci", map[string]any{"repositories": names}},
		{"ids in a string", "token/ci", map[string]any{"repository_ids": strings.Join(ids, ",")}},
		{"a role write", "roles/big", map[string]any{"owner": "acme", "repositories": strings.Join(names, ",")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.do(logical.UpdateOperation, tt.path, tt.data)
			status, msg := mustFail(t, resp, err)
			if status != 400 {
				t.Errorf("status %d, want 400", status)
			}
			if len(msg) > 500 {
				t.Fatalf("the error is %d bytes long", len(msg))
			}
			wantContains(t, msg, "100000", "at most 500")
		})
	}
	t.Run("an error names at most 20 items", func(t *testing.T) {
		bad := make([]string, 300)
		for i := range bad {
			bad[i] = fmt.Sprintf("bad name %d", i)
		}
		resp, err := e.do(logical.UpdateOperation, "token/ci", map[string]any{"repositories": bad})
		_, msg := mustFail(t, resp, err)
		wantContains(t, msg, `"bad name 19"`, "and 280 more")
		if strings.Contains(msg, `"bad name 20"`) {
			t.Fatalf("the error names more than 20 items: %s", msg)
		}
	})
}

// TestHugeItemsAreNotQuotedWhole: one enormous entry (a megabyte-long repository name or permission) is refused
// with an error of bounded size, on token and role writes.
func TestHugeItemsAreNotQuotedWhole(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	huge := strings.Repeat("x", 1<<20)
	hugeObject := map[string]any{}
	for i := range 1000 {
		hugeObject[fmt.Sprintf("p%d", i)] = "read"
	}
	for _, tt := range []struct {
		name, path string
		data       map[string]any
	}{
		{"repository name", "token/ci", map[string]any{"repositories": huge}},
		{"owner-prefixed name", "token/ci", map[string]any{"repositories": "acme/" + huge}},
		{"permission", "token/ci", map[string]any{"permissions": huge + "=read"}},
		{"repository id", "token/ci", map[string]any{"repository_ids": strings.Repeat("9", 1<<20)}},
		{"role repository", "roles/big", map[string]any{"owner": "acme", "repositories": huge}},
		{"role owner", "roles/big", map[string]any{"owner": huge}},
		{"role permission", "roles/big", map[string]any{"owner": "acme", "permissions": map[string]any{huge: "read"}}},
		{"1000 role permissions", "roles/big", map[string]any{"owner": "acme", "permissions": hugeObject}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.do(logical.UpdateOperation, tt.path, tt.data)
			_, msg := mustFail(t, resp, err)
			if len(msg) > 2000 {
				t.Fatalf("the error is %d bytes long: %.200s…", len(msg), msg)
			}
		})
	}
}

// TestRateLimitedMintSaysWhenToComeBack: a limited App's mints fail at once with 429, a Retry-After header
// and a message naming the limit and when it ends; GitHub is not asked again until then, but for a probe a second.
func TestRateLimitedMintSaysWhenToComeBack(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	e.mint("ci")
	e.gh.SetFaults(fakegithub.Faults{PrimaryRateLimit: true, RateLimitReset: 10 * time.Minute})
	defer e.gh.SetFaults(fakegithub.Faults{})
	e.gh.ResetStats()
	for i := range 20 {
		start := time.Now()
		resp, err := e.do(logical.ReadOperation, "token/ci", nil)
		status, msg := mustFail(t, resp, err)
		if status != 429 {
			t.Fatalf("read %d: status %d, want 429", i, status)
		}
		retry, convErr := strconv.Atoi(resp.Headers["Retry-After"][0])
		if convErr != nil || retry < 590 || retry > 600 {
			t.Fatalf("read %d: Retry-After %v, want about 600 seconds", i, resp.Headers["Retry-After"])
		}
		wantContains(t, msg, "primary rate limit", "retry after")
		if d := time.Since(start); d > time.Second {
			t.Errorf("read %d took %s, want it refused at once rather than held for the reset", i, d)
		}
	}
	if calls := e.gh.Stats().TotalCalls; calls > 2 {
		t.Fatalf("20 reads during the limit made %d calls to GitHub", calls)
	}
}

// TestLowRateLimitWarns: a mint while less than a tenth of the App's hourly limit remains says so.
func TestLowRateLimitWarns(t *testing.T) {
	e := newTestEnv(t)
	tm := e.withTamper()
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	if resp := e.mint("ci"); len(resp.Warnings) != 0 {
		t.Fatalf("warnings with the limit nearly untouched: %v", resp.Warnings)
	}
	tm.setHeader("X-RateLimit-Remaining", "312")
	resp := e.mint("ci")
	wantContains(t, strings.Join(resp.Warnings, "\n"), "rate limit for the App is low", "312 of 5000")
}
