// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	testKeyOnce sync.Once
	testKey     *rsa.PrivateKey
)

// sharedKey is one 2048-bit key for the package's tests: generating one costs up to a second.
func sharedKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	testKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		testKey = k
	})
	return testKey
}

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func TestParsePrivateKey(t *testing.T) {
	key := sharedKey(t)
	pkcs1 := pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
	pkcs8der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := pemOf("PRIVATE KEY", pkcs8der)

	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalECPrivateKey(ec)
	ec8DER, _ := x509.MarshalPKCS8PrivateKey(ec)
	pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	encrypted := "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n" +
		"DEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAAAAAA\n-----END RSA PRIVATE KEY-----\n"

	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"pkcs1", pkcs1, ""},
		{"pkcs1 with surrounding whitespace", "\n\n  " + pkcs1 + "\n\n", ""},
		{"pkcs8", pkcs8, ""},
		{"empty", "", "no PEM block found"},
		{"garbage", "not a key at all", "no PEM block found"},
		{"two keys", pkcs1 + pkcs1, "more than one PEM block"},
		{"encrypted legacy", encrypted, "encrypted"},
		{"encrypted pkcs8", pemOf("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}), "encrypted"},
		{"ec key", pemOf("EC PRIVATE KEY", ecDER), "EC key"},
		{"ec key in pkcs8", pemOf("PRIVATE KEY", ec8DER), "GitHub App keys are RSA"},
		{"public key", pemOf("PUBLIC KEY", pubDER), "public key"},
		{"certificate", pemOf("CERTIFICATE", certDER), "certificate"},
		{"openssh", pemOf("OPENSSH PRIVATE KEY", []byte{1, 2, 3}), "OpenSSH"},
		{"1024-bit", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small)), "1024 bits"},
		{"corrupt pkcs1", pemOf("RSA PRIVATE KEY", []byte("corrupt")), "not a valid PKCS#1"},
		{"corrupt pkcs8", pemOf("PRIVATE KEY", []byte("corrupt")), "not a valid PKCS#8"},
		{"unknown block", pemOf("DSA PRIVATE KEY", []byte{1}), `unsupported PEM block type "DSA PRIVATE KEY"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePrivateKey(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParsePrivateKey: %v", err)
				}
				if !got.Equal(key) {
					t.Fatal("parsed key differs from the original")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
			// The error must never quote key material.
			if body := pemBody(tt.in); body != "" && strings.Contains(err.Error(), body[:20]) {
				t.Fatalf("error quotes the input: %v", err)
			}
		})
	}
}

func pemBody(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) < 3 {
		return ""
	}
	body := strings.Join(lines[1:len(lines)-1], "")
	if len(body) < 20 {
		return ""
	}
	return body
}

// TestFingerprintMatchesOpenSSL checks the fingerprint against the command GitHub's docs give.
func TestFingerprintMatchesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl is needed for this test under CI")
		}
		t.Skip("openssl not installed")
	}
	key := sharedKey(t)
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, []byte(pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c",
		"openssl rsa -in "+path+" -pubout -outform DER 2>/dev/null | openssl sha256 -binary | openssl base64").Output()
	if err != nil {
		t.Fatalf("openssl: %v", err)
	}
	want := "SHA256:" + strings.TrimSpace(string(out))
	got, err := Fingerprint(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("Fingerprint = %q, openssl says %q", got, want)
	}
}
