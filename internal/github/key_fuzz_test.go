// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"math/big"
	"regexp"
	"strings"
	"testing"
)

// Fuzz target for the App's private key as an operator gives it (ParsePrivateKey). `make fuzz` runs it; `go test`
// runs its seeds (f.Add and testdata/fuzz/FuzzXxx) as ordinary tests.

// FuzzParsePrivateKey: ParsePrivateKey never panics; its errors never quote the key material (no 16 characters of
// the PEM body, in a row); a key it accepts has at least MinKeyBits bits, is consistent and has a fingerprint.
func FuzzParsePrivateKey(f *testing.F) {
	key := sharedKey(f)
	pkcs1 := pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
	pkcs8DER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		f.Fatal(err)
	}
	pkcs8 := pemOf("PRIVATE KEY", pkcs8DER)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	ecDER, _ := x509.MarshalECPrivateKey(ec)
	ec8DER, _ := x509.MarshalPKCS8PrivateKey(ec)
	pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		f.Fatal(err)
	}
	// A 2048-bit modulus whose private exponent does not match: it parses as DER but must not sign.
	bad := *key
	bad.D = new(big.Int).Add(key.D, big.NewInt(2))
	bad.Precomputed = rsa.PrecomputedValues{}

	for _, seed := range []string{
		pkcs1,
		pkcs8,
		strings.ReplaceAll(pkcs1, "\n", "\r\n"),
		"\n\t " + pkcs8 + " \n",
		pkcs1 + pkcs1,
		pkcs1[:len(pkcs1)/2],
		pkcs1 + "trailing text",
		"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\n" +
			pemBodyOf(pkcs1) + "\n-----END RSA PRIVATE KEY-----\n",
		pemOf("ENCRYPTED PRIVATE KEY", pkcs8DER),
		pemOf("EC PRIVATE KEY", ecDER),
		pemOf("PRIVATE KEY", ec8DER),
		pemOf("PUBLIC KEY", pubDER),
		pemOf("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&key.PublicKey)),
		pemOf("CERTIFICATE", pkcs8DER),
		pemOf("OPENSSH PRIVATE KEY", pkcs8DER),
		pemOf("RSA PRIVATE KEY", pkcs8DER), // the PKCS#8 bytes under the PKCS#1 type
		pemOf("PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key)),
		pemOf("RSA PRIVATE KEY", marshalUnchecked(&bad)),
		pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small)),
		pemOf("DSA PRIVATE KEY", pkcs8DER[:40]),
		pemOf(pemBodyOf(pkcs1)[:64], pkcs8DER), // a type that looks like key material
		"",
		"not a key",
		"-----BEGIN RSA PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----\n",
		pemBodyOf(pkcs1), // the body without its armour
	} {
		f.Add(seed)
	}

	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParsePrivateKey(in)
		if err != nil {
			if got != nil {
				t.Fatal("ParsePrivateKey returned both a key and an error")
			}
			if leak := quotedBody(in, err.Error()); leak != "" {
				t.Fatalf("the error quotes %q of the key's body: %v", leak, err)
			}
			return
		}
		if bits := got.N.BitLen(); bits < 2048 { // GitHub's keys; not MinKeyBits, which could change with the code
			t.Fatalf("accepted a %d-bit key", bits)
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("accepted an inconsistent key: %v", err)
		}
		fp, err := Fingerprint(&got.PublicKey)
		if err != nil {
			t.Fatalf("Fingerprint of an accepted key: %v", err)
		}
		if !fingerprintPattern.MatchString(fp) {
			t.Fatalf("Fingerprint = %q, want SHA256: and the base64 of 32 bytes", fp)
		}
		// What was accepted is the key the PEM holds: its PKCS#1 encoding parses back to the same key.
		again, err := ParsePrivateKey(pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(got)))
		if err != nil || !again.Equal(got) {
			t.Fatalf("the accepted key does not survive a PKCS#1 round trip: %v", err)
		}
	})
}

var (
	fingerprintPattern = regexp.MustCompile(`^SHA256:[A-Za-z0-9+/]{43}=$`)
	base64Run          = regexp.MustCompile(`[A-Za-z0-9+/=]{16,}`)
)

// quotedBody returns a 16-character piece of the PEM body of in that errText contains, or "". The body is every
// line that is not PEM armour (-----BEGIN/END ...-----). The block's type is on the armour line and is quoted by
// design ("unsupported PEM block type ..."), so a piece that is also in the type does not count.
func quotedBody(in, errText string) string {
	var body, armour strings.Builder
	for _, line := range strings.Split(in, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "-----") {
			armour.WriteString(line + "\n")
		} else {
			body.WriteString(line + "\n")
		}
	}
	// The error's own text holds no 16-character run of base64 characters, so only such runs can be quoted input.
	for _, run := range base64Run.FindAllString(errText, -1) {
		for i := 0; i+16 <= len(run); i++ {
			piece := run[i : i+16]
			if strings.Contains(body.String(), piece) && !strings.Contains(armour.String(), piece) {
				return piece
			}
		}
	}
	return ""
}

// pemBodyOf is the base64 lines of a PEM text, without armour, joined by newlines.
func pemBodyOf(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[1:len(lines)-1], "\n")
}

// marshalUnchecked is PKCS#1 DER of a key that x509.MarshalPKCS1PrivateKey may refuse to check.
func marshalUnchecked(k *rsa.PrivateKey) []byte {
	defer func() { _ = recover() }()
	return x509.MarshalPKCS1PrivateKey(k)
}
