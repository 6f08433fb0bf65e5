// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"crypto/sha256"
	"encoding/base64"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

func TestTokenReadMintsTheRole(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{
		"owner": "acme", "repositories": "api,web", "permissions": "contents=read,pull_requests=write", "ttl": "10m",
	})

	resp := e.mint("ci")
	tok := resp.Data["token"].(string)
	if got := e.reach(tok); !reflect.DeepEqual(sorted(got), []string{"api", "web"}) {
		t.Fatalf("token reaches %v, want [api web]", got)
	}
	info, ok := e.gh.Token(tok)
	// GitHub adds metadata=read to every token that reaches repositories.
	if !ok || !reflect.DeepEqual(info.Permissions, map[string]string{"contents": "read", "metadata": "read", "pull_requests": "write"}) {
		t.Fatalf("emulator's view of the token: %#v", info)
	}

	sum := sha256.Sum256([]byte(tok))
	if resp.Data["hashed_token"] != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Fatalf("hashed_token = %v", resp.Data["hashed_token"])
	}
	if !reflect.DeepEqual(sorted(resp.Data["repositories"].([]string)), []string{"api", "web"}) {
		t.Fatalf("repositories = %#v, want names", resp.Data["repositories"])
	}
	if resp.Data["installation_id"] != int64(testOrgInstall) || resp.Data["role"] != "ci" ||
		resp.Data["repository_selection"] != "selected" {
		t.Fatalf("response data: %#v", resp.Data)
	}
	if _, err := time.Parse(time.RFC3339, resp.Data["expires_at"].(string)); err != nil {
		t.Fatalf("expires_at: %v", err)
	}

	// The lease: the role's TTL, not renewable, and internal data holding only what revocation needs (the
	// framework adds secret_type).
	if resp.Secret.TTL != 10*time.Minute || resp.Secret.Renewable {
		t.Fatalf("lease TTL %s renewable %v", resp.Secret.TTL, resp.Secret.Renewable)
	}
	keys := sortedKeys(resp.Secret.InternalData)
	if want := []string{"app", "base_url", "destination", "expires_at", "installation_id", "role", "secret_type", "token"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("internal data keys %v, want %v", keys, want)
	}
	if resp.Secret.InternalData["base_url"] != e.srv.URL || resp.Secret.InternalData["token"] != tok {
		t.Fatalf("internal data %v", resp.Secret.InternalData["base_url"])
	}
}

func TestTokenWholeInstallation(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("all", map[string]any{"installation_id": testOrgInstall})
	resp := e.mint("all")
	if got := sorted(e.reach(resp.Data["token"].(string))); !reflect.DeepEqual(got, []string{"api", "infra", "web"}) {
		t.Fatalf("token reaches %v", got)
	}
	if len(resp.Data["repositories"].([]string)) != 0 {
		t.Fatalf("unscoped token lists repositories %v", resp.Data["repositories"])
	}
}

func TestTokenExistenceCheckNeedsUpdate(t *testing.T) {
	e := newTestEnv(t)
	checkFound, exists, err := e.b.HandleExistenceCheck(t.Context(), &logical.Request{
		Operation: logical.CreateOperation, Path: "token/ci", Storage: e.storage,
	})
	if err != nil || !checkFound || !exists {
		t.Fatalf("existence check = %v, %v, %v; want true, true, nil", checkFound, exists, err)
	}
}

