// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github_test

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

// Every API call against the emulator, through the contract check (see harness_test.go).

func TestApp(t *testing.T) {
	t.Parallel()
	// GitHub accepts the App's numeric ID or its client ID as the JWT issuer; the client ID wins when both are set.
	tests := []struct {
		name     string
		appID    int64
		clientID string
		wantIss  any // the iss claim as decoded from JSON
	}{
		{name: "app ID", appID: testAppID, wantIss: float64(testAppID)},
		{name: "client ID", clientID: testClientID, wantIss: testClientID},
		{name: "both", appID: testAppID, clientID: testClientID, wantIss: testClientID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			c := h.newClient(t, func(o *github.Options) { o.AppID, o.ClientID = tt.appID, tt.clientID })
			app, err := c.App(t.Context())
			if err != nil {
				t.Fatalf("App: %v", err)
			}
			if app.ID != testAppID || app.ClientID != testClientID || app.Slug != "vault-test" ||
				app.Name != "Vault Test" || app.Owner.Login != "acme" || app.Owner.Type != "Organization" {
				t.Fatalf("App = %+v", *app)
			}
			reqs := h.log.all()
			if len(reqs) != 1 {
				t.Fatalf("the emulator saw %d requests, want 1", len(reqs))
			}
			raw, ok := strings.CutPrefix(reqs[0].Header.Get("Authorization"), "Bearer ")
			if !ok {
				t.Fatalf("Authorization header is not a Bearer JWT")
			}
			claims := jwt.MapClaims{}
			if _, _, err := jwt.NewParser().ParseUnverified(raw, claims); err != nil {
				t.Fatalf("the JWT does not parse: %v", err)
			}
			if claims["iss"] != tt.wantIss {
				t.Fatalf("iss = %#v, want %#v", claims["iss"], tt.wantIss)
			}
			// SPEC §4: iat one minute back, nine minutes of life, whole seconds.
			iat, exp := claims["iat"].(float64), claims["exp"].(float64)
			if exp-iat != (github.JWTBackdate + github.JWTLifetime).Seconds() {
				t.Fatalf("exp - iat = %vs, want %vs", exp-iat, (github.JWTBackdate + github.JWTLifetime).Seconds())
			}
			if d := time.Since(time.Unix(int64(iat), 0)); d < 55*time.Second || d > 65*time.Second {
				t.Fatalf("iat is %s in the past, want about a minute", d)
			}
		})
	}
}

func TestInstallations(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newClient(t)
	all, complete, err := c.Installations(t.Context())
	if err != nil || !complete {
		t.Fatalf("Installations: complete %v, %v", complete, err)
	}
	var ids []int64
	for _, in := range all {
		ids = append(ids, in.ID)
	}
	if want := []int64{orgInstallation, userInstallation, suspendedInstall}; !slices.Equal(ids, want) {
		t.Fatalf("installation IDs = %v, want %v", ids, want)
	}
	org, user, suspended := all[0], all[1], all[2]
	if org.Account.Login != "acme" || org.Account.Type != "Organization" || org.AppID != testAppID ||
		org.RepositorySelection != "selected" || !maps.Equal(org.Permissions, orgPermissions) || org.Suspended() {
		t.Errorf("org installation = %+v", org)
	}
	if user.Account.Login != "octocat" || user.Account.Type != "User" || user.Account.ID != 583231 || user.Suspended() {
		t.Errorf("user installation = %+v", user)
	}
	if !suspended.Suspended() || suspended.Account.Login != "dormant" || suspended.RepositorySelection != "all" {
		t.Errorf("suspended installation = %+v", suspended)
	}
	if n := h.calls(installationsRt); n != 1 {
		t.Errorf("GET /app/installations called %d times, want 1", n)
	}
}

func TestInstallation(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newClient(t)
	in, err := c.Installation(t.Context(), orgInstallation)
	if err != nil {
		t.Fatalf("Installation: %v", err)
	}
	if in.ID != orgInstallation || in.Account.Login != "acme" || in.Account.ID != 5001 ||
		!maps.Equal(in.Permissions, orgPermissions) || in.Suspended() {
		t.Fatalf("Installation = %+v", *in)
	}
	in, err = c.Installation(t.Context(), suspendedInstall)
	if err != nil {
		t.Fatalf("Installation of a suspended installation: %v", err)
	}
	if !in.Suspended() || in.SuspendedAt.IsZero() {
		t.Fatalf("suspended installation reads as not suspended: %+v", *in)
	}
}

