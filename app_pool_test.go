// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

// The pool of these tests: the fixture's App (default) and two more Apps, each installed on acme with the same
// repositories and permissions, all signing with testKey.
const (
	poolApp2     = 1101
	poolApp3     = 1102
	poolInstall2 = 2201
	poolInstall3 = 2202
)

var poolInstallations = map[string]int64{"default": testOrgInstall, "second": poolInstall2, "third": poolInstall3}

func poolFixture() fakegithub.Fixture {
	f := testFixture()
	acme := f.Installations[0]
	for i, id := range []int64{poolApp2, poolApp3} {
		f.Apps = append(f.Apps, fakegithub.App{ID: id, ClientID: fmt.Sprintf("Iv23liPOOLAPP%05d", id),
			Slug: fmt.Sprintf("pool-app-%d", i+2), Name: fmt.Sprintf("Pool App %d", i+2), Owner: "acme"})
		in := acme
		in.ID, in.AppID = []int64{poolInstall2, poolInstall3}[i], id
		in.Repositories = slices.Clone(acme.Repositories)
		in.Permissions = maps.Clone(acme.Permissions)
		f.Installations = append(f.Installations, in)
	}
	return f
}

// newPoolEnv is a mount with three Apps (default, second, third) on the pool fixture, and a role "pool" over them.
func newPoolEnv(t *testing.T, role map[string]any, app map[string]any) *testEnv {
	t.Helper()
	e := newTestEnv(t)
	e.gh, e.srv = newEmulator(t, poolFixture())
	e.configure(app)
	for name, id := range map[string]int64{"second": poolApp2, "third": poolApp3} {
		data := map[string]any{"app_id": id, "private_key": testKeyPEM, "base_url": e.srv.URL}
		maps.Copy(data, app)
		resp, err := e.do(logical.UpdateOperation, "apps/"+name, data)
		mustOK(t, resp, err)
	}
	data := map[string]any{"owner": "acme", "apps": "default,second,third", "repositories": "api",
		"permissions": "contents=read"}
	maps.Copy(data, role)
	e.role("pool", data)
	return e
}

// mintedBy mints from the pool role and returns the App that minted.
func (e *testEnv) mintedBy() string {
	e.t.Helper()
	resp := e.mint("pool")
	app, _ := resp.Data["app"].(string)
	if want := poolInstallations[app]; resp.Data["installation_id"] != want {
		e.t.Fatalf("App %q minted from installation %v, want %d", app, resp.Data["installation_id"], want)
	}
	return app
}

// limitApp exhausts (or, with remaining > 0, restores) an App's own rate limit at the emulator.
func (e *testEnv) limitApp(appID int64, remaining int, resetIn time.Duration) {
	e.t.Helper()
	if _, err := e.gh.SetAppRateLimit(appID, fakegithub.RateLimit{Remaining: remaining, ResetIn: resetIn}); err != nil {
		e.t.Fatal(err)
	}
}

