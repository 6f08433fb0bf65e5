// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

//go:build cgo

package signer_test

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/signer"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/hsmtest"
)

// The PKCS#11 tests run against SoftHSM2 (Debian's softhsm2), with tokens made and keys imported by softhsm2-util as
// an operator would. A PKCS#11 module is process-wide and SoftHSM reads its configuration once, when the module is
// initialised: every test of the package shares one token directory, set up once, and the PKCS#11 tests do not run
// in parallel (one of them finalises the module behind the signers' backs).
const (
	hsmAppToken = "app" // holds the App key, an EC key, and the App key twice more under one label
	hsmAppPIN   = "app-pin-1234"
	hsmPINToken = "pin-check" // no test logs in to it but the one that gives it a wrong PIN
	hsmPINPIN   = "pin-check-1234"

	hsmAppKeyLabel = "app-key"
	hsmAppKeyID    = "a1"
	hsmECLabel     = "ec-key"
	hsmECID        = "e1"
	hsmTwinLabel   = "twin" // two keys, IDs b1 and b2
)

// softHSM is the package's SoftHSM, or why there is none.
var softHSM struct {
	once sync.Once
	lib  string
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if softHSM.dir != "" {
		os.RemoveAll(softHSM.dir)
	}
	os.Exit(code)
}

// softHSMLib returns the SoftHSM module, with the tokens set up; it skips the test when SoftHSM is not installed,
// and fails it in CI.
func softHSMLib(t *testing.T) string {
	t.Helper()
	softHSM.once.Do(func() { softHSM.lib, softHSM.dir, softHSM.err = setUpSoftHSM(t) })
	if softHSM.err != nil {
		if inCI() {
			t.Fatalf("SoftHSM2 is required in CI (apt-get install softhsm2): %v", softHSM.err)
		}
		t.Skipf("SoftHSM2 not usable (apt-get install softhsm2): %v", softHSM.err)
	}
	return softHSM.lib
}

func setUpSoftHSM(t *testing.T) (lib, dir string, err error) {
	if _, err := hsmtest.Library(); err != nil {
		return "", "", err
	}
	if dir, err = os.MkdirTemp("", "signer-softhsm-"); err != nil {
		return "", "", err
	}
	appPEM, ecPEM := pkcs8PEM(t, appKey(t)), pkcs8PEM(t, ecKey(t))
	lib, _, err = hsmtest.Setup(dir,
		[]hsmtest.Token{{Label: hsmAppToken, PIN: hsmAppPIN}, {Label: hsmPINToken, PIN: hsmPINPIN}},
		[]hsmtest.Key{
			{Token: hsmAppToken, PIN: hsmAppPIN, Label: hsmAppKeyLabel, ID: hsmAppKeyID, PEM: appPEM},
			{Token: hsmAppToken, PIN: hsmAppPIN, Label: hsmECLabel, ID: hsmECID, PEM: ecPEM},
			{Token: hsmAppToken, PIN: hsmAppPIN, Label: hsmTwinLabel, ID: "b1", PEM: appPEM},
			{Token: hsmAppToken, PIN: hsmAppPIN, Label: hsmTwinLabel, ID: "b2", PEM: appPEM},
		})
	return lib, dir, err
}

// hsmConfig selects the App key on the app token by label.
func hsmConfig(lib string) signer.PKCS11Config {
	return signer.PKCS11Config{Library: lib, AllowedLibraries: []string{"/opt/other/lib.so", lib},
		TokenLabel: hsmAppToken, KeyLabel: hsmAppKeyLabel, PIN: hsmAppPIN}
}

