// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The App pool of PoolFixture: three Apps, each with its own installation on acme.
const (
	poolApp2      = 1002
	poolApp3      = 1003
	poolInstall2  = 2102 // App 1002 on acme
	poolInstall3  = 2103 // App 1003 on acme
	exceededApp   = "API rate limit exceeded for app ID "
	exceededInst  = "API rate limit exceeded for installation ID "
	repositoryURL = "/installation/repositories"
)

func newPoolEnv(t *testing.T) *testEnv {
	t.Helper()
	return newEnvWith(t, PoolFixture())
}

// bearerFor is a good JWT for any App of the fixture, by its numeric ID.
func (e *testEnv) bearerFor(appID int64) string {
	return "Bearer " + signJWT(e.t, testKey(), appClaims(appID))
}

// mintAs creates a token for installationID with appID's JWT, failing unless it is 201.
func (e *testEnv) mintAs(appID, installationID int64) string {
	e.t.Helper()
	resp := e.do(http.MethodPost, fmt.Sprintf("/app/installations/%d/access_tokens", installationID), e.bearerFor(appID), nil)
	if resp.status != http.StatusCreated {
		e.t.Fatalf("mint %d as App %d: status %d, body %s", installationID, appID, resp.status, resp.body)
	}
	var tok installationTokenBody
	resp.decode(e.t, &tok)
	return tok.Token
}

// mintStatus tries to create a token for installationID with appID's JWT; 0 means no answer (connection dropped).
func (e *testEnv) mintStatus(appID, installationID int64) (int, *response) {
	e.t.Helper()
	resp, err := e.send(http.MethodPost, fmt.Sprintf("/app/installations/%d/access_tokens", installationID), e.bearerFor(appID), nil)
	if err != nil {
		return 0, nil
	}
	return resp.status, resp
}

func TestSeveralAppsOnOneAccount(t *testing.T) {
	// Three Apps on acme, each installation with its own repositories and permissions.
	f := Fixture{
		Apps: []App{{ID: 1001, Owner: "acme"}, {ID: 1002, Owner: "acme"}, {ID: 1003, Owner: "acme"}},
		Installations: []Installation{
			{ID: 2001, AppID: 1001, Account: "acme", RepositorySelection: "selected",
				Repositories: []Repository{{Name: "api"}, {Name: "web"}},
				Permissions:  map[string]string{"contents": "write", "metadata": "read"}},
			{ID: 2102, AppID: 1002, Account: "acme", RepositorySelection: "selected",
				Repositories: []Repository{{Name: "api"}},
				Permissions:  map[string]string{"contents": "read", "metadata": "read"}},
			{ID: 2103, AppID: 1003, Account: "acme",
				Repositories: []Repository{{Name: "api"}, {Name: "web"}, {Name: "infra"}},
				Permissions:  map[string]string{"issues": "write", "metadata": "read"}},
		},
	}
	e := newEnvWith(t, f)
	tests := []struct {
		app          int64
		installation int64
		others       []int64 // the other Apps' installations on acme
		permissions  map[string]string
		reaches      []string
		misses       []string
	}{
		{1001, 2001, []int64{2102, 2103}, map[string]string{"contents": "write", "metadata": "read"}, []string{"api", "web"}, []string{"infra"}},
		{1002, 2102, []int64{2001, 2103}, map[string]string{"contents": "read", "metadata": "read"}, []string{"api"}, []string{"web", "infra"}},
		{1003, 2103, []int64{2001, 2102}, map[string]string{"issues": "write", "metadata": "read"}, []string{"api", "web", "infra"}, nil},
	}
	var accountIDs, apiRepoIDs []int64
	for _, tt := range tests {
		t.Run(strconv.FormatInt(tt.app, 10), func(t *testing.T) {
			auth := e.bearerFor(tt.app)
			var in installationObject
			resp := e.do(http.MethodGet, "/orgs/acme/installation", auth, nil)
			resp.decode(t, &in)
			if resp.status != 200 || in.ID != tt.installation || in.AppID != tt.app || !maps.Equal(in.Permissions, tt.permissions) {
				t.Fatalf("GET /orgs/acme/installation as App %d: %d, installation %d of App %d with %v; want %d with %v",
					tt.app, resp.status, in.ID, in.AppID, in.Permissions, tt.installation, tt.permissions)
			}
			accountIDs = append(accountIDs, in.Account.ID)

			var list []installationObject
			e.do(http.MethodGet, "/app/installations", auth, nil).decode(t, &list)
			if len(list) != 1 || list[0].ID != tt.installation {
				t.Errorf("GET /app/installations lists %d installations (first %+v), want only %d", len(list), list, tt.installation)
			}
			for _, repo := range tt.reaches {
				e.do(http.MethodGet, "/repos/acme/"+repo+"/installation", auth, nil).decode(t, &in)
				if in.ID != tt.installation {
					t.Errorf("GET /repos/acme/%s/installation: installation %d, want %d", repo, in.ID, tt.installation)
				}
			}
			for _, repo := range tt.misses {
				e.do(http.MethodGet, "/repos/acme/"+repo+"/installation", auth, nil).wantError(t, 404, msgNotFound)
			}

			var tok installationTokenBody
			resp = e.do(http.MethodPost, fmt.Sprintf("/app/installations/%d/access_tokens", tt.installation), auth,
				map[string]any{"repositories": []string{"api"}})
			resp.decode(t, &tok)
			if resp.status != 201 || len(tok.Repositories) != 1 {
				t.Fatalf("mint: %d %s", resp.status, resp.body)
			}
			apiRepoIDs = append(apiRepoIDs, tok.Repositories[0].ID)
			for _, other := range tt.others {
				e.do(http.MethodPost, fmt.Sprintf("/app/installations/%d/access_tokens", other), auth, nil).wantError(t, 404, msgNotFound)
				e.do(http.MethodGet, fmt.Sprintf("/app/installations/%d", other), auth, nil).wantError(t, 404, msgNotFound)
			}
		})
	}
	// One account and one repository, seen through three installations.
	for i := 1; i < len(accountIDs); i++ {
		if accountIDs[i] != accountIDs[0] || apiRepoIDs[i] != apiRepoIDs[0] {
			t.Errorf("account IDs %v and api repository IDs %v differ between the Apps", accountIDs, apiRepoIDs)
		}
	}
}