func TestAppsLifecycle(t *testing.T) {
	e := newPoolEnv(t, nil, nil)

	resp, err := e.do(logical.ReadOperation, "apps/second", nil)
	mustOK(t, resp, err)
	if resp.Data["name"] != "second" || resp.Data["app_id"] != int64(poolApp2) || resp.Data["app_slug"] != "pool-app-2" {
		t.Fatalf("apps/second read %v", resp.Data)
	}
	if _, ok := resp.Data["private_key"]; ok {
		t.Fatal("apps/second read returns the private key")
	}
	resp, err = e.do(logical.ListOperation, "apps/", nil)
	mustOK(t, resp, err)
	if keys := resp.Data["keys"].([]string); !slices.Equal(keys, []string{"default", "second", "third"}) {
		t.Fatalf("apps/ lists %v", keys)
	}

	// config and apps/default are one entry.
	cfgRead, err := e.do(logical.ReadOperation, "config", nil)
	mustOK(t, cfgRead, err)
	defRead, err := e.do(logical.ReadOperation, "apps/default", nil)
	mustOK(t, defRead, err)
	delete(defRead.Data, "name")
	if !maps.EqualFunc(cfgRead.Data, defRead.Data, func(a, b any) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
		t.Fatalf("config %v\napps/default %v", cfgRead.Data, defRead.Data)
	}
	resp, err = e.do(logical.UpdateOperation, "apps/default", map[string]any{"request_timeout": "9s"})
	mustOK(t, resp, err)
	resp, err = e.do(logical.ReadOperation, "config", nil)
	mustOK(t, resp, err)
	if resp.Data["request_timeout"] != int64(9) {
		t.Fatalf("a write of apps/default does not show at config: request_timeout %v", resp.Data["request_timeout"])
	}

	// Every rule of config holds: verification, and the destination guard.
	status, msg := e.fails(t, logical.UpdateOperation, "apps/fourth", map[string]any{"app_id": poolApp2,
		"private_key": otherPEM, "base_url": e.srv.URL})
	if status != http.StatusBadRequest || !strings.Contains(msg, "nothing was saved") {
		t.Fatalf("a key GitHub refuses: %d %s", status, msg)
	}
	status, msg = e.fails(t, logical.UpdateOperation, "apps/second", map[string]any{"base_url": "http://127.0.0.1:1"})
	if status != http.StatusBadRequest || !strings.Contains(msg, "give private_key") {
		t.Fatalf("moving an App's base_url without its key: %d %s", status, msg)
	}
	for _, name := range []string{"Second", "a.b", strings.Repeat("x", 64)} {
		status, msg := e.fails(t, logical.UpdateOperation, "apps/"+name, map[string]any{"app_id": poolApp2,
			"private_key": testKeyPEM, "base_url": e.srv.URL})
		if status != http.StatusBadRequest || !strings.Contains(msg, "lower-case letters") {
			t.Errorf("apps/%s: %d %s", name, status, msg)
		}
	}
	if cfg, _ := getAppConfig(t.Context(), e.storage, "fourth"); cfg != nil {
		t.Fatal("a refused write stored an App")
	}

	// Deleting apps/default deletes config.
	resp, err = e.do(logical.DeleteOperation, "apps/default", nil)
	if err != nil || resp == nil || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], `role "pool"`) {
		t.Fatalf("deleting an App a role names: %v %v", resp, err)
	}
	resp, err = e.do(logical.ReadOperation, "config", nil)
	if err != nil || resp != nil {
		t.Fatalf("config after apps/default was deleted: %v %v", resp, err)
	}
	resp, err = e.do(logical.ListOperation, "apps/", nil)
	mustOK(t, resp, err)
	if keys := resp.Data["keys"].([]string); !slices.Equal(keys, []string{"second", "third"}) {
		t.Fatalf("apps/ lists %v after default was deleted", keys)
	}
}

func TestPoolRoleFields(t *testing.T) {
	e := newPoolEnv(t, nil, nil)
	resp, err := e.do(logical.ReadOperation, "roles/pool", nil)
	mustOK(t, resp, err)
	if !slices.Equal(resp.Data["apps"].([]string), []string{"default", "second", "third"}) || resp.Data["app_selection"] != "budget" {
		t.Fatalf("role read: apps %v app_selection %v", resp.Data["apps"], resp.Data["app_selection"])
	}
	tests := []struct {
		name string
		data map[string]any
		want string
	}{
		{"App that does not exist", map[string]any{"owner": "acme", "apps": "default,nosuch"}, `App "nosuch", which does not exist`},
		{"installation_id with several Apps", map[string]any{"installation_id": testOrgInstall, "apps": "default,second"}, "names its installations by owner"},
		{"App named twice", map[string]any{"owner": "acme", "apps": "second,second"}, `names App "second" twice`},
		{"invalid App name", map[string]any{"owner": "acme", "apps": "Second"}, "lower-case letters"},
		{"unknown selection", map[string]any{"owner": "acme", "apps": "default,second", "app_selection": "random"}, `app_selection "random" is not known`},
		{"too many Apps", map[string]any{"owner": "acme", "apps": manyApps(maxRoleApps + 1)}, "expected at most 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, msg := e.fails(t, logical.UpdateOperation, "roles/other", tt.data)
			if status != http.StatusBadRequest || !strings.Contains(msg, tt.want) {
				t.Fatalf("%d %s, want 400 with %q", status, msg, tt.want)
			}
			if r, _ := getRole(t.Context(), e.storage, "other"); r != nil {
				t.Fatal("a refused role write stored the role")
			}
		})
	}
	// One App other than default may keep installation_id.
	e.role("single", map[string]any{"installation_id": poolInstall2, "apps": "second"})
	if app := e.mint("single").Data["app"]; app != "second" {
		t.Fatalf("a role of App second minted from %v", app)
	}
}

