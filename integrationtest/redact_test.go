// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"strings"
	"testing"
)

// TestRedact checks the harness's own secret handling: what it prints of CLI output and server logs hides tokens
// and unseal keys. It needs no Vault.
func TestRedact(t *testing.T) {
	// Made-up values in the shapes of real ones, built at run time so that no scanner mistakes them for leaks.
	classic := "ghs_" + strings.Repeat("Ab1", 12)
	long := "ghs_1001_" + strings.Repeat("eyJ0", 30) + ".eyJhaWQiOjEwMDF9.c2ln-_x"
	tests := []struct {
		in, secret string
	}{
		{"token    " + classic + "\n", classic},
		{`{"token": "` + long + `"}`, long},
		{"VAULT_TOKEN=hvs.CAESIJ2x_y-z.more", "hvs.CAESIJ2x_y-z.more"},
		{"Unseal Key: 2IKigoBnUSEqbgtwVGpW840WQQvsDqHA3QUiEjsShmc=\nRoot Token: root", "2IKigoBnUSEqbgtwVGpW840WQQvsDqHA3QUiEjsShmc="},
	}
	for _, tt := range tests {
		got := redact(tt.in)
		if strings.Contains(got, tt.secret) || !strings.Contains(got, "<redacted>") {
			t.Errorf("redact(%q) = %q: the secret is still there", tt.in, got)
		}
	}
	if got := redact("role ci: repository \"infra\""); got != "role ci: repository \"infra\"" {
		t.Errorf("redact changed text without secrets: %q", got)
	}
}
