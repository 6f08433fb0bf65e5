// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/hsmtest"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/kmstest"
)

// appKeyPKCS8 is the emulator's App key as `openssl pkcs8 -topk8 -nocrypt` writes it, the form KMS seeding and
// softhsm2-util import.
func appKeyPKCS8(t *testing.T, gh *fakeGitHub) []byte {
	t.Helper()
	raw, err := os.ReadFile(gh.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		t.Fatalf("%s holds no PEM", gh.keyFile)
	}
	var key any
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// signerMintAndRevoke mints through a mount whose config is written, checks the token at the emulator, revokes its
// lease and checks that the token is dead.
func signerMintAndRevoke(t *testing.T, v *vaultServer, gh *fakeGitHub, mount string) {
	t.Helper()
	v.cli(t, "write", mount+"/roles/ci", "owner="+acmeOwner, "repositories=api,web", "permissions=contents=read",
		"ttl=10m")
	full := v.mintCLI(t, v.rootToken, mount+"/token/ci")
	gh.mustReach(t, full.Data.Token, "api", "web")
	narrow := v.mintCLI(t, v.rootToken, mount+"/token/ci", "repositories=web")
	gh.mustReach(t, narrow.Data.Token, "web")
	for _, out := range []secretOutput{full, narrow} {
		v.cli(t, "lease", "revoke", "-sync", out.LeaseID)
		gh.waitDead(t, out.Data.Token, 10*time.Second, "the revoked token")
	}
}

// TestAWSKMSSignerThroughVault: the plugin in a real Vault signs its App JWTs with the real AWS SDK against a KMS on
// loopback holding the App's key, with static credentials: config, mint, narrow, revoke; the read shows no secret.
func TestAWSKMSSignerThroughVault(t *testing.T) {
	s := requireStack(t)
	v, gh := s.vault, s.gh
	k := kmstest.New(t, kmstest.Seed{
		RSA:     []kmstest.Key{{ID: "5e1f0000-0000-4000-8000-000000000001", PEM: appKeyPKCS8(t, gh)}},
		Aliases: map[string]string{"alias/github-app": "5e1f0000-0000-4000-8000-000000000001"},
	})
	mount := v.newMount(t, s.bins.pluginVersion)
	v.cli(t, "write", mount+"/config", fmt.Sprintf("app_id=%d", appID), "base_url="+gh.url, "signer=awskms",
		"kms_key_id=alias/github-app", "aws_region="+kmstest.Region, "aws_endpoint="+k.URL,
		"aws_access_key_id="+kmstest.AccessKeyID, "aws_secret_access_key="+kmstest.SecretAccessKey)
	read := v.cli(t, "read", "-format=json", mount+"/config")
	if !strings.Contains(read, `"signer": "awskms"`) || !strings.Contains(read, kmstest.AccessKeyID) {
		t.Fatalf("config read:\n%s", read)
	}
	if strings.Contains(read, kmstest.SecretAccessKey) {
		t.Fatal("the config read returned the secret access key")
	}
	signsAtWrite := k.Signs.Load()
	if signsAtWrite == 0 {
		t.Fatal("the config write was not verified with a KMS signature")
	}
	signerMintAndRevoke(t, v, gh, mount)
	if k.Signs.Load() == signsAtWrite {
		t.Fatal("no mint asked KMS for a signature")
	}
}

// TestPKCS11SignerThroughVault: the cgo build of the plugin, registered with GITHUB_APP_PKCS11_LIBRARIES (and
// SoftHSM's configuration) in its environment, signs with the App's key in SoftHSM: config, mint, narrow, revoke; a
// library outside the allow-list is refused.
func TestPKCS11SignerThroughVault(t *testing.T) {
	s := requireStack(t)
	v, gh := s.vault, s.gh
	if _, err := hsmtest.Library(); err != nil {
		if ciMode() {
			t.Fatalf("SoftHSM2 is required in CI (apt-get install softhsm2): %v", err)
		}
		t.Skipf("SoftHSM2 not usable (apt-get install softhsm2): %v", err)
	}
	const token, pin = "github-app", "hsm-pin-2468"
	lib, conf, err := hsmtest.Setup(t.TempDir(), []hsmtest.Token{{Label: token, PIN: pin}},
		[]hsmtest.Key{{Token: token, PIN: pin, Label: "app-key", ID: "a1", PEM: appKeyPKCS8(t, gh)}})
	if err != nil {
		t.Fatal(err)
	}

	// PKCS#11 needs cgo; the release's static binaries are built without it.
	name := pluginName + "-pkcs11"
	bin := filepath.Join(v.pluginDir, name)
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "-ldflags",
		"-X "+modulePath+".Version="+s.bins.pluginVersion, "./cmd/"+pluginName)
	build.Dir = repoRoot
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	var out bytes.Buffer
	build.Stdout, build.Stderr = &out, &out
	if err := build.Run(); err != nil {
		t.Fatalf("building the cgo plugin: %v\n%s", err, out.String())
	}
	sum, err := fileSHA256(bin)
	if err != nil {
		t.Fatal(err)
	}
	v.cli(t, "plugin", "register", "-sha256="+sum, "-version="+s.bins.pluginVersion, "-command="+name,
		"-env=GITHUB_APP_PKCS11_LIBRARIES="+lib, "-env=SOFTHSM2_CONF="+conf, "secret", name)
	t.Cleanup(func() {
		v.run(v.rootToken, "", "plugin", "deregister", "-version="+s.bins.pluginVersion, "secret", name)
	})
	mount := fmt.Sprintf("gh-pkcs11-signer-%d", time.Now().UnixNano()%1e6)
	v.cli(t, "secrets", "enable", "-path="+mount, "-plugin-version="+s.bins.pluginVersion, name)
	t.Cleanup(func() { v.run(v.rootToken, "", "secrets", "disable", mount) })

	config := []string{"write", mount + "/config", fmt.Sprintf("app_id=%d", appID), "base_url=" + gh.url,
		"signer=pkcs11", "pkcs11_library=" + lib, "pkcs11_token_label=" + token, "pkcs11_key_label=app-key",
		"pkcs11_pin=" + pin}
	other := strings.Replace(strings.Join(config, "\n"), "pkcs11_library="+lib,
		"pkcs11_library="+filepath.Join(t.TempDir(), "libother.so"), 1)
	refused := v.run(v.rootToken, "", strings.Split(other, "\n")...)
	if refused.err == nil || !strings.Contains(refused.String(), "not in the allow-list") {
		t.Fatalf("a library outside the allow-list was not refused: %s", refused)
	}
	v.cli(t, config...)
	read := v.cli(t, "read", "-format=json", mount+"/config")
	if !strings.Contains(read, `"signer": "pkcs11"`) || strings.Contains(read, pin) {
		t.Fatalf("config read:\n%s", read)
	}
	signerMintAndRevoke(t, v, gh, mount)
	status := v.cli(t, "read", "-format=json", mount+"/status")
	if !strings.Contains(status, `"kind": "pkcs11"`) {
		t.Fatalf("status does not name the pkcs11 signer:\n%s", status)
	}
}