func TestPoolOrderedFailsOverAndReturns(t *testing.T) {
	e := newPoolEnv(t, map[string]any{"app_selection": "ordered"}, nil)
	for range 3 {
		if app := e.mintedBy(); app != "default" {
			t.Fatalf("ordered role minted from %q while the first App was healthy", app)
		}
	}
	// GitHub limits the first App: every mint goes to the second, none fails.
	e.limitApp(testAppID, 0, time.Hour)
	for i := range 10 {
		if app := e.mintedBy(); app != "second" {
			t.Fatalf("mint %d while the first App was limited came from %q", i, app)
		}
	}
	// The limit lifts: the first App's next probe (one a second) finds it so, and mints return to it.
	e.limitApp(testAppID, 5000, time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	for e.mintedBy() != "default" {
		if time.Now().After(deadline) {
			t.Fatal("mints did not return to the first App within 5s of its limit lifting")
		}
		time.Sleep(100 * time.Millisecond)
	}
	families := parseMetrics(t, metricsText(t, e))
	if n := sample(families, "github_app_app_skips_total", map[string]string{"app": "default", "reason": "rate_limited"}); n < 10 {
		t.Fatalf("app_skips_total{default,rate_limited} = %v, want at least 10", n)
	}
}

func TestPoolAllLimitedAnswers429WithTheEarliestEnd(t *testing.T) {
	e := newPoolEnv(t, nil, nil)
	e.limitApp(testAppID, 0, 50*time.Minute)
	e.limitApp(poolApp2, 0, 20*time.Minute)
	e.limitApp(poolApp3, 0, 40*time.Minute)
	resp, err := e.do(logical.ReadOperation, "token/pool", nil)
	status, msg := mustFail(t, resp, err)
	if status != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429: %s", status, msg)
	}
	for _, app := range []string{`App "default"`, `App "second"`, `App "third"`} {
		if !strings.Contains(msg, app) {
			t.Errorf("the error does not name %s: %s", app, msg)
		}
	}
	if resp == nil || len(resp.Headers["Retry-After"]) != 1 {
		t.Fatalf("no Retry-After header: %v", resp)
	}
	secs, _ := strconv.Atoi(resp.Headers["Retry-After"][0])
	if secs < 19*60 || secs > 20*60+1 {
		t.Fatalf("Retry-After %ds, want the earliest end, about 20 minutes", secs)
	}
}

func TestPoolPassesOverAppsThatCannotServe(t *testing.T) {
	e := newPoolEnv(t, map[string]any{"app_selection": "ordered"}, nil)
	// App "elsewhere" is installed on globex only; App "gone" is deleted after the role names it.
	resp, err := e.do(logical.UpdateOperation, "apps/elsewhere", map[string]any{"app_id": otherAppID,
		"private_key": otherPEM, "base_url": e.srv.URL})
	mustOK(t, resp, err)
	resp, err = e.do(logical.UpdateOperation, "apps/gone", map[string]any{"app_id": poolApp3,
		"private_key": testKeyPEM, "base_url": e.srv.URL})
	mustOK(t, resp, err)
	e.role("pool", map[string]any{"apps": "elsewhere,gone,third"})
	resp, err = e.do(logical.DeleteOperation, "apps/gone", nil)
	if err != nil || resp == nil || len(resp.Warnings) != 1 {
		t.Fatalf("delete: %v %v", resp, err)
	}
	if app := e.mintedBy(); app != "third" {
		t.Fatalf("minted from %q, want third", app)
	}
	families := parseMetrics(t, metricsText(t, e))
	for _, want := range []map[string]string{{"app": "elsewhere", "reason": "not_installed"}, {"app": "(unknown)", "reason": "not_configured"}} {
		if n := sample(families, "github_app_app_skips_total", want); n != 1 {
			t.Errorf("app_skips_total%v = %v, want 1", want, n)
		}
	}
	// None can serve now: 429 until the limit of the one App that could serve ends (the others need an operator),
	// and the error names each App.
	e.limitApp(poolApp3, 0, time.Hour)
	status, msg := e.fails(t, logical.ReadOperation, "token/pool", nil)
	if status != http.StatusTooManyRequests || !strings.Contains(msg, `App "gone" is not configured`) ||
		!strings.Contains(msg, `App "elsewhere"`) {
		t.Fatalf("%d %s", status, msg)
	}
}

