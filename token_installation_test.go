// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

// TestInstallationCacheDropped: when GitHub no longer knows a cached installation (the App was reinstalled), the
// mint looks the owner up again and succeeds with the new installation.
func TestInstallationCacheDropped(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "octocat"})
	e.mint("ci")
	c := e.b.cachedDefault()
	c.installations.mu.Lock()
	entry := c.installations.owners["octocat"]
	entry.in.id = 424242
	c.installations.owners["octocat"] = entry
	c.installations.mu.Unlock()

	e.gh.ResetStats()
	resp := e.mint("ci")
	if resp.Data["installation_id"] != int64(testUserInstall) {
		t.Fatalf("minted from installation %v", resp.Data["installation_id"])
	}
	if st := e.gh.Stats(); st.Calls[mintRoute] != 2 || st.Calls["GET /users/{username}/installation"] != 1 {
		t.Fatalf("calls %v: want a failed mint, a lookup, a mint", st.Calls)
	}
	if id := c.installations.owners["octocat"].in.id; id != testUserInstall {
		t.Fatalf("cached installation %d, want %d", id, testUserInstall)
	}
}

// TestOwnerRolePinsAccountID: an owner-bound role keeps the GitHub account its login named
// when it first minted. When the login later names another account (renamed, then reclaimed by someone else), the
// role refuses until an operator writes its owner again.
func TestOwnerRolePinsAccountID(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme"})
	first := e.mint("ci")
	if first.Data["installation_id"] != int64(testOrgInstall) {
		t.Fatalf("installation %v", first.Data["installation_id"])
	}

	// The same App on a GitHub where the login acme now belongs to account 777.
	const reclaimed = 2099
	gh2, srv2 := newEmulator(t, fakegithub.Fixture{
		Apps: []fakegithub.App{{ID: testAppID, ClientID: testClientID, Slug: "vault-test", Name: "Vault Test", Owner: "acme"}},
		Installations: []fakegithub.Installation{{
			ID: reclaimed, AppID: testAppID, Account: "acme", AccountID: 777, AccountType: "Organization",
			RepositorySelection: "all", Repositories: []fakegithub.Repository{{ID: 9001, Name: "trap"}},
			Permissions: map[string]string{"contents": "write", "metadata": "read"},
		}},
	})
	resp, err := e.do(logical.UpdateOperation, "config", map[string]any{"base_url": srv2.URL, "private_key": testKeyPEM})
	mustOK(t, resp, err)

	resp, err = e.do(logical.ReadOperation, "token/ci", nil)
	status, msg := mustFail(t, resp, err)
	if status != 403 {
		t.Errorf("status %d, want 403", status)
	}
	wantContains(t, msg, `owner "acme"`, "777", "write the role's owner again")
	if n := gh2.Stats().TokensIssued; n != 0 {
		t.Fatalf("%d tokens issued by the reclaimed account's installation", n)
	}

	e.role("ci", map[string]any{"owner": "acme"})
	if got := e.mint("ci").Data["installation_id"]; got != int64(reclaimed) {
		t.Fatalf("after the owner was written again, installation %v", got)
	}
	resp, err = e.do(logical.ReadOperation, "roles/ci", nil)
	mustOK(t, resp, err)
	if resp.Data["account_id"] != int64(777) {
		t.Fatalf("role read: account_id %v, want 777", resp.Data["account_id"])
	}
}

// TestInstallationCacheTiedToClient: an owner lookup made through the client of a replaced
// config must not be remembered for the new one, where the same installation ID may name another account.
func TestInstallationCacheTiedToClient(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme"})
	r, err := getRole(t.Context(), e.storage, "ci")
	if err != nil {
		t.Fatal(err)
	}
	old, err := e.b.defaultClient(t.Context(), e.storage)
	if err != nil {
		t.Fatal(err)
	}

	// Another GitHub with the same App, where installation 2001 belongs to globex and acme's is 7001.
	const acmeThere = 7001
	_, srv2 := newEmulator(t, fakegithub.Fixture{
		Apps: []fakegithub.App{{ID: testAppID, ClientID: testClientID, Slug: "vault-test", Name: "Vault Test", Owner: "acme"}},
		Installations: []fakegithub.Installation{
			{ID: testOrgInstall, AppID: testAppID, Account: "globex", AccountType: "Organization", RepositorySelection: "all",
				Repositories: []fakegithub.Repository{{ID: 8001, Name: "secret-plans"}}, Permissions: map[string]string{"contents": "write"}},
			{ID: acmeThere, AppID: testAppID, Account: "acme", AccountType: "Organization", RepositorySelection: "all",
				Repositories: []fakegithub.Repository{{ID: 8002, Name: "api"}}, Permissions: map[string]string{"contents": "write"}},
		},
	})
	resp, err := e.do(logical.UpdateOperation, "config", map[string]any{"base_url": srv2.URL, "private_key": testKeyPEM})
	mustOK(t, resp, err)

	// A mint that started before the config change finishes its lookup with the old client.
	m := &mint{b: e.b, s: e.storage, c: old, roleName: "ci", role: r}
	if _, err := m.installation(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	if got := e.mint("ci").Data["installation_id"]; got != int64(acmeThere) {
		t.Fatalf("a token of owner acme came from installation %v, want %d", got, acmeThere)
	}
}

// TestOwnerLookupRateLimitedSaysWhenToRetry: when GitHub rate-limits the lookup of a role's owner, the refusal says
// that finding the installation failed and when to retry.
func TestOwnerLookupRateLimitedSaysWhenToRetry(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)

	e.role("octo", map[string]any{"owner": "octocat"})
	e.gh.SetFaults(fakegithub.Faults{SecondaryRateLimit: 429, RetryAfter: 90})
	defer e.gh.SetFaults(fakegithub.Faults{})
	resp, err := e.do(logical.ReadOperation, "token/octo", nil)
	status, msg := mustFail(t, resp, err)
	if status != 429 {
		t.Fatalf("status %d", status)
	}
	wantContains(t, msg, "finding the installation", "retry after 1m30s")
}
