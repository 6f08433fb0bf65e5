// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
)

// TestRegistration checks what an operator sees of the plugin in Vault's catalog and mount table, and that its
// help and OpenAPI metadata reach `vault path-help` and sys/internal/specs/openapi.
func TestRegistration(t *testing.T) {
	s := requireStack(t)
	v := s.vault
	version := s.bins.pluginVersion
	mount := v.newMount(t, version)

	t.Run("catalog", func(t *testing.T) {
		// The table an operator reads, then the same as JSON for exact values.
		table := v.cli(t, "plugin", "info", "-version="+version, "secret", pluginName)
		for _, want := range []string{version, s.pluginSHA, pluginName} {
			if !strings.Contains(table, want) {
				t.Errorf("vault plugin info does not show %q:\n%s", want, table)
			}
		}
		var d struct {
			Name    string `json:"name"`
			Version string `json:"version"`
			SHA256  string `json:"sha256"`
			Builtin bool   `json:"builtin"`
			Command string `json:"command"`
		}
		v.cliJSON(t, v.rootToken, &d, "plugin", "info", "-format=json", "-version="+version, "secret", pluginName)
		if d.Name != pluginName || d.Version != version || d.SHA256 != s.pluginSHA || d.Builtin || d.Command != pluginName {
			t.Errorf("vault plugin info: got %+v, want name %s, version %s, sha256 %s, not builtin", d, pluginName, version, s.pluginSHA)
		}
	})

	t.Run("mount runs the registered version", func(t *testing.T) {
		var mounts map[string]struct {
			Type                 string `json:"type"`
			PluginVersion        string `json:"plugin_version"`
			RunningPluginVersion string `json:"running_plugin_version"`
			RunningSHA256        string `json:"running_sha256"`
		}
		v.cliJSON(t, v.rootToken, &mounts, "secrets", "list", "-detailed", "-format=json")
		m, ok := mounts[mount+"/"]
		if !ok {
			t.Fatalf("vault secrets list -detailed has no %s/", mount)
		}
		if m.Type != pluginName || m.PluginVersion != version || m.RunningPluginVersion != version || m.RunningSHA256 != s.pluginSHA {
			t.Errorf("mount %s/: got %+v, want type %s running version %s with sha256 %s", mount, m, pluginName, version, s.pluginSHA)
		}
		// And the table shows the running version on the mount's line.
		table := v.cli(t, "secrets", "list", "-detailed")
		found := false
		for _, l := range strings.Split(table, "\n") {
			if strings.HasPrefix(l, mount+"/") && strings.Contains(l, version) {
				found = true
			}
		}
		if !found {
			t.Errorf("vault secrets list -detailed: no line for %s/ showing %s:\n%s", mount, version, table)
		}
	})

	t.Run("path-help", func(t *testing.T) {
		// Descriptions are compared with white space normalised: Vault may wrap them.
		tests := []struct {
			path string
			want []string
		}{
			{mount + "/roles/x", []string{
				"Manage roles: which installation, repositories and permissions tokens may carry.",
				"Whether owner, repositories and repository_ids may hold Vault identity templates",
				"Names of the repositories a token may cover, without the owner. Empty means every repository the installation can reach.",
				"The permissions a token may carry, as name=level pairs such as contents=read or pull_requests=write.",
			}},
			{mount + "/token/ci", []string{
				"Mint a GitHub App installation access token for a role.",
				"Names of repositories the token should cover: a subset of the role's.",
			}},
			{mount + "/config", []string{
				"Configure the GitHub App whose installation tokens this engine mints.",
				"The App's RSA private key in PEM",
				"The most calls to GitHub this mount has in flight at once",
			}},
			{mount + "/status", []string{"the first thing to look at when tokens fail"}},
			{mount + "/metrics", []string{"Prometheus' text exposition format"}},
		}
		for _, tt := range tests {
			help := normalizeSpace(v.cli(t, "path-help", tt.path))
			for _, want := range tt.want {
				if !strings.Contains(help, want) {
					t.Errorf("vault path-help %s does not say %q:\n%s", tt.path, want, help)
				}
			}
		}
	})

	t.Run("openapi", func(t *testing.T) {
		ids := openAPIOperationIDs(t, s, mount)
		for _, want := range []string{
			"github-app-configure",
			"github-app-read-configuration",
			"github-app-delete-configuration",
			"github-app-write-role",
			"github-app-read-role",
			"github-app-delete-role",
			"github-app-list-roles",
			"github-app-generate-token",
			"github-app-generate-token-with-parameters",
			"github-app-list-installations",
			"github-app-read-status",
			"github-app-read-metrics",
		} {
			if !slices.Contains(ids, want) {
				t.Errorf("sys/internal/specs/openapi has no operation %s for %s/; it has %v", want, mount, ids)
			}
		}
		for _, id := range ids {
			if !strings.HasPrefix(id, "github-app-") {
				t.Errorf("operation %s of %s/ lacks the github-app- prefix", id, mount)
			}
		}
	})
}

// openAPIOperationIDs returns the operation IDs sys/internal/specs/openapi lists under the mount's paths.
func openAPIOperationIDs(t *testing.T, s *shared, mount string) []string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.vault.addr+"/v1/sys/internal/specs/openapi", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", s.vault.rootToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET sys/internal/specs/openapi: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET sys/internal/specs/openapi: %s: %s", resp.Status, body)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("decoding the OpenAPI document: %v", err)
	}
	var ids []string
	for path, item := range doc.Paths {
		if !strings.HasPrefix(path, "/"+mount+"/") {
			continue
		}
		for _, method := range []string{"get", "post", "delete", "patch"} {
			raw, ok := item[method]
			if !ok {
				continue
			}
			var op struct {
				OperationID string `json:"operationId"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("decoding %s %s: %v", method, path, err)
			}
			ids = append(ids, op.OperationID)
		}
	}
	if len(ids) == 0 {
		t.Fatalf("sys/internal/specs/openapi lists no path under /%s/", mount)
	}
	sort.Strings(ids)
	return ids
}
