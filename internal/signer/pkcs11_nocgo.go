// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

//go:build !cgo

package signer

import (
	"context"
	"fmt"
)

// openPKCS11 cannot load a module without cgo: the release's static binaries are built without it, and the -pkcs11
// artefacts with it.
func openPKCS11(_ context.Context, c PKCS11Config, _ []byte) (Signer, error) {
	return nil, &Error{Signer: KindPKCS11, Kind: KindMisconfigured, Param: ParamLibrary,
		Msg: fmt.Sprintf("library %q cannot be loaded", c.Library), Err: ErrNoPKCS11}
}
