// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package signer_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/signer"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

// The App's key in every test: the one an operator would import into a KMS or HSM. Made once; 2048 bits, as GitHub
// issues them.
var (
	appKeyOnce sync.Once
	appKeyRSA  *rsa.PrivateKey
	ecKeyEC    *ecdsa.PrivateKey
)

func appKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	appKeyOnce.Do(func() {
		var err error
		if appKeyRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKeyEC, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
	return appKeyRSA
}

// ecKey is an EC key, which GitHub Apps do not use: the signers must refuse it.
func ecKey(t *testing.T) *ecdsa.PrivateKey {
	appKey(t)
	return ecKeyEC
}

// pkcs8PEM is a key as `openssl pkcs8 -topk8 -nocrypt` writes it, the form softhsm2-util and local-kms import.
func pkcs8PEM(t *testing.T, key crypto.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func appFingerprint(t *testing.T) string {
	t.Helper()
	fp, err := signer.Fingerprint(&appKey(t).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// inCI reports a CI run, where a missing KMS emulator or HSM fails the tests instead of skipping them.
func inCI() bool { return os.Getenv("CI") != "" }

// checkAppSigner proves that s signs as the App: its public key and fingerprint are the App's, a raw RS256
// signature verifies with the App's public key, and a JWT that the GitHub client signs through s passes the GitHub
// emulator's check against the App's public key.
func checkAppSigner(t *testing.T, s signer.Signer) {
	t.Helper()
	pub := &appKey(t).PublicKey
	if !pub.Equal(s.Public()) {
		t.Fatal("the signer's public key is not the App's")
	}
	if d := s.Describe(); d.Fingerprint != appFingerprint(t) {
		t.Fatalf("fingerprint %q, want the App's %q", d.Fingerprint, appFingerprint(t))
	}
	digest := sha256.Sum256([]byte("header.claims"))
	sig, err := s.SignRS256(t.Context(), digest[:])
	if err != nil {
		t.Fatalf("SignRS256: %v", err)
	}
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		t.Fatalf("the signature does not verify with the App's public key: %v", err)
	}

	// The whole way: the client signs a JWT through s and GitHub (the emulator) accepts it.
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	fake, err := fakegithub.New(fakegithub.Fixture{Apps: []fakegithub.App{{ID: 1001, Slug: "signer-app",
		Owner: "octo-org", PublicKeys: []string{string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY",
			Bytes: pubDER}))}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	c, err := github.NewClient(github.Options{BaseURL: srv.URL, AppID: 1001, Signer: s})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	app, err := c.App(t.Context())
	if err != nil {
		t.Fatalf("GET /app with a JWT signed through the %s signer: %v", s.Describe().Kind, err)
	}
	if app.Slug != "signer-app" || c.JWTSignatures() != 1 {
		t.Fatalf("GET /app: slug %q after %d signatures, want signer-app after 1", app.Slug, c.JWTSignatures())
	}

	// And a JWT made the same way parses as RS256 with the App's public key in golang-jwt.
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "1001"})
	unsigned, err := tok.SigningString()
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte(unsigned))
	if sig, err = s.SignRS256(t.Context(), d[:]); err != nil {
		t.Fatal(err)
	}
	raw := unsigned + "." + tok.EncodeSegment(sig)
	if _, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{"RS256"})); err != nil {
		t.Fatalf("golang-jwt refuses the JWT: %v", err)
	}
}

// wantError checks that err is a *signer.Error of the kind and setting given whose message holds every fragment,
// and that no secret appears in it.
func wantError(t *testing.T, err error, kind signer.ErrorKind, param signer.Param, fragments []string,
	secrets ...string) *signer.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want a %s error about %q", kind, param)
	}
	e, ok := signer.AsError(err)
	if !ok {
		t.Fatalf("error %q (%T) is not a *signer.Error", err, err)
	}
	if e.Kind != kind || e.Param != param {
		t.Fatalf("error %q: kind %s, setting %q; want %s, %q", err, e.Kind, e.Param, kind, param)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Fatalf("error %q does not say %q", err, f)
		}
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Fatalf("error %q holds a secret", err)
		}
	}
	return e
}

func TestKeySigner(t *testing.T) {
	t.Parallel()
	s, err := signer.NewKey(appKey(t))
	if err != nil {
		t.Fatal(err)
	}
	checkAppSigner(t, s)
	if d := s.Describe(); d.Kind != signer.KindKey || d.Key != "" {
		t.Fatalf("description %+v, want kind key and no key reference", d)
	}
	// PKCS#1 v1.5 is deterministic: what makes JWTs signed within one second byte-identical.
	digest := sha256.Sum256([]byte("x"))
	a, _ := s.SignRS256(t.Context(), digest[:])
	b, _ := s.SignRS256(t.Context(), digest[:])
	if string(a) != string(b) {
		t.Fatal("two signatures of one digest differ")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestKeySignerRefuses(t *testing.T) {
	t.Parallel()
	_, err := signer.NewKey(nil)
	wantError(t, err, signer.KindMisconfigured, signer.ParamKey, []string{"no private key"})

	s, err := signer.NewKey(appKey(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.SignRS256(t.Context(), []byte("not a digest"))
	wantError(t, err, signer.KindMisconfigured, signer.ParamDigest, []string{"12 bytes", "SHA-256"})
}

func TestErrorText(t *testing.T) {
	t.Parallel()
	cause := errors.New("cause")
	e := &signer.Error{Signer: signer.KindPKCS11, Msg: "what went wrong", Err: cause}
	if e.Error() != "pkcs11 signer: what went wrong: cause" || !errors.Is(e, cause) {
		t.Fatalf("Error() = %q, Is(cause) = %v", e.Error(), errors.Is(e, cause))
	}
}
