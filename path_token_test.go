// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

const (
	mintRouteTemplate = "/app/installations/{installation_id}/access_tokens"
	mintRoute         = "POST " + mintRouteTemplate
)

func (e *testEnv) role(name string, data map[string]any) {
	e.t.Helper()
	resp, err := e.do(logical.UpdateOperation, "roles/"+name, data)
	mustOK(e.t, resp, err)
}

func TestTokenReadMintsTheRole(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{
		"owner": "acme", "repositories": "api,web", "permissions": "contents=read,pull_requests=write", "ttl": "10m",
	})

	resp := e.mint("ci")
	tok := resp.Data["token"].(string)
	if got := e.reach(tok); !reflect.DeepEqual(sorted(got), []string{"api", "web"}) {
		t.Fatalf("token reaches %v, want [api web]", got)
	}
	info, ok := e.gh.Token(tok)
	// GitHub adds metadata=read to every token that reaches repositories.
	if !ok || !reflect.DeepEqual(info.Permissions, map[string]string{"contents": "read", "metadata": "read", "pull_requests": "write"}) {
		t.Fatalf("emulator's view of the token: %#v", info)
	}

	sum := sha256.Sum256([]byte(tok))
	if resp.Data["hashed_token"] != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Fatalf("hashed_token = %v", resp.Data["hashed_token"])
	}
	if !reflect.DeepEqual(sorted(resp.Data["repositories"].([]string)), []string{"api", "web"}) {
		t.Fatalf("repositories = %#v, want names", resp.Data["repositories"])
	}
	if resp.Data["installation_id"] != int64(testOrgInstall) || resp.Data["role"] != "ci" ||
		resp.Data["repository_selection"] != "selected" {
		t.Fatalf("response data: %#v", resp.Data)
	}
	if _, err := time.Parse(time.RFC3339, resp.Data["expires_at"].(string)); err != nil {
		t.Fatalf("expires_at: %v", err)
	}

	// The lease: the role's TTL, not renewable, and internal data holding only what revocation needs (the
	// framework adds secret_type).
	if resp.Secret.TTL != 10*time.Minute || resp.Secret.Renewable {
		t.Fatalf("lease TTL %s renewable %v", resp.Secret.TTL, resp.Secret.Renewable)
	}
	keys := sortedKeys(resp.Secret.InternalData)
	if want := []string{"base_url", "destination", "expires_at", "installation_id", "role", "secret_type", "token"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("internal data keys %v, want %v", keys, want)
	}
	if resp.Secret.InternalData["base_url"] != e.srv.URL || resp.Secret.InternalData["token"] != tok {
		t.Fatalf("internal data %v", resp.Secret.InternalData["base_url"])
	}
}

func TestTokenWholeInstallation(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("all", map[string]any{"installation_id": testOrgInstall})
	resp := e.mint("all")
	if got := sorted(e.reach(resp.Data["token"].(string))); !reflect.DeepEqual(got, []string{"api", "infra", "web"}) {
		t.Fatalf("token reaches %v", got)
	}
	if len(resp.Data["repositories"].([]string)) != 0 {
		t.Fatalf("unscoped token lists repositories %v", resp.Data["repositories"])
	}
}

func TestTokenNarrowing(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{
		"owner": "acme", "repositories": "api,web", "repository_ids": "3003",
		"permissions": "contents=write,issues=read", "ttl": "20m",
	})
	e.role("open", map[string]any{"owner": "acme"})
	e.role("openbyid", map[string]any{"installation_id": testOrgInstall})

	t.Run("inside the role", func(t *testing.T) {
		resp, err := e.do(logical.UpdateOperation, "token/ci", map[string]any{
			"repositories": "web", "permissions": "contents=read", "ttl": "5m",
		})
		mustOK(t, resp, err)
		tok := resp.Data["token"].(string)
		if got := e.reach(tok); !reflect.DeepEqual(got, []string{"web"}) {
			t.Fatalf("narrowed token reaches %v", got)
		}
		if info, _ := e.gh.Token(tok); !reflect.DeepEqual(info.Permissions, map[string]string{"contents": "read", "metadata": "read"}) {
			t.Fatalf("narrowed permissions %v", info.Permissions)
		}
		if resp.Secret.TTL != 5*time.Minute {
			t.Fatalf("narrowed ttl %s", resp.Secret.TTL)
		}
	})
	t.Run("by id", func(t *testing.T) {
		resp, err := e.do(logical.UpdateOperation, "token/ci", map[string]any{"repository_ids": "3003"})
		mustOK(t, resp, err)
		if got := e.reach(resp.Data["token"].(string)); !reflect.DeepEqual(got, []string{"infra"}) {
			t.Fatalf("token reaches %v", got)
		}
	})
	t.Run("outside the role", func(t *testing.T) {
		before := e.gh.Stats().Calls[mintRoute]
		resp, err := e.do(logical.UpdateOperation, "token/ci", map[string]any{
			"repositories": "api,secret", "repository_ids": "3001", "permissions": "contents=write,issues=write,actions=read", "ttl": "30m",
		})
		status, msg := mustFail(t, resp, err)
		if status != 403 {
			t.Fatalf("status %d, want 403", status)
		}
		wantContains(t, msg, `repository "secret"`, "repository_id 3001", "permission issues=write (the role allows read)",
			"permission actions", "ttl 30m0s (the role allows 20m0s)")
		if strings.Contains(msg, `repository "api"`) || strings.Contains(msg, "contents") {
			t.Fatalf("message names items inside the role: %s", msg)
		}
		if after := e.gh.Stats().Calls[mintRoute]; after != before {
			t.Fatal("a refused narrowing reached GitHub")
		}
	})
	t.Run("an empty list does not widen the token", func(t *testing.T) {
		for _, data := range []map[string]any{
			{"repositories": ""}, {"repositories": ","}, {"repositories": []string{}}, {"repository_ids": ""},
			{"repositories": "", "repository_ids": []int{}},
		} {
			before := e.gh.Stats().Calls[mintRoute]
			resp, err := e.do(logical.UpdateOperation, "token/ci", data)
			status, msg := mustFail(t, resp, err)
			if status != 400 {
				t.Fatalf("%v: status %d", data, status)
			}
			wantContains(t, msg, "name no repository")
			if e.gh.Stats().Calls[mintRoute] != before {
				t.Fatalf("%v reached GitHub", data)
			}
		}
	})
	t.Run("malformed", func(t *testing.T) {
		resp, err := e.do(logical.UpdateOperation, "token/ci", map[string]any{"permissions": "pull-requests=read"})
		status, msg := mustFail(t, resp, err)
		if status != 400 {
			t.Fatalf("status %d", status)
		}
		wantContains(t, msg, `"pull-requests=read"`, `write "pull_requests=read"`)
	})
	t.Run("role without repository limit takes GitHub's spelling", func(t *testing.T) {
		for _, roleName := range []string{"open", "openbyid"} {
			resp, err := e.do(logical.UpdateOperation, "token/"+roleName, map[string]any{"repositories": "infra"})
			mustOK(t, resp, err)
			if got := e.reach(resp.Data["token"].(string)); !reflect.DeepEqual(got, []string{"infra"}) {
				t.Fatalf("%s: token reaches %v", roleName, got)
			}
			// A policy that denies "infra" compares raw values; GitHub ignores case.
			for _, data := range []map[string]any{
				{"repositories": "Infra"}, {"repositories": "INFRA"}, {"repositories": "api,iNfRa"}, {"repositories": []any{"api", "INFRA"}},
			} {
				before := e.gh.Tokens()
				resp, err := e.do(logical.UpdateOperation, "token/"+roleName, data)
				status, msg := mustFail(t, resp, err)
				if status != 400 {
					t.Fatalf("%s %v: status %d, want 400", roleName, data, status)
				}
				wantContains(t, msg, `"infra"`, "GitHub")
				e.noTokenSince(t, before)
			}
		}
		// A name the installation lacks is refused without asking GitHub for a token.
		before := e.gh.Tokens()
		resp, err := e.do(logical.UpdateOperation, "token/open", map[string]any{"repositories": "not-installed"})
		status, msg := mustFail(t, resp, err)
		if status != 400 {
			t.Fatalf("status %d", status)
		}
		wantContains(t, msg, `"not-installed"`, "not among the repositories")
		e.noTokenSince(t, before)
	})
}

