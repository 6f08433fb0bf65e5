// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package ghcontract

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDocumentsLoadAndValidate(t *testing.T) {
	// Operations the plugin and the emulator rely on; each edition must describe all of them.
	operations := []struct{ method, path string }{
		{"POST", "/app/installations/{installation_id}/access_tokens"},
		{"DELETE", "/installation/token"},
		{"GET", "/app"},
		{"GET", "/app/installations"},
		{"GET", "/app/installations/{installation_id}"},
		{"GET", "/orgs/{org}/installation"},
		{"GET", "/users/{username}/installation"},
		{"GET", "/users/{username}"},
		{"GET", "/rate_limit"},
	}
	for _, edition := range Editions() {
		t.Run(edition, func(t *testing.T) {
			raw, err := Document(edition)
			if err != nil {
				t.Fatalf("Document: %v", err)
			}
			if !json.Valid(raw) {
				t.Fatal("Document returned invalid JSON")
			}
			doc, err := Load(edition)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !strings.HasPrefix(doc.OpenAPI, "3.0") {
				t.Errorf("openapi = %q, want 3.0.x (nullable is interpreted the 3.0 way)", doc.OpenAPI)
			}
			for _, op := range operations {
				item := doc.Paths.Value(op.path)
				if item == nil || item.GetOperation(op.method) == nil {
					t.Errorf("%s %s is not described", op.method, op.path)
				}
			}
			for _, schema := range []string{"app-permissions", "installation-token", "integration", basicErrorSchema} {
				if doc.Components.Schemas[schema] == nil {
					t.Errorf("schema %q is missing", schema)
				}
			}
		})
	}
}

func TestLoadReturnsIndependentDocuments(t *testing.T) {
	a, err := Load(EditionDotcom)
	if err != nil {
		t.Fatal(err)
	}
	a.Servers = nil
	b, err := Load(EditionDotcom)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Servers) == 0 {
		t.Fatal("changing one loaded document changed another")
	}
}

func TestUnknownEdition(t *testing.T) {
	for _, edition := range []string{"", "ghes-2.0", "api.github.com.openapi.json", "../openapi/ghec"} {
		if _, err := Document(edition); err == nil {
			t.Errorf("Document(%q) succeeded", edition)
		}
		if _, err := Load(edition); err == nil {
			t.Errorf("Load(%q) succeeded", edition)
		}
		if _, err := NewValidator(edition); err == nil {
			t.Errorf("NewValidator(%q) succeeded", edition)
		}
	}
}
