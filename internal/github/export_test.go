// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"crypto/rsa"
	"testing"
)

// The emulator tests live in package github_test: internal/testing/fakegithub imports this package, so tests inside
// it could not import the emulator without an import cycle. These names give them what they need of the inside.

// SharedKey is the package's shared 2048-bit test key (see sharedKey in key_test.go).
func SharedKey(t testing.TB) *rsa.PrivateKey { return sharedKey(t) }

// JWT timing, as the tests check it on the wire.
const (
	JWTBackdate = jwtBackdate
	JWTLifetime = jwtLifetime
)
