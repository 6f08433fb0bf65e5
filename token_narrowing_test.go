// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

func TestTokenNarrowing(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{
		"owner": "acme", "repositories": "api,web", "repository_ids": "3003",
		"permissions": "contents=write,issues=read", "ttl": "20m",
	})

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
}

// TestNarrowingRefusesAnotherOwnersRepository: on an owner-bound role, a repository written with another owner is
// outside the role, not read as the role owner's repository of that name.
func TestNarrowingRefusesAnotherOwnersRepository(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})

	resp, err := e.do(logical.UpdateOperation, "token/ci", map[string]any{"repositories": "evil/api"})
	status, msg := mustFail(t, resp, err)
	if status != 403 {
		t.Fatalf("status %d: %s", status, msg)
	}
	wantContains(t, msg, `repository "evil/api"`)
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

const (
	listRoute   = "GET /installation/repositories"
	revokeRoute = "DELETE /installation/token"
)

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

// TestUnlimitedRoleTakesGitHubsSpelling: on a role without a repository limit (bound by owner or by installation), a
// token write names a repository exactly as GitHub spells it, capitals included; any other spelling is refused with
// GitHub's (a policy that denies a name compares raw values, GitHub ignores case), and a name the installation lacks
// is refused, without a token.
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
	e.role("acme", map[string]any{"owner": "acme"})
	e.role("acmebyid", map[string]any{"installation_id": testOrgInstall})

	for _, tt := range []struct {
		role  string
		data  map[string]any
		reach []string
	}{
		{"acme", map[string]any{"repositories": "infra"}, []string{"infra"}},
		{"acmebyid", map[string]any{"repositories": "infra"}, []string{"infra"}},
		{"open", map[string]any{"repositories": "Docs.Site,TPS-reports"}, []string{"Docs.Site", "TPS-reports"}},
	} {
		resp, err := e.do(logical.UpdateOperation, "token/"+tt.role, tt.data)
		mustOK(t, resp, err)
		if got := sorted(e.reach(resp.Data["token"].(string))); !reflect.DeepEqual(got, tt.reach) {
			t.Fatalf("%s: token reaches %v", tt.role, got)
		}
	}
	for _, tt := range []struct {
		role  string
		data  map[string]any
		wants []string
	}{
		{"acme", map[string]any{"repositories": "Infra"}, []string{`"infra"`, "GitHub"}},
		{"acme", map[string]any{"repositories": "INFRA"}, []string{`"infra"`, "GitHub"}},
		{"acme", map[string]any{"repositories": "api,iNfRa"}, []string{`"infra"`, "GitHub"}},
		{"acme", map[string]any{"repositories": []any{"api", "INFRA"}}, []string{`"infra"`, "GitHub"}},
		{"acmebyid", map[string]any{"repositories": "Infra"}, []string{`"infra"`, "GitHub"}},
		{"acmebyid", map[string]any{"repositories": "INFRA"}, []string{`"infra"`, "GitHub"}},
		{"acmebyid", map[string]any{"repositories": "api,iNfRa"}, []string{`"infra"`, "GitHub"}},
		{"acmebyid", map[string]any{"repositories": []any{"api", "INFRA"}}, []string{`"infra"`, "GitHub"}},
		{"acme", map[string]any{"repositories": "not-installed"}, []string{`"not-installed"`, "not among the repositories"}},
		{"open", map[string]any{"repositories": "docs.site"}, []string{`"docs.site"`, `"Docs.Site"`}},
		{"open", map[string]any{"repositories": "Docs.Site,tps-REPORTS"}, []string{`"tps-REPORTS"`, `"TPS-reports"`}},
		{"open", map[string]any{"repositories": []any{"DOCS.SITE", "tps-reports"}}, []string{`"DOCS.SITE"`, `"Docs.Site"`, `"tps-reports"`, `"TPS-reports"`}},
	} {
		before := e.gh.Tokens()
		resp, err := e.do(logical.UpdateOperation, "token/"+tt.role, tt.data)
		status, msg := mustFail(t, resp, err)
		if status != 400 {
			t.Fatalf("%s %v: status %d, want 400", tt.role, tt.data, status)
		}
		wantContains(t, msg, tt.wants...)
		e.noTokenSince(t, before)
	}

	// A role that lists repositories keeps to its own spelling, and never lists the installation's.
	e.gh.ResetStats()
	resp, err := e.do(logical.UpdateOperation, "token/limited", map[string]any{"repositories": "Docs.Site"})
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
