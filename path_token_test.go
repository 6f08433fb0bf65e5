package githubapp

import (
	"crypto/sha256"
	"encoding/base64"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/fakegithub"
)

const mintRoute = "POST /app/installations/{installation_id}/access_tokens"

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
	if want := []string{"base_url", "installation_id", "role", "secret_type", "token"}; !reflect.DeepEqual(keys, want) {
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

	t.Run("inside the role", func(t *testing.T) {
		resp, err := e.do(logical.UpdateOperation, "token/ci", map[string]any{
			"repositories": "acme/web", "permissions": "contents=read", "ttl": "5m",
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
		wantContains(t, msg, `did you mean "pull_requests"?`)
	})
	t.Run("role without repository limit accepts any name", func(t *testing.T) {
		resp, err := e.do(logical.UpdateOperation, "token/open", map[string]any{"repositories": "infra"})
		mustOK(t, resp, err)
		if got := e.reach(resp.Data["token"].(string)); !reflect.DeepEqual(got, []string{"infra"}) {
			t.Fatalf("token reaches %v", got)
		}
		// GitHub enforces the installation's reach.
		resp, err = e.do(logical.UpdateOperation, "token/open", map[string]any{"repositories": "not-installed"})
		status, msg := mustFail(t, resp, err)
		if status != 400 {
			t.Fatalf("status %d", status)
		}
		wantContains(t, msg, "There is at least one repository that does not exist or is not accessible to the parent installation.",
			"check the role's repositories")
	})
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
	e.sys.MaxLeaseTTLVal = 2 * time.Minute
	resp = e.mint("long")
	if resp.Secret.TTL != 2*time.Minute {
		t.Fatalf("lease TTL %s, want the mount's max 2m", resp.Secret.TTL)
	}
	wantContains(t, strings.Join(resp.Warnings, "\n"), "capped to the mount's max TTL")

	// No ttl on the role: the mount's default, silently.
	e.sys.MaxLeaseTTLVal, e.sys.DefaultLeaseTTLVal = time.Hour, 30*time.Minute
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
		{"unknown installation", map[string]any{"installation_id": 9999}, 404, []string{"installation 9999", "check the role's installation_id"}},
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
	wantContains(t, msg, "GitHub granted more than asked", "revoked", "permission contents=write", "repository web")
	toks := e.gh.Tokens()
	if len(toks) != 1 || !toks[0].Revoked {
		t.Fatalf("emulator tokens after an over-grant: %d, revoked=%v", len(toks), len(toks) == 1 && toks[0].Revoked)
	}
	if strings.Contains(msg, toks[0].Value) || strings.Contains(e.logs.String(), toks[0].Value) {
		t.Fatal("the over-broad token leaked into the error or the log")
	}
}

// TestTokenSteadyStateCalls: an owner-bound role costs one lookup, then one GitHub call per mint, and one JWT.
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
	if st.TotalCalls > 51 || st.Calls[mintRoute] != 50 {
		t.Fatalf("50 mints cost %d calls (%v), want at most 51", st.TotalCalls, st.Calls)
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
	e.b.installations.mu.Lock()
	e.b.installations.entries["octocat"] = installationEntry{id: 424242}
	e.b.installations.mu.Unlock()

	e.gh.ResetStats()
	resp := e.mint("ci")
	if resp.Data["installation_id"] != int64(testUserInstall) {
		t.Fatalf("minted from installation %v", resp.Data["installation_id"])
	}
	if st := e.gh.Stats(); st.Calls[mintRoute] != 2 || st.Calls["GET /users/{username}/installation"] != 1 {
		t.Fatalf("calls %v: want a failed mint, a lookup, a mint", st.Calls)
	}
	if id := e.b.installations.entries["octocat"].id; id != testUserInstall {
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

// TestConcurrentMintsDuringConfigRewrite: mints run while the config is rewritten back and forth between two
// base URLs of the same App. Each mint must use one config whole: its token works at the URL its lease names.
func TestConcurrentMintsDuringConfigRewrite(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	urls := []string{e.srv.URL, e.srv.URL + "/api/v3"}

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
			resp, err := e.do(logical.UpdateOperation, "config", map[string]any{"base_url": urls[i%2], "verify": i%3 == 0})
			if err != nil || (resp != nil && resp.IsError()) {
				t.Errorf("config rewrite: %v %v", resp, err)
				return
			}
		}
	}()
	var mints sync.WaitGroup
	results := make(chan *logical.Response, 50)
	for range 50 {
		mints.Add(1)
		go func() {
			defer mints.Done()
			resp, err := e.do(logical.ReadOperation, "token/ci", nil)
			if err != nil || resp == nil || resp.IsError() {
				t.Errorf("mint during rewrite: %v %v", resp, err)
				return
			}
			results <- resp
		}()
	}
	mints.Wait()
	close(stop)
	wg.Wait()
	close(results)
	n := 0
	for resp := range results {
		n++
		if base := resp.Secret.InternalData["base_url"]; !slices.Contains(urls, base.(string)) {
			t.Fatalf("lease names base URL %v", base)
		}
		if err := e.revoke(resp); err != nil {
			t.Fatalf("revoke: %v", err)
		}
	}
	if n != 50 {
		t.Fatalf("%d mints succeeded", n)
	}
	if st := e.gh.Stats(); st.TokensRevoked != 50 {
		t.Fatalf("%d of 50 tokens revoked", st.TokensRevoked)
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
		e.sys.DefaultLeaseTTLVal = 5 * time.Minute
		defer func() { e.sys.DefaultLeaseTTLVal = time.Hour }()
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
		e.sys.DefaultLeaseTTLVal = 768 * time.Hour
		defer func() { e.sys.DefaultLeaseTTLVal = time.Hour }()
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
		wantContains(t, msg, `permission contents has level "read,administration=write"`)
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
