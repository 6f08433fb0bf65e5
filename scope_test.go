// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// The scope rules, through the paths: what a role write stores and a token write accepts as repositories (names,
// owners, IDs) and permissions (names, levels), and in which spelling. scope_fuzz_test.go fuzzes the same rules.

// TestRoleScopeValidation: a role write's repositories (names, owners, IDs, at most 500 together) and permissions
// (names and levels GitHub allows) are checked; a refused write names the entry and stores nothing.
func TestRoleScopeValidation(t *testing.T) {
	e := newTestEnv(t)
	many := make([]string, 501)
	for i := range many {
		many[i] = fmt.Sprintf("repo-%d", i)
	}
	tests := []struct {
		name  string
		data  map[string]any
		wants []string
	}{
		{"501 repositories", map[string]any{"owner": "acme", "repositories": many}, []string{"repositories has 501 entries", "at most 500"}},
		{"500 names and 1 id", map[string]any{"owner": "acme", "repositories": many[:500], "repository_ids": []int{7}}, []string{"501 repositories"}},
		{"bad repository name", map[string]any{"owner": "acme", "repositories": "api,we b"}, []string{`repository "we b"`}},
		{"dot name", map[string]any{"owner": "acme", "repositories": ".."}, []string{`repository ".."`}},
		{"owner/name on id role", map[string]any{"installation_id": 1, "repositories": "acme/api"}, []string{`repository "acme/api" has an owner`, `"api"`}},
		{"other owner", map[string]any{"owner": "acme", "repositories": "evil/api"}, []string{`repository "evil/api" belongs to "evil"`, `"acme"`}},
		{"bad repository id", map[string]any{"owner": "acme", "repository_ids": []int{0}}, []string{"repository_ids holds 0"}},
		{"dashed permission", map[string]any{"owner": "acme", "permissions": map[string]any{"pull-requests": "write"}}, []string{`permission "pull-requests"`, `did you mean "pull_requests"?`}},
		{"upper permission", map[string]any{"owner": "acme", "permissions": map[string]any{"Contents": "read"}}, []string{`did you mean "contents"?`}},
		{"workflows read", map[string]any{"owner": "acme", "permissions": map[string]any{"workflows": "read"}}, []string{`permission workflows does not accept level "read"`, "GitHub allows write"}},
		{"bad level", map[string]any{"owner": "acme", "permissions": map[string]any{"contents": "owner"}}, []string{`permission contents has level "owner"`, "read, write or admin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.do(logical.UpdateOperation, "roles/bad", tt.data)
			status, msg := mustFail(t, resp, err)
			if status != 400 {
				t.Errorf("status %d, want 400", status)
			}
			wantContains(t, msg, tt.wants...)
			if r, _ := getRole(t.Context(), e.storage, "bad"); r != nil {
				t.Fatalf("a refused write stored the role: %#v", r)
			}
		})
	}
}

