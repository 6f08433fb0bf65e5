// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	otherAppID  = 1002
	globexID    = 2101 // app 1002 on globex, repository_selection "all": alpha, beta
	initechID   = 2102 // app 1001 on initech, repository_selection "all": one, two
	otherClient = "Iv23liFAKEAPP0002"
)

// testFixture is the demo fixture plus a second App and an "all repositories" installation.
func testFixture() Fixture {
	f := DemoFixture()
	f.Apps = append(f.Apps, App{ID: otherAppID, ClientID: otherClient, Slug: "other", Name: "Other", Owner: "globex"})
	f.Installations = append(f.Installations,
		Installation{
			ID: globexID, AppID: otherAppID, Account: "globex", AccountType: "Organization",
			RepositorySelection: "all",
			Repositories:        []Repository{{ID: 4001, Name: "alpha"}, {ID: 4002, Name: "beta"}},
			Permissions:         map[string]string{"contents": "read", "metadata": "read"},
		},
		Installation{
			ID: initechID, AppID: demoAppID, Account: "initech", AccountType: "Organization",
			RepositorySelection: "all",
			Repositories:        []Repository{{ID: 5001, Name: "one"}, {ID: 5002, Name: "two"}},
			Permissions:         map[string]string{"contents": "write", "metadata": "read", "administration": "write"},
		},
	)
	return f
}

func TestMintRefused(t *testing.T) {
	e := newEnvWith(t, testFixture())
	if err := e.srv.SetSuspended(octocatID, true); err != nil {
		t.Fatal(err)
	}
	many := make([]string, 501)
	for i := range many {
		many[i] = "api"
	}

	tests := []struct {
		name         string
		installation int64
		body         any
		status       int
		message      string
	}{
		{"unknown installation", 9999, nil, 404, msgNotFound},
		{"another app's installation", globexID, nil, 404, msgNotFound},
		{"suspended", octocatID, nil, 403, msgSuspended},
		{"unknown repository", acmeID, map[string]any{"repositories": []string{"nope"}}, 422, msgRepoInaccessible},
		{"owner/name", acmeID, map[string]any{"repositories": []string{"acme/api"}}, 422, msgRepoInaccessible},
		{"one good one bad", acmeID, map[string]any{"repositories": []string{"api", "nope"}}, 422, msgRepoInaccessible},
		{"unknown repository ID", acmeID, map[string]any{"repository_ids": []int64{9999}}, 422, msgRepoInaccessible},
		{"another installation's repository", acmeID, map[string]any{"repository_ids": []int64{3101}}, 422, msgRepoInaccessible},
		{"permission not granted", acmeID, map[string]any{"permissions": map[string]string{"administration": "read"}}, 422, msgPermNotGranted},
		{"unknown permission", acmeID, map[string]any{"permissions": map[string]string{"teleport": "read"}}, 422, msgPermNotGranted},
		{"level above granted", acmeID, map[string]any{"permissions": map[string]string{"actions": "write"}}, 422, msgPermLevel},
		{"level above granted among good ones", acmeID, map[string]any{"permissions": map[string]string{"contents": "read", "actions": "write"}}, 422, msgPermLevel},
		{"level the schema forbids", acmeID, map[string]any{"permissions": map[string]string{"contents": "admin"}}, 422,
			"Invalid request.\n\nFor 'properties/contents', \"admin\" is not one of [\"read\", \"write\"]."},
		{"level not a string", acmeID, map[string]any{"permissions": map[string]any{"contents": 2}}, 422,
			"Invalid request.\n\nFor 'properties/contents', 2 is not a string."},
		{"repositories not an array", acmeID, map[string]any{"repositories": "api"}, 422,
			"Invalid request.\n\nFor 'properties/repositories', \"api\" is not an array."},
		{"repository ID not an integer", acmeID, map[string]any{"repository_ids": []any{"3001"}}, 422,
			"Invalid request.\n\nFor 'items', \"3001\" is not an integer."},
		{"more than 500 repositories", acmeID, map[string]any{"repositories": many}, 422,
			"Too many repositories were requested. The maximum is 500 repositories and repository IDs together."},
		{"malformed JSON", acmeID, `{"repositories": [`, 400, msgProblemsParsingJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := fmt.Sprintf("/app/installations/%d/access_tokens", tt.installation)
			e.do(http.MethodPost, path, e.bearer(), tt.body).wantError(t, tt.status, tt.message)
		})
	}
	if n := len(e.srv.Tokens()); n != 0 {
		t.Errorf("%d tokens issued by refused requests", n)
	}
}

