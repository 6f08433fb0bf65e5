package githubapp

import (
	"encoding/pem"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/fakegithub"
)

func TestRevocation(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})

	t.Run("revokes at GitHub", func(t *testing.T) {
		resp := e.mint("ci")
		if err := e.revoke(resp); err != nil {
			t.Fatal(err)
		}
		if info, _ := e.gh.Token(resp.Data["token"].(string)); !info.Revoked {
			t.Fatal("the emulator does not report the token revoked")
		}
		// Revoking twice is fine: GitHub's 401 means already dead.
		if err := e.revoke(resp); err != nil {
			t.Fatalf("second revocation: %v", err)
		}
	})
	t.Run("expired token counts as revoked", func(t *testing.T) {
		e.gh.SetTokenLifetime(time.Second)
		defer e.gh.SetTokenLifetime(time.Hour)
		resp, err := e.do(logical.ReadOperation, "token/ci", nil)
		mustOK(t, resp, err)
		time.Sleep(1100 * time.Millisecond)
		before := e.gh.Stats().Calls["DELETE /installation/token"]
		if err := e.revoke(resp); err != nil {
			t.Fatalf("revoking an expired token: %v", err)
		}
		if e.gh.Stats().Calls["DELETE /installation/token"] != before+1 {
			t.Fatal("revocation did not reach GitHub")
		}
	})
	t.Run("after the config was deleted", func(t *testing.T) {
		resp := e.mint("ci")
		if r, err := e.do(logical.DeleteOperation, "config", nil); err != nil || r != nil {
			t.Fatal(r, err)
		}
		if err := e.revoke(resp); err != nil {
			t.Fatal(err)
		}
		if info, _ := e.gh.Token(resp.Data["token"].(string)); !info.Revoked {
			t.Fatal("not revoked after config delete")
		}
		e.configure(nil)
	})
	t.Run("GitHub down, then back", func(t *testing.T) {
		resp := e.mint("ci")
		e.gh.SetFaults(fakegithub.Faults{OutageUntil: time.Now().Add(time.Hour)})
		err := e.revoke(resp)
		if err == nil {
			t.Fatal("revocation succeeded while GitHub was down")
		}
		wantContains(t, err.Error(), "revoking the installation token", "ci")
		e.gh.SetFaults(fakegithub.Faults{})
		if err := e.revoke(resp); err != nil {
			t.Fatalf("revocation after GitHub came back: %v", err)
		}
		if info, _ := e.gh.Token(resp.Data["token"].(string)); !info.Revoked {
			t.Fatal("not revoked after GitHub came back")
		}
	})
}

func TestRenewRefused(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme"})
	resp := e.mint("ci")
	req := logical.RenewRequest("token/ci", resp.Secret, nil)
	req.Storage = e.storage
	out, err := e.b.HandleRequest(t.Context(), req)
	if err == nil && (out == nil || !out.IsError()) {
		t.Fatalf("renewal was accepted: %#v", out)
	}
}

// TestSecretsNeverLeak drives the engine through success and failure (bad keys, GitHub errors, revocation) with the
// log at trace level, then looks for the key and every minted token anywhere but a response's token field.
func TestSecretsNeverLeak(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	e.role("gone", map[string]any{"installation_id": 9999})

	var leases []*logical.Response
	for range 3 {
		leases = append(leases, e.mint("ci"))
	}
	e.gh.SetFaults(fakegithub.Faults{LongTokens: true})
	leases = append(leases, e.mint("ci"))
	e.gh.SetFaults(fakegithub.Faults{OverGrant: true})
	e.do(logical.ReadOperation, "token/ci", nil)
	e.gh.SetFaults(fakegithub.Faults{FailNext: 100})
	e.do(logical.ReadOperation, "token/ci", nil)
	e.revoke(leases[0])
	e.gh.SetFaults(fakegithub.Faults{})
	e.do(logical.ReadOperation, "token/gone", nil)
	e.do(logical.ReadOperation, "config", nil)
	e.do(logical.UpdateOperation, "config", map[string]any{"private_key": otherPEM})
	e.do(logical.UpdateOperation, "config", map[string]any{"private_key": "garbage" + testKeyPEM[40:200]})
	e.do(logical.ListOperation, "installations/", nil)
	for _, l := range leases {
		e.revoke(l)
	}

	// Every line of the keys' base64 bodies, and every token the emulator issued.
	var secrets []string
	for _, keyPEM := range []string{testKeyPEM, otherPEM} {
		lines := strings.Split(strings.TrimSpace(keyPEM), "\n")
		secrets = append(secrets, lines[1:len(lines)-1]...)
	}
	for _, tok := range e.gh.Tokens() {
		secrets = append(secrets, tok.Value)
	}
	if len(e.gh.Tokens()) < 5 {
		t.Fatalf("only %d tokens minted; the test did not exercise enough", len(e.gh.Tokens()))
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "[TRACE]") && !strings.Contains(logs, "[DEBUG]") && !strings.Contains(logs, "[WARN]") {
		t.Fatalf("the log captured nothing; the leak check would be empty:\n%s", logs)
	}
	e.mu.Lock()
	outputs := strings.Join(e.outputs, "\n")
	e.mu.Unlock()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds a secret (%d chars)", len(s))
		}
		if strings.Contains(outputs, s) {
			t.Errorf("a response or error holds a secret (%d chars) outside the token field", len(s))
		}
	}
}

// TestRevocationAfterConfigDeleteKeepsTLS: GitHub Enterprise Server behind a private CA. After the config is
// deleted, leases minted there are still revoked with the CA bundle they were minted with.
func TestRevocationAfterConfigDeleteKeepsTLS(t *testing.T) {
	e := newTestEnv(t)
	tlsSrv := httptest.NewTLSServer(e.gh)
	t.Cleanup(tlsSrv.Close)
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}))
	e.configure(map[string]any{"base_url": tlsSrv.URL + "/api/v3", "ca_certificate": ca})
	e.role("ci", map[string]any{"owner": "acme"})
	resp := e.mint("ci")

	if r, err := e.do(logical.DeleteOperation, "config", nil); err != nil || r != nil {
		t.Fatal(r, err)
	}
	if err := e.revoke(resp); err != nil {
		t.Fatalf("revocation after config delete: %v", err)
	}
	if info, _ := e.gh.Token(resp.Data["token"].(string)); !info.Revoked {
		t.Fatal("not revoked")
	}
}
