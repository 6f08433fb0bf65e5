// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

func TestTokenOverGrantIsRevoked(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	e.gh.SetFaults(fakegithub.Faults{OverGrant: true})

	resp, err := e.do(logical.ReadOperation, "token/ci", nil)
	status, msg := mustFail(t, resp, err)
	if status != 502 {
		t.Fatalf("status %d", status)
	}
	wantContains(t, msg, "GitHub granted more than asked", "revoked", "permission contents=write", "repository acme/web")
	toks := e.gh.Tokens()
	if len(toks) != 1 || !toks[0].Revoked {
		t.Fatalf("emulator tokens after an over-grant: %d, revoked=%v", len(toks), len(toks) == 1 && toks[0].Revoked)
	}
	if strings.Contains(msg, toks[0].Value) || strings.Contains(e.logs.String(), toks[0].Value) {
		t.Fatal("the over-broad token leaked into the error or the log")
	}
}

// TestOverGrantCheckFailsClosed: what the engine cannot rank or place counts as more than
// asked: an unknown level, or a repository of another account, also when GitHub's answer leaves other fields out.
// An answer that leaves out what the check needs (GitHub Enterprise Server has been seen to) is no over-grant, GitHub
// enforcing what was asked all the same, but it never passes silently: the token comes back with what was asked and a
// warning, and the engine logs it with the token's hash and counts it.
func TestOverGrantCheckFailsClosed(t *testing.T) {
	e := newTestEnv(t)
	tm := e.withTamper()
	e.configure(nil)
	e.role("byowner", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	e.role("byid", map[string]any{"installation_id": testOrgInstall, "repositories": "api", "permissions": "contents=read"})
	e.role("whole", map[string]any{"owner": "acme"})
	foreign := func(answer map[string]any) {
		repo := answer["repositories"].([]any)[0].(map[string]any)
		repo["full_name"] = "evil/api"
		repo["owner"] = map[string]any{"login": "evil", "id": 666, "type": "Organization"}
	}
	omit := func(fields ...string) func(map[string]any) {
		return func(answer map[string]any) {
			for _, f := range fields {
				delete(answer, f)
			}
		}
	}
	then := func(changes ...func(map[string]any)) func(map[string]any) {
		return func(answer map[string]any) {
			for _, c := range changes {
				c(answer)
			}
		}
	}
	set := func(field string, value any) func(map[string]any) {
		return func(answer map[string]any) { answer[field] = value }
	}
	overGrants := []struct {
		name, role string
		change     func(map[string]any)
		want       string
	}{
		{"a level the engine does not know", "byowner", func(a map[string]any) {
			a["permissions"].(map[string]any)["contents"] = "maintain"
		}, "permission contents=maintain"},
		{"another account's repository, owner role", "byowner", foreign, "repository evil/api"},
		{"another account's repository, installation role", "byid", foreign, "repository evil/api"},
		{"permissions left out, another account's repository", "byowner", then(foreign, omit("permissions")), "repository evil/api"},
		{"repository_selection left out, another account's repository", "byid", then(foreign, omit("repository_selection")), "repository evil/api"},
		{"repository_selection and repositories left out, a level above", "byowner",
			then(omit("repository_selection", "repositories"), set("permissions", map[string]any{"contents": "write"})), "permission contents=write"},
		{"permissions and repositories left out, every repository", "byowner",
			then(omit("permissions", "repositories"), set("repository_selection", "all")), `repository_selection "all"`},
	}
	for _, tt := range overGrants {
		t.Run(tt.name, func(t *testing.T) {
			tm.set(tt.change)
			defer tm.set(nil)
			issued := e.gh.Stats().TokensIssued
			resp, err := e.do(logical.ReadOperation, "token/"+tt.role, nil)
			status, msg := mustFail(t, resp, err)
			if status != 502 {
				t.Errorf("status %d, want 502", status)
			}
			wantContains(t, msg, "GitHub granted more than asked", tt.want)
			toks := e.gh.Tokens()
			if e.gh.Stats().TokensIssued != issued+1 || !toks[len(toks)-1].Revoked {
				t.Fatal("the over-broad token was not revoked")
			}
		})
	}

	unstatedCount := func(role string) float64 {
		return max(0, sample(parseMetrics(t, metricsText(t, e)), "github_app_unstated_scope_tokens_total", map[string]string{"role": role}))
	}
	asked := map[string]string{"contents": "read"}
	unstated := []struct {
		name, role string
		change     func(map[string]any)
		missing    []string
		// What the response says of the token's scope: what was asked where GitHub did not say.
		permissions map[string]string
		selection   string
		repos       []string
	}{
		{"permissions and repositories left out", "byowner", omit("permissions", "repositories"),
			[]string{"permissions", "repositories"}, asked, "selected", []string{"api"}},
		{"repository_selection left out", "byid", omit("repository_selection"),
			[]string{"repository_selection"}, map[string]string{"contents": "read", "metadata": "read"}, "selected", []string{"api"}},
		{"permissions null", "byid", set("permissions", nil), []string{"permissions"}, asked, "selected", []string{"api"}},
		{"every scope field left out", "byowner", omit("permissions", "repository_selection", "repositories"),
			[]string{"permissions", "repository_selection", "repositories"}, asked, "selected", []string{"api"}},
		{"every scope field left out, nothing limited", "whole", omit("permissions", "repository_selection", "repositories"),
			[]string{"permissions", "repository_selection"}, nil, "", []string{}},
	}
	for _, tt := range unstated {
		t.Run(tt.name, func(t *testing.T) {
			tm.set(tt.change)
			defer tm.set(nil)
			counted := unstatedCount(tt.role)
			resp, err := e.do(logical.ReadOperation, "token/"+tt.role, nil)
			mustOK(t, resp, err)
			if resp == nil || resp.Secret == nil {
				t.Fatalf("no token: %#v", resp)
			}
			if len(resp.Warnings) != 1 {
				t.Fatalf("warnings %q, want one saying that GitHub did not state the token's scope", resp.Warnings)
			}
			wantContains(t, resp.Warnings[0], append([]string{"GitHub's answer did not state the token's", "what was asked"}, tt.missing...)...)
			got := resp.Data
			if perms, _ := got["permissions"].(map[string]string); !maps.Equal(perms, tt.permissions) ||
				got["repository_selection"] != tt.selection || !slices.Equal(got["repositories"].([]string), tt.repos) {
				t.Errorf("the response states permissions %v, repository_selection %q, repositories %q; want %v, %q, %q",
					got["permissions"], got["repository_selection"], got["repositories"], tt.permissions, tt.selection, tt.repos)
			}
			tok := got["token"].(string)
			if info, _ := e.gh.Token(tok); info.Revoked {
				t.Error("the token was revoked")
			}
			logs := e.logs.String()
			wantContains(t, logs, "did not state", got["hashed_token"].(string))
			if strings.Contains(logs, tok) {
				t.Fatal("the token is in the log")
			}
			if n := unstatedCount(tt.role); n != counted+1 {
				t.Errorf("github_app_unstated_scope_tokens_total{role=%q} = %v, want %v", tt.role, n, counted+1)
			}
		})
	}
	t.Run("the emulator leaves the scope out", func(t *testing.T) {
		e.gh.SetFaults(fakegithub.Faults{OmitTokenScope: true})
		defer e.gh.SetFaults(fakegithub.Faults{})
		resp := e.mint("byid")
		if len(resp.Warnings) != 1 {
			t.Fatalf("warnings %q", resp.Warnings)
		}
		wantContains(t, resp.Warnings[0], "permissions, repository_selection, repositories")
		// What the response states is what GitHub enforces.
		if got := e.reach(resp.Data["token"].(string)); !slices.Equal(got, resp.Data["repositories"].([]string)) {
			t.Errorf("the token reaches %q; the response says %q", got, resp.Data["repositories"])
		}
	})
	t.Run("control", func(t *testing.T) {
		for _, role := range []string{"byowner", "byid", "whole"} {
			if resp := e.mint(role); len(resp.Warnings) > 0 {
				t.Errorf("%s: warnings %q", role, resp.Warnings)
			}
		}
	})
}
