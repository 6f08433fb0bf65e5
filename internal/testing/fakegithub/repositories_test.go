// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"net/http"
	"testing"
)

// TestAddAndRemoveRepository: a repository added to an installation can be asked for by name at once, and one
// removed can no longer be; bad input is refused.
func TestAddAndRemoveRepository(t *testing.T) {
	e := newEnv(t)
	repo, err := e.srv.AddRepository(acmeID, Repository{Name: "team-a-new"})
	if err != nil {
		t.Fatal(err)
	}
	if repo.ID == 0 {
		t.Fatal("no ID given to the new repository")
	}
	tok := e.mint(acmeID, map[string]any{"repositories": []string{"team-a-new"}})
	if len(tok.Repositories) != 1 || tok.Repositories[0].ID != repo.ID {
		t.Fatalf("token reaches %+v, want only repository %d", tok.Repositories, repo.ID)
	}
	for _, bad := range []Repository{{Name: "API"}, {Name: "a/b"}, {Name: "x", ID: 3002}} {
		if _, err := e.srv.AddRepository(acmeID, bad); err == nil {
			t.Errorf("AddRepository(%+v) accepted", bad)
		}
	}
	if _, err := e.srv.AddRepository(99, Repository{Name: "x"}); err == nil {
		t.Error("AddRepository on a missing installation accepted")
	}

	if err := e.srv.RemoveRepository(acmeID, "TEAM-A-NEW"); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.RemoveRepository(acmeID, "team-a-new"); err == nil {
		t.Error("removing a repository twice accepted")
	}
	resp := e.do(http.MethodPost, "/app/installations/2001/access_tokens", e.bearer(), map[string]any{"repositories": []string{"team-a-new"}})
	if resp.status != http.StatusUnprocessableEntity {
		t.Fatalf("a removed repository: status %d, body %s", resp.status, resp.body)
	}
}
