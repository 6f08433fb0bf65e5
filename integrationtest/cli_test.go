// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCLIEndToEnd is the operator's and the consumer's story with the vault CLI, each token checked at the
// emulator: what it reaches and what it may do.
func TestCLIEndToEnd(t *testing.T) {
	s := requireStack(t)
	v, gh := s.vault, s.gh
	mount := v.newMount(t, s.bins.pluginVersion)

	// The operator writes the App's ID and key (from a file, with @) and reads the config back.
	v.configure(t, mount, gh)
	var cfg struct {
		Data map[string]any `json:"data"`
	}
	v.cliJSON(t, v.rootToken, &cfg, "read", "-format=json", mount+"/config")
	if got := fmt.Sprint(cfg.Data["app_id"]); got != fmt.Sprint(appID) {
		t.Errorf("config app_id = %s, want %d", got, appID)
	}
	if fp, want := cfg.Data["private_key_fingerprint"], keyFingerprint(t, gh.keyFile); fp != want {
		t.Errorf("config private_key_fingerprint = %v, want %s", fp, want)
	}
	if _, ok := cfg.Data["private_key"]; ok {
		t.Errorf("config read returns private_key: it must be write-only")
	}
	if cfg.Data["base_url"] != gh.url {
		t.Errorf("config base_url = %v, want %s", cfg.Data["base_url"], gh.url)
	}

	// The CLI's comma forms for lists and for permissions.
	v.cli(t, "write", mount+"/roles/ci", "owner="+acmeOwner, "repositories=api,web",
		"permissions=contents=read,pull_requests=write", "ttl=10m")
	v.cli(t, "write", mount+"/roles/ops", fmt.Sprintf("installation_id=%d", acmeInstallID),
		"repositories=infra", "permissions=issues=write")

	t.Run("list roles", func(t *testing.T) {
		var roles []string
		v.cliJSON(t, v.rootToken, &roles, "list", "-format=json", mount+"/roles")
		if !sameSet(roles, []string{"ci", "ops"}) {
			t.Errorf("vault list %s/roles = %v, want [ci ops]", mount, roles)
		}
	})

	t.Run("list installations", func(t *testing.T) {
		var accounts []string
		v.cliJSON(t, v.rootToken, &accounts, "list", "-format=json", mount+"/installations")
		if !sameSet(accounts, []string{acmeOwner, octocatAccount}) {
			t.Errorf("vault list %s/installations = %v, want [%s %s]", mount, accounts, acmeOwner, octocatAccount)
		}
		// -detailed shows the key info an operator needs for a role.
		table := v.cli(t, "list", "-detailed", mount+"/installations")
		if !strings.Contains(table, fmt.Sprint(acmeInstallID)) || !strings.Contains(table, "Organization") {
			t.Errorf("vault list -detailed %s/installations does not show installation %d of an Organization:\n%s",
				mount, acmeInstallID, table)
		}
	})

	t.Run("read role", func(t *testing.T) {
		var role struct {
			Data struct {
				Owner        string            `json:"owner"`
				Repositories []string          `json:"repositories"`
				Permissions  map[string]string `json:"permissions"`
				TTL          int               `json:"ttl"`
			} `json:"data"`
		}
		v.cliJSON(t, v.rootToken, &role, "read", "-format=json", mount+"/roles/ci")
		d := role.Data
		wantPerms := map[string]string{"contents": "read", "pull_requests": "write"}
		if d.Owner != acmeOwner || !sameSet(d.Repositories, []string{"api", "web"}) || !maps.Equal(d.Permissions, wantPerms) || d.TTL != 600 {
			t.Errorf("role ci reads back as %+v", d)
		}
	})

	t.Run("read token", func(t *testing.T) {
		out := v.mintCLI(t, v.rootToken, mount+"/token/ci")
		if out.LeaseDuration != 600 || out.Renewable {
			t.Errorf("lease: duration %ds renewable %v, want 600s, not renewable", out.LeaseDuration, out.Renewable)
		}
		if !strings.HasPrefix(out.LeaseID, mount+"/token/ci/") {
			t.Errorf("lease ID %q is not under %s/token/ci/", out.LeaseID, mount)
		}
		d := out.Data
		if d.Role != "ci" || d.InstallationID != acmeInstallID || d.RepositorySelection != "selected" ||
			!sameSet(d.Repositories, []string{"api", "web"}) {
			t.Errorf("token data: role %q installation %d selection %q repositories %v", d.Role, d.InstallationID,
				d.RepositorySelection, d.Repositories)
		}
		if exp, err := time.Parse(time.RFC3339, d.ExpiresAt); err != nil || time.Until(exp) < 50*time.Minute {
			t.Errorf("expires_at %q: want about an hour from now (%v)", d.ExpiresAt, err)
		}
		sum := sha256.Sum256([]byte(d.Token))
		if d.HashedToken != base64.StdEncoding.EncodeToString(sum[:]) {
			t.Errorf("hashed_token is not base64(SHA-256(token))")
		}

		gh.mustReach(t, d.Token, "api", "web")
		st := gh.status(t, d.Token)
		if st.HashedToken != d.HashedToken {
			t.Errorf("hashed_token differs from the emulator's")
		}
		for p, level := range map[string]string{"contents": "read", "pull_requests": "write"} {
			if st.Permissions[p] != level {
				t.Errorf("the emulator granted %s=%q, want %s", p, st.Permissions[p], level)
			}
		}
		for p := range st.Permissions {
			// GitHub adds metadata:read to every scoped token; anything else would be more than the role allows.
			if p != "contents" && p != "pull_requests" && p != "metadata" {
				t.Errorf("the token carries permission %s=%s beyond the role", p, st.Permissions[p])
			}
		}
		if !maps.Equal(d.Permissions, st.Permissions) {
			t.Errorf("the response's permissions %v differ from what the emulator granted %v", d.Permissions, st.Permissions)
		}

		// GitHub cannot extend a token: Vault refuses to renew its lease.
		if r := v.run(v.rootToken, "", "lease", "renew", out.LeaseID); r.err == nil || !strings.Contains(r.stderr, "lease is not renewable") {
			t.Errorf("vault lease renew: want Vault's refusal (lease is not renewable), got %s", r)
		}

		// Revoking the lease kills the token at GitHub.
		v.cli(t, "lease", "revoke", out.LeaseID)
		gh.waitDead(t, d.Token, 10*time.Second, "the token after vault lease revoke")
	})

	t.Run("narrowing write", func(t *testing.T) {
		out := v.mintCLI(t, v.rootToken, mount+"/token/ci", "repositories=api", "permissions=contents=read", "ttl=2m")
		if out.LeaseDuration != 120 {
			t.Errorf("lease duration %ds, want 120s", out.LeaseDuration)
		}
		gh.mustReach(t, out.Data.Token, "api")
		st := gh.status(t, out.Data.Token)
		if st.Permissions["contents"] != "read" || st.Permissions["pull_requests"] != "" {
			t.Errorf("narrowed token carries %v, want contents=read and no pull_requests", st.Permissions)
		}
	})

	t.Run("narrowing outside the role is refused", func(t *testing.T) {
		tests := []struct {
			name   string
			params []string
			names  []string // what the refusal must name
		}{
			{"other repository", []string{"repositories=infra"}, []string{"infra"}},
			{"higher level", []string{"permissions=contents=write"}, []string{"contents"}},
			{"other permission", []string{"permissions=issues=read"}, []string{"issues"}},
			{"longer ttl", []string{"ttl=1h"}, []string{"ttl"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := v.cliDenied(t, v.rootToken, append([]string{"write", mount + "/token/ci"}, tt.params...)...)
				for _, n := range tt.names {
					if !strings.Contains(r.stderr, n) {
						t.Errorf("the refusal does not name %q: %s", n, redact(r.stderr))
					}
				}
			})
		}
	})

	t.Run("an empty repository list never widens the token", func(t *testing.T) {
		for _, data := range []map[string]any{
			{"repositories": ""},         // vault write .../token/ci repositories=
			{"repositories": ","},        // names nothing either
			{"repositories": []string{}}, // the API's empty list
			{"repository_ids": ""},
		} {
			t.Run(fmt.Sprint(data), func(t *testing.T) {
				v.mustRefuseEmpty(t, gh, v.rootToken, mount+"/token/ci", data)
			})
		}
	})

	t.Run("role by installation id", func(t *testing.T) {
		out := v.mintCLI(t, v.rootToken, mount+"/token/ops")
		gh.mustReach(t, out.Data.Token, "infra")
		if perms := slices.Sorted(maps.Keys(gh.status(t, out.Data.Token).Permissions)); !slices.Contains(perms, "issues") {
			t.Errorf("token of role ops carries %v, want issues", perms)
		}
	})
}
