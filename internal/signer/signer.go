// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

// Package signer signs GitHub App JWTs with an RSA key that the process may hold (Key) or only refer to: a key in
// AWS KMS (AWSKMS) or in an HSM reached through a PKCS#11 module (PKCS11). It knows KMSes and HSMs, and nothing of
// Vault or GitHub.
package signer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
)

// Kinds of signer, as Description.Kind and Error.Signer name them.
const (
	KindKey    = "key"
	KindAWSKMS = "awskms"
	KindPKCS11 = "pkcs11"
)

// MinKeyBits is the smallest RSA key accepted. GitHub generates 2048-bit keys; anything smaller is not a key GitHub
// issued and would be weak.
const MinKeyBits = 2048

// Signer makes RS256 signatures (RSASSA-PKCS1-v1_5 over a SHA-256 digest) with one RSA key. Implementations are
// safe for concurrent use. A Signer that talks to a KMS or HSM honours ctx for its waits and retries.
type Signer interface {
	// Public returns the RSA public key whose private half signs.
	Public() *rsa.PublicKey
	// SignRS256 signs a SHA-256 digest (32 bytes). A failure is an *Error.
	SignRS256(ctx context.Context, digest []byte) ([]byte, error)
	// Describe says which key signs, for status pages; never a secret.
	Describe() Description
	// Close releases what the signer holds (connections, HSM sessions and logins). Signing after Close fails.
	Close() error
}

// Description names a signer's key without revealing anything secret.
type Description struct {
	// Kind is KindKey, KindAWSKMS or KindPKCS11.
	Kind string `json:"kind"`
	// Key names the key where it lives: the KMS key's ARN, or the PKCS#11 token and key label or ID; empty for an
	// in-process key.
	Key string `json:"key,omitempty"`
	// Fingerprint is Fingerprint of the public key.
	Fingerprint string `json:"fingerprint"`
}

// Fingerprint returns a public key's fingerprint as GitHub shows it beside an App's keys: "SHA256:" followed by the
// standard base64 of the SHA-256 of the key in PKIX DER. It equals
// `openssl rsa -in key.pem -pubout -outform DER | openssl sha256 -binary | openssl base64`.
func Fingerprint(pub *rsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encoding public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return "SHA256:" + base64.StdEncoding.EncodeToString(sum[:]), nil
}

// ErrorKind tells apart the failures a caller reacts to differently.
type ErrorKind int

const (
	// KindMisconfigured: the signer's settings are wrong (unknown key, a key that is not RSA or not for signing,
	// a wrong PIN, a library not allowed, access denied). Retrying will not help; the settings must change.
	KindMisconfigured ErrorKind = iota
	// KindUnavailable: the KMS or HSM could not sign now (throttled, unreachable, failing), after retries.
	KindUnavailable
)

func (k ErrorKind) String() string {
	if k == KindUnavailable {
		return "unavailable"
	}
	return "misconfigured"
}

// Param names the setting an Error is about, so that a caller can name its own field for it.
type Param string

// The settings an Error may name.
const (
	ParamNone        Param = ""
	ParamKey         Param = "key"          // the in-process private key
	ParamKeyID       Param = "key_id"       // the KMS key ID, ARN or alias; the PKCS#11 key's CKA_ID
	ParamRegion      Param = "region"       // the AWS region
	ParamEndpoint    Param = "endpoint"     // the KMS endpoint
	ParamCredentials Param = "credentials"  // AWS credentials
	ParamLibrary     Param = "library"      // the PKCS#11 module's path
	ParamTokenLabel  Param = "token_label"  // the PKCS#11 token's label
	ParamKeyLabel    Param = "key_label"    // the PKCS#11 key's CKA_LABEL
	ParamPIN         Param = "pin"          // the PKCS#11 user PIN
	ParamDigest      Param = "digest"       // the digest handed to SignRS256
	ParamSignerState Param = "signer_state" // the signer itself (closed)
)

// Error is a signer's failure. Its message names the signer, the key and what to check; never a secret.
type Error struct {
	// Signer is KindAWSKMS, KindPKCS11 or KindKey.
	Signer string
	Kind   ErrorKind
	// Param is the setting to check, or ParamNone.
	Param Param
	// Msg says what went wrong, in the signer's words.
	Msg string
	// Err is the cause (an AWS API error, a PKCS#11 return value), when there is one.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s signer: %s: %v", e.Signer, e.Msg, e.Err)
	}
	return fmt.Sprintf("%s signer: %s", e.Signer, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// errClosed is what a closed signer answers.
func errClosed(signer string) *Error {
	return &Error{Signer: signer, Kind: KindMisconfigured, Param: ParamSignerState, Msg: "the signer has been closed"}
}

// checkDigest refuses anything but a SHA-256 digest.
func checkDigest(signer string, digest []byte) error {
	if len(digest) != sha256.Size {
		return &Error{Signer: signer, Kind: KindMisconfigured, Param: ParamDigest,
			Msg: fmt.Sprintf("the digest has %d bytes: RS256 signs a SHA-256 digest of %d bytes", len(digest),
				sha256.Size)}
	}
	return nil
}

// checkSignature verifies a signature made elsewhere (a KMS or HSM) against the public key read from there, so that
// a wrong answer is told here, clearly, rather than by GitHub as an undecodable JWT.
func checkSignature(signer string, pub *rsa.PublicKey, digest, sig []byte) error {
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, sig); err != nil {
		return &Error{Signer: signer, Kind: KindUnavailable,
			Msg: "the signature returned does not verify with the key's public key", Err: err}
	}
	return nil
}

// checkRSAPublic accepts an RSA public key GitHub could have issued.
func checkRSAPublic(signer string, param Param, where string, pub crypto.PublicKey) (*rsa.PublicKey, error) {
	rp, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, &Error{Signer: signer, Kind: KindMisconfigured, Param: param,
			Msg: fmt.Sprintf("%s is not an RSA key (it is %s): GitHub App keys are RSA", where, keyTypeName(pub))}
	}
	if bits := rp.N.BitLen(); bits < MinKeyBits {
		return nil, &Error{Signer: signer, Kind: KindMisconfigured, Param: param,
			Msg: fmt.Sprintf("%s is an RSA key of %d bits: at least %d are required", where, bits, MinKeyBits)}
	}
	return rp, nil
}

func keyTypeName(pub crypto.PublicKey) string {
	switch pub.(type) {
	case *ecdsa.PublicKey:
		return "an EC key"
	case ed25519.PublicKey:
		return "an Ed25519 key"
	case nil:
		return "no key"
	default:
		return fmt.Sprintf("a %T", pub)
	}
}