func TestPoolFixture(t *testing.T) {
	e := newPoolEnv(t)
	for app, want := range map[int64]int64{demoAppID: acmeID, poolApp2: poolInstall2, poolApp3: poolInstall3} {
		var in installationObject
		e.do(http.MethodGet, "/orgs/acme/installation", e.bearerFor(app), nil).decode(t, &in)
		if in.ID != want || in.RepositorySelection != "selected" || in.Permissions["contents"] != "write" {
			t.Errorf("App %d on acme: %+v, want installation %d", app, in, want)
		}
		var a integrationObject
		e.do(http.MethodGet, "/app", e.bearerFor(app), nil).decode(t, &a)
		if a.ID != app || a.ClientID != fmt.Sprintf("Iv23liFAKEAPP%04d", app-1000) || a.Slug == "" {
			t.Errorf("GET /app as %d: %+v", app, a)
		}
	}
	// Only the demo App is on octocat, and DemoFixture's objects are unchanged.
	e.do(http.MethodGet, "/users/octocat/installation", e.bearerFor(poolApp2), nil).wantError(t, 404, msgNotFound)
	demo := DemoFixture()
	pool := PoolFixture()
	if pool.Installations[0].ID != demo.Installations[0].ID || len(pool.Apps) != 3 || len(pool.Installations) != 4 {
		t.Errorf("PoolFixture = %+v", pool)
	}
	// Each installation has its own maps: changing one leaves the others alone.
	pool.Installations[2].Permissions["contents"] = "read"
	if pool.Installations[0].Permissions["contents"] != "write" || pool.Installations[3].Permissions["contents"] != "write" {
		t.Error("PoolFixture's installations share their permission maps")
	}
}

