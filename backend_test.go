// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestBackendVersionAndPaths(t *testing.T) {
	// The version the build stamps into Version (-ldflags -X) is what the backend reports to Vault.
	defer func(v string) { Version = v }(Version)
	Version = "v9.8.7-test"
	e := newTestEnv(t)
	if got := e.b.PluginVersion().Version; got != "v9.8.7-test" {
		t.Fatalf("PluginVersion = %q, want the stamped v9.8.7-test", got)
	}
	if ua := userAgent(); ua != "vault-plugin-secrets-github-app/v9.8.7-test" {
		t.Fatalf("User-Agent %q does not carry the version", ua)
	}
	if e.b.Type() != logical.TypeLogical {
		t.Fatalf("backend type %v", e.b.Type())
	}
	if got := e.b.SpecialPaths().SealWrapStorage; !slices.Equal(got, []string{"config", "apps/", "revocation/"}) {
		t.Fatalf("SealWrapStorage = %v, want [config apps/ revocation/]", got)
	}
	for _, p := range e.b.Paths {
		if p.HelpSynopsis == "" || p.HelpDescription == "" {
			t.Errorf("path %q lacks help", p.Pattern)
		}
		for name, f := range p.Fields {
			if !strings.HasSuffix(strings.TrimSpace(f.Description), ".") {
				t.Errorf("path %q field %q: description is not a full sentence: %q", p.Pattern, name, f.Description)
			}
		}
		if len(p.Operations) == 0 || p.Callbacks != nil {
			t.Errorf("path %q must use Operations, not Callbacks", p.Pattern)
		}
		if p.DisplayAttrs == nil || p.DisplayAttrs.OperationPrefix != operationPrefix {
			t.Errorf("path %q lacks the operation prefix", p.Pattern)
		}
	}
}

// TestInvalidateConfigDropsClient: when another node rewrites the config, Vault invalidates the key here and the
// next mint builds a client from the new config.
func TestInvalidateConfigDropsClient(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme"})
	e.mint("ci")
	if e.b.cachedDefault() == nil {
		t.Fatal("no cached client after a mint")
	}

	cfg, err := getConfig(t.Context(), e.storage)
	if err != nil {
		t.Fatal(err)
	}
	cfg.BaseURL = e.srv.URL + "/api/v3"
	entry, err := logical.StorageEntryJSON(configStoragePath, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.storage.Put(t.Context(), entry); err != nil {
		t.Fatal(err)
	}
	e.b.InvalidateKey(t.Context(), configStoragePath)
	if e.b.cachedDefault() != nil {
		t.Fatal("Invalidate kept the client")
	}
	resp := e.mint("ci")
	if got := resp.Secret.InternalData["base_url"]; got != cfg.BaseURL {
		t.Fatalf("mint used base URL %v, want the new %v", got, cfg.BaseURL)
	}
}
