// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
)

// TestPolicyBypassSpellings runs the docs' policies against every other spelling of what they name. Vault's
// allowed_parameters and denied_parameters compare raw values; the plugin accepts only the spelling a policy would
// name, so no other spelling yields a token: on a role that lists repositories, the role's spelling; on one that
// does not, GitHub's.
func TestPolicyBypassSpellings(t *testing.T) {
	s := requireStack(t)
	v, gh := s.vault, s.gh
	mount := v.newMount(t, s.bins.pluginVersion)
	v.configure(t, mount, gh)
	v.cli(t, "write", mount+"/roles/ci", "owner="+acmeOwner, "repositories=api,web,infra",
		"permissions=contents=write,issues=read", "ttl=10m")
	// The same role without a repository limit, on a mount of its own so that the example policies name it as they
	// are.
	open := v.newMount(t, s.bins.pluginVersion)
	v.configure(t, open, gh)
	v.cli(t, "write", open+"/roles/ci", "owner="+acmeOwner, "permissions=contents=write,issues=read", "ttl=10m")

	// refusedAt writes data as token to mount's token/ci and fails the test unless Vault (403) or the plugin (400)
	// refused it, with no token left live at the emulator: none issued, or only the one the engine mints to list the
	// installation's repositories and revokes before it answers.
	refusedAt := func(t *testing.T, mount, token string, data map[string]any) {
		t.Helper()
		before := gh.stats(t)
		secret, err := v.client(t, token).Logical().Write(mount+"/token/ci", data)
		if err == nil {
			tok, _ := secret.Data["token"].(string)
			_, repos, _ := gh.reach(tok)
			t.Fatalf("%v got a token reaching %v", data, repos)
		}
		var re *vaultapi.ResponseError
		if !errors.As(err, &re) || (re.StatusCode != http.StatusForbidden && re.StatusCode != http.StatusBadRequest) {
			t.Fatalf("%v: want 403 from Vault or 400 from the plugin, got %s", data, redactErr(err))
		}
		t.Logf("%v: HTTP %d", data, re.StatusCode)
		after := gh.stats(t)
		issued := (after.TokensLive + after.TokensRevoked + after.TokensExpired) - (before.TokensLive + before.TokensRevoked + before.TokensExpired)
		if after.TokensLive != before.TokensLive || issued > 1 {
			t.Fatalf("%v: the emulator issued %d tokens, %d left live", data, issued, after.TokensLive-before.TokensLive)
		}
	}
	refused := func(t *testing.T, token string, data map[string]any) { t.Helper(); refusedAt(t, mount, token, data) }

	t.Run("policy-ci-deny.hcl", func(t *testing.T) {
		token := tokenWithExamplePolicy(t, v, mount, "policy-ci-deny.hcl")
		out := v.mintCLI(t, token, mount+"/token/ci", "repositories=api,web", "permissions=contents=read")
		gh.mustReach(t, out.Data.Token, "api", "web")
		if st := gh.status(t, out.Data.Token); st.Permissions["contents"] != "read" {
			t.Errorf("the allowed write got contents=%s", st.Permissions["contents"])
		}
		for _, data := range []map[string]any{
			{"repositories": "infra", "permissions": "contents=read"},
			{"repositories": "web,infra", "permissions": "contents=read"},
			{"repositories": "Infra", "permissions": "contents=read"},
			{"repositories": "INFRA", "permissions": "contents=read"},
			{"repositories": "acme/infra", "permissions": "contents=read"},
			{"repositories": "ACME/Infra", "permissions": "contents=read"},
			{"repositories": []string{" infra"}, "permissions": "contents=read"},
			{"repositories": []string{"infra "}, "permissions": "contents=read"},
			{"repository_ids": "3003", "repositories": "api", "permissions": "contents=read"},
			{"repositories": "api", "permissions": "contents=write"},
			{"repositories": "api", "permissions": "contents=WRITE"},
			{"repositories": "api", "permissions": "Contents=write"},
			{"repositories": "api", "permissions": "contents = write"},
			{"repositories": "api", "permissions": []string{"contents=write "}},
			{"repositories": "api", "permissions": map[string]any{"contents": "write"}},
			{"repositories": "api"},
		} {
			name, _ := json.Marshal(data)
			t.Run(string(name), func(t *testing.T) { refused(t, token, data) })
		}
	})

	t.Run("policy-ci-deny.hcl, role without a repository limit", func(t *testing.T) {
		token := tokenWithExamplePolicy(t, v, open, "policy-ci-deny.hcl")
		out := v.mintCLI(t, token, open+"/token/ci", "repositories=api,web", "permissions=contents=read")
		gh.mustReach(t, out.Data.Token, "api", "web")
		for _, data := range []map[string]any{
			{"repositories": "infra", "permissions": "contents=read"},
			{"repositories": "Infra", "permissions": "contents=read"},
			{"repositories": "INFRA", "permissions": "contents=read"},
			{"repositories": "web,iNfRa", "permissions": "contents=read"},
			{"repositories": []string{"api", "Infra"}, "permissions": "contents=read"},
			{"repositories": "acme/infra", "permissions": "contents=read"},
			{"repositories": "ACME/Infra", "permissions": "contents=read"},
			{"repositories": []string{" infra"}, "permissions": "contents=read"},
			{"repositories": "api", "permissions": "contents=WRITE"},
		} {
			name, _ := json.Marshal(data)
			t.Run(string(name), func(t *testing.T) { refusedAt(t, open, token, data) })
		}
	})

	// A JSON number never matches a policy's entry (Vault compares a policy's strings with strings only): a policy
	// that denies an ID would not see it, so the plugin takes IDs as strings alone.
	t.Run("repository IDs as JSON numbers", func(t *testing.T) {
		policy := fmt.Sprintf(`path "%s/token/ci" {
  capabilities      = ["update"]
  denied_parameters = { "repository_ids" = ["3003"] }
}`, open)
		token := tokenWithPolicyText(t, v, open+"-deny-id", policy)
		secret, err := v.client(t, token).Logical().Write(open+"/token/ci", map[string]any{"repository_ids": "3001"})
		if err != nil {
			t.Fatalf("the control write was refused: %s", redactErr(err))
		}
		gh.mustReach(t, secret.Data["token"].(string), "api")
		for _, data := range []map[string]any{
			{"repository_ids": "3003"},
			{"repository_ids": []any{3003}},
			{"repository_ids": 3003},
			{"repository_ids": []any{"3001", 3003}},
		} {
			name, _ := json.Marshal(data)
			t.Run(string(name), func(t *testing.T) { refusedAt(t, open, token, data) })
		}
	})

	t.Run("policy-ci-narrow.hcl", func(t *testing.T) {
		token := tokenWithExamplePolicy(t, v, mount, "policy-ci-narrow.hcl")
		for _, data := range []map[string]any{
			{"repositories": "API"},
			{"repositories": "acme/api"},
			{"repositories": []string{"api "}},
			{"repositories": "api", "permissions": map[string]any{"contents": "write"}},
			{"repositories": "api", "permissions": "contents=WRITE"},
		} {
			name, _ := json.Marshal(data)
			t.Run(string(name), func(t *testing.T) { refused(t, token, data) })
		}
	})

	// What docs/policies.md warns about: a glob in allowed_parameters is first matched against the whole comma-joined
	// string, so "api*" lets "api,infra" through. Only exact values are safe.
	t.Run("a glob matches the whole string", func(t *testing.T) {
		policy := fmt.Sprintf(`path "%s/token/ci" {
  capabilities        = ["update"]
  required_parameters = ["repositories"]
  allowed_parameters  = { "repositories" = ["api*"] }
}`, mount)
		token := tokenWithPolicyText(t, v, mount+"-glob", policy)
		out := v.mintCLI(t, token, mount+"/token/ci", "repositories=api,infra")
		gh.mustReach(t, out.Data.Token, "api", "infra")
	})
}