func openHSM(t *testing.T, c signer.PKCS11Config) signer.Signer {
	t.Helper()
	s, err := signer.OpenPKCS11(t.Context(), c)
	if err != nil {
		t.Fatalf("OpenPKCS11: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPKCS11Signs: the App key imported into SoftHSM with softhsm2-util signs JWTs that verify with the App's public
// key, whether the key is chosen by label, by ID or by both.
func TestPKCS11Signs(t *testing.T) {
	lib := softHSMLib(t)
	for _, sel := range []struct{ label, id string }{
		{hsmAppKeyLabel, ""}, {"", hsmAppKeyID}, {hsmAppKeyLabel, hsmAppKeyID}, {hsmTwinLabel, "B2"},
	} {
		t.Run(fmt.Sprintf("label %q id %q", sel.label, sel.id), func(t *testing.T) {
			c := hsmConfig(lib)
			c.KeyLabel, c.KeyID = sel.label, sel.id
			s := openHSM(t, c)
			checkAppSigner(t, s)
			d := s.Describe()
			if d.Kind != signer.KindPKCS11 || !strings.Contains(d.Key, `token "app"`) {
				t.Fatalf("description %+v, want kind pkcs11 naming the token", d)
			}
			if strings.Contains(fmt.Sprintf("%+v %#v", d, d), hsmAppPIN) {
				t.Fatal("the description holds the PIN")
			}
		})
	}
}

// TestPKCS11Refuses: every way the token, key, PIN or library can be wrong is a clear error naming the setting,
// never the PIN's value.
func TestPKCS11Refuses(t *testing.T) {
	lib := softHSMLib(t)
	notAModule := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(notAModule, []byte("not a shared library"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "gone.so")
	tests := []struct {
		name      string
		mutate    func(*signer.PKCS11Config)
		param     signer.Param
		fragments []string
	}{
		{name: "unknown key label", mutate: func(c *signer.PKCS11Config) { c.KeyLabel = "nope" },
			param: signer.ParamKeyLabel, fragments: []string{`no private key with label "nope" on token "app"`,
				`label "app-key" ID a1`}},
		{name: "unknown key ID", mutate: func(c *signer.PKCS11Config) { c.KeyLabel, c.KeyID = "", "ff" },
			param: signer.ParamKeyID, fragments: []string{`no private key with ID ff on token "app"`}},
		{name: "label and ID of different keys",
			mutate: func(c *signer.PKCS11Config) { c.KeyID = hsmECID }, param: signer.ParamKeyLabel,
			fragments: []string{`no private key with label "app-key" and ID e1`}},
		{name: "EC key", mutate: func(c *signer.PKCS11Config) { c.KeyLabel = hsmECLabel },
			param:     signer.ParamKeyLabel,
			fragments: []string{`label "ec-key" on token "app" is not an RSA key (it is an EC key)`}},
		{name: "ambiguous label", mutate: func(c *signer.PKCS11Config) { c.KeyLabel = hsmTwinLabel },
			param: signer.ParamKeyLabel, fragments: []string{"more than one private key matches",
				"give both the key's label and its ID"}},
		{name: "unknown token", mutate: func(c *signer.PKCS11Config) { c.TokenLabel = "vault" },
			param: signer.ParamTokenLabel, fragments: []string{`no token labelled "vault"`,
				`tokens present: "app", "pin-check"`}},
		{name: "wrong PIN", mutate: func(c *signer.PKCS11Config) { c.TokenLabel, c.PIN = hsmPINToken, "0000-wrong" },
			param: signer.ParamPIN, fragments: []string{`token "pin-check" refused the PIN`, "CKR_PIN_INCORRECT"}},
		{name: "key ID not hex", mutate: func(c *signer.PKCS11Config) { c.KeyID = "app-key" },
			param: signer.ParamKeyID, fragments: []string{`key ID "app-key" is not hexadecimal`}},
		{name: "no PIN", mutate: func(c *signer.PKCS11Config) { c.PIN = "" }, param: signer.ParamPIN,
			fragments: []string{"no PIN given"}},
		{name: "allowed library that does not exist",
			mutate: func(c *signer.PKCS11Config) { c.Library, c.AllowedLibraries = missing, []string{missing} },
			param:  signer.ParamLibrary, fragments: []string{"does not exist"}},
		{name: "allowed file that is not a module",
			mutate: func(c *signer.PKCS11Config) { c.Library, c.AllowedLibraries = notAModule, []string{notAModule} },
			param:  signer.ParamLibrary, fragments: []string{"could not be loaded as a PKCS#11 module"}},
		{name: "library not allowed", mutate: func(c *signer.PKCS11Config) { c.AllowedLibraries = nil },
			param: signer.ParamLibrary, fragments: []string{"not in the allow-list", signer.LibrariesEnv}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := hsmConfig(lib)
			tt.mutate(&c)
			s, err := signer.OpenPKCS11(t.Context(), c)
			if err == nil {
				s.Close()
			}
			t.Logf("%s: %v", tt.name, err)
			wantError(t, err, signer.KindMisconfigured, tt.param, tt.fragments, hsmAppPIN, hsmPINPIN, c.PIN)
		})
	}
}

// TestPKCS11OneLoginPerToken: the process holds one login per library and token. A signer whose PIN differs from
// that login's is refused without asking the HSM; one with the same PIN shares the login, which outlives any one
// signer; once the last signer closes, the login ends and the next PIN is checked by the HSM again.
func TestPKCS11OneLoginPerToken(t *testing.T) {
	lib := softHSMLib(t)
	digest := sha256.Sum256([]byte("shared login"))

	first, err := signer.OpenPKCS11(t.Context(), hsmConfig(lib))
	if err != nil {
		t.Fatal(err)
	}
	other := hsmConfig(lib)
	other.PIN = "9999-other"
	_, err = signer.OpenPKCS11(t.Context(), other)
	wantError(t, err, signer.KindMisconfigured, signer.ParamPIN,
		[]string{`the PIN differs from the PIN of this process's login to token "app"`}, hsmAppPIN, other.PIN)

	second := hsmConfig(lib)
	second.KeyLabel, second.KeyID = "", hsmAppKeyID
	s2, err := signer.OpenPKCS11(t.Context(), second)
	if err != nil {
		t.Fatalf("a second signer with the login's PIN: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.SignRS256(t.Context(), digest[:]); err != nil {
		t.Fatalf("the second signer after the first closed: %v", err)
	}
	if _, err := first.SignRS256(t.Context(), digest[:]); err == nil {
		t.Fatal("a closed signer signed")
	}
	s2.Close()

	// No signer holds the token now: a wrong PIN meets the HSM itself.
	_, err = signer.OpenPKCS11(t.Context(), other)
	wantError(t, err, signer.KindMisconfigured, signer.ParamPIN, []string{`token "app" refused the PIN`}, hsmAppPIN,
		other.PIN)
}

// TestPKCS11SessionLost: signing goes on after the HSM drops the signer's session (all sessions closed behind its
// back) and after the module is finalised and comes back: the signer opens a new session, logs in again and signs.
func TestPKCS11SessionLost(t *testing.T) {
	lib := softHSMLib(t)
	s := openHSM(t, hsmConfig(lib))
	digest := sha256.Sum256([]byte("session lost"))
	if _, err := s.SignRS256(t.Context(), digest[:]); err != nil {
		t.Fatal(err)
	}

	// The same library, loaded again, is the same module in this process: what it does, the signer suffers.
	behind := pkcs11.New(lib)
	if behind == nil {
		t.Fatal("could not load the module a second time")
	}
	defer behind.Destroy()
	if err := behind.Initialize(); err != nil && err != pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		t.Fatal(err)
	}
	slot := slotOf(t, behind, hsmAppToken)
	if err := behind.CloseAllSessions(slot); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignRS256(t.Context(), digest[:]); err != nil {
		t.Fatalf("signing after all sessions were closed: %v", err)
	}

	if err := behind.Finalize(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignRS256(t.Context(), digest[:]); err != nil {
		t.Fatalf("signing after the module was finalised: %v", err)
	}
	checkAppSigner(t, s)
}

func slotOf(t *testing.T, p *pkcs11.Ctx, label string) uint {
	t.Helper()
	slots, err := p.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if info, err := p.GetTokenInfo(s); err == nil && info.Label == label {
			return s
		}
	}
	t.Fatalf("no slot holds token %q", label)
	return 0
}
