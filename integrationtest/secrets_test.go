// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
)

// TestSecretsNeverInLogsOrAudit: a secret sent with the wrong JSON type, as a new user might (the PEM split into a
// list of lines), or the key pasted into another field (app_id=@key.pem), is refused without its value reaching the
// answer, Vault's server log or an audit device's log, whose error field Vault does not hash.
func TestSecretsNeverInLogsOrAudit(t *testing.T) {
	s := requireStack(t)
	v, gh := s.vault, s.gh
	mount := v.newMount(t, s.bins.pluginVersion)
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	auditPath := mount + "-audit"
	v.cli(t, "audit", "enable", "-path="+auditPath, "file", "file_path="+auditFile)
	t.Cleanup(func() { v.run(v.rootToken, "", "audit", "disable", auditPath) })

	keyPEM, err := os.ReadFile(gh.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	keyLines := strings.Split(strings.TrimSpace(string(keyPEM)), "\n")
	const password = "pr0xyS3cretW0rd"
	proxy := "http://user:" + password + "@proxy.internal:3128"
	secrets := append([]string{password}, keyLines[1:len(keyLines)-1]...)

	c := v.client(t, v.rootToken)
	for _, tt := range []struct {
		name, field, typ string
		value            any
	}{
		{"key as a list of lines", "private_key", "a list", keyLines},
		{"key in an object", "private_key", "an object", map[string]any{"pem": string(keyPEM)}},
		{"proxy as a list", "proxy_url", "a list", []string{proxy}},
		{"key in app_id", "app_id", "integer", string(keyPEM)},
		{"key in request_timeout", "request_timeout", "duration", string(keyPEM)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := map[string]any{"app_id": appID, "private_key": string(keyPEM), "base_url": gh.url}
			data[tt.field] = tt.value
			_, err := c.Logical().Write(mount+"/config", data)
			var re *vaultapi.ResponseError
			if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest {
				t.Fatalf("want HTTP 400, got %v", redactErr(err))
			}
			msg := strings.Join(re.Errors, "; ")
			for _, secret := range secrets {
				if strings.Contains(msg, secret) {
					t.Fatalf("the answer holds the secret of %s", tt.field)
				}
			}
			// Only now that it is known to hold no secret may the refusal be shown.
			if !strings.Contains(msg, tt.field) || !strings.Contains(msg, tt.typ) {
				t.Errorf("the refusal %q does not name %s and %s", msg, tt.field, tt.typ)
			}
		})
	}
	if r, err := c.Logical().Read(mount + "/config"); err != nil || r != nil {
		t.Fatalf("a refused write stored a config: %v", err)
	}

	// The audit device saw the requests (their values HMAC'd) and the errors; the server log saw the errors.
	audit, err := os.ReadFile(auditFile)
	if err != nil || !strings.Contains(string(audit), mount+"/config") {
		t.Fatalf("the audit log has no entry for %s/config (%v): the check below would be empty", mount, err)
	}
	serverLog, err := os.ReadFile(v.proc.logPath)
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"audit log": string(audit), "server log": string(serverLog)} {
		leaked := 0
		for _, secret := range secrets {
			if strings.Contains(text, secret) {
				leaked++
			}
		}
		if leaked > 0 {
			t.Errorf("the %s holds %d of the %d secrets looked for", name, leaked, len(secrets))
		}
	}
}
