// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package signer_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/signer"
)

// TestPKCS11AllowList: only a library the operator listed is loaded, and the list is checked before any file is
// looked at. The paths here do not exist: an error about the allow-list, not about a missing file, shows the check
// came first.
func TestPKCS11AllowList(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	listed := filepath.Join(dir, "listed.so")
	tests := []struct {
		name    string
		library string
		allowed []string
		want    []string
	}{
		{name: "not listed", library: filepath.Join(dir, "evil.so"), allowed: []string{listed},
			want: []string{"not in the allow-list of PKCS#11 libraries (" + listed + ")", signer.LibrariesEnv}},
		{name: "nothing listed", library: listed,
			want: []string{"not in the allow-list", "the plugin's environment does not set " + signer.LibrariesEnv}},
		{name: "relative path listed", library: "listed.so", allowed: []string{"listed.so"},
			want: []string{`library "listed.so" is not in the allow-list`}},
		{name: "another spelling of a listed path", library: dir + "/./listed.so", allowed: []string{listed},
			want: []string{"not in the allow-list"}},
		{name: "no library", allowed: []string{listed}, want: []string{"no PKCS#11 library given"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := signer.OpenPKCS11(t.Context(), signer.PKCS11Config{Library: tt.library,
				AllowedLibraries: tt.allowed, TokenLabel: "app", KeyLabel: "app-key", PIN: "1234-secret"})
			wantError(t, err, signer.KindMisconfigured, signer.ParamLibrary, tt.want, "1234-secret")
		})
	}

	// Listed, the same missing file is looked at: the error changes to say it does not exist.
	_, err := signer.OpenPKCS11(t.Context(), signer.PKCS11Config{Library: listed, AllowedLibraries: []string{listed},
		TokenLabel: "app", KeyLabel: "app-key", PIN: "1234-secret"})
	wantError(t, err, signer.KindMisconfigured, signer.ParamLibrary, []string{"does not exist"}, "1234-secret")
}

func TestParseLibraries(t *testing.T) {
	t.Parallel()
	got := signer.ParseLibraries(" /usr/lib/softhsm/libsofthsm2.so::/opt/cloudhsm/lib/libcloudhsm_pkcs11.so: ")
	want := []string{"/usr/lib/softhsm/libsofthsm2.so", "/opt/cloudhsm/lib/libcloudhsm_pkcs11.so"}
	if !slices.Equal(got, want) {
		t.Fatalf("ParseLibraries = %q, want %q", got, want)
	}
	if got := signer.ParseLibraries(""); len(got) != 0 {
		t.Fatalf("ParseLibraries(\"\") = %q, want none", got)
	}
}