// noTokenSince fails the test unless every token issued since before is one the engine minted to list an
// installation's repositories: metadata=read alone, and revoked.
func (e *testEnv) noTokenSince(t *testing.T, before []fakegithub.TokenInfo) {
	t.Helper()
	for _, tok := range e.gh.Tokens() {
		if slices.ContainsFunc(before, func(b fakegithub.TokenInfo) bool { return b.Value == tok.Value }) {
			continue
		}
		if !tok.Revoked || !maps.Equal(tok.Permissions, map[string]string{"metadata": "read"}) {
			t.Fatalf("a token was issued: repositories %v, permissions %v, revoked %v", tok.Repositories, tok.Permissions, tok.Revoked)
		}
	}
}

func TestTokenExistenceCheckNeedsUpdate(t *testing.T) {
	e := newTestEnv(t)
	checkFound, exists, err := e.b.HandleExistenceCheck(t.Context(), &logical.Request{
		Operation: logical.CreateOperation, Path: "token/ci", Storage: e.storage,
	})
	if err != nil || !checkFound || !exists {
		t.Fatalf("existence check = %v, %v, %v; want true, true, nil", checkFound, exists, err)
	}
}

func TestTokenTTLCapped(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("long", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read", "ttl": "3h"})
	resp := e.mint("long")
	if resp.Secret.TTL > time.Hour || resp.Secret.TTL < 59*time.Minute {
		t.Fatalf("lease TTL %s, want the token's remaining hour", resp.Secret.TTL)
	}
	wantContains(t, strings.Join(resp.Warnings, "\n"), "capped to the token's remaining lifetime")

	// The mount's max TTL caps too.
	e.tune(time.Hour, 2*time.Minute)
	resp = e.mint("long")
	if resp.Secret.TTL != 2*time.Minute {
		t.Fatalf("lease TTL %s, want the mount's max 2m", resp.Secret.TTL)
	}
	wantContains(t, strings.Join(resp.Warnings, "\n"), "capped to the mount's max TTL")

	// No ttl on the role: the mount's default, silently.
	e.tune(30*time.Minute, time.Hour)
	e.role("default", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	resp = e.mint("default")
	if resp.Secret.TTL != 30*time.Minute || len(resp.Warnings) != 0 {
		t.Fatalf("lease TTL %s warnings %v", resp.Secret.TTL, resp.Warnings)
	}
}

func TestTokenErrors(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.do(logical.ReadOperation, "token/ci", nil)
	_, msg := mustFail(t, resp, err)
	wantContains(t, msg, `role "ci" does not exist`)

	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	resp, err = e.do(logical.ReadOperation, "token/ci", nil)
	_, msg = mustFail(t, resp, err)
	wantContains(t, msg, "not configured")

	e.configure(nil)
	tests := []struct {
		name   string
		role   map[string]any
		status int
		wants  []string
	}{
		{"unknown owner", map[string]any{"owner": "nobody"}, 404, []string{`owner "nobody"`, "Not Found", "LIST installations"}},
		{"unknown installation", map[string]any{"installation_id": 9999}, 404, []string{"installation 9999", "check the role's installation_id", "[GitHub request ID "}},
		{"suspended", map[string]any{"installation_id": testSuspended}, 403, []string{"This installation has been suspended", "unsuspend"}},
		{"permission not granted", map[string]any{"owner": "acme", "permissions": "actions=read"}, 400,
			[]string{"The permissions requested are not granted to this installation.", "check the role's permissions"}},
		{"level not granted", map[string]any{"owner": "octocat", "permissions": "contents=write"}, 400,
			[]string{"The level of access for permissions requested are not granted to this installation."}},
		{"repository not installed", map[string]any{"owner": "acme", "repositories": "nope"}, 400,
			[]string{"There is at least one repository that does not exist"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.role("x", tt.role)
			resp, err := e.do(logical.ReadOperation, "token/x", nil)
			status, msg := mustFail(t, resp, err)
			if status != tt.status {
				t.Errorf("status %d, want %d", status, tt.status)
			}
			wantContains(t, msg, tt.wants...)
		})
	}

	t.Run("rate limited", func(t *testing.T) {
		e.role("x", map[string]any{"installation_id": testOrgInstall})
		e.gh.SetFaults(fakegithub.Faults{SecondaryRateLimit: 429, RetryAfter: 120})
		defer e.gh.SetFaults(fakegithub.Faults{})
		resp, err := e.do(logical.ReadOperation, "token/x", nil)
		status, msg := mustFail(t, resp, err)
		if status != 429 {
			t.Errorf("status %d, want 429", status)
		}
		wantContains(t, msg, "secondary rate limit", "retry after 2m0s")
	})
	t.Run("bad credentials", func(t *testing.T) {
		e.configure(map[string]any{"private_key": otherPEM, "verify": false})
		defer e.configure(nil)
		resp, err := e.do(logical.ReadOperation, "token/x", nil)
		status, msg := mustFail(t, resp, err)
		if status != 502 {
			t.Errorf("status %d, want 502", status)
		}
		wantContains(t, msg, "A JSON web token could not be decoded", "check app_id, client_id and private_key")
	})
}

func TestTokenOverGrantIsRevoked(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	e.gh.SetFaults(fakegithub.Faults{OverGrant: true})

	resp, err := e.do(logical.ReadOperation, "token/ci", nil)
	status, msg := mustFail(t, resp, err)
	if status != 502 {
		t.Fatalf("status %d", status)
	}
	wantContains(t, msg, "GitHub granted more than asked", "revoked", "permission contents=write", "repository acme/web")
	toks := e.gh.Tokens()
	if len(toks) != 1 || !toks[0].Revoked {
		t.Fatalf("emulator tokens after an over-grant: %d, revoked=%v", len(toks), len(toks) == 1 && toks[0].Revoked)
	}
	if strings.Contains(msg, toks[0].Value) || strings.Contains(e.logs.String(), toks[0].Value) {
		t.Fatal("the over-broad token leaked into the error or the log")
	}
}

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
	if st.DistinctJWTs != 1 || e.b.client.JWTSignatures() != 1 {
		t.Fatalf("%d distinct JWTs, %d signatures", st.DistinctJWTs, e.b.client.JWTSignatures())
	}
}

// TestInstallationCacheDropped: when GitHub no longer knows a cached installation (the App was reinstalled), the
// mint looks the owner up again and succeeds with the new installation.
func TestInstallationCacheDropped(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "octocat"})
	e.mint("ci")
	c := e.b.client
	c.installations.mu.Lock()
	entry := c.installations.owners["octocat"]
	entry.in.id = 424242
	c.installations.owners["octocat"] = entry
	c.installations.mu.Unlock()

	e.gh.ResetStats()
	resp := e.mint("ci")
	if resp.Data["installation_id"] != int64(testUserInstall) {
		t.Fatalf("minted from installation %v", resp.Data["installation_id"])
	}
	if st := e.gh.Stats(); st.Calls[mintRoute] != 2 || st.Calls["GET /users/{username}/installation"] != 1 {
		t.Fatalf("calls %v: want a failed mint, a lookup, a mint", st.Calls)
	}
	if id := c.installations.owners["octocat"].in.id; id != testUserInstall {
		t.Fatalf("cached installation %d, want %d", id, testUserInstall)
	}
}

