// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

func TestInstallationsList(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	for i := range 247 {
		err := e.gh.AddInstallation(fakegithub.Installation{
			ID: int64(10000 + i), AppID: testAppID, Account: "org" + string(rune('a'+i%26)) + strings.Repeat("x", i/26),
			AccountType: "Organization", RepositorySelection: "all", Permissions: map[string]string{"metadata": "read"},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	e.gh.ResetStats()
	resp, err := e.do(logical.ListOperation, "installations/", nil)
	mustOK(t, resp, err)
	keys := resp.Data["keys"].([]string)
	if len(keys) != 250 {
		t.Fatalf("%d installations listed, want 250", len(keys))
	}
	if calls := e.gh.Stats().Calls["GET /app/installations"]; calls != 3 {
		t.Fatalf("%d pages fetched, want 3", calls)
	}
	info := resp.Data["key_info"].(map[string]any)["frozen"].(map[string]any)
	want := map[string]any{"installation_id": int64(testSuspended), "account_type": "Organization",
		"repository_selection": "all", "suspended": true}
	if !reflect.DeepEqual(info, want) {
		t.Fatalf("key_info[frozen] = %#v", info)
	}
}