func TestFindInstallation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		owner     string
		wantID    int64 // 0: not found
		wantOrg   int   // calls to GET /orgs/{org}/installation
		wantUser  int   // calls to GET /users/{username}/installation
		wantLogin string
	}{
		{owner: "acme", wantID: orgInstallation, wantOrg: 1, wantLogin: "acme"},
		// GitHub matches logins case-insensitively; the answer carries the login as GitHub spells it.
		{owner: "ACME", wantID: orgInstallation, wantOrg: 1, wantLogin: "acme"},
		// A user account is not an organisation: the org lookup's 404 sends the client to the user lookup.
		{owner: "octocat", wantID: userInstallation, wantOrg: 1, wantUser: 1, wantLogin: "octocat"},
		{owner: "OctoCat", wantID: userInstallation, wantOrg: 1, wantUser: 1, wantLogin: "octocat"},
		{owner: "nobody", wantOrg: 1, wantUser: 1},
	}
	h := newHarness(t)
	c := h.newClient(t)
	for _, tt := range tests {
		t.Run(tt.owner, func(t *testing.T) {
			h.fake.ResetStats()
			in, err := c.FindInstallation(t.Context(), tt.owner)
			if tt.wantID == 0 {
				e := assertKind(t, err, github.KindNotFound)
				if e.StatusCode != 404 || e.Path != "/users/"+tt.owner+"/installation" {
					t.Fatalf("error = %+v", e)
				}
			} else {
				if err != nil {
					t.Fatalf("FindInstallation(%q): %v", tt.owner, err)
				}
				if in.ID != tt.wantID || in.Account.Login != tt.wantLogin {
					t.Fatalf("FindInstallation(%q) = installation %d on %q, want %d on %q", tt.owner, in.ID,
						in.Account.Login, tt.wantID, tt.wantLogin)
				}
			}
			if org, user := h.calls(orgInstRoute), h.calls(userInstRoute); org != tt.wantOrg || user != tt.wantUser {
				t.Fatalf("calls: orgs %d, users %d; want %d, %d", org, user, tt.wantOrg, tt.wantUser)
			}
		})
	}
}

func TestCreateToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		req           github.TokenRequest
		wantRepos     []string // what the token reaches, in the installation's order
		wantPerms     map[string]string
		wantSelection string
		wantListed    int // repositories listed in the mint answer
	}{
		{name: "all", wantRepos: []string{"api", "web", "infra"}, wantPerms: orgPermissions,
			wantSelection: "selected"},
		{name: "by names", req: github.TokenRequest{Repositories: []string{"web", "api"}},
			wantRepos: []string{"api", "web"}, wantPerms: orgPermissions, wantSelection: "selected", wantListed: 2},
		{name: "by IDs", req: github.TokenRequest{RepositoryIDs: []int64{repoInfra}},
			wantRepos: []string{"infra"}, wantPerms: orgPermissions, wantSelection: "selected", wantListed: 1},
		// GitHub adds metadata:read to any narrowed set when the installation has it.
		{name: "with permissions", req: github.TokenRequest{Permissions: map[string]string{"contents": "read"}},
			wantRepos: []string{"api", "web", "infra"}, wantPerms: map[string]string{"contents": "read", "metadata": "read"},
			wantSelection: "selected"},
		{name: "names and permissions",
			req:       github.TokenRequest{Repositories: []string{"api"}, Permissions: map[string]string{"issues": "write", "metadata": "read"}},
			wantRepos: []string{"api"}, wantPerms: map[string]string{"issues": "write", "metadata": "read"},
			wantSelection: "selected", wantListed: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			c := h.newClient(t)
			before := time.Now()
			tok, err := c.CreateToken(t.Context(), orgInstallation, tt.req)
			if err != nil {
				t.Fatalf("CreateToken: %v", err)
			}
			if !strings.HasPrefix(tok.Token, "ghs_") {
				t.Fatalf("token does not look like an installation token")
			}
			// GitHub's tokens live an hour; expires_at is whole seconds.
			if d := tok.ExpiresAt.Sub(before); d < 59*time.Minute || d > 61*time.Minute {
				t.Fatalf("token expires in %s, want about an hour", d)
			}
			if !maps.Equal(tok.Permissions, tt.wantPerms) {
				t.Fatalf("answer permissions = %v, want %v", tok.Permissions, tt.wantPerms)
			}
			if tok.RepositorySelection != tt.wantSelection {
				t.Fatalf("repository_selection = %q, want %q", tok.RepositorySelection, tt.wantSelection)
			}
			if len(tok.Repositories) != tt.wantListed {
				t.Fatalf("the answer lists %d repositories, want %d", len(tok.Repositories), tt.wantListed)
			}
			for _, r := range tok.Repositories {
				if r.ID == 0 || r.FullName != "acme/"+r.Name {
					t.Fatalf("answer repository = %+v", r)
				}
			}

			// What the emulator recorded, and what the token really reaches, must be what was asked.
			info, ok := h.fake.Token(tok.Token)
			if !ok || info.InstallationID != orgInstallation || !maps.Equal(info.Permissions, tt.wantPerms) {
				t.Fatalf("emulator token info = %+v (known %v)", info, ok)
			}
			repos, err := c.TokenRepositories(t.Context(), tok.Token)
			if err != nil {
				t.Fatalf("TokenRepositories: %v", err)
			}
			var names []string
			for _, r := range repos {
				names = append(names, r.Name)
			}
			if !slices.Equal(names, tt.wantRepos) {
				t.Fatalf("the token reaches %v, want %v", names, tt.wantRepos)
			}
			if n := h.calls(mintRoute); n != 1 {
				t.Fatalf("mint endpoint called %d times, want 1", n)
			}
		})
	}
}

func TestRevokeToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newClient(t)
	tok, err := c.CreateToken(t.Context(), userInstallation, github.TokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	repos, err := c.TokenRepositories(t.Context(), tok.Token)
	if err != nil || len(repos) != 1 || repos[0].ID != repoDotfiles || repos[0].FullName != "octocat/dotfiles" {
		t.Fatalf("before revocation the token reaches %+v (err %v), want octocat/dotfiles", repos, err)
	}

	if err := c.RevokeToken(t.Context(), tok.Token); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	if info, _ := h.fake.Token(tok.Token); !info.Revoked {
		t.Fatal("the emulator does not consider the token revoked")
	}
	// A revoked token is dead: GitHub answers 401 Bad credentials to every use.
	_, err = c.TokenRepositories(t.Context(), tok.Token)
	e := assertKind(t, err, github.KindBadCredentials)
	if e.StatusCode != 401 || e.Message != "Bad credentials" {
		t.Fatalf("using a revoked token: %+v", e)
	}
	assertNoSecret(t, err, tok.Token)

	// Revoking again meets the same 401, which counts as revoked: revocation is idempotent for Vault's sake.
	if err := c.RevokeToken(t.Context(), tok.Token); err != nil {
		t.Fatalf("second RevokeToken: %v", err)
	}
	if n := h.calls(revokeRoute); n != 2 {
		t.Fatalf("DELETE /installation/token called %d times, want 2", n)
	}
	// The token travelled in the Authorization header of the revocation, never the App JWT.
	for _, r := range h.log.all() {
		if r.Method == "DELETE" && r.Header.Get("Authorization") != "Bearer "+tok.Token {
			t.Fatalf("revocation was not authenticated by the token itself")
		}
	}
	if st := h.fake.Stats(); st.TokensRevoked != 1 || st.TokensLive != 0 {
		t.Fatalf("emulator stats: %d revoked, %d live; want 1, 0", st.TokensRevoked, st.TokensLive)
	}
}

