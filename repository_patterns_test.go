// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

// patternEnv is a configured backend on a moving clock whose acme installation also holds team-a-api, team-a-web
// and team-b-api.
func patternEnv(t *testing.T) (*testEnv, *testClock) {
	t.Helper()
	e := newTestEnv(t)
	clock := &testClock{now: time.Now()}
	e.b.now = clock.Now
	for _, name := range []string{"team-a-api", "Team-A-Web", "team-b-api"} {
		if _, err := e.gh.AddRepository(testOrgInstall, fakegithub.Repository{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	e.configure(nil)
	return e, clock
}

// TestRepositoryPatternsRoleWrite: patterns are checked with path.Match's syntax, hold no '/', no template on any
// role, at most 500 of them; a role read shows them, and a pattern role limits repositories.
func TestRepositoryPatternsRoleWrite(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.do(logical.UpdateOperation, "roles/p", map[string]any{"owner": "acme", "repository_patterns": "team-a-*, team-?-api,team-a-*", "permissions": "contents=read"})
	mustOK(t, resp, err)
	if resp != nil {
		for _, w := range resp.Warnings {
			if strings.Contains(w, "every repository") {
				t.Errorf("a pattern role is warned of reaching every repository: %q", w)
			}
		}
	}
	resp, err = e.do(logical.ReadOperation, "roles/p", nil)
	mustOK(t, resp, err)
	if got := resp.Data["repository_patterns"]; !reflect.DeepEqual(got, []string{"team-a-*", "team-?-api"}) {
		t.Fatalf("repository_patterns read as %#v", got)
	}

	many := make([]string, 501)
	for i := range many {
		many[i] = fmt.Sprintf("p%d-*", i)
	}
	tests := []struct {
		name  string
		data  map[string]any
		wants []string
	}{
		{"malformed", map[string]any{"repository_patterns": "team-[a"}, []string{"repository_patterns", `"team-[a"`, "malformed"}},
		{"owner in a pattern", map[string]any{"repository_patterns": "acme/team-*"}, []string{`"acme/team-*"`, "'/'"}},
		{"template on a plain role", map[string]any{"repository_patterns": "{{identity.entity.name}}-*"}, []string{"repository_patterns", "template", "cannot"}},
		{"template on a templated role", map[string]any{"templated": true, "repository_patterns": "{{identity.entity.name}}-*"}, []string{"repository_patterns", "template", "cannot"}},
		{"too many", map[string]any{"repository_patterns": many}, []string{"repository_patterns", "501", "500"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := map[string]any{"owner": "acme"}
			for k, v := range tt.data {
				data[k] = v
			}
			resp, err := e.do(logical.UpdateOperation, "roles/p", data)
			status, msg := mustFail(t, resp, err)
			if status != 400 {
				t.Fatalf("status %d: %s", status, msg)
			}
			wantContains(t, msg, tt.wants...)
			// A refused write leaves the role as it was.
			resp, err = e.do(logical.ReadOperation, "roles/p", nil)
			mustOK(t, resp, err)
			if got := resp.Data["repository_patterns"]; !reflect.DeepEqual(got, []string{"team-a-*", "team-?-api"}) {
				t.Fatalf("repository_patterns became %#v", got)
			}
		})
	}
}

// TestRepositoryPatternsMint: a read mints exactly the repositories that match (GitHub's spelling, case ignored in
// matching) plus the role's named ones; a pattern that matches nothing, or more than 500 matches, is a 403 and no
// token.
func TestRepositoryPatternsMint(t *testing.T) {
	e, _ := patternEnv(t)
	e.role("a", map[string]any{"owner": "acme", "repository_patterns": "team-a-*", "permissions": "contents=read"})
	resp := e.mint("a")
	want := []string{"Team-A-Web", "team-a-api"}
	if got := sorted(e.reach(resp.Data["token"].(string))); !reflect.DeepEqual(got, want) {
		t.Fatalf("token reaches %v, want %v", got, want)
	}
	if got := sorted(resp.Data["repositories"].([]string)); !reflect.DeepEqual(got, want) {
		t.Fatalf("response names %v, want %v", got, want)
	}

	e.role("mixed", map[string]any{"installation_id": testOrgInstall, "repository_patterns": "team-b-*", "repositories": "api", "repository_ids": "3003"})
	resp = e.mint("mixed")
	if got := sorted(e.reach(resp.Data["token"].(string))); !reflect.DeepEqual(got, []string{"api", "infra", "team-b-api"}) {
		t.Fatalf("token reaches %v", got)
	}

	e.role("none", map[string]any{"owner": "acme", "repository_patterns": "team-a-*,team-z-*"})
	before := e.gh.Tokens()
	resp, err := e.do(logical.ReadOperation, "token/none", nil)
	status, msg := mustFail(t, resp, err)
	if status != http.StatusForbidden {
		t.Fatalf("status %d: %s", status, msg)
	}
	wantContains(t, msg, `"team-z-*"`, "matches none")
	if strings.Contains(msg, `"team-a-*"`) {
		t.Errorf("the pattern that matches is named too: %s", msg)
	}
	e.noTokenSince(t, before)
}

// TestRepositoryPatternsTooManyMatches: more matches than GitHub takes in one token is a clear 403.
func TestRepositoryPatternsTooManyMatches(t *testing.T) {
	e, _ := patternEnv(t)
	for i := range 501 {
		if _, err := e.gh.AddRepository(testOrgInstall, fakegithub.Repository{Name: fmt.Sprintf("svc-%03d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	e.role("svc", map[string]any{"owner": "acme", "repository_patterns": "svc-*"})
	before := e.gh.Tokens()
	resp, err := e.do(logical.ReadOperation, "token/svc", nil)
	status, msg := mustFail(t, resp, err)
	if status != http.StatusForbidden {
		t.Fatalf("status %d: %s", status, msg)
	}
	wantContains(t, msg, "501 repositories", "500")
	e.noTokenSince(t, before)

	// Narrowing to some of them is fine.
	resp, err = e.do(logical.UpdateOperation, "token/svc", map[string]any{"repositories": "svc-007,svc-500"})
	mustOK(t, resp, err)
}

// TestRepositoryPatternsNarrowing: a token write may name any repository that matches, in GitHub's spelling; a
// name that matches no pattern is a 403, another spelling a 400 with GitHub's, an unknown matching name a 400.
func TestRepositoryPatternsNarrowing(t *testing.T) {
	e, _ := patternEnv(t)
	e.role("a", map[string]any{"owner": "acme", "repository_patterns": "team-a-*", "repositories": "api"})
	write := func(repos string) (*logical.Response, error) {
		return e.do(logical.UpdateOperation, "token/a", map[string]any{"repositories": repos})
	}
	resp, err := write("Team-A-Web,api")
	mustOK(t, resp, err)
	if got := sorted(e.reach(resp.Data["token"].(string))); !reflect.DeepEqual(got, []string{"Team-A-Web", "api"}) {
		t.Fatalf("token reaches %v", got)
	}

	tests := []struct {
		repos  string
		status int
		wants  []string
	}{
		{"team-b-api", http.StatusForbidden, []string{`repository "team-b-api"`}},
		{"web", http.StatusForbidden, []string{`repository "web"`}},
		{"team-a-web", http.StatusBadRequest, []string{`"team-a-web"`, `"Team-A-Web"`}},
		{"team-a-gone", http.StatusBadRequest, []string{`"team-a-gone"`, "not among the repositories"}},
	}
	for _, tt := range tests {
		t.Run(tt.repos, func(t *testing.T) {
			before := e.gh.Tokens()
			resp, err := write(tt.repos)
			status, msg := mustFail(t, resp, err)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, msg)
			}
			wantContains(t, msg, tt.wants...)
			e.noTokenSince(t, before)
		})
	}
}

// TestRepositoryPatternsFollowTheInstallation: a repository created while the list is cached is found once the list
// is older than repository_list_ttl, or at once by a narrowing that names it (after the 5-second re-list bound); one
// deleted is no longer minted.
func TestRepositoryPatternsFollowTheInstallation(t *testing.T) {
	e, clock := patternEnv(t)
	resp, err := e.do(logical.UpdateOperation, "config", map[string]any{"repository_list_ttl": "1m"})
	mustOK(t, resp, err)
	resp, err = e.do(logical.ReadOperation, "config", nil)
	mustOK(t, resp, err)
	if got := resp.Data["repository_list_ttl"]; got != int64(60) {
		t.Fatalf("config read shows repository_list_ttl %#v", got)
	}
	e.role("a", map[string]any{"owner": "acme", "repository_patterns": "team-a-*"})
	reached := func() []string {
		t.Helper()
		return sorted(e.reach(e.mint("a").Data["token"].(string)))
	}
	if got := reached(); !reflect.DeepEqual(got, []string{"Team-A-Web", "team-a-api"}) {
		t.Fatalf("token reaches %v", got)
	}
	if _, err := e.gh.AddRepository(testOrgInstall, fakegithub.Repository{Name: "team-a-new"}); err != nil {
		t.Fatal(err)
	}
	clock.advance(59 * time.Second)
	if got := reached(); !reflect.DeepEqual(got, []string{"Team-A-Web", "team-a-api"}) {
		t.Fatalf("within the list's TTL the token reaches %v", got)
	}
	clock.advance(time.Second)
	if got := reached(); !reflect.DeepEqual(got, []string{"Team-A-Web", "team-a-api", "team-a-new"}) {
		t.Fatalf("after the list's TTL the token reaches %v", got)
	}

	if err := e.gh.RemoveRepository(testOrgInstall, "team-a-api"); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Minute)
	if got := reached(); !reflect.DeepEqual(got, []string{"Team-A-Web", "team-a-new"}) {
		t.Fatalf("after a deletion the token reaches %v", got)
	}

	// A narrowing that names a repository the cached list lacks lists again (at most every 5 seconds).
	if _, err := e.gh.AddRepository(testOrgInstall, fakegithub.Repository{Name: "team-a-newer"}); err != nil {
		t.Fatal(err)
	}
	clock.advance(5 * time.Second)
	resp, err = e.do(logical.UpdateOperation, "token/a", map[string]any{"repositories": "team-a-newer"})
	mustOK(t, resp, err)
	if got := e.reach(resp.Data["token"].(string)); !reflect.DeepEqual(got, []string{"team-a-newer"}) {
		t.Fatalf("token reaches %v", got)
	}
}

// TestRepositoryListTTLConfig: repository_list_ttl defaults to 5m and is at least 1s.
func TestRepositoryListTTLConfig(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	resp, err := e.do(logical.ReadOperation, "config", nil)
	mustOK(t, resp, err)
	if got := resp.Data["repository_list_ttl"]; got != int64(300) {
		t.Fatalf("default repository_list_ttl %#v", got)
	}
	resp, err = e.do(logical.UpdateOperation, "config", map[string]any{"repository_list_ttl": "500ms"})
	_, msg := mustFail(t, resp, err)
	wantContains(t, msg, "repository_list_ttl", "at least 1s")
	resp, err = e.do(logical.UpdateOperation, "config", map[string]any{"repository_list_ttl": "0"})
	_, msg = mustFail(t, resp, err)
	wantContains(t, msg, "repository_list_ttl")
}

// TestRepositoryPatternsSteadyState: with the list cached, a pattern mint is one GitHub call; the first lists once.
func TestRepositoryPatternsSteadyState(t *testing.T) {
	for _, binding := range []map[string]any{{"owner": "acme"}, {"installation_id": testOrgInstall}} {
		t.Run(fmt.Sprint(binding), func(t *testing.T) {
			e, _ := patternEnv(t)
			data := map[string]any{"repository_patterns": "team-a-*"}
			for k, v := range binding {
				data[k] = v
			}
			e.role("a", data)
			e.mint("a")
			e.gh.ResetStats()
			for range 10 {
				e.mint("a")
			}
			resp, err := e.do(logical.UpdateOperation, "token/a", map[string]any{"repositories": "team-a-api"})
			mustOK(t, resp, err)
			if st := e.gh.Stats(); st.TotalCalls != 11 || st.Calls[mintRoute] != 11 {
				t.Fatalf("11 warm mints cost %v", st.Calls)
			}
		})
	}
}

// TestAccountWidePermissionsWarning: a role limited to some repositories that grants account-wide permissions is
// stored with a warning naming them.
func TestAccountWidePermissionsWarning(t *testing.T) {
	e := newTestEnv(t)
	tests := []struct {
		name string
		data map[string]any
		want []string // account-wide permissions the warning names; none: no warning
	}{
		{"repositories", map[string]any{"repositories": "api", "permissions": "contents=read,members=read,organization_secrets=write"}, []string{"members", "organization_secrets"}},
		{"repository_ids", map[string]any{"repository_ids": "3001", "permissions": "organization_administration=read"}, []string{"organization_administration"}},
		{"patterns", map[string]any{"repository_patterns": "team-*", "permissions": "members=read"}, []string{"members"}},
		{"repository permissions only", map[string]any{"repositories": "api", "permissions": "contents=read"}, nil},
		{"no repository limit", map[string]any{"permissions": "members=read"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := map[string]any{"owner": "acme"}
			for k, v := range tt.data {
				data[k] = v
			}
			resp, err := e.do(logical.UpdateOperation, "roles/w-"+strings.ReplaceAll(tt.name, " ", "-"), data)
			mustOK(t, resp, err)
			var warning string
			if resp != nil {
				for _, w := range resp.Warnings {
					if strings.Contains(w, "not limited by the repositories") {
						warning = w
					}
				}
			}
			if len(tt.want) == 0 {
				if warning != "" {
					t.Fatalf("unexpected warning %q", warning)
				}
				return
			}
			if warning == "" {
				t.Fatalf("no account-wide warning in %v", resp)
			}
			wantContains(t, warning, tt.want...)
			if strings.Contains(warning, "contents") {
				t.Errorf("warning names a repository permission: %q", warning)
			}
		})
	}
}

// TestRepositoryPatternsOverGrantIsRevoked: the over-grant check holds the token to the repositories the patterns
// resolved to: GitHub granting one more is a 502 and the token is revoked.
func TestRepositoryPatternsOverGrantIsRevoked(t *testing.T) {
	e, _ := patternEnv(t)
	e.role("a", map[string]any{"owner": "acme", "repository_patterns": "team-a-*", "permissions": "contents=read"})
	e.gh.SetFaults(fakegithub.Faults{OverGrant: true})
	resp, err := e.do(logical.ReadOperation, "token/a", nil)
	status, msg := mustFail(t, resp, err)
	if status != http.StatusBadGateway {
		t.Fatalf("status %d: %s", status, msg)
	}
	wantContains(t, msg, "GitHub granted more than asked", "revoked")
	for _, tok := range e.gh.Tokens() {
		if !tok.Revoked {
			t.Fatalf("a token is live after an over-grant: %+v", tok.Repositories)
		}
	}
}

// TestRepositoryPatternsOnTemplatedRole: a templated role may hold literal patterns beside its templates: each caller
// gets its rendered repository and every repository that matches.
func TestRepositoryPatternsOnTemplatedRole(t *testing.T) {
	e := newIdentityEnv(t)
	if _, err := e.gh.AddRepository(testOrgInstall, fakegithub.Repository{Name: "shared-tools"}); err != nil {
		t.Fatal(err)
	}
	e.configure(nil)
	e.role("ci", map[string]any{"templated": true, "owner": "acme", "repositories": tplRepository,
		"repository_patterns": "shared-*", "permissions": "contents=read"})
	for entity, want := range map[string][]string{"api": {"api", "shared-tools"}, "web": {"shared-tools", "web"}} {
		if got := sorted(e.mintAs(entity, "ci")); !reflect.DeepEqual(got, want) {
			t.Fatalf("as %s the token reaches %v, want %v", entity, got, want)
		}
	}
}