func TestInstallationsList(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	for i := range 247 {
		err := e.gh.AddInstallation(fakegithub.Installation{
			ID: int64(10000 + i), AppID: testAppID, Account: "org" + string(rune('a'+i%26)) + strings.Repeat("x", i/26),
			AccountType: "Organization", RepositorySelection: "all", Permissions: map[string]string{"metadata": "read"},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	e.gh.ResetStats()
	resp, err := e.do(logical.ListOperation, "installations/", nil)
	mustOK(t, resp, err)
	keys := resp.Data["keys"].([]string)
	if len(keys) != 250 {
		t.Fatalf("%d installations listed, want 250", len(keys))
	}
	if calls := e.gh.Stats().Calls["GET /app/installations"]; calls != 3 {
		t.Fatalf("%d pages fetched, want 3", calls)
	}
	info := resp.Data["key_info"].(map[string]any)["frozen"].(map[string]any)
	want := map[string]any{"installation_id": int64(testSuspended), "account_type": "Organization",
		"repository_selection": "all", "suspended": true}
	if !reflect.DeepEqual(info, want) {
		t.Fatalf("key_info[frozen] = %#v", info)
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

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// TestRoleCacheFollowsChanges: mints read roles from memory, yet see every change, whether made on this node or
// (through Invalidate) on another.
func TestRoleCacheFollowsChanges(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	if got := e.reach(e.mint("ci").Data["token"].(string)); !reflect.DeepEqual(got, []string{"api"}) {
		t.Fatalf("reach %v", got)
	}

	e.role("ci", map[string]any{"repositories": "web"})
	if got := e.reach(e.mint("ci").Data["token"].(string)); !reflect.DeepEqual(got, []string{"web"}) {
		t.Fatalf("after a write on this node, reach %v", got)
	}

	// Another node rewrites the role in shared storage, then Vault invalidates the key here.
	entry, err := logical.StorageEntryJSON("roles/ci", &role{Owner: "acme", Repositories: []string{"infra"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.storage.Put(t.Context(), entry); err != nil {
		t.Fatal(err)
	}
	if got := e.reach(e.mint("ci").Data["token"].(string)); !reflect.DeepEqual(got, []string{"web"}) {
		t.Fatalf("before invalidation the cached role should still be used, reach %v", got)
	}
	e.b.InvalidateKey(t.Context(), "roles/ci")
	if got := e.reach(e.mint("ci").Data["token"].(string)); !reflect.DeepEqual(got, []string{"infra"}) {
		t.Fatalf("after invalidation, reach %v", got)
	}

	if r, err := e.do(logical.DeleteOperation, "roles/ci", nil); err != nil || r != nil {
		t.Fatal(r, err)
	}
	resp, err := e.do(logical.ReadOperation, "token/ci", nil)
	_, msg := mustFail(t, resp, err)
	wantContains(t, msg, `role "ci" does not exist`)
}

// TestReviewFindings covers edges found in review: each would let a caller get more than a policy or role meant,
// or mislead an operator.
func TestReviewFindings(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("admin", map[string]any{"owner": "acme", "permissions": "contents=write"})
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})

	t.Run("role names are case-sensitive, like Vault's policy paths", func(t *testing.T) {
		resp, err := e.do(logical.ReadOperation, "token/ADMIN", nil)
		_, msg := mustFail(t, resp, err)
		wantContains(t, msg, `role "ADMIN" does not exist`)
	})
	t.Run("a role without ttl allows at most the mount's default", func(t *testing.T) {
		e.tune(5*time.Minute, 24*time.Hour)
		defer e.tune(time.Hour, 24*time.Hour)
		resp, err := e.do(logical.UpdateOperation, "token/ci", map[string]any{"ttl": "50m"})
		status, msg := mustFail(t, resp, err)
		if status != 403 {
			t.Fatalf("status %d", status)
		}
		wantContains(t, msg, "ttl 50m0s (the role allows 5m0s)")
	})
	t.Run("another owner's repository is outside the role", func(t *testing.T) {
		resp, err := e.do(logical.UpdateOperation, "token/ci", map[string]any{"repositories": "evil/api"})
		status, msg := mustFail(t, resp, err)
		if status != 403 {
			t.Fatalf("status %d: %s", status, msg)
		}
		wantContains(t, msg, `repository "evil/api"`)
	})
	t.Run("the mount's default TTL is capped without a warning", func(t *testing.T) {
		e.tune(768*time.Hour, 24*time.Hour)
		defer e.tune(time.Hour, 24*time.Hour)
		resp := e.mint("ci")
		if len(resp.Warnings) != 0 || resp.Secret.TTL > time.Hour {
			t.Fatalf("ttl %s warnings %v", resp.Secret.TTL, resp.Warnings)
		}
	})
	t.Run("permission list entries are not split", func(t *testing.T) {
		resp, err := e.do(logical.UpdateOperation, "token/admin", map[string]any{
			"permissions": []any{"contents=read,administration=write"},
		})
		_, msg := mustFail(t, resp, err)
		wantContains(t, msg, `permission "contents=read,administration=write" is not a name=level entry`)
	})
	t.Run("a rate-limited lookup says when to retry", func(t *testing.T) {
		e.role("octo", map[string]any{"owner": "octocat"})
		e.gh.SetFaults(fakegithub.Faults{SecondaryRateLimit: 429, RetryAfter: 90})
		defer e.gh.SetFaults(fakegithub.Faults{})
		resp, err := e.do(logical.ReadOperation, "token/octo", nil)
		status, msg := mustFail(t, resp, err)
		if status != 429 {
			t.Fatalf("status %d", status)
		}
		wantContains(t, msg, "finding the installation", "retry after 1m30s")
	})
}

// tamperMint rewrites GitHub's answer to token requests before the engine reads it, to play a GitHub that grants
// more than asked in ways the emulator does not.
type tamperMint struct {
	next   http.RoundTripper
	mu     sync.Mutex
	change func(answer map[string]any)
	header http.Header // set on the answers of token requests
	// lose, while positive, drops the answer of that many token requests after GitHub handled them, as a broken
	// connection would.
	lose int
}

func (tm *tamperMint) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := tm.next.RoundTrip(r)
	if err != nil || r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/access_tokens") {
		return resp, err
	}
	tm.mu.Lock()
	change, lose := tm.change, tm.lose > 0
	if lose {
		tm.lose--
	}
	for k, v := range tm.header {
		resp.Header[k] = v
	}
	tm.mu.Unlock()
	if lose {
		resp.Body.Close()
		return nil, io.ErrUnexpectedEOF
	}
	if change == nil || resp.StatusCode != http.StatusCreated {
		return resp, nil
	}
	var answer map[string]any
	err = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	change(answer)
	body, _ := json.Marshal(answer)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return resp, nil
}

// withTamper makes every client the backend builds from now on go through a tamperMint.
func (e *testEnv) withTamper() *tamperMint {
	tm := &tamperMint{}
	e.b.clientOptions = func(o *github.Options) {
		o.WrapTransport = func(next http.RoundTripper) http.RoundTripper { tm.next = next; return tm }
	}
	return tm
}

func (tm *tamperMint) setHeader(key, value string) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if tm.header == nil {
		tm.header = http.Header{}
	}
	tm.header.Set(key, value)
}

func (tm *tamperMint) set(change func(map[string]any)) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	tm.change = change
}

// TestTokenWritesAcceptOnlyCanonicalSpelling (issue 8, finding 2): Vault's allowed_parameters and denied_parameters
// compare raw values, so a token write must not accept another spelling of something a policy names.
func TestTokenWritesAcceptOnlyCanonicalSpelling(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{
		"owner": "acme", "repositories": "api,Web", "repository_ids": "3003", "permissions": "contents=write,issues=read",
	})
	refused := []struct {
		name  string
		data  map[string]any
		wants []string
	}{
		{"owner prefix", map[string]any{"repositories": "acme/Web"}, []string{`"acme/Web"`, `"Web"`}},
		{"owner prefix upper case", map[string]any{"repositories": "ACME/Web"}, []string{`"ACME/Web"`, `"Web"`}},
		{"other case", map[string]any{"repositories": "web"}, []string{`"web"`, `"Web"`}},
		{"spaces in a list entry", map[string]any{"repositories": []any{" api"}}, []string{`" api"`, `"api"`}},
		{"upper-case level", map[string]any{"permissions": "contents=READ"}, []string{`"contents=READ"`, `"contents=read"`}},
		{"upper-case name", map[string]any{"permissions": "Contents=read"}, []string{`"Contents=read"`, `"contents=read"`}},
		{"spaces around =", map[string]any{"permissions": "contents = read"}, []string{`"contents = read"`, `"contents=read"`}},
		{"spaces in a list entry", map[string]any{"permissions": []any{"contents=read "}}, []string{`"contents=read "`, `"contents=read"`}},
		{"an object", map[string]any{"permissions": map[string]any{"contents": "read"}}, []string{"permissions", "name=level"}},
		{"hexadecimal id", map[string]any{"repository_ids": "0xBBB"}, []string{`"0xBBB"`, "decimal"}},
		{"leading zero", map[string]any{"repository_ids": "03003"}, []string{`"03003"`, "decimal"}},
		{"sign", map[string]any{"repository_ids": "+3003"}, []string{`"+3003"`, "decimal"}},
		// Through Vault a JSON number reaches the plugin as float64 (its gRPC boundary decodes request data without
		// json.Number); a policy never matches a number, whatever its value, so IDs are taken as strings alone.
		{"an ID as a JSON number", map[string]any{"repository_ids": []any{float64(3003)}}, []string{"3003", `"3003"`, "string"}},
		{"one JSON number", map[string]any{"repository_ids": float64(3003)}, []string{"3003", `"3003"`, "string"}},
		{"a JSON number among strings", map[string]any{"repository_ids": []any{"3001", float64(3003)}}, []string{`"3003"`, "string"}},
		{"a JSON number in a built-in's form", map[string]any{"repository_ids": []any{json.Number("3003")}}, []string{`"3003"`, "string"}},
		{"a fractional JSON number", map[string]any{"repository_ids": []any{3003.5}}, []string{"3003.5", "strings of digits"}},
		{"a JSON number past 2^53", map[string]any{"repository_ids": []any{1e20}}, []string{"1e+20", "strings of digits"}},
		{"a negative JSON number", map[string]any{"repository_ids": []any{float64(-3003)}}, []string{"-3003", "strings of digits"}},
	}
	for _, tt := range refused {
		t.Run("refused "+tt.name, func(t *testing.T) {
			before := e.gh.Stats().Calls[mintRoute]
			resp, err := e.do(logical.UpdateOperation, "token/ci", tt.data)
			status, msg := mustFail(t, resp, err)
			if status != 400 {
				t.Errorf("status %d, want 400", status)
			}
			wantContains(t, msg, tt.wants...)
			if e.gh.Stats().Calls[mintRoute] != before {
				t.Error("a refused write reached GitHub")
			}
		})
	}
	accepted := []struct {
		name  string
		data  map[string]any
		reach []string
	}{
		{"the role's spelling", map[string]any{"repositories": "Web"}, []string{"web"}},
		{"a comma list with spaces", map[string]any{"repositories": "api, Web", "permissions": "contents=read, issues=read"}, []string{"api", "web"}},
		{"a JSON list", map[string]any{"repositories": []any{"api"}, "permissions": []any{"contents=read"}}, []string{"api"}},
		{"an ID as a string", map[string]any{"repository_ids": "3003"}, []string{"infra"}},
		{"IDs as a JSON list of strings", map[string]any{"repository_ids": []any{"3003"}}, []string{"infra"}},
	}
	for _, tt := range accepted {
		t.Run("accepted "+tt.name, func(t *testing.T) {
			resp, err := e.do(logical.UpdateOperation, "token/ci", tt.data)
			mustOK(t, resp, err)
			if got := e.reach(resp.Data["token"].(string)); !reflect.DeepEqual(sorted(got), tt.reach) {
				t.Fatalf("token reaches %v, want %v", got, tt.reach)
			}
		})
	}
}

// TestUnboundedNarrowingInputRefused (issue 8, finding 5): an update caller cannot make the engine do work, or write
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

// TestOverGrantCheckFailsClosed (issue 8, finding 6): what the engine cannot rank or place counts as more than
// asked: an unknown level, or a repository of another account, also when GitHub's answer leaves other fields out.
// An answer that leaves out what the check needs (GitHub Enterprise Server has been seen to) is no over-grant, GitHub
// enforcing what was asked all the same, but it never passes silently: the token comes back with what was asked and a
// warning, and the engine logs it with the token's hash and counts it.
func TestOverGrantCheckFailsClosed(t *testing.T) {
	e := newTestEnv(t)
	tm := e.withTamper()
	e.configure(nil)
	e.role("byowner", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	e.role("byid", map[string]any{"installation_id": testOrgInstall, "repositories": "api", "permissions": "contents=read"})
	e.role("whole", map[string]any{"owner": "acme"})
	foreign := func(answer map[string]any) {
		repo := answer["repositories"].([]any)[0].(map[string]any)
		repo["full_name"] = "evil/api"
		repo["owner"] = map[string]any{"login": "evil", "id": 666, "type": "Organization"}
	}
	omit := func(fields ...string) func(map[string]any) {
		return func(answer map[string]any) {
			for _, f := range fields {
				delete(answer, f)
			}
		}
	}
	then := func(changes ...func(map[string]any)) func(map[string]any) {
		return func(answer map[string]any) {
			for _, c := range changes {
				c(answer)
			}
		}
	}
	set := func(field string, value any) func(map[string]any) {
		return func(answer map[string]any) { answer[field] = value }
	}
	overGrants := []struct {
		name, role string
		change     func(map[string]any)
		want       string
	}{
		{"a level the engine does not know", "byowner", func(a map[string]any) {
			a["permissions"].(map[string]any)["contents"] = "maintain"
		}, "permission contents=maintain"},
		{"another account's repository, owner role", "byowner", foreign, "repository evil/api"},
		{"another account's repository, installation role", "byid", foreign, "repository evil/api"},
		{"permissions left out, another account's repository", "byowner", then(foreign, omit("permissions")), "repository evil/api"},
		{"repository_selection left out, another account's repository", "byid", then(foreign, omit("repository_selection")), "repository evil/api"},
		{"repository_selection and repositories left out, a level above", "byowner",
			then(omit("repository_selection", "repositories"), set("permissions", map[string]any{"contents": "write"})), "permission contents=write"},
		{"permissions and repositories left out, every repository", "byowner",
			then(omit("permissions", "repositories"), set("repository_selection", "all")), `repository_selection "all"`},
	}
	for _, tt := range overGrants {
		t.Run(tt.name, func(t *testing.T) {
			tm.set(tt.change)
			defer tm.set(nil)
			issued := e.gh.Stats().TokensIssued
			resp, err := e.do(logical.ReadOperation, "token/"+tt.role, nil)
			status, msg := mustFail(t, resp, err)
			if status != 502 {
				t.Errorf("status %d, want 502", status)
			}
			wantContains(t, msg, "GitHub granted more than asked", tt.want)
			toks := e.gh.Tokens()
			if e.gh.Stats().TokensIssued != issued+1 || !toks[len(toks)-1].Revoked {
				t.Fatal("the over-broad token was not revoked")
			}
		})
	}

	unstatedCount := func(role string) float64 {
		return max(0, sample(parseMetrics(t, metricsText(t, e)), "github_app_unstated_scope_tokens_total", map[string]string{"role": role}))
	}
	asked := map[string]string{"contents": "read"}
	unstated := []struct {
		name, role string
		change     func(map[string]any)
		missing    []string
		// What the response says of the token's scope: what was asked where GitHub did not say.
		permissions map[string]string
		selection   string
		repos       []string
	}{
		{"permissions and repositories left out", "byowner", omit("permissions", "repositories"),
			[]string{"permissions", "repositories"}, asked, "selected", []string{"api"}},
		{"repository_selection left out", "byid", omit("repository_selection"),
			[]string{"repository_selection"}, map[string]string{"contents": "read", "metadata": "read"}, "selected", []string{"api"}},
		{"permissions null", "byid", set("permissions", nil), []string{"permissions"}, asked, "selected", []string{"api"}},
		{"every scope field left out", "byowner", omit("permissions", "repository_selection", "repositories"),
			[]string{"permissions", "repository_selection", "repositories"}, asked, "selected", []string{"api"}},
		{"every scope field left out, nothing limited", "whole", omit("permissions", "repository_selection", "repositories"),
			[]string{"permissions", "repository_selection"}, nil, "", []string{}},
	}
	for _, tt := range unstated {
		t.Run(tt.name, func(t *testing.T) {
			tm.set(tt.change)
			defer tm.set(nil)
			counted := unstatedCount(tt.role)
			resp, err := e.do(logical.ReadOperation, "token/"+tt.role, nil)
			mustOK(t, resp, err)
			if resp == nil || resp.Secret == nil {
				t.Fatalf("no token: %#v", resp)
			}
			if len(resp.Warnings) != 1 {
				t.Fatalf("warnings %q, want one saying that GitHub did not state the token's scope", resp.Warnings)
			}
			wantContains(t, resp.Warnings[0], append([]string{"GitHub's answer did not state the token's", "what was asked"}, tt.missing...)...)
			got := resp.Data
			if perms, _ := got["permissions"].(map[string]string); !maps.Equal(perms, tt.permissions) ||
				got["repository_selection"] != tt.selection || !slices.Equal(got["repositories"].([]string), tt.repos) {
				t.Errorf("the response states permissions %v, repository_selection %q, repositories %q; want %v, %q, %q",
					got["permissions"], got["repository_selection"], got["repositories"], tt.permissions, tt.selection, tt.repos)
			}
			tok := got["token"].(string)
			if info, _ := e.gh.Token(tok); info.Revoked {
				t.Error("the token was revoked")
			}
			logs := e.logs.String()
			wantContains(t, logs, "did not state", got["hashed_token"].(string))
			if strings.Contains(logs, tok) {
				t.Fatal("the token is in the log")
			}
			if n := unstatedCount(tt.role); n != counted+1 {
				t.Errorf("github_app_unstated_scope_tokens_total{role=%q} = %v, want %v", tt.role, n, counted+1)
			}
		})
	}
	t.Run("the emulator leaves the scope out", func(t *testing.T) {
		e.gh.SetFaults(fakegithub.Faults{OmitTokenScope: true})
		defer e.gh.SetFaults(fakegithub.Faults{})
		resp := e.mint("byid")
		if len(resp.Warnings) != 1 {
			t.Fatalf("warnings %q", resp.Warnings)
		}
		wantContains(t, resp.Warnings[0], "permissions, repository_selection, repositories")
		// What the response states is what GitHub enforces.
		if got := e.reach(resp.Data["token"].(string)); !slices.Equal(got, resp.Data["repositories"].([]string)) {
			t.Errorf("the token reaches %q; the response says %q", got, resp.Data["repositories"])
		}
	})
	t.Run("control", func(t *testing.T) {
		for _, role := range []string{"byowner", "byid", "whole"} {
			if resp := e.mint(role); len(resp.Warnings) > 0 {
				t.Errorf("%s: warnings %q", role, resp.Warnings)
			}
		}
	})
}

// TestMintRetriedAfterLostAnswer (issue 8, finding 7): a token request whose answer was lost (the connection broke
// after GitHub handled it) is retried. The token GitHub may have issued first is known to no one and dies within the
// hour; the engine counts it as a possible duplicate and says so in its log.
func TestMintRetriedAfterLostAnswer(t *testing.T) {
	e := newTestEnv(t)
	tm := e.withTamper()
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	e.mint("ci")
	e.gh.ResetStats()

	tm.mu.Lock()
	tm.lose = 1
	tm.mu.Unlock()
	resp := e.mint("ci")
	if st := e.gh.Stats(); st.Calls[mintRoute] != 2 || st.TokensIssued != 2 {
		t.Fatalf("GitHub saw %d token requests and issued %d tokens, want 2 and 2", st.Calls[mintRoute], st.TokensIssued)
	}
	if info, _ := e.gh.Token(resp.Data["token"].(string)); info.Revoked {
		t.Fatal("the returned token is revoked")
	}
	wantContains(t, e.logs.String(), "possible duplicate")
}

// TestOwnerRolePinsAccountID (issue 8, finding 11): an owner-bound role keeps the GitHub account its login named
// when it first minted. When the login later names another account (renamed, then reclaimed by someone else), the
// role refuses until an operator writes its owner again.
func TestOwnerRolePinsAccountID(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme"})
	first := e.mint("ci")
	if first.Data["installation_id"] != int64(testOrgInstall) {
		t.Fatalf("installation %v", first.Data["installation_id"])
	}

	// The same App on a GitHub where the login acme now belongs to account 777.
	const reclaimed = 2099
	gh2, srv2 := newEmulator(t, fakegithub.Fixture{
		Apps: []fakegithub.App{{ID: testAppID, ClientID: testClientID, Slug: "vault-test", Name: "Vault Test", Owner: "acme"}},
		Installations: []fakegithub.Installation{{
			ID: reclaimed, AppID: testAppID, Account: "acme", AccountID: 777, AccountType: "Organization",
			RepositorySelection: "all", Repositories: []fakegithub.Repository{{ID: 9001, Name: "trap"}},
			Permissions: map[string]string{"contents": "write", "metadata": "read"},
		}},
	})
	resp, err := e.do(logical.UpdateOperation, "config", map[string]any{"base_url": srv2.URL, "private_key": testKeyPEM})
	mustOK(t, resp, err)

	resp, err = e.do(logical.ReadOperation, "token/ci", nil)
	status, msg := mustFail(t, resp, err)
	if status != 403 {
		t.Errorf("status %d, want 403", status)
	}
	wantContains(t, msg, `owner "acme"`, "777", "write the role's owner again")
	if n := gh2.Stats().TokensIssued; n != 0 {
		t.Fatalf("%d tokens issued by the reclaimed account's installation", n)
	}

	e.role("ci", map[string]any{"owner": "acme"})
	if got := e.mint("ci").Data["installation_id"]; got != int64(reclaimed) {
		t.Fatalf("after the owner was written again, installation %v", got)
	}
	resp, err = e.do(logical.ReadOperation, "roles/ci", nil)
	mustOK(t, resp, err)
	if resp.Data["account_id"] != int64(777) {
		t.Fatalf("role read: account_id %v, want 777", resp.Data["account_id"])
	}
}

// TestTokenReadRefusesParameters (issue 8, finding 11): narrowing is a write, governed by the update capability;
// a read with query parameters is refused rather than narrowed quietly.
func TestTokenReadRefusesParameters(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api,web", "permissions": "contents=read"})
	resp, err := e.do(logical.ReadOperation, "token/ci", map[string]any{"repositories": "api"})
	status, msg := mustFail(t, resp, err)
	if status != 400 {
		t.Errorf("status %d, want 400", status)
	}
	wantContains(t, msg, "repositories", "vault write")
}

// TestBurstOfColdReads (issue 9): 200 concurrent first reads of an owner-bound role after a start share one owner
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
		served.Load(), st.Calls, st.MaxInFlight, st.DistinctJWTs, e.b.client.JWTSignatures())
	if served.Load() != 200 || st.Calls["GET /orgs/{org}/installation"] != 1 || st.Calls[mintRoute] != 200 {
		t.Fatalf("%d served; calls %v; want 200 served, 1 owner lookup, 200 mints", served.Load(), st.Calls)
	}
	if st.MaxInFlight > 8 || e.b.client.JWTSignatures() != 1 {
		t.Fatalf("%d in flight at GitHub (max 8), %d JWT signatures (want 1)", st.MaxInFlight, e.b.client.JWTSignatures())
	}
}

