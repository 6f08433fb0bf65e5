// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package signer_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/signer"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/kmstest"
)

// The keys every local KMS holds.
const (
	kmsRegion     = kmstest.Region
	kmsAppKey     = "0a5e1f3c-0000-4000-8000-000000000001" // the App key, RSA SIGN_VERIFY
	kmsEncryptKey = "0a5e1f3c-0000-4000-8000-000000000002" // the App key imported for ENCRYPT_DECRYPT
	kmsECCKey     = "0a5e1f3c-0000-4000-8000-000000000003" // an EC P-256 SIGN_VERIFY key
	kmsAESKey     = "0a5e1f3c-0000-4000-8000-000000000004" // a symmetric key
	kmsDisabled   = "0a5e1f3c-0000-4000-8000-000000000005" // the App key, disabled
	kmsAlias      = "alias/github-app"                     // names kmsAppKey

	kmsAccessKeyID = kmstest.AccessKeyID
	kmsSecretKey   = kmstest.SecretAccessKey
)

// localKMS is a local KMS (kmstest) holding the App key in every way the signer must accept or refuse it.
type localKMS struct{ *kmstest.Server }

func newLocalKMS(t *testing.T) localKMS {
	t.Helper()
	ecDER, err := x509.MarshalECPrivateKey(ecKey(t))
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})
	appPEM := pkcs8PEM(t, appKey(t))
	return localKMS{kmstest.New(t, kmstest.Seed{
		RSA: []kmstest.Key{
			{ID: kmsAppKey, PEM: appPEM},
			{ID: kmsEncryptKey, Usage: "ENCRYPT_DECRYPT", PEM: appPEM},
			{ID: kmsDisabled, PEM: appPEM, Disabled: true},
		},
		EC:      []kmstest.Key{{ID: kmsECCKey, PEM: ecPEM}},
		AES:     []string{kmsAESKey},
		Aliases: map[string]string{kmsAlias: kmsAppKey},
	})}
}

// config is the signer's configuration for this KMS, with static credentials.
func (k localKMS) config(keyID string) signer.AWSKMSConfig {
	return signer.AWSKMSConfig{KeyID: keyID, Region: kmsRegion, Endpoint: k.URL, AccessKeyID: kmsAccessKeyID,
		SecretAccessKey: kmsSecretKey}
}

func kmsARN(id string) string { return kmstest.ARN(id) }

// TestAWSKMSSigns: the real AWS SDK against local-kms holding the App key, by key ID, alias and ARN: the signatures
// and a JWT verify with the App's public key, and the signer names the key by its ARN.
func TestAWSKMSSigns(t *testing.T) {
	t.Parallel()
	k := newLocalKMS(t)
	for _, id := range []string{kmsAppKey, kmsAlias, kmsARN(kmsAppKey)} {
		t.Run(id, func(t *testing.T) {
			s, err := signer.NewAWSKMS(t.Context(), k.config(id))
			if err != nil {
				t.Fatalf("NewAWSKMS(%q): %v", id, err)
			}
			defer s.Close()
			checkAppSigner(t, s)
			if d := s.Describe(); d.Kind != signer.KindAWSKMS || d.Key != kmsARN(kmsAppKey) {
				t.Fatalf("description %+v, want kind awskms and key %s", d, kmsARN(kmsAppKey))
			}
		})
	}
}

// TestAWSKMSRefuses: every way the key or access can be wrong is a clear error, naming the setting to check, never
// the secret key.
func TestAWSKMSRefuses(t *testing.T) {
	t.Parallel()
	k := newLocalKMS(t)
	tests := []struct {
		name      string
		cfg       signer.AWSKMSConfig
		deny      bool
		param     signer.Param
		fragments []string
	}{
		{name: "unknown key ID", cfg: k.config("0a5e1f3c-0000-4000-8000-0000000000ff"), param: signer.ParamKeyID,
			fragments: []string{`KMS has no key "0a5e1f3c-0000-4000-8000-0000000000ff"`, "NotFoundException"}},
		{name: "unknown alias", cfg: k.config("alias/nope"), param: signer.ParamKeyID,
			fragments: []string{`KMS has no key "alias/nope"`}},
		{name: "EC key", cfg: k.config(kmsECCKey), param: signer.ParamKeyID,
			fragments: []string{"key spec ECC_NIST_P256", "GitHub App keys are RSA"}},
		{name: "symmetric key", cfg: k.config(kmsAESKey), param: signer.ParamKeyID,
			fragments: []string{"not an asymmetric RSA key for SIGN_VERIFY", "UnsupportedOperationException"}},
		{name: "RSA key for encryption", cfg: k.config(kmsEncryptKey), param: signer.ParamKeyID,
			fragments: []string{"key usage ENCRYPT_DECRYPT", "must be an RSA key for SIGN_VERIFY"}},
		{name: "disabled key", cfg: k.config(kmsDisabled), param: signer.ParamKeyID,
			fragments: []string{"cannot be used in its current state (DisabledException)"}},
		{name: "access denied", cfg: k.config(kmsAppKey), deny: true, param: signer.ParamCredentials,
			fragments: []string{"access denied", "kms:GetPublicKey and kms:Sign"}},
		{name: "half the credentials", cfg: signer.AWSKMSConfig{KeyID: kmsAppKey, Region: kmsRegion,
			Endpoint: k.URL, SecretAccessKey: kmsSecretKey}, param: signer.ParamCredentials,
			fragments: []string{"both an access key ID and a secret access key"}},
		{name: "no key", cfg: k.config(""), param: signer.ParamKeyID, fragments: []string{"no KMS key given"}},
		{name: "endpoint not a URL", cfg: signer.AWSKMSConfig{KeyID: kmsAppKey, Region: kmsRegion,
			Endpoint: "kms.internal:443"}, param: signer.ParamEndpoint, fragments: []string{"not an http(s) URL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k.Deny.Store(tt.deny)
			defer k.Deny.Store(false)
			s, err := signer.NewAWSKMS(t.Context(), tt.cfg)
			if err == nil {
				s.Close()
			}
			t.Logf("%s: %v", tt.name, err)
			wantError(t, err, signer.KindMisconfigured, tt.param, tt.fragments, kmsSecretKey)
		})
	}
}