// A token-only client (no App key) can revoke: the backend revokes leases with whatever config it has.
func TestRevokeTokenWithoutKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tok, err := h.newClient(t).CreateToken(t.Context(), orgInstallation, github.TokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c := h.newClient(t, func(o *github.Options) { o.PrivateKey, o.AppID = nil, 0 })
	if err := c.RevokeToken(t.Context(), tok.Token); err != nil {
		t.Fatalf("RevokeToken without a key: %v", err)
	}
	if info, _ := h.fake.Token(tok.Token); !info.Revoked {
		t.Fatal("the token was not revoked")
	}
}

func TestLongTokens(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.fake.SetFaults(fakegithub.Faults{LongTokens: true})
	c := h.newClient(t)
	tok, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{Repositories: []string{"api"}})
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	// GitHub's stateless form is about 520 characters with dots; nothing may assume 40.
	if len(tok.Token) <= 500 || !strings.Contains(tok.Token, ".") {
		t.Fatalf("token is %d characters (dots: %v), want the long form", len(tok.Token),
			strings.Contains(tok.Token, "."))
	}
	repos, err := c.TokenRepositories(t.Context(), tok.Token)
	if err != nil || len(repos) != 1 || repos[0].Name != "api" {
		t.Fatalf("TokenRepositories with a long token: %+v, %v", repos, err)
	}
	if err := c.RevokeToken(t.Context(), tok.Token); err != nil {
		t.Fatalf("RevokeToken with a long token: %v", err)
	}
	_, err = c.TokenRepositories(t.Context(), tok.Token)
	assertKind(t, err, github.KindBadCredentials)
	assertNoSecret(t, err, tok.Token)
	if s := tok.String(); strings.Contains(s, tok.Token) {
		t.Fatalf("Token.String shows the long token")
	}
}

// TestInstallationRepositories: an installation's repositories are listed with a token minted for that alone
// (metadata=read) and revoked at once; every page is read, 100 at a time.
func TestInstallationRepositories(t *testing.T) {
	t.Parallel()
	fixture := testFixture(t)
	const many = 2101
	fixture.Installations = append(fixture.Installations, installationOf(many, 101))
	h := newHarnessWith(t, harnessConfig{fixture: &fixture})
	c := h.newClient(t)

	names := func(repos []github.Repository) []string {
		out := make([]string, len(repos))
		for i, r := range repos {
			out[i] = r.Name
		}
		return out
	}
	tests := []struct {
		name         string
		installation int64
		want         int
		complete     bool
		pages        int
	}{
		{"one page", orgInstallation, 3, true, 1},
		{"two pages", many, 101, true, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.fake.Tokens()
			h.fake.ResetStats()
			repos, complete, err := c.InstallationRepositories(t.Context(), tt.installation)
			if err != nil || complete != tt.complete || len(repos) != tt.want {
				t.Fatalf("InstallationRepositories = %d repositories, complete %v, %v; want %d, %v", len(repos), complete, err, tt.want, tt.complete)
			}
			if tt.installation == orgInstallation && !slices.Equal(names(repos), []string{"api", "web", "infra"}) {
				t.Fatalf("listed %v", names(repos))
			}
			if n := h.calls(tokenReposRoute); n != tt.pages {
				t.Fatalf("%d pages read, want %d", n, tt.pages)
			}
			if h.calls(mintRoute) != 1 || h.calls(revokeRoute) != 1 {
				t.Fatalf("calls %v: want one token minted and revoked", h.fake.Stats().Calls)
			}
			fresh := newTokens(before, h.fake.Tokens())
			if len(fresh) != 1 || !fresh[0].Revoked || !maps.Equal(fresh[0].Permissions, map[string]string{"metadata": "read"}) ||
				fresh[0].InstallationID != tt.installation {
				t.Fatalf("tokens minted for the listing: %+v; want one of metadata=read, revoked", fresh)
			}
		})
	}
	for _, r := range h.log.all() {
		if r.Method == "GET" && r.Path == "/installation/repositories" && !strings.Contains(r.RequestURI, "per_page=100") {
			t.Fatalf("a page was asked without per_page=100: %s", r.RequestURI)
		}
	}

	t.Run("the token is revoked when the listing fails", func(t *testing.T) {
		failing := h.newClient(t, func(o *github.Options) {
			o.WrapTransport = func(next http.RoundTripper) http.RoundTripper {
				return failListing{h.client.RoundTripper(next)}
			}
		})
		before := h.fake.Tokens()
		_, _, err := failing.InstallationRepositories(t.Context(), orgInstallation)
		assertKind(t, err, github.KindNotFound)
		fresh := newTokens(before, h.fake.Tokens())
		if len(fresh) != 1 || !fresh[0].Revoked {
			t.Fatalf("tokens minted for the failed listing: %+v; want one, revoked", fresh)
		}
	})
	t.Run("no token when none can be minted", func(t *testing.T) {
		before := h.fake.Tokens()
		_, _, err := c.InstallationRepositories(t.Context(), suspendedInstall)
		assertKind(t, err, github.KindSuspended)
		if fresh := newTokens(before, h.fake.Tokens()); len(fresh) != 0 {
			t.Fatalf("tokens minted: %+v", fresh)
		}
	})
}