// TestRateLimitedMintSaysWhenToComeBack (issue 9): a limited App's mints fail at once with 429, a Retry-After header
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

// TestLowRateLimitWarns (issue 9): a mint while less than a tenth of the App's hourly limit remains says so.
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

const (
	listRoute   = "GET /installation/repositories"
	revokeRoute = "DELETE /installation/token"
)

// testClock is the backend's clock in tests that move time.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// listingTransport rewrites GitHub's answers to GET /installation/repositories: hide leaves a repository out of
// them, as a list read before the repository was added would; fail answers 404 instead.
type listingTransport struct {
	next http.RoundTripper
	mu   sync.Mutex
	hide string
	fail bool
}

func (lt *listingTransport) set(hide string, fail bool) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	lt.hide, lt.fail = hide, fail
}

func (lt *listingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	lt.mu.Lock()
	hide, fail := lt.hide, lt.fail
	lt.mu.Unlock()
	if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/installation/repositories") || (hide == "" && !fail) {
		return lt.next.RoundTrip(r)
	}
	if fail {
		body := `{"message":"Not Found","documentation_url":"https://docs.github.com/rest","status":"404"}`
		return &http.Response{StatusCode: http.StatusNotFound, Status: "404 Not Found", Request: r, ContentLength: int64(len(body)),
			Header: http.Header{"Content-Type": {"application/json; charset=utf-8"}}, Body: io.NopCloser(strings.NewReader(body))}, nil
	}
	resp, err := lt.next.RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	var answer map[string]any
	err = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	repos, _ := answer["repositories"].([]any)
	answer["repositories"] = slices.DeleteFunc(repos, func(r any) bool { return r.(map[string]any)["name"] == hide })
	body, _ := json.Marshal(answer)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return resp, nil
}

