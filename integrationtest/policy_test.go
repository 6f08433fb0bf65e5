// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
)

// TestPolicies checks the policies of docs/policies.md (examples/policy-*.hcl) against a real Vault: who may mint which
// token.
func TestPolicies(t *testing.T) {
	s := requireStack(t)
	v, gh := s.vault, s.gh
	mount := v.newMount(t, s.bins.pluginVersion)
	v.configure(t, mount, gh)
	v.cli(t, "write", mount+"/roles/ci", "owner="+acmeOwner, "repositories=api,web",
		"permissions=contents=read,pull_requests=write", "ttl=10m")
	v.cli(t, "write", mount+"/roles/admin", "owner="+acmeOwner, "permissions=contents=write", "ttl=10m")

	tokenWithPolicy := func(t *testing.T, example string) string {
		t.Helper()
		return tokenWithExamplePolicy(t, v, mount, example)
	}

	t.Run("policy-ci-read.hcl", func(t *testing.T) {
		reader := tokenWithPolicy(t, "policy-ci-read.hcl")

		out := v.mintCLI(t, reader, mount+"/token/ci")
		gh.mustReach(t, out.Data.Token, "api", "web")

		denied := []struct {
			name string
			args []string
		}{
			{"another role", []string{"read", mount + "/token/admin"}},
			{"the config", []string{"read", mount + "/config"}},
			{"writing the config", []string{"write", mount + "/config", "app_id=1"}},
			{"the roles", []string{"read", mount + "/roles/ci"}},
			{"a narrowing write", []string{"write", mount + "/token/ci", "repositories=api"}},
		}
		for _, tt := range denied {
			t.Run(tt.name, func(t *testing.T) { v.cliDenied(t, reader, tt.args...) })
		}
	})

	t.Run("policy-ci-narrow.hcl", func(t *testing.T) {
		narrower := tokenWithPolicy(t, "policy-ci-narrow.hcl")

		// The CLI sends repositories=... as one string; Vault checks each comma-separated name.
		cliTests := []struct {
			name    string
			params  []string
			allowed bool
		}{
			{"the allowed repository", []string{"repositories=api"}, true},
			{"with permissions and ttl", []string{"repositories=api", "permissions=contents=read", "ttl=1m"}, true},
			{"another repository", []string{"repositories=web"}, false},
			{"the allowed one and another", []string{"repositories=api,web"}, false},
			{"no repositories (the role's whole scope)", []string{"permissions=contents=read"}, false},
			{"repository IDs, which the policy does not list", []string{"repositories=api", "repository_ids=3002"}, false},
		}
		for _, tt := range cliTests {
			t.Run("cli "+tt.name, func(t *testing.T) {
				if !tt.allowed {
					v.cliDenied(t, narrower, append([]string{"write", mount + "/token/ci"}, tt.params...)...)
					return
				}
				out := v.mintCLI(t, narrower, mount+"/token/ci", tt.params...)
				gh.mustReach(t, out.Data.Token, "api")
			})
		}

		// The API may send a JSON list: Vault checks each element.
		c := v.client(t, narrower)
		apiTests := []struct {
			name    string
			data    map[string]any
			allowed bool
		}{
			{"list of the allowed repository", map[string]any{"repositories": []string{"api"}}, true},
			{"list with another repository", map[string]any{"repositories": []string{"api", "web"}}, false},
			{"list of another repository", map[string]any{"repositories": []string{"infra"}}, false},
		}
		for _, tt := range apiTests {
			t.Run("api "+tt.name, func(t *testing.T) {
				secret, err := c.Logical().Write(mount+"/token/ci", tt.data)
				if !tt.allowed {
					var re *vaultapi.ResponseError
					if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden {
						t.Fatalf("want HTTP 403, got %v", redactErr(err))
					}
					return
				}
				if err != nil {
					t.Fatalf("write: %v", redactErr(err))
				}
				token, _ := secret.Data["token"].(string)
				gh.mustReach(t, token, "api")
			})
		}

		// Vault's ACL lets an empty repositories through (no name in it is outside the allowed list), and
		// required_parameters is met by its presence: the plugin must refuse it rather than widen the token.
		for _, data := range []map[string]any{
			{"repositories": ""},
			{"repositories": []string{}},
		} {
			t.Run(fmt.Sprintf("empty %#v", data["repositories"]), func(t *testing.T) {
				v.mustRefuseEmpty(t, gh, narrower, mount+"/token/ci", data)
			})
		}

		// Only update: the role's whole scope by read is not granted.
		v.cliDenied(t, narrower, "read", mount+"/token/ci")
	})
}

// redactErr renders an error for the log without token values.
func redactErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return redact(err.Error())
}
