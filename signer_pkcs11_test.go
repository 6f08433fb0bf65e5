// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

//go:build cgo

package githubapp

import (
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/hsmtest"
)

// The engine's SoftHSM token. A PKCS#11 module is process-wide and SoftHSM reads its configuration once: the
// package's tests share one token directory, set up once.
const (
	hsmToken       = "github-app"
	hsmPIN         = "hsm-pin-5678"
	hsmKeyLabel    = "app-key"
	hsmKeyID       = "c1"
	hsmOtherLabel  = "app-key-2" // otherKey, imported by the rotation test
	hsmOtherKeyID  = "c2"
	hsmWrongPIN    = "not-the-pin-0000"
	hsmPINToken    = "pin-check" // no test logs in to it but the one that gives it a wrong PIN
	hsmPINTokenPIN = "pin-check-4321"
)

var softHSM struct {
	once      sync.Once
	lib, conf string
	dir       string
	err       error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if softHSM.dir != "" {
		os.RemoveAll(softHSM.dir)
	}
	os.Exit(code)
}

// softHSMLib returns the SoftHSM module with the App's key on hsmToken; it skips the test when SoftHSM is not
// installed, and fails it in CI.
func softHSMLib(t *testing.T) string {
	t.Helper()
	softHSM.once.Do(func() {
		testKeys(t)
		if softHSM.dir, softHSM.err = os.MkdirTemp("", "engine-softhsm-"); softHSM.err != nil {
			return
		}
		softHSM.lib, softHSM.conf, softHSM.err = hsmtest.Setup(softHSM.dir,
			[]hsmtest.Token{{Label: hsmToken, PIN: hsmPIN}, {Label: hsmPINToken, PIN: hsmPINTokenPIN}},
			[]hsmtest.Key{{Token: hsmToken, PIN: hsmPIN, Label: hsmKeyLabel, ID: hsmKeyID, PEM: pkcs8(t, testKey)}})
	})
	if softHSM.err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("SoftHSM2 is required in CI (apt-get install softhsm2): %v", softHSM.err)
		}
		t.Skipf("SoftHSM2 not usable (apt-get install softhsm2): %v", softHSM.err)
	}
	return softHSM.lib
}

// newHSMEnv is a test environment whose plugin environment allows the SoftHSM module.
func newHSMEnv(t *testing.T) (*testEnv, string) {
	t.Helper()
	lib := softHSMLib(t)
	e := newTestEnv(t)
	e.b.pkcs11Libraries = []string{"/opt/other/libpkcs11.so", lib}
	return e, lib
}

func hsmConfig(e *testEnv, lib string, extra map[string]any) map[string]any {
	data := map[string]any{
		"app_id": testAppID, "base_url": e.srv.URL, "signer": "pkcs11", "pkcs11_library": lib,
		"pkcs11_token_label": hsmToken, "pkcs11_key_label": hsmKeyLabel, "pkcs11_pin": hsmPIN,
	}
	for k, v := range extra {
		data[k] = v
	}
	return data
}

// TestPKCS11SignerMintsAndRevokes: with the App's key in an HSM, a config write verifies through the HSM, a read
// shows the signer but never the PIN, tokens are minted, narrowed and revoked, status names the token and key, and a
// burst of mints makes few signatures.
func TestPKCS11SignerMintsAndRevokes(t *testing.T) {
	e, lib := newHSMEnv(t)
	resp, err := e.do(logical.UpdateOperation, "config", hsmConfig(e, lib, nil))
	mustOK(t, resp, err)

	resp, err = e.do(logical.ReadOperation, "config", nil)
	mustOK(t, resp, err)
	d := resp.Data
	if d["signer"] != "pkcs11" || d["pkcs11_library"] != lib || d["pkcs11_token_label"] != hsmToken ||
		d["pkcs11_key_label"] != hsmKeyLabel || d["private_key_fingerprint"] != fingerprintOf(t, testKey) {
		t.Fatalf("config read: %#v", d)
	}
	if _, ok := d["pkcs11_pin"]; ok {
		t.Fatal("the read returned the PIN")
	}

	e.role("ci", map[string]any{"owner": "acme", "repositories": "api,web"})
	full := e.mint("ci")
	resp, err = e.do(logical.UpdateOperation, "token/ci", map[string]any{"repositories": "api"})
	mustOK(t, resp, err)
	if got := e.reach(resp.Data["token"].(string)); len(got) != 1 || got[0] != "api" {
		t.Fatalf("narrowed token reaches %v", got)
	}
	mintBurst(e, "ci", 1000, 20)
	e.revokeAtGitHub(full, resp)

	resp, err = e.do(logical.ReadOperation, "status", nil)
	mustOK(t, resp, err)
	wantContains(t, fmt.Sprintf("%+v", resp.Data["signer"]), "pkcs11", `token "github-app"`, hsmKeyLabel,
		fingerprintOf(t, testKey))
	m := parseMetrics(t, e.metricsText(t))
	if n := sample(m, "github_app_jwt_signatures_total", map[string]string{"signer": "pkcs11"}); n < 1 || n > 2 {
		t.Fatalf("1,002 mints made %v HSM signatures, want 1 or 2", n)
	}

	// While the client holds the process's login to the token, another PIN is refused, and nothing is saved.
	resp, err = e.do(logical.UpdateOperation, "config", map[string]any{"base_url": e.srv.URL, "pkcs11_pin": hsmWrongPIN})
	_, msg := mustFail(t, resp, err)
	wantContains(t, msg, "pkcs11_pin:", "the PIN differs from the PIN of this process's login")
	if cfg, _ := getConfig(t.Context(), e.storage); cfg.BaseURL != e.srv.URL || cfg.PKCS11PIN != hsmPIN {
		t.Fatalf("a refused write changed the config: base_url %q", cfg.BaseURL)
	}
	// The destination guard: a new base_url must carry the PIN.
	moved := map[string]any{"base_url": "http://127.0.0.2:1/api/v3", "verify": false}
	resp, err = e.do(logical.UpdateOperation, "config", moved)
	_, msg = mustFail(t, resp, err)
	wantContains(t, msg, "base_url changes where the App's key is used: give pkcs11_pin")
	moved["pkcs11_pin"] = hsmPIN
	resp, err = e.do(logical.UpdateOperation, "config", moved)
	mustOK(t, resp, err)

	e.noSecrets(t, hsmPIN, hsmWrongPIN)
}