// withListing makes every client the backend builds from now on go through a listingTransport.
func (e *testEnv) withListing() *listingTransport {
	lt := &listingTransport{}
	e.b.clientOptions = func(o *github.Options) {
		o.WrapTransport = func(next http.RoundTripper) http.RoundTripper { lt.next = next; return lt }
	}
	return lt
}

// TestUnlimitedRoleTakesGitHubsSpelling: on a role without a repository limit, a token write names a repository
// exactly as GitHub spells it, capitals included; any other spelling is refused with GitHub's.
func TestUnlimitedRoleTakesGitHubsSpelling(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	if err := e.gh.AddInstallation(fakegithub.Installation{
		ID: 2100, AppID: testAppID, Account: "initech", AccountType: "Organization", RepositorySelection: "all",
		Repositories: []fakegithub.Repository{{ID: 6001, Name: "Docs.Site"}, {ID: 6002, Name: "TPS-reports"}},
		Permissions:  map[string]string{"contents": "read", "metadata": "read"},
	}); err != nil {
		t.Fatal(err)
	}
	e.role("open", map[string]any{"owner": "initech"})
	e.role("limited", map[string]any{"owner": "initech", "repositories": "docs.site"})

	resp, err := e.do(logical.UpdateOperation, "token/open", map[string]any{"repositories": "Docs.Site,TPS-reports"})
	mustOK(t, resp, err)
	if got := sorted(e.reach(resp.Data["token"].(string))); !reflect.DeepEqual(got, []string{"Docs.Site", "TPS-reports"}) {
		t.Fatalf("token reaches %v", got)
	}
	for _, tt := range []struct {
		data  map[string]any
		wants []string
	}{
		{map[string]any{"repositories": "docs.site"}, []string{`"docs.site"`, `"Docs.Site"`}},
		{map[string]any{"repositories": "Docs.Site,tps-REPORTS"}, []string{`"tps-REPORTS"`, `"TPS-reports"`}},
		{map[string]any{"repositories": []any{"DOCS.SITE", "tps-reports"}}, []string{`"DOCS.SITE"`, `"Docs.Site"`, `"tps-reports"`, `"TPS-reports"`}},
	} {
		before := e.gh.Tokens()
		resp, err := e.do(logical.UpdateOperation, "token/open", tt.data)
		status, msg := mustFail(t, resp, err)
		if status != 400 {
			t.Fatalf("%v: status %d, want 400", tt.data, status)
		}
		wantContains(t, msg, tt.wants...)
		e.noTokenSince(t, before)
	}

	// A role that lists repositories keeps to its own spelling, and never lists the installation's.
	e.gh.ResetStats()
	resp, err = e.do(logical.UpdateOperation, "token/limited", map[string]any{"repositories": "Docs.Site"})
	status, msg := mustFail(t, resp, err)
	if status != 400 {
		t.Fatalf("status %d, want 400", status)
	}
	wantContains(t, msg, `"Docs.Site"`, `"docs.site"`, "the role")
	resp, err = e.do(logical.UpdateOperation, "token/limited", map[string]any{"repositories": "docs.site"})
	mustOK(t, resp, err)
	if n := e.gh.Stats().Calls[listRoute]; n != 0 {
		t.Fatalf("a role that lists repositories made the engine list the installation's %d times", n)
	}
}