func TestPoolByBudget(t *testing.T) {
	e := newPoolEnv(t, nil, map[string]any{"rate_limit_refresh": "1s"})
	for app, left := range map[string]int{"default": 500, "second": 2500, "third": 4500} {
		if _, err := e.gh.SetInstallationRateLimit(poolInstallations[app], fakegithub.RateLimit{Remaining: left}); err != nil {
			t.Fatal(err)
		}
	}
	// Unknown budgets rank as full and are taken in turn: the first mints reach every App, which learns its budget.
	seen := map[string]bool{}
	for range 3 {
		seen[e.mintedBy()] = true
	}
	if len(seen) != 3 {
		t.Fatalf("the first three mints reached %v, want every App", seen)
	}
	learned := e.waitForBudgets()
	for i := range 10 {
		if app := e.mintedBy(); app != "third" {
			t.Fatalf("mint %d came from %q, want third (most budget left)", i, app)
		}
	}
	// The third installation's tokens spend its budget: the mints follow the budget to the second App.
	if _, err := e.gh.SpendInstallationRateLimit(poolInstall3, 4400); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // rate_limit_refresh
	e.mintedBy()                        // starts the refresh
	if now := e.waitForBudgets(); now["third"] >= now["second"] {
		t.Fatalf("budgets %v after the third installation spent 4400", now)
	}
	if app := e.mintedBy(); app != "second" {
		t.Fatalf("after the third App's budget fell, a mint came from %q, want second", app)
	}

	// GET /rate_limit is not counted by GitHub: reading the budgets again and again spent none of them.
	if e.gh.Stats().Calls["GET /rate_limit"] < 4 {
		t.Fatalf("%d GET /rate_limit calls, want at least 4", e.gh.Stats().Calls["GET /rate_limit"])
	}
	if st, _ := e.gh.InstallationRateLimit(poolInstall2); st.Remaining != learned["second"] {
		t.Fatalf("installation %d has %d left, want %d: reading budgets spent some", poolInstall2, st.Remaining, learned["second"])
	}
}