// TestPKCS11SignerRefusals: a wrong PIN, an unknown key, a library outside the allow-list or a private_key beside
// the HSM is a 400 naming the field, which saves nothing and never quotes the PIN.
func TestPKCS11SignerRefusals(t *testing.T) {
	e, lib := newHSMEnv(t)
	notAllowed := t.TempDir() + "/libevil.so"
	tests := []struct {
		name  string
		data  map[string]any
		wants []string
	}{
		{"wrong PIN", hsmConfig(e, lib, map[string]any{"pkcs11_token_label": hsmPINToken, "pkcs11_pin": hsmWrongPIN}),
			[]string{"pkcs11_pin:", "PIN"}},
		{"unknown key label", hsmConfig(e, lib, map[string]any{"pkcs11_key_label": "nope"}),
			[]string{"pkcs11_key_label:", `"nope"`}},
		{"unknown key ID", hsmConfig(e, lib, map[string]any{"pkcs11_key_label": "", "pkcs11_key_id": "ff"}),
			[]string{"pkcs11_key_id:", "ff"}},
		{"library not allowed", hsmConfig(e, lib, map[string]any{"pkcs11_library": notAllowed}),
			[]string{"pkcs11_library:", notAllowed, "allow-list", "GITHUB_APP_PKCS11_LIBRARIES"}},
		{"private_key beside pkcs11", hsmConfig(e, lib, map[string]any{"private_key": testKeyPEM}),
			[]string{"private_key is refused with signer=pkcs11"}},
		{"no PIN", hsmConfig(e, lib, map[string]any{"pkcs11_pin": ""}),
			[]string{"pkcs11_pin is required with signer=pkcs11"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.do(logical.UpdateOperation, "config", tt.data)
			status, msg := mustFail(t, resp, err)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d (%s), want 400", status, msg)
			}
			t.Log(msg)
			wantContains(t, msg, tt.wants...)
			if cfg, _ := getConfig(t.Context(), e.storage); cfg != nil {
				t.Fatalf("a refused write saved a config: %+v", cfg.signerReadData())
			}
		})
	}
	if _, err := os.Stat(notAllowed); err == nil {
		t.Fatal("the library outside the allow-list was created")
	}
	e.noSecrets(t, hsmWrongPIN, hsmPIN)
}

// TestPKCS11KeyRotation: the operator adds a key to the App on GitHub, imports it into the HSM and writes its label;
// tokens minted with the old key still revoke.
func TestPKCS11KeyRotation(t *testing.T) {
	e, lib := newHSMEnv(t)
	resp, err := e.do(logical.UpdateOperation, "config", hsmConfig(e, lib, nil))
	mustOK(t, resp, err)
	e.role("ci", map[string]any{"owner": "acme"})
	old := e.mint("ci")

	if err := e.gh.AddPublicKey(testAppID, &otherKey.PublicKey); err != nil {
		t.Fatal(err)
	}
	if err := hsmtest.Import(softHSM.conf, hsmtest.Key{Token: hsmToken, PIN: hsmPIN, Label: hsmOtherLabel,
		ID: hsmOtherKeyID, PEM: pkcs8(t, otherKey)}); err != nil {
		t.Fatal(err)
	}
	resp, err = e.do(logical.UpdateOperation, "config", map[string]any{"pkcs11_key_label": hsmOtherLabel})
	mustOK(t, resp, err)
	resp, err = e.do(logical.ReadOperation, "config", nil)
	mustOK(t, resp, err)
	if resp.Data["private_key_fingerprint"] != fingerprintOf(t, otherKey) {
		t.Fatalf("fingerprint after rotation %v, want the new key's", resp.Data["private_key_fingerprint"])
	}
	fresh := e.mint("ci")
	e.revokeAtGitHub(old, fresh)
}