// TestUnlimitedRoleNarrowingCost: the spelling check costs one listing per installation and 5 minutes (a token
// minted for it, the list read, the token revoked). In steady state a narrowing by name is one GitHub call, and a
// read lists nothing. Names the list lacks make the engine list again at most once per 5 seconds, however many
// requests name them.
func TestUnlimitedRoleNarrowingCost(t *testing.T) {
	e := newTestEnv(t)
	clock := &testClock{now: time.Now()}
	e.b.now = clock.Now
	e.configure(nil)
	e.role("open", map[string]any{"owner": "acme"})
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api,web"})
	e.mint("open") // the installation is looked up and cached
	write := func(repos string) (*logical.Response, error) {
		return e.do(logical.UpdateOperation, "token/open", map[string]any{"repositories": repos})
	}

	t.Run("a read lists nothing", func(t *testing.T) {
		e.gh.ResetStats()
		for range 5 {
			e.mint("open")
		}
		resp, err := e.do(logical.UpdateOperation, "token/ci", map[string]any{"repositories": "api"})
		mustOK(t, resp, err)
		if st := e.gh.Stats(); st.TotalCalls != 6 || st.Calls[mintRoute] != 6 {
			t.Fatalf("5 reads and a narrowing on a limited role cost %v", st.Calls)
		}
	})
	t.Run("the first narrowing lists once", func(t *testing.T) {
		e.gh.ResetStats()
		resp, err := write("api")
		mustOK(t, resp, err)
		st := e.gh.Stats()
		if st.Calls[listRoute] != 1 || st.Calls[mintRoute] != 2 || st.Calls[revokeRoute] != 1 || st.TotalCalls != 4 {
			t.Fatalf("calls %v: want a token minted, the list read, the token revoked, and the mint", st.Calls)
		}
	})
	t.Run("steady state: one call a mint", func(t *testing.T) {
		e.gh.ResetStats()
		for i := range 20 {
			resp, err := write([]string{"api", "web,infra"}[i%2])
			mustOK(t, resp, err)
		}
		if st := e.gh.Stats(); st.TotalCalls != 20 || st.Calls[mintRoute] != 20 {
			t.Fatalf("20 narrowings cost %v", st.Calls)
		}
	})
	t.Run("unknown names list again at most once per 5 seconds", func(t *testing.T) {
		clock.advance(5 * time.Second)
		e.gh.ResetStats()
		for range 10 {
			resp, err := write("not-installed")
			status, msg := mustFail(t, resp, err)
			if status != 400 {
				t.Fatalf("status %d: %s", status, msg)
			}
		}
		if st := e.gh.Stats(); st.Calls[listRoute] != 1 || st.TotalCalls != 3 {
			t.Fatalf("10 writes of an unknown name cost %v: want one listing", st.Calls)
		}
		clock.advance(4 * time.Second)
		resp, err := write("not-installed")
		mustFail(t, resp, err)
		if n := e.gh.Stats().Calls[listRoute]; n != 1 {
			t.Fatalf("listed %d times within 5 seconds", n)
		}
		clock.advance(time.Second)
		resp, err = write("not-installed")
		mustFail(t, resp, err)
		if n := e.gh.Stats().Calls[listRoute]; n != 2 {
			t.Fatalf("listed %d times in 10 seconds, want 2", n)
		}
	})
	t.Run("the list is kept 5 minutes", func(t *testing.T) {
		clock.advance(5*time.Minute - time.Second)
		e.gh.ResetStats()
		resp, err := write("api")
		mustOK(t, resp, err)
		if n := e.gh.Stats().Calls[listRoute]; n != 0 {
			t.Fatalf("listed %d times within 5 minutes", n)
		}
		clock.advance(time.Second)
		resp, err = write("api")
		mustOK(t, resp, err)
		if n := e.gh.Stats().Calls[listRoute]; n != 1 {
			t.Fatalf("listed %d times after 5 minutes, want 1", n)
		}
	})
}

