// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/signer"
)

// MinKeyBits is the smallest RSA key accepted. GitHub generates 2048-bit keys; anything smaller is not a key
// GitHub issued and would be weak.
const MinKeyBits = signer.MinKeyBits

// ParsePrivateKey parses a GitHub App private key: one PEM block holding an RSA key in PKCS#1
// ("RSA PRIVATE KEY", what GitHub downloads) or PKCS#8 ("PRIVATE KEY"). Errors describe what was found and what is
// expected; they never quote the input.
func ParsePrivateKey(pemText string) (*rsa.PrivateKey, error) {
	block, rest := pem.Decode([]byte(strings.TrimSpace(pemText)))
	if block == nil {
		return nil, errors.New(`no PEM block found: expected a PEM block of type "RSA PRIVATE KEY" or "PRIVATE KEY", ` +
			"as GitHub downloads it")
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, errors.New("more than one PEM block found: give exactly one private key")
	}
	if _, encrypted := block.Headers["Proc-Type"]; encrypted || block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, errors.New("the PEM block is encrypted: give the unencrypted key as GitHub downloads it " +
			"(for example `openssl rsa -in key.pem -out plain.pem`)")
	}

	var key *rsa.PrivateKey
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("the RSA PRIVATE KEY block is not a valid PKCS#1 RSA key")
		}
		key = k
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("the PRIVATE KEY block is not a valid PKCS#8 key")
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("the PKCS#8 key is of type %T: GitHub App keys are RSA", k)
		}
		key = rk
	case "EC PRIVATE KEY":
		return nil, errors.New("the key is an EC key: GitHub App keys are RSA")
	case "OPENSSH PRIVATE KEY":
		return nil, errors.New("the key is in OpenSSH format: give the PEM key GitHub downloads (RSA PRIVATE KEY)")
	case "PUBLIC KEY", "RSA PUBLIC KEY":
		return nil, errors.New("the PEM block is a public key: give the App's private key")
	case "CERTIFICATE":
		return nil, errors.New("the PEM block is a certificate: give the App's private key")
	default:
		return nil, fmt.Errorf("unsupported PEM block type %q: expected RSA PRIVATE KEY or PRIVATE KEY", block.Type)
	}

	if bits := key.N.BitLen(); bits < MinKeyBits {
		return nil, fmt.Errorf("the RSA key has %d bits: at least %d are required", bits, MinKeyBits)
	}
	if err := key.Validate(); err != nil {
		return nil, errors.New("the RSA key is inconsistent and cannot sign")
	}
	key.Precompute()
	return key, nil
}

// Fingerprint returns the key's fingerprint as GitHub shows it beside an App's keys: "SHA256:" followed by the
// standard base64 of the SHA-256 of the public key in PKIX DER. It equals
// `openssl rsa -in key.pem -pubout -outform DER | openssl sha256 -binary | openssl base64`.
func Fingerprint(pub *rsa.PublicKey) (string, error) { return signer.Fingerprint(pub) }
