// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
)

func TestListInstallationsPagination(t *testing.T) {
	f := Fixture{Apps: []App{{ID: demoAppID, ClientID: demoClientID, Slug: "vault-demo", Owner: "acme"}}}
	for i := 1; i <= 250; i++ {
		f.Installations = append(f.Installations, Installation{
			ID: int64(10000 + i), AppID: demoAppID, Account: fmt.Sprintf("org-%03d", i),
			Permissions: map[string]string{"metadata": "read"},
		})
	}
	e := newEnvWith(t, f)

	for _, prefix := range []string{"", "/api/v3"} {
		base := e.ts.URL + prefix + "/app/installations"
		link := func(page int) string { return fmt.Sprintf("<%s?per_page=100&page=%d>", base, page) }
		pages := []struct {
			page      int
			wantCount int
			wantLink  string
		}{
			{1, 100, link(2) + `; rel="next", ` + link(3) + `; rel="last"`},
			{2, 100, link(1) + `; rel="prev", ` + link(3) + `; rel="next", ` + link(3) + `; rel="last", ` + link(1) + `; rel="first"`},
			{3, 50, link(2) + `; rel="prev", ` + link(1) + `; rel="first"`},
		}
		var ids []int64
		for _, p := range pages {
			resp := e.do(http.MethodGet, fmt.Sprintf("%s/app/installations?per_page=100&page=%d", prefix, p.page), e.bearer(), nil)
			var got []installationObject
			resp.decode(t, &got)
			if len(got) != p.wantCount {
				t.Errorf("%s page %d: %d installations, want %d", prefix, p.page, len(got), p.wantCount)
			}
			if l := resp.header.Get("Link"); l != p.wantLink {
				t.Errorf("%s page %d: Link\n got %s\nwant %s", prefix, p.page, l, p.wantLink)
			}
			for _, in := range got {
				ids = append(ids, in.ID)
			}
		}
		if len(ids) != 250 || !slices.IsSorted(ids) || ids[0] != 10001 || ids[249] != 10250 {
			t.Errorf("%s: pages hold %d installations, sorted %v", prefix, len(ids), slices.IsSorted(ids))
		}
	}

	// Defaults and limits: 30 per page, at most 100.
	tests := []struct {
		query     string
		wantCount int
	}{
		{"", 30},
		{"?per_page=500", 100},
		{"?per_page=junk", 30},
		{"?page=9", 10},
		{"?page=10", 0},
	}
	for _, tt := range tests {
		var got []installationObject
		e.do(http.MethodGet, "/app/installations"+tt.query, e.bearer(), nil).decode(t, &got)
		if len(got) != tt.wantCount {
			t.Errorf("%q: %d installations, want %d", tt.query, len(got), tt.wantCount)
		}
	}

	// No Link header when everything fits on one page.
	small := newEnv(t)
	if l := small.do(http.MethodGet, "/app/installations", small.bearer(), nil).header.Get("Link"); l != "" {
		t.Errorf("single page has Link %q", l)
	}
}

func TestInstallationObjects(t *testing.T) {
	e := newEnv(t)
	var list []installationObject
	e.do(http.MethodGet, "/app/installations", e.bearer(), nil).decode(t, &list)
	if len(list) != 2 {
		t.Fatalf("%d installations, want 2", len(list))
	}
	acme, octocat := list[0], list[1]
	if acme.ID != acmeID || acme.Account.Login != "acme" || acme.Account.ID != 5001 || acme.TargetType != "Organization" ||
		acme.TargetID != 5001 || acme.AppID != demoAppID || acme.AppSlug != "vault-demo" || acme.RepositorySelection != "selected" ||
		acme.Permissions["contents"] != "write" || acme.SuspendedAt != nil || acme.ClientID != demoClientID {
		t.Errorf("acme installation = %+v", acme)
	}
	if want := e.ts.URL + "/app/installations/2001/access_tokens"; acme.AccessTokensURL != want {
		t.Errorf("access_tokens_url = %q, want %q", acme.AccessTokensURL, want)
	}
	if octocat.Account.Type != "User" || octocat.Account.ID != 583231 || octocat.HTMLURL != "https://github.com/settings/installations/2002" {
		t.Errorf("octocat installation = %+v", octocat)
	}
}

func TestInstallationLookups(t *testing.T) {
	e := newEnvWith(t, testFixture())
	tests := []struct {
		path string
		want int64 // 0: 404
	}{
		{"/app/installations/2001", acmeID},
		{"/app/installations/2002", octocatID},
		{"/app/installations/2101", 0}, // another App's
		{"/app/installations/abc", 0},
		{"/orgs/acme/installation", acmeID},
		{"/orgs/ACME/installation", acmeID},
		{"/orgs/octocat/installation", 0}, // a user, not an organization
		{"/orgs/globex/installation", 0},  // another App's
		{"/users/octocat/installation", octocatID},
		{"/users/OctoCat/installation", octocatID},
		{"/users/acme/installation", acmeID}, // GitHub finds organizations here too
		{"/users/nobody/installation", 0},
		{"/repos/acme/api/installation", acmeID},
		{"/repos/Acme/INFRA/installation", acmeID},
		{"/repos/acme/dotfiles/installation", 0},
		{"/repos/octocat/dotfiles/installation", octocatID},
		{"/repos/initech/two/installation", initechID},
		{"/repos/globex/alpha/installation", 0},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp := e.do(http.MethodGet, tt.path, e.bearer(), nil)
			if tt.want == 0 {
				resp.wantError(t, 404, msgNotFound)
				return
			}
			if resp.status != 200 {
				t.Fatalf("status %d, body %s", resp.status, resp.body)
			}
			var in installationObject
			resp.decode(t, &in)
			if in.ID != tt.want {
				t.Errorf("installation %d, want %d", in.ID, tt.want)
			}
		})
	}

	// The other App sees its own installation.
	other := "Bearer " + signJWT(t, testKey(), appClaims(otherClient))
	if resp := e.do(http.MethodGet, "/orgs/globex/installation", other, nil); resp.status != 200 {
		t.Errorf("other app: %d %s", resp.status, resp.body)
	}
}

func TestAddInstallation(t *testing.T) {
	e := newEnv(t)
	err := e.srv.AddInstallation(Installation{
		ID: 2003, AppID: demoAppID, Account: "Hooli", AccountType: "Organization",
		Repositories: []Repository{{Name: "nucleus"}},
		Permissions:  map[string]string{"contents": "read", "metadata": "read"},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp := e.do(http.MethodGet, "/orgs/hooli/installation", e.bearer(), nil)
	var in installationObject
	resp.decode(t, &in)
	if in.ID != 2003 || in.RepositorySelection != "all" || in.Account.ID == 0 {
		t.Errorf("added installation = %+v", in)
	}
	tok := e.mint(2003, map[string]any{"repositories": []string{"nucleus"}})
	if len(tok.Repositories) != 1 || tok.Repositories[0].ID == 0 || tok.Repositories[0].FullName != "Hooli/nucleus" {
		t.Errorf("repositories = %+v", tok.Repositories)
	}

	if err := e.srv.AddInstallation(Installation{ID: 2003, AppID: demoAppID, Account: "other"}); err == nil {
		t.Error("a second installation 2003 was accepted")
	}
	if err := e.srv.AddInstallation(Installation{ID: 2004, AppID: demoAppID, Account: "ACME"}); err == nil {
		t.Error("a second installation of the App on acme was accepted")
	}
}