var classicTokenPattern = regexp.MustCompile(`^ghs_[A-Za-z0-9]{36}$`)

func TestMintSuccess(t *testing.T) {
	acmePerms := DemoFixture().Installations[0].Permissions
	tests := []struct {
		name          string
		installation  int64
		body          any
		wantPerms     map[string]string
		wantSelection string
		wantRepos     []string // in the answer's "repositories"; nil: no such key
		wantReach     []string // what GET /installation/repositories lists
	}{
		{
			name: "no body", installation: acmeID, body: nil,
			wantPerms: acmePerms, wantSelection: "selected",
			wantReach: []string{"api", "web", "infra"},
		},
		{
			name: "empty object", installation: acmeID, body: map[string]any{},
			wantPerms: acmePerms, wantSelection: "selected",
			wantReach: []string{"api", "web", "infra"},
		},
		{
			name: "names, case-insensitive", installation: acmeID,
			body:      map[string]any{"repositories": []string{"WEB", "api"}},
			wantPerms: acmePerms, wantSelection: "selected",
			wantRepos: []string{"api", "web"}, wantReach: []string{"api", "web"},
		},
		{
			name: "IDs", installation: acmeID,
			body:      map[string]any{"repository_ids": []int64{3003}},
			wantPerms: acmePerms, wantSelection: "selected",
			wantRepos: []string{"infra"}, wantReach: []string{"infra"},
		},
		{
			name: "names and IDs overlapping", installation: acmeID,
			body:      map[string]any{"repositories": []string{"api", "web"}, "repository_ids": []int64{3001}},
			wantPerms: acmePerms, wantSelection: "selected",
			wantRepos: []string{"api", "web"}, wantReach: []string{"api", "web"},
		},
		{
			name: "permissions narrowed: metadata:read comes along", installation: acmeID,
			body:      map[string]any{"permissions": map[string]string{"contents": "read"}},
			wantPerms: map[string]string{"contents": "read", "metadata": "read"}, wantSelection: "selected",
			wantReach: []string{"api", "web", "infra"},
		},
		{
			name: "permissions and repositories", installation: acmeID,
			body: map[string]any{
				"repositories": []string{"infra"},
				"permissions":  map[string]string{"issues": "write", "pull_requests": "read", "metadata": "read"},
			},
			wantPerms:     map[string]string{"issues": "write", "pull_requests": "read", "metadata": "read"},
			wantSelection: "selected",
			wantRepos:     []string{"infra"}, wantReach: []string{"infra"},
		},
		{
			name: "all-repositories installation, unscoped", installation: initechID, body: nil,
			wantPerms:     map[string]string{"contents": "write", "metadata": "read", "administration": "write"},
			wantSelection: "all",
			wantReach:     []string{"one", "two"},
		},
		{
			name: "all-repositories installation, scoped", installation: initechID,
			body:          map[string]any{"repositories": []string{"two"}},
			wantPerms:     map[string]string{"contents": "write", "metadata": "read", "administration": "write"},
			wantSelection: "selected",
			wantRepos:     []string{"two"}, wantReach: []string{"two"},
		},
		{
			name: "user account", installation: octocatID, body: nil,
			wantPerms: map[string]string{"contents": "read", "metadata": "read"}, wantSelection: "selected",
			wantReach: []string{"dotfiles"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnvWith(t, testFixture())
			before := time.Now()
			tok := e.mint(tt.installation, tt.body)

			if !classicTokenPattern.MatchString(tok.Token) {
				t.Errorf("token %q is not ghs_ and 36 alphanumerics", tok.Token)
			}
			if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`).MatchString(tok.ExpiresAt) {
				t.Errorf("expires_at %q is not RFC 3339 UTC in whole seconds", tok.ExpiresAt)
			}
			exp, err := time.Parse(time.RFC3339, tok.ExpiresAt)
			if err != nil {
				t.Fatal(err)
			}
			if d := exp.Sub(before); d < time.Hour-time.Second || d > time.Hour+3*time.Second {
				t.Errorf("expires_at is %v after the request, want an hour", d)
			}
			if !maps.Equal(tok.Permissions, tt.wantPerms) {
				t.Errorf("permissions = %v, want %v", tok.Permissions, tt.wantPerms)
			}
			if tok.RepositorySelection != tt.wantSelection {
				t.Errorf("repository_selection = %q, want %q", tok.RepositorySelection, tt.wantSelection)
			}
			var names []string
			for _, r := range tok.Repositories {
				names = append(names, r.Name)
				if !strings.HasSuffix(r.FullName, "/"+r.Name) || r.Owner.Login == "" || r.NodeID == "" {
					t.Errorf("repository object incomplete: %+v", r)
				}
			}
			if !slices.Equal(names, tt.wantRepos) {
				t.Errorf("repositories = %v, want %v", names, tt.wantRepos)
			}

			reach := e.reach(tok.Token)
			if !slices.Equal(reach.names, tt.wantReach) {
				t.Errorf("token reaches %v, want %v", reach.names, tt.wantReach)
			}
			if reach.selection != tt.wantSelection {
				t.Errorf("installation/repositories says repository_selection %q, want %q", reach.selection, tt.wantSelection)
			}

			info, ok := e.srv.Token(tok.Token)
			if !ok {
				t.Fatal("Token does not know the issued token")
			}
			if info.InstallationID != tt.installation || !info.ExpiresAt.Equal(exp) || !maps.Equal(info.Permissions, tt.wantPerms) {
				t.Errorf("TokenInfo = %+v", info)
			}
			if !slices.Equal(info.Repositories, tt.wantRepos) {
				t.Errorf("TokenInfo.Repositories = %v, want %v", info.Repositories, tt.wantRepos)
			}
		})
	}
}

type reach struct {
	names     []string
	ids       []int64
	selection string
	total     int
}

// reach lists, through GET /installation/repositories, every repository a token reaches.
func (e *testEnv) reach(token string) reach {
	e.t.Helper()
	var out reach
	for page := 1; ; page++ {
		resp := e.do(http.MethodGet, fmt.Sprintf("/installation/repositories?per_page=100&page=%d", page), "token "+token, nil)
		if resp.status != http.StatusOK {
			e.t.Fatalf("installation/repositories: %d %s", resp.status, resp.body)
		}
		var body tokenRepositoriesBody
		resp.decode(e.t, &body)
		out.selection, out.total = body.RepositorySelection, body.TotalCount
		for _, r := range body.Repositories {
			out.names = append(out.names, r.Name)
			out.ids = append(out.ids, r.ID)
		}
		if !strings.Contains(resp.header.Get("Link"), `rel="next"`) {
			return out
		}
	}
}

func TestTokenRevoked(t *testing.T) {
	e := newEnv(t)
	tok := e.mint(acmeID, nil)
	resp := e.do(http.MethodDelete, "/installation/token", "token "+tok.Token, nil)
	if resp.status != http.StatusNoContent || len(resp.body) != 0 {
		t.Fatalf("revoke: %d %q", resp.status, resp.body)
	}
	for _, auth := range []string{"token " + tok.Token, "Bearer " + tok.Token} {
		e.do(http.MethodGet, "/installation/repositories", auth, nil).wantError(t, 401, msgBadCredentials)
		e.do(http.MethodDelete, "/installation/token", auth, nil).wantError(t, 401, msgBadCredentials)
	}
	info, _ := e.srv.Token(tok.Token)
	if !info.Revoked || info.RevokedAt.IsZero() {
		t.Errorf("TokenInfo = %+v, want revoked", info)
	}
	// Other tokens are untouched.
	other := e.mint(acmeID, nil)
	if got := e.reach(other.Token); len(got.names) != 3 {
		t.Errorf("another token reaches %v", got.names)
	}
}

func TestTokenAuthentication(t *testing.T) {
	e := newEnv(t)
	tok := e.mint(acmeID, nil)
	tests := []struct {
		name    string
		auth    string
		status  int
		message string
	}{
		{"none", "", 401, msgRequiresAuth},
		{"unknown token", "token ghs_" + strings.Repeat("x", 36), 401, msgBadCredentials},
		{"basic scheme", "Basic " + tok.Token, 401, msgBadCredentials},
		{"app JWT", e.bearer(), 401, msgBadCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.do(http.MethodGet, "/installation/repositories", tt.auth, nil).wantError(t, tt.status, tt.message)
		})
	}
	for _, auth := range []string{"token " + tok.Token, "Bearer " + tok.Token, "TOKEN " + tok.Token} {
		if resp := e.do(http.MethodGet, "/installation/repositories", auth, nil); resp.status != 200 {
			t.Errorf("%s…: %d %s", auth[:6], resp.status, resp.body)
		}
	}
}

func TestTokenExpired(t *testing.T) {
	e := newEnv(t)
	tok := e.mint(acmeID, nil)

	// An hour and a bit later on GitHub's clock, the token is dead.
	e.srv.SetFaults(Faults{ClockOffset: time.Hour + time.Minute})
	e.do(http.MethodGet, "/installation/repositories", "token "+tok.Token, nil).wantError(t, 401, msgBadCredentials)
	e.do(http.MethodDelete, "/installation/token", "token "+tok.Token, nil).wantError(t, 401, msgBadCredentials)
	e.srv.SetFaults(Faults{})

	// A short lifetime gives short-lived tokens.
	e.srv.SetTokenLifetime(time.Second)
	short := e.mint(acmeID, nil)
	exp, _ := time.Parse(time.RFC3339, short.ExpiresAt)
	if d := time.Until(exp); d > 2*time.Second {
		t.Errorf("expires_at %v ahead, want at most 2s", d)
	}
	time.Sleep(time.Until(exp) + 50*time.Millisecond)
	e.do(http.MethodGet, "/installation/repositories", "token "+short.Token, nil).wantError(t, 401, msgBadCredentials)

	e.srv.SetTokenLifetime(0)
	dead := e.mint(acmeID, nil)
	e.do(http.MethodGet, "/installation/repositories", "token "+dead.Token, nil).wantError(t, 401, msgBadCredentials)
}

func TestTokenSuspended(t *testing.T) {
	e := newEnv(t)
	tok := e.mint(acmeID, nil)
	if err := e.srv.SetSuspended(acmeID, true); err != nil {
		t.Fatal(err)
	}
	e.do(http.MethodGet, "/installation/repositories", "token "+tok.Token, nil).wantError(t, 403, msgSuspended)
	e.do(http.MethodPost, "/app/installations/2001/access_tokens", e.bearer(), nil).wantError(t, 403, msgSuspended)

	if err := e.srv.SetSuspended(acmeID, false); err != nil {
		t.Fatal(err)
	}
	if resp := e.do(http.MethodGet, "/installation/repositories", "token "+tok.Token, nil); resp.status != 200 {
		t.Errorf("after unsuspending: %d %s", resp.status, resp.body)
	}
	if err := e.srv.SetSuspended(acmeID, true); err != nil {
		t.Fatal(err)
	}
	// Revocation still works, so that clients can clean up.
	if resp := e.do(http.MethodDelete, "/installation/token", "token "+tok.Token, nil); resp.status != 204 {
		t.Errorf("revoke while suspended: %d %s", resp.status, resp.body)
	}
	if err := e.srv.SetSuspended(9999, true); err == nil {
		t.Error("SetSuspended on an unknown installation succeeded")
	}
}

func TestLongTokens(t *testing.T) {
	check := func(t *testing.T, e *testEnv, token string) {
		t.Helper()
		if len(token) < 500 || !strings.Contains(token, ".") || !strings.HasPrefix(token, "ghs_1001_") {
			t.Errorf("token of %d characters %q…, want the long ghs_<app>_<JWT> form", len(token), token[:20])
		}
		for _, auth := range []string{"token " + token, "Bearer " + token} {
			if got := e.reach(token); len(got.names) != 3 {
				t.Errorf("%s: reaches %v", auth[:6], got.names)
			}
		}
		if resp := e.do(http.MethodDelete, "/installation/token", "Bearer "+token, nil); resp.status != 204 {
			t.Errorf("revoke: %d %s", resp.status, resp.body)
		}
		e.do(http.MethodGet, "/installation/repositories", "token "+token, nil).wantError(t, 401, msgBadCredentials)
	}
	t.Run("header", func(t *testing.T) {
		e := newEnv(t)
		check(t, e, e.mint(acmeID, nil, withHeader("X-GitHub-Stateless-S2S-Token", "enabled")).Token)
		if tok := e.mint(acmeID, nil).Token; !classicTokenPattern.MatchString(tok) {
			t.Errorf("without the header: %q", tok)
		}
	})
	t.Run("fault", func(t *testing.T) {
		e := newEnv(t)
		e.srv.SetFaults(Faults{LongTokens: true})
		check(t, e, e.mint(acmeID, nil).Token)
	})
}

func TestOverGrant(t *testing.T) {
	e := newEnv(t)
	e.srv.SetFaults(Faults{OverGrant: true})
	tok := e.mint(acmeID, map[string]any{
		"repositories": []string{"api"},
		"permissions":  map[string]string{"contents": "read"},
	})
	if want := DemoFixture().Installations[0].Permissions; !maps.Equal(tok.Permissions, want) {
		t.Errorf("permissions = %v, want everything: %v", tok.Permissions, want)
	}
	var names []string
	for _, r := range tok.Repositories {
		names = append(names, r.Name)
	}
	if want := []string{"api", "web", "infra"}; !slices.Equal(names, want) {
		t.Errorf("repositories = %v, want %v", names, want)
	}
	if got := e.reach(tok.Token); len(got.names) != 3 {
		t.Errorf("reaches %v, want all three", got.names)
	}
	// Refusals still happen: over-granting is about what a valid request gets.
	e.do(http.MethodPost, "/app/installations/2001/access_tokens", e.bearer(),
		map[string]any{"repositories": []string{"nope"}}).wantError(t, 422, msgRepoInaccessible)
}

func TestOmitTokenScope(t *testing.T) {
	e := newEnv(t)
	e.srv.SetFaults(Faults{OmitTokenScope: true})
	resp := e.do(http.MethodPost, "/app/installations/2001/access_tokens", e.bearer(), map[string]any{
		"repositories": []string{"api"},
		"permissions":  map[string]string{"contents": "read"},
	})
	if resp.status != http.StatusCreated {
		t.Fatalf("status %d: %s", resp.status, resp.body)
	}
	var answer map[string]any
	resp.decode(t, &answer)
	if keys := slices.Sorted(maps.Keys(answer)); !slices.Equal(keys, []string{"expires_at", "token"}) {
		t.Errorf("the answer states %v, want only expires_at and token", keys)
	}
	// GitHub enforces what was asked all the same.
	if got := e.reach(answer["token"].(string)); !slices.Equal(got.names, []string{"api"}) {
		t.Errorf("reaches %v, want [api]", got.names)
	}

	e.srv.SetFaults(Faults{})
	if tok := e.mint(acmeID, map[string]any{"repositories": []string{"api"}}); tok.Permissions == nil || tok.RepositorySelection != "selected" || len(tok.Repositories) != 1 {
		t.Errorf("without the fault: %+v", tok)
	}
}

func TestReachPagination(t *testing.T) {
	f := DemoFixture()
	f.Installations[0].Repositories = nil
	for i := 1; i <= 5; i++ {
		f.Installations[0].Repositories = append(f.Installations[0].Repositories, Repository{ID: int64(3000 + i), Name: fmt.Sprintf("r%d", i)})
	}
	e := newEnvWith(t, f)
	tok := e.mint(acmeID, nil)
	var names []string
	for page := 1; page <= 3; page++ {
		resp := e.do(http.MethodGet, fmt.Sprintf("/installation/repositories?per_page=2&page=%d", page), "token "+tok.Token, nil)
		var body tokenRepositoriesBody
		resp.decode(t, &body)
		if body.TotalCount != 5 {
			t.Errorf("page %d: total_count %d, want 5", page, body.TotalCount)
		}
		for _, r := range body.Repositories {
			names = append(names, r.Name)
		}
		hasNext := strings.Contains(resp.header.Get("Link"), `rel="next"`)
		if hasNext != (page < 3) {
			t.Errorf("page %d: Link %q", page, resp.header.Get("Link"))
		}
	}
	if want := []string{"r1", "r2", "r3", "r4", "r5"}; !slices.Equal(names, want) {
		t.Errorf("pages hold %v, want %v", names, want)
	}
}
