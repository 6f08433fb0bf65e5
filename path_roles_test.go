// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestRoleValidation: a role write without exactly one valid binding, or with a negative ttl, is refused and stores
// nothing. The scope's own rules are in TestRoleScopeValidation.
func TestRoleValidation(t *testing.T) {
	e := newTestEnv(t)
	tests := []struct {
		name  string
		data  map[string]any
		wants []string
	}{
		{"neither binding", map[string]any{"repositories": "api"}, []string{"installation_id or owner is required"}},
		{"both bindings", map[string]any{"installation_id": 1, "owner": "acme"}, []string{"installation_id 1 and owner \"acme\" are both given"}},
		{"negative installation", map[string]any{"installation_id": -1}, []string{"installation_id -1"}},
		{"bad owner", map[string]any{"owner": "-acme-"}, []string{`owner "-acme-"`}},
		{"negative ttl", map[string]any{"owner": "acme", "ttl": "-1m"}, []string{`"ttl"`, "negative value '-60'"}},
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

func TestRoleWarnings(t *testing.T) {
	e := newTestEnv(t)
	tests := []struct {
		name  string
		data  map[string]any
		wants []string
	}{
		{"everything", map[string]any{"installation_id": testOrgInstall},
			[]string{"every repository the installation can reach", "every permission of the installation"}},
		{"unknown permission", map[string]any{"owner": "acme", "repositories": "api", "permissions": "quantum_flux=read"},
			[]string{`permission "quantum_flux" is not in GitHub's published list`}},
		{"long ttl", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read", "ttl": "2h"},
			[]string{"ttl 2h0m0s is longer than GitHub's token lifetime"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.do(logical.UpdateOperation, "roles/w", tt.data)
			mustOK(t, resp, err)
			if resp == nil {
				t.Fatal("no warnings")
			}
			wantContains(t, strings.Join(resp.Warnings, "\n"), tt.wants...)
		})
	}
}

func TestRoleLifecycle(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.do(logical.CreateOperation, "roles/ci", map[string]any{
		"owner":          "acme",
		"repositories":   []string{"api", "ACME/web", "api"},
		"repository_ids": "3003",
		"permissions":    map[string]any{"contents": "read", "pull_requests": "WRITE"},
		"ttl":            "15m",
	})
	mustOK(t, resp, err)
	if resp != nil {
		t.Fatalf("unexpected warnings: %v", resp.Warnings)
	}
	want := map[string]any{
		"installation_id": int64(0), "owner": "acme", "account_id": int64(0),
		"repositories": []string{"api", "web"}, "repository_ids": []int64{3003}, "repository_patterns": []string{},
		"permissions": map[string]string{"contents": "read", "pull_requests": "write"},
		"ttl":         int64(900), "templated": false, "apps": []string{"default"}, "app_selection": "budget",
	}
	resp, err = e.do(logical.ReadOperation, "roles/ci", nil)
	mustOK(t, resp, err)
	if !reflect.DeepEqual(resp.Data, want) {
		t.Fatalf("role read:\n got %#v\nwant %#v", resp.Data, want)
	}

	// An update keeps what it does not name.
	resp, err = e.do(logical.UpdateOperation, "roles/ci", map[string]any{"ttl": "10m"})
	mustOK(t, resp, err)
	resp, err = e.do(logical.ReadOperation, "roles/ci", nil)
	mustOK(t, resp, err)
	want["ttl"] = int64(600)
	if !reflect.DeepEqual(resp.Data, want) {
		t.Fatalf("role after update:\n got %#v\nwant %#v", resp.Data, want)
	}

	// Moving the role from owner to installation_id in one write.
	resp, err = e.do(logical.UpdateOperation, "roles/ci", map[string]any{"installation_id": testOrgInstall})
	mustOK(t, resp, err)
	resp, err = e.do(logical.ReadOperation, "roles/ci", nil)
	mustOK(t, resp, err)
	if resp.Data["owner"] != "" || resp.Data["installation_id"] != int64(testOrgInstall) {
		t.Fatalf("binding not replaced: %#v", resp.Data)
	}

	resp, err = e.do(logical.CreateOperation, "roles/admin", map[string]any{"installation_id": testUserInstall})
	mustOK(t, resp, err)
	resp, err = e.do(logical.ListOperation, "roles/", nil)
	mustOK(t, resp, err)
	if got := resp.Data["keys"]; !reflect.DeepEqual(got, []string{"admin", "ci"}) {
		t.Fatalf("list = %v", got)
	}

	resp, err = e.do(logical.DeleteOperation, "roles/ci", nil)
	mustOK(t, resp, err)
	resp, err = e.do(logical.ReadOperation, "roles/ci", nil)
	if err != nil || resp != nil {
		t.Fatalf("read after delete = %v, %v", resp, err)
	}
	resp, err = e.do(logical.ListOperation, "roles/", nil)
	mustOK(t, resp, err)
	if got := resp.Data["keys"]; !reflect.DeepEqual(got, []string{"admin"}) {
		t.Fatalf("list after delete = %v", got)
	}
}
