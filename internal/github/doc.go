// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

// Package github is a small client for the parts of GitHub's REST API that a GitHub App needs to mint and revoke
// installation access tokens: the App JWT, installations, installation tokens and their revocation.
//
// It knows GitHub and nothing of Vault. Errors are typed (*Error with a Kind) so that callers can map them to
// their own responses; no error, log line or String method ever carries a private key or a token.
package github
