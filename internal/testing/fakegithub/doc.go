// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

// Package fakegithub emulates the parts of GitHub's REST API that a GitHub App uses to mint
// installation access tokens, so that tests, demos and benchmarks run offline and honestly.
//
// It is a real HTTP server with state (an http.Handler: use it with httptest.NewServer or
// cmd/fakegithub), strict where GitHub is strict: App JWTs are verified against the App's
// registered public keys with GitHub's clock rules and error messages; token requests are
// checked against the installation's repositories and permissions; revoked and expired tokens
// answer 401 Bad credentials. Answers follow GitHub's OpenAPI description field for field,
// with GitHub's headers (Date, X-GitHub-Request-Id, X-RateLimit-*) and error bodies.
//
// Endpoints, served under / and under /api/v3 (the GitHub Enterprise Server form):
//
//	GET    /app
//	GET    /app/installations                           (per_page, page, since; Link header)
//	GET    /app/installations/{installation_id}
//	GET    /orgs/{org}/installation                      (organization accounts only)
//	GET    /users/{username}/installation                (any account)
//	GET    /repos/{owner}/{repo}/installation
//	POST   /app/installations/{installation_id}/access_tokens
//	DELETE /installation/token                           (authenticated by the token itself)
//	GET    /installation/repositories                    (what a token reaches)
//	GET    /rate_limit
//
// Faults (latency, 5xx, rate limits, clock skew, outages, over-granting) are injected with
// Server.SetFaults or PUT /_fake/faults; see Faults and the admin endpoints in admin.go.
//
// # Behaviour worth knowing
//
//   - A token request that names permissions also gets metadata:read when the installation
//     has metadata, as GitHub does. A client checking "no more than asked" must allow for it.
//   - JWT clock rules, on the emulator's clock and without leeway: exp <= now is expired,
//     exp more than 10 minutes ahead (or exp - iat over 10 minutes) is too far in the future,
//     iat > now is refused. So a client JWT with iat = now-60s and exp = now+9m passes when
//     GitHub's clock is up to 9 minutes ahead and fails as soon as it is more than a minute behind.
//   - The X-RateLimit counters count but never refuse; rate limiting comes from Faults.
//     A primary rate limit lifts itself at its X-RateLimit-Reset time.
//   - Tokens of a suspended installation answer 403 but can still be revoked.
//   - With X-GitHub-Api-Version: 2026-03-10, repositories lack has_downloads and GET /rate_limit
//     lacks "rate", as GitHub's x-github-breaking-changes for that version say.
//
// # Fixture
//
// The initial state comes from a Fixture, in JSON for example:
//
//	{
//	  "apps": [
//	    {
//	      "id": 1001,
//	      "client_id": "Iv23liFAKEAPP0001",
//	      "slug": "vault-demo",
//	      "name": "Vault Demo",
//	      "owner": "acme",
//	      "public_keys": ["-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n"]
//	    }
//	  ],
//	  "installations": [
//	    {
//	      "id": 2001,
//	      "app_id": 1001,
//	      "account": "acme",
//	      "account_id": 5001,
//	      "account_type": "Organization",
//	      "repository_selection": "selected",
//	      "repositories": [
//	        {"id": 3001, "name": "api", "private": true},
//	        {"id": 3002, "name": "web", "private": true}
//	      ],
//	      "permissions": {"contents": "write", "metadata": "read", "pull_requests": "write"},
//	      "suspended": false
//	    }
//	  ]
//	}
//
// Defaults: client_id is generated from the ID, slug from the name, owner is the first
// installation's account, account_id is derived from the login (stable across runs),
// account_type is "Organization", repository_selection is "all", repository IDs are
// generated. Repositories list what the installation reaches (for "all", every repository
// of the account). Permission levels are checked against GitHub's schema. public_keys is
// optional: tests usually call Server.AddPublicKey, and cmd/fakegithub -generate-key
// registers a generated key with every App.
package fakegithub
