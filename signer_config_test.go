// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/kmstest"
)

// The keys of the engine's local KMS.
const (
	kmsAppKey   = "7e57a11c-0000-4000-8000-000000000001" // testKey, the App's key
	kmsOtherKey = "7e57a11c-0000-4000-8000-000000000002" // otherKey, imported by the rotation test
	kmsAlias    = "alias/github-app"                     // names kmsAppKey
)

// pkcs8 is a key as `openssl pkcs8 -topk8 -nocrypt` writes it, the form local-kms and softhsm2-util import.
func pkcs8(t *testing.T, key *rsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// newKMSEnv is a test environment whose local KMS holds the App's key.
func newKMSEnv(t *testing.T) (*testEnv, *kmstest.Server) {
	t.Helper()
	e := newTestEnv(t)
	k := kmstest.New(t, kmstest.Seed{
		RSA:     []kmstest.Key{{ID: kmsAppKey, PEM: pkcs8(t, testKey)}},
		Aliases: map[string]string{kmsAlias: kmsAppKey},
	})
	return e, k
}

// kmsConfig is a config write for the fixture App with its key in the local KMS, with static credentials.
func kmsConfig(e *testEnv, k *kmstest.Server, extra map[string]any) map[string]any {
	data := map[string]any{
		"app_id": testAppID, "base_url": e.srv.URL, "signer": "awskms", "kms_key_id": kmsAlias,
		"aws_region": kmstest.Region, "aws_endpoint": k.URL, "aws_access_key_id": kmstest.AccessKeyID,
		"aws_secret_access_key": kmstest.SecretAccessKey,
	}
	for key, v := range extra {
		data[key] = v
	}
	return data
}

// noSecrets fails the test when a response, an error or a log line holds one of secrets.
func (e *testEnv) noSecrets(t *testing.T, secrets ...string) {
	t.Helper()
	e.mu.Lock()
	out := strings.Join(e.outputs, "\n")
	e.mu.Unlock()
	out += e.logs.String()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("a response, error or log line holds the secret %.4s…", s)
		}
	}
}