// waitForBudgets waits until status shows, for each App, the budget of its installation on acme that the emulator
// holds (the budget set, less what the tokens spent: the bot-identity lookup made with each App's first token), and
// returns them.
func (e *testEnv) waitForBudgets() map[string]int {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		want := map[string]int{}
		for app, id := range poolInstallations {
			st, err := e.gh.InstallationRateLimit(id)
			if err != nil {
				e.t.Fatal(err)
			}
			want[app] = st.Remaining
		}
		resp, err := e.do(logical.ReadOperation, "status", nil)
		mustOK(e.t, resp, err)
		got := map[string]int{}
		for name, st := range resp.Data["apps"].(map[string]any) {
			for _, in := range st.(map[string]any)["installations"].([]map[string]any) {
				if bg, ok := in["budget"].(map[string]any); ok {
					got[name] = bg["remaining"].(int)
				}
			}
		}
		if maps.Equal(got, want) {
			return got
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("status shows budgets %v, the emulator holds %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestOneAppRolesNeverReadBudgets(t *testing.T) {
	e := newPoolEnv(t, map[string]any{"app_selection": "ordered"}, map[string]any{"rate_limit_refresh": "1s"})
	e.role("one", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	for range 3 {
		e.mint("one")
		e.mintedBy()
		time.Sleep(600 * time.Millisecond)
	}
	if n := e.gh.Stats().Calls["GET /rate_limit"]; n != 0 {
		t.Fatalf("%d GET /rate_limit calls for a one-App role and an ordered pool", n)
	}
}

func TestPoolLeaseRevokedAfterItsAppIsGone(t *testing.T) {
	for _, change := range []string{"deleted", "moved"} {
		t.Run(change, func(t *testing.T) {
			e := newPoolEnv(t, map[string]any{"app_selection": "ordered", "apps": "second,third"}, nil)
			resp := e.mint("pool")
			if resp.Data["app"] != "second" || resp.Data["app_id"] != int64(poolApp2) {
				t.Fatalf("minted by %v (%v)", resp.Data["app"], resp.Data["app_id"])
			}
			if resp.Secret.InternalData["app"] != "second" {
				t.Fatalf("the lease does not remember its App: %v", resp.Secret.InternalData)
			}
			switch change {
			case "deleted":
				r, err := e.do(logical.DeleteOperation, "apps/second", nil)
				if err != nil || r == nil {
					t.Fatalf("delete: %v %v", r, err)
				}
			case "moved":
				// The App now reaches GitHub through a proxy: the lease must not follow it there.
				proxy := newRecordingProxy(t)
				r, err := e.do(logical.UpdateOperation, "apps/second", map[string]any{"proxy_url": proxy.srv.URL,
					"private_key": testKeyPEM, "verify": false})
				mustOK(t, r, err)
				defer func() {
					if got := proxy.requests(); len(got) != 0 {
						t.Errorf("the moved App's proxy saw %v", got)
					}
				}()
			}
			e.restart()
			e.revokeAtGitHub(resp)
		})
	}
}

func TestPoolConcurrentMintsWhileAnAppChanges(t *testing.T) {
	e := newPoolEnv(t, nil, nil)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan string, 1000)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req := &logical.Request{Operation: logical.ReadOperation, Path: "token/pool", Storage: e.storage}
				resp, err := e.b.HandleRequest(t.Context(), req)
				if err != nil || resp == nil || resp.IsError() {
					errs <- fmt.Sprint(resp, err)
				}
			}
		}()
	}
	for i := range 10 {
		resp, err := e.do(logical.UpdateOperation, "apps/second", map[string]any{"request_timeout": fmt.Sprintf("%ds", 5+i)})
		mustOK(t, resp, err)
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Errorf("a mint failed while an App's config changed: %s", msg)
	}
}

// manyApps is a list of n App names.
func manyApps(n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("app%d", i)
	}
	return strings.Join(names, ",")
}

// fails runs a request that must fail, and returns its status and message.
func (e *testEnv) fails(t *testing.T, op logical.Operation, path string, data map[string]any) (int, string) {
	t.Helper()
	resp, err := e.do(op, path, data)
	return mustFail(t, resp, err)
}

func TestPoolWarnsWhenEveryBudgetIsSpent(t *testing.T) {
	e := newPoolEnv(t, nil, map[string]any{"rate_limit_refresh": "1s"})
	for _, id := range poolInstallations {
		if _, err := e.gh.SetInstallationRateLimit(id, fakegithub.RateLimit{Remaining: 1, ResetIn: 30 * time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		e.mintedBy() // each App's first token spends the last request on its bot-identity lookup
	}
	e.waitForBudgets()
	resp := e.mint("pool")
	if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "has spent its rate limit as last seen") {
		t.Fatalf("warnings %q, want one saying every budget is spent", resp.Warnings)
	}
}

func TestPoolByBudgetTriesALimitedAppLast(t *testing.T) {
	e := newPoolEnv(t, nil, nil)
	e.limitApp(testAppID, 0, time.Hour)
	for range 12 {
		if app := e.mintedBy(); app == "default" {
			t.Fatal("the limited App minted")
		}
	}
	// It was tried once, when its limit was not known yet; after that it ranks last, and others serve.
	families := parseMetrics(t, metricsText(t, e))
	if n := sample(families, "github_app_app_skips_total", map[string]string{"app": "default", "reason": "rate_limited"}); n != 1 {
		t.Fatalf("the limited App was passed over %v times in 12 mints, want once", n)
	}
}

func TestPoolByBudgetFindsAnOutageOver(t *testing.T) {
	e := newPoolEnv(t, nil, nil)
	end := time.Now().Add(1500 * time.Millisecond)
	if err := e.gh.SetAppFaults(testAppID, fakegithub.Faults{OutageUntil: end}); err != nil {
		t.Fatal(err)
	}
	deadline := end.Add(8 * time.Second)
	for {
		// No mint fails, during the outage or after it.
		if app := e.mintedBy(); app == "default" {
			if time.Now().Before(end) {
				t.Fatal("the App minted during its outage")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the App did not mint again within 8s of its outage's end")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
