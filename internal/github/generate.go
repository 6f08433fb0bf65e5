// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

//go:generate go run ../../tools/genperms -out permissions_gen.go -specs ../testing/ghcontract/openapi