// TestAWSKMSThrottling: a throttled Sign is retried with backoff and succeeds when KMS lets it through; throttling
// that outlasts the attempts, or the caller's deadline, is an unavailable error saying so.
func TestAWSKMSThrottling(t *testing.T) {
	t.Parallel()
	k := newLocalKMS(t)
	cfg := k.config(kmsAppKey)
	cfg.MaxAttempts = 4
	s, err := signer.NewAWSKMS(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	digest := sha256.Sum256([]byte("throttled"))

	// Two throttled answers, then KMS signs.
	k.ThrottleSigns.Store(2)
	k.Signs.Store(0)
	if _, err := s.SignRS256(t.Context(), digest[:]); err != nil {
		t.Fatalf("after 2 throttled attempts: %v", err)
	}
	if n := k.Signs.Load(); n != 3 {
		t.Fatalf("%d Sign requests, want 3 (2 throttled, 1 signed)", n)
	}

	// Throttled beyond the attempts.
	k.ThrottleSigns.Store(1 << 30)
	k.Signs.Store(0)
	_, err = s.SignRS256(t.Context(), digest[:])
	wantError(t, err, signer.KindUnavailable, signer.ParamNone,
		[]string{"AWS KMS is throttling requests (ThrottlingException)", "gave up after 4 attempts"}, kmsSecretKey)
	if n := k.Signs.Load(); n != 4 {
		t.Fatalf("%d Sign requests, want 4 (MaxAttempts)", n)
	}

	// Throttled beyond the caller's deadline: the signer gives up within it.
	cfg.MaxAttempts = 1000
	patient, err := signer.NewAWSKMS(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer patient.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	_, err = patient.SignRS256(ctx, digest[:])
	wantError(t, err, signer.KindUnavailable, signer.ParamNone, []string{"throttling", "gave up after"})
	if ctx.Err() == nil && !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("gave up before the deadline without saying why: %v", err)
	}
}

// TestAWSKMSUnreachable: no KMS at the endpoint is an unavailable error naming the endpoint.
func TestAWSKMSUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String()
	l.Close() // nothing listens there any more
	cfg := signer.AWSKMSConfig{KeyID: kmsAppKey, Region: kmsRegion, Endpoint: endpoint,
		AccessKeyID: kmsAccessKeyID, SecretAccessKey: kmsSecretKey, MaxAttempts: 2}
	_, err = signer.NewAWSKMS(t.Context(), cfg)
	wantError(t, err, signer.KindUnavailable, signer.ParamNone,
		[]string{"could not be reached", endpoint, "gave up after 2 attempts"}, kmsSecretKey)
}

// TestAWSKMSClosed: a closed signer refuses to sign.
func TestAWSKMSClosed(t *testing.T) {
	t.Parallel()
	k := newLocalKMS(t)
	s, err := signer.NewAWSKMS(t.Context(), k.config(kmsAppKey))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	digest := sha256.Sum256(nil)
	_, err = s.SignRS256(t.Context(), digest[:])
	wantError(t, err, signer.KindMisconfigured, signer.ParamSignerState, []string{"closed"})
}

// TestAWSKMSDefaultCredentialChain: without static credentials the SDK's default chain applies (here, the
// environment); with none anywhere, the error says so. Not parallel: it sets the process's environment.
func TestAWSKMSDefaultCredentialChain(t *testing.T) {
	k := newLocalKMS(t)
	for name, value := range map[string]string{
		"AWS_CONFIG_FILE":                        filepath.Join(t.TempDir(), "none"),
		"AWS_SHARED_CREDENTIALS_FILE":            filepath.Join(t.TempDir(), "none"),
		"AWS_EC2_METADATA_DISABLED":              "true",
		"AWS_PROFILE":                            "",
		"AWS_ACCESS_KEY_ID":                      "",
		"AWS_SECRET_ACCESS_KEY":                  "",
		"AWS_SESSION_TOKEN":                      "",
		"AWS_WEB_IDENTITY_TOKEN_FILE":            "",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI":     "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
	} {
		t.Setenv(name, value)
	}
	cfg := signer.AWSKMSConfig{KeyID: kmsAlias, Region: kmsRegion, Endpoint: k.URL, MaxAttempts: 1}

	_, err := signer.NewAWSKMS(t.Context(), cfg)
	wantError(t, err, signer.KindMisconfigured, signer.ParamCredentials, []string{"no usable AWS credentials"})

	t.Setenv("AWS_ACCESS_KEY_ID", kmsAccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", kmsSecretKey)
	s, err := signer.NewAWSKMS(t.Context(), cfg)
	if err != nil {
		t.Fatalf("with credentials in the environment: %v", err)
	}
	defer s.Close()
	checkAppSigner(t, s)
}