func fingerprintOf(t *testing.T, key *rsa.PrivateKey) string {
	t.Helper()
	fp, err := github.Fingerprint(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// TestAWSKMSSignerMintsAndRevokes: with the App's key in KMS, a config write verifies through KMS, a read shows the
// signer but never the secret key, tokens are minted, narrowed and revoked, and status and metrics name the signer.
func TestAWSKMSSignerMintsAndRevokes(t *testing.T) {
	e, k := newKMSEnv(t)
	resp, err := e.do(logical.UpdateOperation, "config", kmsConfig(e, k, nil))
	mustOK(t, resp, err)

	resp, err = e.do(logical.ReadOperation, "config", nil)
	mustOK(t, resp, err)
	d := resp.Data
	if d["signer"] != "awskms" || d["kms_key_id"] != kmsAlias || d["aws_region"] != kmstest.Region ||
		d["aws_endpoint"] != k.URL || d["aws_access_key_id"] != kmstest.AccessKeyID ||
		d["private_key_fingerprint"] != fingerprintOf(t, testKey) || d["app_slug"] != "vault-test" {
		t.Fatalf("config read: %#v", d)
	}
	if _, ok := d["aws_secret_access_key"]; ok {
		t.Fatal("the read returned aws_secret_access_key")
	}

	e.role("ci", map[string]any{"owner": "acme", "repositories": "api,web"})
	full := e.mint("ci")
	resp, err = e.do(logical.UpdateOperation, "token/ci", map[string]any{"repositories": "web"})
	mustOK(t, resp, err)
	if got := e.reach(resp.Data["token"].(string)); len(got) != 1 || got[0] != "web" {
		t.Fatalf("narrowed token reaches %v", got)
	}
	e.revokeAtGitHub(full, resp)

	resp, err = e.do(logical.ReadOperation, "status", nil)
	mustOK(t, resp, err)
	desc := fmt.Sprintf("%+v", resp.Data["signer"])
	wantContains(t, desc, "awskms", kmstest.ARN(kmsAppKey), fingerprintOf(t, testKey))

	m := parseMetrics(t, e.metricsText(t))
	if n := sample(m, "github_app_jwt_signatures_total", map[string]string{"signer": "awskms"}); n < 1 {
		t.Fatalf("jwt_signatures_total{signer=awskms} = %v, want at least 1", n)
	}
	e.noSecrets(t, kmstest.SecretAccessKey)
}

// metricsText is the mount's Prometheus scrape.
func (e *testEnv) metricsText(t *testing.T) string {
	t.Helper()
	resp, err := e.do(logical.ReadOperation, "metrics", map[string]any{"format": "prometheus"})
	mustOK(t, resp, err)
	return string(resp.Data[logical.HTTPRawBody].([]byte))
}

// TestAWSKMSSignerRefusals: a write that cannot work is a 400 naming the field and what to give, saves nothing, and
// never quotes the secret key.
func TestAWSKMSSignerRefusals(t *testing.T) {
	e, k := newKMSEnv(t)
	tests := []struct {
		name  string
		data  map[string]any
		wants []string
	}{
		{"private_key beside awskms", kmsConfig(e, k, map[string]any{"private_key": testKeyPEM}),
			[]string{"private_key is refused with signer=awskms"}},
		{"unknown key ID", kmsConfig(e, k, map[string]any{"kms_key_id": "7e57a11c-0000-4000-8000-0000000000ff"}),
			[]string{"kms_key_id:", `KMS has no key "7e57a11c-0000-4000-8000-0000000000ff"`, "nothing was saved"}},
		{"no key ID", kmsConfig(e, k, map[string]any{"kms_key_id": ""}),
			[]string{"kms_key_id is required with signer=awskms"}},
		{"secret without its ID", kmsConfig(e, k, map[string]any{"aws_access_key_id": ""}),
			[]string{"aws_access_key_id and aws_secret_access_key go together"}},
		{"KMS field with signer=key", map[string]any{"app_id": testAppID, "private_key": testKeyPEM,
			"base_url": e.srv.URL, "kms_key_id": kmsAlias},
			[]string{"kms_key_id is only used with signer=awskms, and signer is key"}},
		{"unknown signer", kmsConfig(e, k, map[string]any{"signer": "vault-transit"}),
			[]string{`signer "vault-transit" is not a signer`, "awskms", "pkcs11"}},
		{"unreachable endpoint", kmsConfig(e, k, map[string]any{"aws_endpoint": "ftp://kms.example"}),
			[]string{"aws_endpoint:", "is not an http(s) URL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.do(logical.UpdateOperation, "config", tt.data)
			status, msg := mustFail(t, resp, err)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d (%s), want 400", status, msg)
			}
			wantContains(t, msg, tt.wants...)
			if cfg, _ := getConfig(t.Context(), e.storage); cfg != nil {
				t.Fatalf("a refused write saved a config: %+v", cfg.signerReadData())
			}
		})
	}
	e.noSecrets(t, kmstest.SecretAccessKey)
}

// TestSignerDestinationGuard: a change of base_url must carry the signer's stored secret again, so that whoever may
// update config cannot point the KMS-signed JWT at a server of their choosing; with the SDK's default credentials
// there is no secret to carry, and the write says so.
func TestSignerDestinationGuard(t *testing.T) {
	e, k := newKMSEnv(t)
	resp, err := e.do(logical.UpdateOperation, "config", kmsConfig(e, k, nil))
	mustOK(t, resp, err)

	moved := map[string]any{"base_url": "http://127.0.0.2:1/api/v3", "verify": false}
	resp, err = e.do(logical.UpdateOperation, "config", moved)
	_, msg := mustFail(t, resp, err)
	wantContains(t, msg, "base_url changes where the App's key is used: give aws_secret_access_key")

	moved["aws_secret_access_key"] = kmstest.SecretAccessKey
	resp, err = e.do(logical.UpdateOperation, "config", moved)
	mustOK(t, resp, err)

	// The SDK's default credential chain: from the plugin's environment.
	t.Setenv("AWS_ACCESS_KEY_ID", kmstest.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", kmstest.SecretAccessKey)
	resp, err = e.do(logical.UpdateOperation, "config", map[string]any{"base_url": e.srv.URL,
		"aws_access_key_id": "", "aws_secret_access_key": ""})
	mustOK(t, resp, err)
	wantContains(t, strings.Join(resp.Warnings, "\n"), "default credentials", "needs no secret")

	// Back to a key held by the engine: nothing of the KMS signer stays.
	resp, err = e.do(logical.UpdateOperation, "config", map[string]any{"signer": "key", "private_key": testKeyPEM})
	mustOK(t, resp, err)
	cfg, err := getConfig(t.Context(), e.storage)
	if err != nil || cfg.Signer != "key" || cfg.KMSKeyID != "" || cfg.AWSRegion != "" || cfg.AWSEndpoint != "" ||
		cfg.Fingerprint != fingerprintOf(t, testKey) {
		t.Fatalf("after signer=key: %v %+v", err, cfg.signerReadData())
	}
	e.noSecrets(t, kmstest.SecretAccessKey)
}

// TestSignerFailureAtMint: a KMS that refuses to sign at mint is a 502 that names the signer, counted by signer;
// revocation, which needs no App JWT, goes on without it.
func TestSignerFailureAtMint(t *testing.T) {
	e, k := newKMSEnv(t)
	resp, err := e.do(logical.UpdateOperation, "config", kmsConfig(e, k, nil))
	mustOK(t, resp, err)
	e.role("ci", map[string]any{"owner": "acme"})
	minted := e.mint("ci")
	e.restart() // a new client, which must open the signer again
	k.Deny.Store(true)
	if err := e.revoke(minted); err != nil {
		t.Fatalf("revoking while KMS refuses: %v", err)
	}
	if info, _ := e.gh.Token(minted.Data["token"].(string)); !info.Revoked {
		t.Fatal("the token is not revoked at GitHub while KMS refuses")
	}
	resp, err = e.do(logical.ReadOperation, "token/ci", nil)
	status, msg := mustFail(t, resp, err)
	if status != http.StatusBadGateway {
		t.Fatalf("status %d (%s), want 502", status, msg)
	}
	wantContains(t, msg, "awskms signer", "access denied", "aws_access_key_id")

	k.Deny.Store(false)
	k.ThrottleSigns.Store(1 << 30)
	resp, err = e.do(logical.ReadOperation, "token/ci", nil)
	status, msg = mustFail(t, resp, err)
	if status != http.StatusBadGateway {
		t.Fatalf("status %d (%s), want 502", status, msg)
	}
	wantContains(t, msg, "awskms signer", "throttling")

	m := parseMetrics(t, e.metricsText(t))
	for _, kind := range []string{"misconfigured", "unavailable"} {
		if n := sample(m, "github_app_signer_failures_total", map[string]string{"signer": "awskms", "kind": kind}); n < 1 {
			t.Errorf("signer_failures_total{signer=awskms,kind=%s} = %v, want at least 1", kind, n)
		}
	}
	if n := sample(m, "github_app_mint_failures_total", map[string]string{"kind": "signer"}); n != 2 {
		t.Errorf("mint_failures_total{kind=signer} = %v, want 2", n)
	}
	e.noSecrets(t, kmstest.SecretAccessKey)
}

// TestAWSKMSKeyRotation: the operator adds a key to the App on GitHub, imports it into KMS and writes its ID; tokens
// minted with the old key still revoke, and new ones are minted with the new key.
func TestAWSKMSKeyRotation(t *testing.T) {
	e, k := newKMSEnv(t)
	resp, err := e.do(logical.UpdateOperation, "config", kmsConfig(e, k, nil))
	mustOK(t, resp, err)
	e.role("ci", map[string]any{"owner": "acme"})
	old := e.mint("ci")

	if err := e.gh.AddPublicKey(testAppID, &otherKey.PublicKey); err != nil {
		t.Fatal(err)
	}
	k.Add(t, kmstest.Seed{RSA: []kmstest.Key{{ID: kmsOtherKey, PEM: pkcs8(t, otherKey)}}})
	resp, err = e.do(logical.UpdateOperation, "config", map[string]any{"kms_key_id": kmsOtherKey})
	mustOK(t, resp, err)
	resp, err = e.do(logical.ReadOperation, "config", nil)
	mustOK(t, resp, err)
	if resp.Data["private_key_fingerprint"] != fingerprintOf(t, otherKey) {
		t.Fatalf("fingerprint after rotation %v, want the new key's", resp.Data["private_key_fingerprint"])
	}
	fresh := e.mint("ci")
	e.revokeAtGitHub(old, fresh)
}

// TestAWSKMSJWTReuse: a burst of 1,000 mints asks KMS, counted where it signs, for a signature or two, not one per
// mint: App JWTs are reused for minutes.
func TestAWSKMSJWTReuse(t *testing.T) {
	e, k := newKMSEnv(t)
	resp, err := e.do(logical.UpdateOperation, "config", kmsConfig(e, k, nil))
	mustOK(t, resp, err)
	e.role("ci", map[string]any{"owner": "acme"})
	k.Signs.Store(0)
	mintBurst(e, "ci", 1000, 20)
	if n := k.Signs.Load(); n < 1 || n > 2 {
		t.Fatalf("1,000 mints made %d KMS signatures, want 1 or 2", n)
	}
}

// mintBurst mints n tokens of role from workers goroutines.
func mintBurst(e *testEnv, role string, n, workers int) {
	e.t.Helper()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				e.mint(role)
			}
		})
	}
	wg.Wait()
}