// TestTokenWritesAcceptOnlyCanonicalSpelling: Vault's allowed_parameters and denied_parameters
// compare raw values, so a token write must not accept another spelling of something a policy names.
func TestTokenWritesAcceptOnlyCanonicalSpelling(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{
		"owner": "acme", "repositories": "api,Web", "repository_ids": "3003", "permissions": "contents=write,issues=read",
	})
	refused := []struct {
		name  string
		data  map[string]any
		wants []string
	}{
		{"owner prefix", map[string]any{"repositories": "acme/Web"}, []string{`"acme/Web"`, `"Web"`}},
		{"owner prefix upper case", map[string]any{"repositories": "ACME/Web"}, []string{`"ACME/Web"`, `"Web"`}},
		{"other case", map[string]any{"repositories": "web"}, []string{`"web"`, `"Web"`}},
		{"spaces in a list entry", map[string]any{"repositories": []any{" api"}}, []string{`" api"`, `"api"`}},
		{"upper-case level", map[string]any{"permissions": "contents=READ"}, []string{`"contents=READ"`, `"contents=read"`}},
		{"upper-case name", map[string]any{"permissions": "Contents=read"}, []string{`"Contents=read"`, `"contents=read"`}},
		{"spaces around =", map[string]any{"permissions": "contents = read"}, []string{`"contents = read"`, `"contents=read"`}},
		{"spaces in a list entry", map[string]any{"permissions": []any{"contents=read "}}, []string{`"contents=read "`, `"contents=read"`}},
		{"an object", map[string]any{"permissions": map[string]any{"contents": "read"}}, []string{"permissions", "name=level"}},
		{"hexadecimal id", map[string]any{"repository_ids": "0xBBB"}, []string{`"0xBBB"`, "decimal"}},
		{"leading zero", map[string]any{"repository_ids": "03003"}, []string{`"03003"`, "decimal"}},
		{"sign", map[string]any{"repository_ids": "+3003"}, []string{`"+3003"`, "decimal"}},
		// Through Vault a JSON number reaches the plugin as float64 (its gRPC boundary decodes request data without
		// json.Number); a policy never matches a number, whatever its value, so IDs are taken as strings alone.
		{"an ID as a JSON number", map[string]any{"repository_ids": []any{float64(3003)}}, []string{"3003", `"3003"`, "string"}},
		{"one JSON number", map[string]any{"repository_ids": float64(3003)}, []string{"3003", `"3003"`, "string"}},
		{"a JSON number among strings", map[string]any{"repository_ids": []any{"3001", float64(3003)}}, []string{`"3003"`, "string"}},
		{"a JSON number in a built-in's form", map[string]any{"repository_ids": []any{json.Number("3003")}}, []string{`"3003"`, "string"}},
		{"a fractional JSON number", map[string]any{"repository_ids": []any{3003.5}}, []string{"3003.5", "strings of digits"}},
		{"a JSON number past 2^53", map[string]any{"repository_ids": []any{1e20}}, []string{"1e+20", "strings of digits"}},
		{"a negative JSON number", map[string]any{"repository_ids": []any{float64(-3003)}}, []string{"-3003", "strings of digits"}},
	}
	for _, tt := range refused {
		t.Run("refused "+tt.name, func(t *testing.T) {
			before := e.gh.Stats().Calls[mintRoute]
			resp, err := e.do(logical.UpdateOperation, "token/ci", tt.data)
			status, msg := mustFail(t, resp, err)
			if status != 400 {
				t.Errorf("status %d, want 400", status)
			}
			wantContains(t, msg, tt.wants...)
			if e.gh.Stats().Calls[mintRoute] != before {
				t.Error("a refused write reached GitHub")
			}
		})
	}
	accepted := []struct {
		name  string
		data  map[string]any
		reach []string
	}{
		{"the role's spelling", map[string]any{"repositories": "Web"}, []string{"web"}},
		{"a comma list with spaces", map[string]any{"repositories": "api, Web", "permissions": "contents=read, issues=read"}, []string{"api", "web"}},
		{"a JSON list", map[string]any{"repositories": []any{"api"}, "permissions": []any{"contents=read"}}, []string{"api"}},
		{"an ID as a string", map[string]any{"repository_ids": "3003"}, []string{"infra"}},
		{"IDs as a JSON list of strings", map[string]any{"repository_ids": []any{"3003"}}, []string{"infra"}},
	}
	for _, tt := range accepted {
		t.Run("accepted "+tt.name, func(t *testing.T) {
			resp, err := e.do(logical.UpdateOperation, "token/ci", tt.data)
			mustOK(t, resp, err)
			if got := e.reach(resp.Data["token"].(string)); !reflect.DeepEqual(sorted(got), tt.reach) {
				t.Fatalf("token reaches %v, want %v", got, tt.reach)
			}
		})
	}
}

// TestTokenPermissionListEntriesAreNotSplit: in a JSON list of permissions each entry is one name=level, never split
// at commas, so that a policy's view of the list is the engine's.
func TestTokenPermissionListEntriesAreNotSplit(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("admin", map[string]any{"owner": "acme", "permissions": "contents=write"})

	resp, err := e.do(logical.UpdateOperation, "token/admin", map[string]any{
		"permissions": []any{"contents=read,administration=write"},
	})
	_, msg := mustFail(t, resp, err)
	wantContains(t, msg, `permission "contents=read,administration=write" is not a name=level entry`)
}