// TestInstallationRepositoriesIncomplete: a listing stops after MaxPages pages and says that it did. The server
// announces a next page forever; the token minted for the listing is revoked all the same.
func TestInstallationRepositoriesIncomplete(t *testing.T) {
	t.Parallel()
	var pages, revoked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/app/installations/7/access_tokens":
			w.WriteHeader(http.StatusCreated)
			fmt.Fprint(w, `{"token":"ghs_listing","expires_at":"2030-01-01T00:00:00Z","permissions":{"metadata":"read"},"repository_selection":"all"}`)
		case r.Method == http.MethodGet && r.URL.Path == "/installation/repositories":
			n := pages.Add(1)
			w.Header().Set("Link", fmt.Sprintf(`<%s/installation/repositories?per_page=100&page=%d>; rel="next"`, "http://"+r.Host, n+1))
			fmt.Fprintf(w, `{"total_count":1000000,"repositories":[{"id":%d,"name":"r%d"}]}`, n, n)
		case r.Method == http.MethodDelete && r.URL.Path == "/installation/token":
			revoked.Add(1)
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	c, err := github.NewClient(github.Options{BaseURL: srv.URL, AppID: testAppID, PrivateKey: github.SharedKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	repos, complete, err := c.InstallationRepositories(t.Context(), 7)
	if err != nil || complete || len(repos) != github.MaxPages {
		t.Fatalf("InstallationRepositories = %d repositories, complete %v, %v; want %d, false", len(repos), complete, err, github.MaxPages)
	}
	if pages.Load() != github.MaxPages || revoked.Load() != 1 {
		t.Fatalf("%d pages read, %d revocations; want %d, 1", pages.Load(), revoked.Load(), github.MaxPages)
	}
}

// installationOf is an installation of the test App with n repositories.
func installationOf(id int64, n int) fakegithub.Installation {
	in := fakegithub.Installation{ID: id, AppID: testAppID, Account: fmt.Sprintf("big%d", id), AccountType: "Organization",
		RepositorySelection: "all", Permissions: map[string]string{"metadata": "read"}}
	for i := range n {
		in.Repositories = append(in.Repositories, fakegithub.Repository{ID: id*100_000 + int64(i) + 1, Name: fmt.Sprintf("Repo-%d", i)})
	}
	return in
}

// failListing answers 404 to every GET /installation/repositories, as GitHub would for a token it does not know.
type failListing struct{ next http.RoundTripper }

func (f failListing) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet || r.URL.Path != "/installation/repositories" {
		return f.next.RoundTrip(r)
	}
	body := `{"message":"Not Found","documentation_url":"https://docs.github.com/rest","status":"404"}`
	return &http.Response{StatusCode: http.StatusNotFound, Status: "404 Not Found", Request: r, ContentLength: int64(len(body)),
		Header: http.Header{"Content-Type": {"application/json; charset=utf-8"}}, Body: io.NopCloser(strings.NewReader(body))}, nil
}

// newTokens are the tokens in after that are not in before.
func newTokens(before, after []fakegithub.TokenInfo) []fakegithub.TokenInfo {
	var out []fakegithub.TokenInfo
	for _, tok := range after {
		if !slices.ContainsFunc(before, func(b fakegithub.TokenInfo) bool { return b.Value == tok.Value }) {
			out = append(out, tok)
		}
	}
	return out
}