func TestTokenTTLCapped(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("long", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read", "ttl": "3h"})
	resp := e.mint("long")
	if resp.Secret.TTL > time.Hour || resp.Secret.TTL < 59*time.Minute {
		t.Fatalf("lease TTL %s, want the token's remaining hour", resp.Secret.TTL)
	}
	wantContains(t, strings.Join(resp.Warnings, "\n"), "capped to the token's remaining lifetime")

	// The mount's max TTL caps too.
	e.tune(time.Hour, 2*time.Minute)
	resp = e.mint("long")
	if resp.Secret.TTL != 2*time.Minute {
		t.Fatalf("lease TTL %s, want the mount's max 2m", resp.Secret.TTL)
	}
	wantContains(t, strings.Join(resp.Warnings, "\n"), "capped to the mount's max TTL")

	// No ttl on the role: the mount's default, silently.
	e.tune(30*time.Minute, time.Hour)
	e.role("default", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	resp = e.mint("default")
	if resp.Secret.TTL != 30*time.Minute || len(resp.Warnings) != 0 {
		t.Fatalf("lease TTL %s warnings %v", resp.Secret.TTL, resp.Warnings)
	}
}

func TestTokenErrors(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.do(logical.ReadOperation, "token/ci", nil)
	_, msg := mustFail(t, resp, err)
	wantContains(t, msg, `role "ci" does not exist`)

	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	resp, err = e.do(logical.ReadOperation, "token/ci", nil)
	_, msg = mustFail(t, resp, err)
	wantContains(t, msg, "not configured")

	e.configure(nil)
	tests := []struct {
		name   string
		role   map[string]any
		status int
		wants  []string
	}{
		{"unknown owner", map[string]any{"owner": "nobody"}, 404, []string{`owner "nobody"`, "Not Found", "LIST installations"}},
		{"unknown installation", map[string]any{"installation_id": 9999}, 404, []string{"installation 9999", "check the role's installation_id", "[GitHub request ID "}},
		{"suspended", map[string]any{"installation_id": testSuspended}, 403, []string{"This installation has been suspended", "unsuspend"}},
		{"permission not granted", map[string]any{"owner": "acme", "permissions": "actions=read"}, 400,
			[]string{"The permissions requested are not granted to this installation.", "check the role's permissions"}},
		{"level not granted", map[string]any{"owner": "octocat", "permissions": "contents=write"}, 400,
			[]string{"The level of access for permissions requested are not granted to this installation."}},
		{"repository not installed", map[string]any{"owner": "acme", "repositories": "nope"}, 400,
			[]string{"There is at least one repository that does not exist"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.role("x", tt.role)
			resp, err := e.do(logical.ReadOperation, "token/x", nil)
			status, msg := mustFail(t, resp, err)
			if status != tt.status {
				t.Errorf("status %d, want %d", status, tt.status)
			}
			wantContains(t, msg, tt.wants...)
		})
	}

	t.Run("rate limited", func(t *testing.T) {
		e.role("x", map[string]any{"installation_id": testOrgInstall})
		e.gh.SetFaults(fakegithub.Faults{SecondaryRateLimit: 429, RetryAfter: 120})
		defer e.gh.SetFaults(fakegithub.Faults{})
		resp, err := e.do(logical.ReadOperation, "token/x", nil)
		status, msg := mustFail(t, resp, err)
		if status != 429 {
			t.Errorf("status %d, want 429", status)
		}
		wantContains(t, msg, "secondary rate limit", "retry after 2m0s")
	})
	t.Run("bad credentials", func(t *testing.T) {
		e.configure(map[string]any{"private_key": otherPEM, "verify": false})
		defer e.configure(nil)
		resp, err := e.do(logical.ReadOperation, "token/x", nil)
		status, msg := mustFail(t, resp, err)
		if status != 502 {
			t.Errorf("status %d, want 502", status)
		}
		wantContains(t, msg, "A JSON web token could not be decoded", "check app_id, client_id and private_key")
	})
}

// TestTokenRoleNamesAreCaseSensitive: role names are case-sensitive, like Vault's policy paths, so that a policy
// naming token/admin is not bypassed through token/ADMIN.
func TestTokenRoleNamesAreCaseSensitive(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("admin", map[string]any{"owner": "acme", "permissions": "contents=write"})

	resp, err := e.do(logical.ReadOperation, "token/ADMIN", nil)
	_, msg := mustFail(t, resp, err)
	wantContains(t, msg, `role "ADMIN" does not exist`)
}

// TestTokenTTLWhenRoleHasNone: a role without ttl lets a write ask at most the mount's default TTL, and a mount
// default longer than the token's life is capped without a warning.
func TestTokenTTLWhenRoleHasNone(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})

	t.Run("a role without ttl allows at most the mount's default", func(t *testing.T) {
		e.tune(5*time.Minute, 24*time.Hour)
		defer e.tune(time.Hour, 24*time.Hour)
		resp, err := e.do(logical.UpdateOperation, "token/ci", map[string]any{"ttl": "50m"})
		status, msg := mustFail(t, resp, err)
		if status != 403 {
			t.Fatalf("status %d", status)
		}
		wantContains(t, msg, "ttl 50m0s (the role allows 5m0s)")
	})
	t.Run("the mount's default TTL is capped without a warning", func(t *testing.T) {
		e.tune(768*time.Hour, 24*time.Hour)
		defer e.tune(time.Hour, 24*time.Hour)
		resp := e.mint("ci")
		if len(resp.Warnings) != 0 || resp.Secret.TTL > time.Hour {
			t.Fatalf("ttl %s warnings %v", resp.Secret.TTL, resp.Warnings)
		}
	})
}

// TestMintRetriedAfterLostAnswer: a token request whose answer was lost (the connection broke
// after GitHub handled it) is retried. The token GitHub may have issued first is known to no one and dies within the
// hour; the engine counts it as a possible duplicate and says so in its log.
func TestMintRetriedAfterLostAnswer(t *testing.T) {
	e := newTestEnv(t)
	tm := e.withTamper()
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	e.mint("ci")
	e.gh.ResetStats()

	tm.mu.Lock()
	tm.lose = 1
	tm.mu.Unlock()
	resp := e.mint("ci")
	if st := e.gh.Stats(); st.Calls[mintRoute] != 2 || st.TokensIssued != 2 {
		t.Fatalf("GitHub saw %d token requests and issued %d tokens, want 2 and 2", st.Calls[mintRoute], st.TokensIssued)
	}
	if info, _ := e.gh.Token(resp.Data["token"].(string)); info.Revoked {
		t.Fatal("the returned token is revoked")
	}
	wantContains(t, e.logs.String(), "possible duplicate")
}

// TestTokenReadRefusesParameters: narrowing is a write, governed by the update capability;
// a read with query parameters is refused rather than narrowed quietly.
func TestTokenReadRefusesParameters(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api,web", "permissions": "contents=read"})
	resp, err := e.do(logical.ReadOperation, "token/ci", map[string]any{"repositories": "api"})
	status, msg := mustFail(t, resp, err)
	if status != 400 {
		t.Errorf("status %d, want 400", status)
	}
	wantContains(t, msg, "repositories", "vault write")
}