// TestRepositoryAddedAfterListing: a repository the engine's list lacks (added to the installation since) is not
// passed to GitHub in another spelling: within 5 seconds of a listing it is refused, then the engine lists again and
// holds it to GitHub's spelling.
func TestRepositoryAddedAfterListing(t *testing.T) {
	e := newTestEnv(t)
	lt := e.withListing()
	clock := &testClock{now: time.Now()}
	e.b.now = clock.Now
	e.configure(nil)
	e.role("open", map[string]any{"owner": "acme"})
	write := func(repos string) (*logical.Response, error) {
		return e.do(logical.UpdateOperation, "token/open", map[string]any{"repositories": repos})
	}

	lt.set("infra", false)
	resp, err := write("api")
	mustOK(t, resp, err)
	lt.set("", false)

	before := e.gh.Tokens()
	resp, err = write("INFRA")
	status, msg := mustFail(t, resp, err)
	if status != 400 {
		t.Fatalf("status %d", status)
	}
	wantContains(t, msg, `"INFRA"`, "not among the repositories", "again")
	e.noTokenSince(t, before)

	clock.advance(5 * time.Second)
	resp, err = write("INFRA")
	status, msg = mustFail(t, resp, err)
	if status != 400 {
		t.Fatalf("status %d", status)
	}
	wantContains(t, msg, `"INFRA"`, `"infra"`)
	e.noTokenSince(t, before)

	e.gh.ResetStats()
	resp, err = write("infra")
	mustOK(t, resp, err)
	if n := e.gh.Stats().Calls[listRoute]; n != 0 {
		t.Fatalf("listed %d times for a name the list now holds", n)
	}
	if got := e.reach(resp.Data["token"].(string)); !reflect.DeepEqual(got, []string{"infra"}) {
		t.Fatalf("token reaches %v", got)
	}
}

// TestRepositoryListingFailureMintsNothing: when the installation's repositories cannot be listed, a narrowing by
// name on a role without a repository limit fails: no token, and the one minted for the listing is revoked.
func TestRepositoryListingFailureMintsNothing(t *testing.T) {
	e := newTestEnv(t)
	lt := e.withListing()
	e.configure(nil)
	e.role("open", map[string]any{"owner": "acme"})
	lt.set("", true)
	before := e.gh.Tokens()
	resp, err := e.do(logical.UpdateOperation, "token/open", map[string]any{"repositories": "api"})
	_, msg := mustFail(t, resp, err)
	wantContains(t, msg, "listing the repositories", "GitHub answered 404")
	e.noTokenSince(t, before)
	if len(e.gh.Tokens()) == len(before) {
		t.Fatal("no listing was tried")
	}

	lt.set("", false)
	resp, err = e.do(logical.UpdateOperation, "token/open", map[string]any{"repositories": "api"})
	mustOK(t, resp, err)
}