func TestAddApp(t *testing.T) {
	e := newEnv(t)
	if err := e.srv.AddApp(App{ID: 1005, Name: "Late App", Owner: "acme"}); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.AddPublicKey(1005, &testKey().PublicKey); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.AddInstallation(Installation{ID: 2105, AppID: 1005, Account: "acme",
		Repositories: []Repository{{Name: "api"}}, Permissions: map[string]string{"metadata": "read"}}); err != nil {
		t.Fatal(err)
	}
	var in installationObject
	e.do(http.MethodGet, "/orgs/acme/installation", e.bearerFor(1005), nil).decode(t, &in)
	if in.ID != 2105 || in.Account.ID != 5001 || in.AppSlug != "late-app" {
		t.Errorf("the added App's installation on acme: %+v", in)
	}
	if e.mintAs(1005, 2105) == "" {
		t.Error("no token")
	}

	for _, bad := range []struct {
		app  App
		want string
	}{
		{App{ID: 1001, Owner: "acme"}, "used twice"},
		{App{ID: 1006}, "owner is required"},
		{App{ID: 1007, Owner: "acme", RateLimit: &RateLimit{Limit: 10, Remaining: 11}}, "remaining 11"},
	} {
		if err := e.srv.AddApp(bad.app); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("AddApp(%+v) = %v, want an error containing %q", bad.app, err, bad.want)
		}
	}
}

