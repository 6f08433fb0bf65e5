// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package signer

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// LibrariesEnv names the environment variable in which the operator lists, colon-separated, the absolute paths of
// the PKCS#11 modules that may be loaded. Loading a module runs its code in the process, so nothing else may be.
const LibrariesEnv = "GITHUB_APP_PKCS11_LIBRARIES"

// ParseLibraries splits a colon-separated list of library paths (LibrariesEnv's value), dropping empty entries.
func ParseLibraries(list string) []string {
	var out []string
	for _, p := range strings.Split(list, ":") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// PKCS11Config locates an RSA key in an HSM reached through a PKCS#11 module.
type PKCS11Config struct {
	// Library is the module's absolute path; it must be one of AllowedLibraries.
	Library string
	// AllowedLibraries are the absolute paths that may be loaded (ParseLibraries of LibrariesEnv).
	AllowedLibraries []string
	// TokenLabel is the token's label (CKA_LABEL of the token, as `softhsm2-util --show-slots` lists it).
	TokenLabel string
	// KeyLabel and KeyID (hex, as softhsm2-util and pkcs11-tool take it: "01", "a1b2") select the private key; at
	// least one is needed, and both must match when both are given.
	KeyLabel string
	KeyID    string
	// PIN is the token's user PIN. A process holds one login per library and token: every signer on that token
	// must give the same PIN.
	PIN string
}

// ErrNoPKCS11 is what OpenPKCS11 answers in a build without cgo, which cannot load PKCS#11 modules.
var ErrNoPKCS11 = errors.New("this build has no PKCS#11 support; use the -pkcs11 release artefact")

// OpenPKCS11 logs in to the token (or joins the process's login to it), finds the private key and reads its public
// half. The library path is checked against the allow-list before any file is looked at. The signer holds a share of
// the login until Close.
func OpenPKCS11(ctx context.Context, c PKCS11Config) (Signer, error) {
	id, err := c.check()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(c.Library); err != nil {
		msg := fmt.Sprintf("library %q cannot be read", c.Library)
		if errors.Is(err, fs.ErrNotExist) {
			msg = fmt.Sprintf("library %q does not exist", c.Library)
		}
		return nil, &Error{Signer: KindPKCS11, Kind: KindMisconfigured, Param: ParamLibrary, Msg: msg, Err: err}
	}
	return openPKCS11(ctx, c, id)
}

// check validates the settings without touching any file: the allow-list comes first.
func (c PKCS11Config) check() ([]byte, error) {
	if err := c.allowed(); err != nil {
		return nil, err
	}
	missing := func(p Param, what string) error {
		return &Error{Signer: KindPKCS11, Kind: KindMisconfigured, Param: p, Msg: what}
	}
	if c.TokenLabel == "" {
		return nil, missing(ParamTokenLabel, "no token label given")
	}
	if c.KeyLabel == "" && c.KeyID == "" {
		return nil, missing(ParamKeyLabel, "no key label or key ID given: give the private key's label or its ID")
	}
	if c.PIN == "" {
		return nil, missing(ParamPIN, "no PIN given: give the token's user PIN")
	}
	var id []byte
	if c.KeyID != "" {
		var err error
		if id, err = hex.DecodeString(strings.TrimPrefix(c.KeyID, "0x")); err != nil || len(id) == 0 {
			return nil, &Error{Signer: KindPKCS11, Kind: KindMisconfigured, Param: ParamKeyID,
				Msg: fmt.Sprintf("key ID %q is not hexadecimal: give it as softhsm2-util and pkcs11-tool take it, "+
					"such as 01 or a1b2c3", shortened(c.KeyID, 64))}
		}
	}
	return id, nil
}

// allowed refuses a library that is not an absolute path named in the allow-list.
func (c PKCS11Config) allowed() error {
	if c.Library == "" {
		return &Error{Signer: KindPKCS11, Kind: KindMisconfigured, Param: ParamLibrary,
			Msg: "no PKCS#11 library given: give the absolute path of one listed in " + LibrariesEnv}
	}
	for _, a := range c.AllowedLibraries {
		if filepath.IsAbs(a) && c.Library == a {
			return nil
		}
	}
	allowed := "none: the plugin's environment does not set " + LibrariesEnv
	if len(c.AllowedLibraries) > 0 {
		allowed = strings.Join(c.AllowedLibraries, ", ")
	}
	return &Error{Signer: KindPKCS11, Kind: KindMisconfigured, Param: ParamLibrary,
		Msg: fmt.Sprintf("library %q is not in the allow-list of PKCS#11 libraries (%s); the operator lists the "+
			"absolute paths that may be loaded in %s when registering the plugin", shortened(c.Library, 256),
			allowed, LibrariesEnv)}
}

// shortened cuts s to n bytes for a message.
func shortened(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
