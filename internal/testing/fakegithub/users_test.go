// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// botPath is GET /users/{username} for a bot login, escaped as clients send it.
func botPath(slug string) string { return "/users/" + slug + "%5Bbot%5D" }

func TestBotUser(t *testing.T) {
	e := newPoolEnv(t)
	tok := "token " + e.mintAs(poolApp2, poolInstall2)
	ids := map[int64]bool{}
	for _, app := range []struct {
		id   int64
		slug string
	}{{demoAppID, "vault-demo"}, {poolApp2, "vault-demo-2"}, {poolApp3, "vault-demo-3"}} {
		login, id, err := e.srv.BotUser(app.id)
		if err != nil || login != app.slug+"[bot]" || id <= 0 {
			t.Fatalf("BotUser(%d) = %q, %d, %v", app.id, login, id, err)
		}
		ids[id] = true
		for _, auth := range []string{"", tok} {
			resp := e.do(http.MethodGet, botPath(app.slug), auth, nil)
			if resp.status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", botPath(app.slug), resp.status, resp.body)
			}
			var u publicUser
			resp.decode(t, &u)
			if u.Login != login || u.ID != id || u.Type != "Bot" || u.NodeID != nodeID("Bot", id) ||
				u.HTMLURL != "https://github.com/apps/"+app.slug || !strings.HasSuffix(u.URL, botPath(app.slug)) {
				t.Errorf("GET %s = %+v", botPath(app.slug), u)
			}
		}
	}
	if len(ids) != 3 {
		t.Errorf("the three Apps share bot user IDs: %v", ids)
	}

	// Logins match case-insensitively; the GHES form links to the host.
	var u publicUser
	e.do(http.MethodGet, "/api/v3/users/Vault-Demo%5BBot%5D", "", nil).decode(t, &u)
	if u.Login != "vault-demo[bot]" || !strings.HasPrefix(u.HTMLURL, e.ts.URL+"/apps/") {
		t.Errorf("GHES form, other case: %+v", u)
	}
	// Accounts the emulator knows are users too.
	e.do(http.MethodGet, "/users/acme", "", nil).decode(t, &u)
	if u.Login != "acme" || u.ID != 5001 || u.Type != "Organization" {
		t.Errorf("GET /users/acme = %+v", u)
	}
	for _, unknown := range []string{"/users/nobody%5Bbot%5D", "/users/acme%5Bbot%5D", "/users/nobody", "/users/vault-demo"} {
		e.do(http.MethodGet, unknown, "", nil).wantError(t, http.StatusNotFound, msgNotFound)
	}
	if got := e.srv.Stats().Calls["GET /users/{username}"]; got != 12 {
		t.Errorf("GET /users/{username} counted %d times, want 12", got)
	}
}

// TestBotUserContractCheckCanFail makes sure GitHub's description is held against this answer.
func TestBotUserContractCheckCanFail(t *testing.T) {
	e := newEnv(t)
	resp := e.do(http.MethodGet, botPath("vault-demo"), "", nil)
	var obj map[string]any
	resp.decode(t, &obj)
	delete(obj, "created_at")
	broken, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+botPath("vault-demo"), nil)
	if err := contractError(req, http.StatusOK, resp.header, broken); err == nil {
		t.Fatal("a user without created_at passed the contract check")
	}
	if err := contractError(req, http.StatusOK, resp.header, resp.body); err != nil {
		t.Fatalf("the untouched answer failed the contract check: %v", err)
	}
}

func TestBotUserIDs(t *testing.T) {
	derived := func() int64 {
		srv, err := New(DemoFixture())
		if err != nil {
			t.Fatal(err)
		}
		_, id, _ := srv.BotUser(demoAppID)
		return id
	}
	if a, b := derived(), derived(); a != b {
		t.Errorf("a derived bot user ID changes between runs: %d, then %d", a, b)
	}

	f := DemoFixture()
	f.Apps[0].BotUserID = 149200001
	e := newEnvWith(t, f)
	var u publicUser
	e.do(http.MethodGet, botPath("vault-demo"), "", nil).decode(t, &u)
	if u.ID != 149200001 {
		t.Errorf("bot user ID %d, want the fixture's 149200001", u.ID)
	}

	for name, apps := range map[string][]App{
		"negative ID":  {{ID: 1, Slug: "a", Owner: "acme", BotUserID: -1}},
		"same slug":    {{ID: 1, Slug: "a", Owner: "acme"}, {ID: 2, Slug: "a", Owner: "acme"}},
		"same bot ID":  {{ID: 1, Slug: "a", Owner: "acme", BotUserID: 7}, {ID: 2, Slug: "b", Owner: "acme", BotUserID: 7}},
		"AddApp's too": nil,
	} {
		t.Run(name, func(t *testing.T) {
			if apps == nil {
				srv, err := New(DemoFixture())
				if err != nil {
					t.Fatal(err)
				}
				if err := srv.AddApp(App{ID: 5, Slug: "vault-demo", Owner: "acme"}); err == nil {
					t.Error("AddApp accepted an App with another App's slug")
				}
				return
			}
			if _, err := New(Fixture{Apps: apps}); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}

// TestBotUserIsTheInstallationsCall: with an installation token, GET /users/{username} is that
// installation's call, under its budget and its App's faults, like any other.
func TestBotUserIsTheInstallationsCall(t *testing.T) {
	e := newPoolEnv(t)
	tok2 := "token " + e.mintAs(poolApp2, poolInstall2)
	tok3 := "token " + e.mintAs(poolApp3, poolInstall3)

	if _, err := e.srv.SetInstallationRateLimit(poolInstall2, RateLimit{Remaining: 1}); err != nil {
		t.Fatal(err)
	}
	if resp := e.do(http.MethodGet, botPath("vault-demo-2"), tok2, nil); resp.status != http.StatusOK {
		t.Fatalf("with one request left: %d %s", resp.status, resp.body)
	}
	if rl, err := e.srv.InstallationRateLimit(poolInstall2); err != nil || rl.Remaining != 0 {
		t.Errorf("installation 2102's budget after the call: %+v, %v", rl, err)
	}
	resp := e.do(http.MethodGet, botPath("vault-demo-2"), tok2, nil)
	if resp.status != http.StatusForbidden || !strings.HasPrefix(resp.errorBody(t).Message, exceededInst+"2102.") {
		t.Errorf("with nothing left: %d %s", resp.status, resp.body)
	}
	if resp := e.do(http.MethodGet, botPath("vault-demo-3"), tok3, nil); resp.status != http.StatusOK {
		t.Errorf("another installation's token: %d", resp.status)
	}

	if err := e.srv.SetAppFaults(poolApp3, Faults{FailNext: 1, ErrorStatus: http.StatusServiceUnavailable}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []int{http.StatusServiceUnavailable, http.StatusOK} {
		if resp := e.do(http.MethodGet, botPath("vault-demo-3"), tok3, nil); resp.status != want {
			t.Errorf("under App 1003's fault: %d, want %d", resp.status, want)
		}
	}

	tok := "token " + e.mint(octocatID, nil).Token
	if err := e.srv.SetSuspended(octocatID, true); err != nil {
		t.Fatal(err)
	}
	e.do(http.MethodGet, botPath("vault-demo"), tok, nil).wantError(t, http.StatusForbidden, msgSuspended)
	e.do(http.MethodDelete, "/installation/token", tok, nil)
	e.do(http.MethodGet, botPath("vault-demo"), tok, nil).wantError(t, http.StatusUnauthorized, msgBadCredentials)
}