func TestFixtureRateLimits(t *testing.T) {
	dir := t.TempDir()
	write := func(name, rateLimit string) string {
		path := filepath.Join(dir, name)
		data := `{"apps":[{"id":1,"owner":"acme","rate_limit":{"limit":100,"remaining":40}}],` +
			`"installations":[{"id":2,"app_id":1,"account":"acme","permissions":{"metadata":"read"},"rate_limit":` + rateLimit + `}]}`
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	f, err := LoadFixture(write("good.json", `{"limit":1000,"remaining":100,"reset_in":"30m"}`))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(f)
	if err != nil {
		t.Fatal(err)
	}
	inst, _ := srv.InstallationRateLimit(2)
	if inst.Limit != 1000 || inst.Remaining != 100 || inst.Used != 900 || !inst.Enforced ||
		time.Until(inst.Reset) < 29*time.Minute || time.Until(inst.Reset) > 31*time.Minute {
		t.Errorf("installation budget from the fixture: %+v", inst)
	}
	app, _ := srv.AppRateLimit(1)
	if app.Limit != 100 || app.Remaining != 40 || !app.Enforced {
		t.Errorf("App budget from the fixture: %+v", app)
	}

	tests := []struct {
		name, rateLimit, wantErr string
	}{
		{"no remaining", `{"limit":1000}`, `"remaining" is required`},
		{"unknown field", `{"limit":1000,"remaining":1,"reset":"1h"}`, `unknown field "reset"`},
		{"bad duration", `{"remaining":1,"reset_in":"soon"}`, `"soon"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := LoadFixture(write(tt.name+".json", tt.rateLimit)); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("LoadFixture: %v, want an error containing %s", err, tt.wantErr)
			}
		})
	}

	refused := []struct {
		name    string
		rl      RateLimit
		wantErr string
	}{
		{"more left than the limit", RateLimit{Limit: 10, Remaining: 11}, "remaining 11: must be between 0 and the limit, 10"},
		{"more left than GitHub's default", RateLimit{Remaining: 5001}, "the limit, 5000"},
		{"negative limit", RateLimit{Limit: -1}, "limit -1"},
		{"negative reset", RateLimit{Remaining: 1, ResetIn: -time.Second}, "reset_in -1s"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			f := Fixture{Apps: []App{{ID: 1, Owner: "acme"}},
				Installations: []Installation{{ID: 2, AppID: 1, Account: "acme", RateLimit: &tt.rl}}}
			if _, err := New(f); err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "installation 2") {
				t.Errorf("New: %v, want an error about installation 2 containing %q", err, tt.wantErr)
			}
		})
	}
}

// coreOf reads GET /rate_limit with auth: the core counter, the top-level rate, and the response.
func (e *testEnv) coreOf(auth string) (rateLimitObject, *rateLimitObject, *response) {
	e.t.Helper()
	resp := e.do(http.MethodGet, "/rate_limit", auth, nil)
	if resp.status != 200 {
		e.t.Fatalf("GET /rate_limit: %d %s", resp.status, resp.body)
	}
	var body rateLimitOverview
	resp.decode(e.t, &body)
	return body.Resources["core"], body.Rate, resp
}

// headerCounter reads a response's X-RateLimit-* headers.
func headerCounter(t *testing.T, h http.Header) rateLimitObject {
	t.Helper()
	var out rateLimitObject
	var err error
	for _, f := range []struct {
		name string
		dst  *int
	}{{"Limit", &out.Limit}, {"Remaining", &out.Remaining}, {"Used", &out.Used}} {
		if *f.dst, err = strconv.Atoi(h.Get("X-RateLimit-" + f.name)); err != nil {
			t.Fatalf("X-RateLimit-%s %q", f.name, h.Get("X-RateLimit-"+f.name))
		}
	}
	if out.Reset, err = strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err != nil {
		t.Fatalf("X-RateLimit-Reset %q", h.Get("X-RateLimit-Reset"))
	}
	return out
}

func TestRateLimitPerInstallation(t *testing.T) {
	e := newPoolEnv(t)
	// A load test's starting point: 10 %, 50 % and 90 % of GitHub's 5,000 left.
	budgets := []struct {
		app, installation int64
		remaining         int
	}{
		{demoAppID, acmeID, 500},
		{poolApp2, poolInstall2, 2500},
		{poolApp3, poolInstall3, 4500},
	}
	for _, b := range budgets {
		if _, err := e.srv.SetInstallationRateLimit(b.installation, RateLimit{Remaining: b.remaining}); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range budgets {
		t.Run(strconv.FormatInt(b.installation, 10), func(t *testing.T) {
			auth := "token " + e.mintAs(b.app, b.installation)
			core, rate, resp := e.coreOf(auth)
			want := rateLimitObject{Limit: 5000, Remaining: b.remaining, Used: 5000 - b.remaining, Reset: core.Reset}
			if core != want || rate == nil || *rate != core {
				t.Fatalf("GET /rate_limit with a token of %d: core %+v, rate %+v; want %+v", b.installation, core, rate, want)
			}
			if ahead := time.Until(time.Unix(core.Reset, 0)); ahead < 58*time.Minute || ahead > time.Hour {
				t.Errorf("reset %v ahead, want about an hour", ahead)
			}
			if h := headerCounter(t, resp.header); h != core {
				t.Errorf("X-RateLimit-* headers %+v, body %+v", h, core)
			}
			if again, _, _ := e.coreOf(auth); again != core {
				t.Errorf("GET /rate_limit counted against the installation: %+v, then %+v", core, again)
			}

			// A call with the token spends one request, and its headers say so.
			resp = e.do(http.MethodGet, repositoryURL, auth, nil)
			if h := headerCounter(t, resp.header); h.Remaining != b.remaining-1 || h.Used != 5001-b.remaining {
				t.Errorf("headers of a token call: %+v, want %d remaining", h, b.remaining-1)
			}
			// Mints spend the App's own budget, not the installation's.
			resp = e.do(http.MethodPost, fmt.Sprintf("/app/installations/%d/access_tokens", b.installation), e.bearerFor(b.app), nil)
			if h := headerCounter(t, resp.header); resp.status != 201 || h.Limit != 5000 || h.Remaining == b.remaining-2 {
				t.Errorf("mint: %d, headers %+v: want the App's counter", resp.status, h)
			}
			after, _, _ := e.coreOf(auth)
			if after.Remaining != b.remaining-1 {
				t.Errorf("after one token call and one mint: %d remaining, want %d", after.Remaining, b.remaining-1)
			}
			if st, _ := e.srv.InstallationRateLimit(b.installation); st.Remaining != after.Remaining || st.Used != after.Used || st.Reset.Unix() != after.Reset {
				t.Errorf("InstallationRateLimit %+v, GET /rate_limit %+v", st, after)
			}
		})
	}

	// Spending takes from one installation only.
	st, err := e.srv.SpendInstallationRateLimit(poolInstall2, 1000)
	if err != nil || st.Remaining != 1499 {
		t.Errorf("spend 1000 of 1499: %+v, %v", st, err)
	}
	if st, _ := e.srv.InstallationRateLimit(poolInstall3); st.Remaining != 4499 {
		t.Errorf("another installation's budget moved: %+v", st)
	}
	if st, _ := e.srv.SpendInstallationRateLimit(poolInstall2, 10_000); st.Remaining != 0 || st.Used != 5000 {
		t.Errorf("spending more than is left: %+v, want 0 left and 5000 used", st)
	}
	for _, bad := range []struct {
		name string
		err  error
	}{
		{"negative", func() error { _, err := e.srv.SpendInstallationRateLimit(acmeID, -1); return err }()},
		{"unknown installation", func() error { _, err := e.srv.SpendInstallationRateLimit(9999, 1); return err }()},
		{"unknown installation set", func() error { _, err := e.srv.SetInstallationRateLimit(9999, RateLimit{}); return err }()},
		{"unknown installation read", func() error { _, err := e.srv.InstallationRateLimit(9999); return err }()},
		{"unknown App", func() error { _, err := e.srv.SetAppRateLimit(9, RateLimit{}); return err }()},
		{"invalid", func() error {
			_, err := e.srv.SetInstallationRateLimit(acmeID, RateLimit{Limit: 1, Remaining: 2})
			return err
		}()},
	} {
		if bad.err == nil {
			t.Errorf("%s: no error", bad.name)
		}
	}
}

func TestRateLimitDefaultsCountWithoutRefusing(t *testing.T) {
	e := newPoolEnv(t)
	st, err := e.srv.InstallationRateLimit(poolInstall2)
	if err != nil || st.Enforced || st.Limit != 5000 || st.Remaining != 5000 {
		t.Errorf("an untouched installation's budget: %+v, %v", st, err)
	}
	auth := "token " + e.mintAs(poolApp2, poolInstall2)
	e.do(http.MethodGet, repositoryURL, auth, nil)
	if st, _ := e.srv.InstallationRateLimit(poolInstall2); st.Used != 1 || st.Enforced {
		t.Errorf("after one call: %+v", st)
	}
}

func TestInstallationBudgetExhausted(t *testing.T) {
	e := newPoolEnv(t)
	auth := "token " + e.mintAs(poolApp2, poolInstall2)
	set, err := e.srv.SetInstallationRateLimit(poolInstall2, RateLimit{Limit: 10, Remaining: 2, ResetIn: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for want := 1; want >= 0; want-- {
		resp := e.do(http.MethodGet, repositoryURL, auth, nil)
		if h := headerCounter(t, resp.header); resp.status != 200 || h.Remaining != want || h.Limit != 10 {
			t.Fatalf("call with %d left: %d, headers %+v", want+1, resp.status, h)
		}
	}

	// Nothing left: GitHub's primary rate-limit answer, for every use of the installation's tokens.
	other := "token " + e.mintAs(poolApp2, poolInstall2)
	for _, c := range []struct{ method, auth string }{
		{http.MethodGet, auth}, {http.MethodGet, other}, {http.MethodDelete, other},
	} {
		path := repositoryURL
		if c.method == http.MethodDelete {
			path = "/installation/token"
		}
		resp := e.do(c.method, path, c.auth, nil)
		if resp.status != 403 {
			t.Fatalf("%s %s with nothing left: %d %s", c.method, path, resp.status, resp.body)
		}
		h := resp.header
		if h.Get("X-RateLimit-Remaining") != "0" || h.Get("X-RateLimit-Used") != "10" || h.Get("X-RateLimit-Limit") != "10" ||
			h.Get("X-RateLimit-Reset") != strconv.FormatInt(set.Reset.Unix(), 10) || h.Get("Retry-After") != "" {
			t.Errorf("%s %s: headers %v, want 0 of 10 left until %d and no Retry-After", c.method, path, h, set.Reset.Unix())
		}
		b := resp.errorBody(t)
		if !strings.HasPrefix(b.Message, exceededInst+"2102. If you reach out to GitHub Support") ||
			b.DocumentationURL != "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api" {
			t.Errorf("%s %s: %+v", c.method, path, b)
		}
	}
	if info, _ := e.srv.Token(strings.TrimPrefix(other, "token ")); info.Revoked {
		t.Error("a refused revocation revoked the token")
	}
	// GET /rate_limit still answers, the App can still mint, the other Apps' installations serve.
	if core, _, _ := e.coreOf(auth); core.Remaining != 0 || core.Used != 10 || core.Reset != set.Reset.Unix() {
		t.Errorf("GET /rate_limit with nothing left: %+v", core)
	}
	fresh := "token " + e.mintAs(poolApp2, poolInstall2)
	for _, tok := range []string{e.mintAs(demoAppID, acmeID), e.mintAs(poolApp3, poolInstall3)} {
		if resp := e.do(http.MethodGet, repositoryURL, "token "+tok, nil); resp.status != 200 {
			t.Errorf("another installation's token: %d", resp.status)
		}
	}

	// The window ends at its reset time: the budget is whole again and still enforced.
	e.srv.SetFaults(Faults{ClockOffset: 31 * time.Minute})
	resp := e.do(http.MethodGet, repositoryURL, fresh, nil)
	if h := headerCounter(t, resp.header); resp.status != 200 || h.Remaining != 9 || h.Limit != 10 {
		t.Errorf("after the reset: %d, headers %+v", resp.status, h)
	}
	if st, _ := e.srv.InstallationRateLimit(poolInstall2); !st.Enforced || st.Remaining != 9 {
		t.Errorf("after the reset: %+v", st)
	}
}

func TestAppBudgetExhausted(t *testing.T) {
	e := newPoolEnv(t)
	if _, err := e.srv.SetAppRateLimit(poolApp3, RateLimit{Limit: 100, Remaining: 1}); err != nil {
		t.Fatal(err)
	}
	resp := e.do(http.MethodPost, "/app/installations/2103/access_tokens", e.bearerFor(poolApp3), nil)
	if h := headerCounter(t, resp.header); resp.status != 201 || h.Limit != 100 || h.Remaining != 0 {
		t.Fatalf("the last mint: %d, headers %+v", resp.status, h)
	}
	resp = e.do(http.MethodPost, "/app/installations/2103/access_tokens", e.bearerFor(poolApp3), nil)
	if resp.status != 403 || resp.header.Get("X-RateLimit-Remaining") != "0" ||
		!strings.HasPrefix(resp.errorBody(t).Message, exceededApp+"1003.") {
		t.Errorf("a mint past the App's budget: %d %s", resp.status, resp.body)
	}
	if core, _, _ := e.coreOf(e.bearerFor(poolApp3)); core.Remaining != 0 || core.Limit != 100 {
		t.Errorf("GET /rate_limit with the App's JWT: %+v", core)
	}
	st, err := e.srv.SpendAppRateLimit(demoAppID, 4999)
	if err != nil || st.Remaining != 1 || !st.Enforced {
		t.Errorf("SpendAppRateLimit: %+v, %v", st, err)
	}
	e.mintAs(demoAppID, acmeID)
	if status, _ := e.mintStatus(demoAppID, acmeID); status != 403 {
		t.Errorf("a mint after spending the demo App's budget: %d", status)
	}
	e.mintAs(poolApp2, poolInstall2)
}

func TestAppFaults(t *testing.T) {
	tests := []struct {
		name   string
		faults Faults
		want   int // App 1002's mint; 0: the connection is dropped
		check  func(t *testing.T, resp *response)
	}{
		{"fail next", Faults{FailNext: 1}, 502, nil},
		{"error rate", Faults{ErrorRate: 1, ErrorStatus: 503}, 503, nil},
		{"primary rate limit", Faults{PrimaryRateLimit: true, RateLimitReset: 10 * time.Minute}, 403, func(t *testing.T, resp *response) {
			if resp.header.Get("X-RateLimit-Remaining") != "0" || !strings.HasPrefix(resp.errorBody(t).Message, exceededApp+"1002.") {
				t.Errorf("%v %s", resp.header, resp.body)
			}
		}},
		{"secondary rate limit", Faults{SecondaryRateLimit: 429, RetryAfter: 7}, 429, func(t *testing.T, resp *response) {
			if resp.header.Get("Retry-After") != "7" || !strings.Contains(resp.errorBody(t).Message, "secondary rate limit") {
				t.Errorf("%v %s", resp.header, resp.body)
			}
		}},
		{"outage", Faults{OutageUntil: time.Now().Add(time.Hour)}, 0, nil},
		{"clock ahead", Faults{ClockOffset: time.Hour}, 401, func(t *testing.T, resp *response) {
			// The client's JWT, made on real time, has expired on App 1002's GitHub.
			if msg := resp.errorBody(t).Message; msg != msgEXPInvalid {
				t.Errorf("message %q", msg)
			}
			if date, _ := http.ParseTime(resp.header.Get("Date")); time.Until(date) < 59*time.Minute {
				t.Errorf("Date %s is not an hour ahead", resp.header.Get("Date"))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newPoolEnv(t)
			if err := e.srv.SetAppFaults(poolApp2, tt.faults); err != nil {
				t.Fatal(err)
			}
			status, resp := e.mintStatus(poolApp2, poolInstall2)
			if status != tt.want {
				t.Fatalf("App 1002's mint: status %d, want %d", status, tt.want)
			}
			if tt.check != nil {
				tt.check(t, resp)
			}
			// The other Apps serve, on GitHub's own clock.
			for app, inst := range map[int64]int64{demoAppID: acmeID, poolApp3: poolInstall3} {
				resp := e.do(http.MethodPost, fmt.Sprintf("/app/installations/%d/access_tokens", inst), e.bearerFor(app), nil)
				date, _ := http.ParseTime(resp.header.Get("Date"))
				if resp.status != 201 || time.Since(date).Abs() > 5*time.Second {
					t.Errorf("App %d's mint: %d, Date %s", app, resp.status, resp.header.Get("Date"))
				}
			}
			if got, _ := e.srv.AppFaults(poolApp3); got != (Faults{}) {
				t.Errorf("App 1003's faults: %+v", got)
			}
			if got := e.srv.Faults(); got != (Faults{}) {
				t.Errorf("the emulator's faults: %+v", got)
			}
		})
	}
}

func TestAppFaultsReachTheAppsTokens(t *testing.T) {
	e := newPoolEnv(t)
	tok2 := "token " + e.mintAs(poolApp2, poolInstall2)
	tok3 := "token " + e.mintAs(poolApp3, poolInstall3)
	if err := e.srv.SetAppFaults(poolApp2, Faults{PrimaryRateLimit: true}); err != nil {
		t.Fatal(err)
	}
	resp := e.do(http.MethodGet, repositoryURL, tok2, nil)
	if resp.status != 403 || !strings.HasPrefix(resp.errorBody(t).Message, exceededInst+"2102.") {
		t.Errorf("App 1002's token under its App's primary limit: %d %s", resp.status, resp.body)
	}
	if core, _, _ := e.coreOf(tok2); core.Remaining != 0 {
		t.Errorf("GET /rate_limit under the App's primary limit: %+v", core)
	}
	if resp := e.do(http.MethodGet, repositoryURL, tok3, nil); resp.status != 200 {
		t.Errorf("App 1003's token: %d", resp.status)
	}

	// A clock offset moves the App's token expiry and Date; others keep GitHub's clock.
	if err := e.srv.SetAppFaults(poolApp2, Faults{ClockOffset: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	e.do(http.MethodGet, repositoryURL, tok2, nil).wantError(t, 401, msgBadCredentials)
	if resp := e.do(http.MethodGet, repositoryURL, tok3, nil); resp.status != 200 {
		t.Errorf("App 1003's token after App 1002's clock moved: %d", resp.status)
	}
	if st := e.srv.Stats(); st.TokensExpired != 1 || st.TokensLive != 1 {
		t.Errorf("stats: %d expired, %d live; want App 1002's token expired on its clock", st.TokensExpired, st.TokensLive)
	}

	// Faults add up: the emulator's failure comes first, then the App's.
	if err := e.srv.SetAppFaults(poolApp2, Faults{FailNext: 1, ErrorStatus: 503}); err != nil {
		t.Fatal(err)
	}
	e.srv.SetFaults(Faults{FailNext: 1})
	for _, want := range []int{502, 503, 201} {
		if status, _ := e.mintStatus(poolApp2, poolInstall2); status != want {
			t.Errorf("status %d, want %d", status, want)
		}
	}
	if err := e.srv.SetAppFaults(poolApp2, Faults{}); err != nil {
		t.Fatal(err)
	}

	for name, err := range map[string]error{
		"unknown App": e.srv.SetAppFaults(9, Faults{FailNext: 1}),
		"invalid":     e.srv.SetAppFaults(poolApp2, Faults{ErrorRate: 2}),
	} {
		if err == nil {
			t.Errorf("%s: SetAppFaults accepted it", name)
		}
	}
	if _, err := e.srv.AppFaults(9); err == nil {
		t.Error("AppFaults of an unknown App")
	}
}

func TestAppLatency(t *testing.T) {
	e := newPoolEnv(t)
	if err := e.srv.SetAppFaults(poolApp2, Faults{Latency: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.mintAs(poolApp2, poolInstall2)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("App 1002's mint took %v, want at least 200ms", d)
	}
}
