// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package signer

import (
	"context"
	"crypto"
	"crypto/rsa"
	"fmt"
)

// Key signs with an RSA private key held in the process.
type Key struct {
	key  *rsa.PrivateKey
	desc Description
}

// NewKey wraps a private key. The key is used as given, whatever its size: parse and validate it first (as
// github.ParsePrivateKey does, which also refuses keys under MinKeyBits).
func NewKey(key *rsa.PrivateKey) (*Key, error) {
	if key == nil {
		return nil, &Error{Signer: KindKey, Kind: KindMisconfigured, Param: ParamKey, Msg: "no private key given"}
	}
	fp, err := Fingerprint(&key.PublicKey)
	if err != nil {
		return nil, &Error{Signer: KindKey, Kind: KindMisconfigured, Param: ParamKey, Msg: "unusable public key",
			Err: err}
	}
	return &Key{key: key, desc: Description{Kind: KindKey, Fingerprint: fp}}, nil
}

// Public implements Signer.
func (k *Key) Public() *rsa.PublicKey { return &k.key.PublicKey }

// Describe implements Signer.
func (k *Key) Describe() Description { return k.desc }

// SignRS256 implements Signer. PKCS#1 v1.5 needs no randomness, so the same digest always gives the same signature.
func (k *Key) SignRS256(_ context.Context, digest []byte) ([]byte, error) {
	if err := checkDigest(KindKey, digest); err != nil {
		return nil, err
	}
	sig, err := rsa.SignPKCS1v15(nil, k.key, crypto.SHA256, digest)
	if err != nil {
		return nil, &Error{Signer: KindKey, Kind: KindMisconfigured, Param: ParamKey,
			Msg: fmt.Sprintf("signing with the %d-bit key", k.key.N.BitLen()), Err: err}
	}
	return sig, nil
}

// Close implements Signer; an in-process key holds nothing to release.
func (k *Key) Close() error { return nil }
