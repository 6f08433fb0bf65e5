// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"reflect"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

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
