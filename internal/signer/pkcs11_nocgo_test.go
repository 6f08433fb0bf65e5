// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

//go:build !cgo

package signer_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/signer"
)

// TestPKCS11WithoutCgo: a build without cgo cannot load a module and says which build can.
func TestPKCS11WithoutCgo(t *testing.T) {
	t.Parallel()
	lib := filepath.Join(t.TempDir(), "module.so")
	if err := os.WriteFile(lib, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := signer.OpenPKCS11(t.Context(), signer.PKCS11Config{Library: lib, AllowedLibraries: []string{lib},
		TokenLabel: "app", KeyLabel: "app-key", PIN: "1234"})
	wantError(t, err, signer.KindMisconfigured, signer.ParamLibrary,
		[]string{"this build has no PKCS#11 support; use the -pkcs11 release artefact"})
	if !errors.Is(err, signer.ErrNoPKCS11) {
		t.Fatalf("error %v is not ErrNoPKCS11", err)
	}
}
