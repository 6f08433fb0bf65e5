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
//	GET    /users/{username}                             (an App's bot user "<slug>[bot]", or a known account)
//	GET    /rate_limit
//
// GET /users/{username} answers with GitHub's public-user object, with or without credentials;
// with an installation token it is that installation's call (its budget, its App's faults), and
// a suspended installation's token is refused there with 403, as elsewhere.
//
// Faults (latency, 5xx, rate limits, clock skew, outages, over-granting, token answers that
// leave out the token's scope) are injected with Server.SetFaults or PUT /_fake/faults; see
// Faults and the admin endpoints in admin.go.
//
// # Several Apps, per-App faults and rate-limit budgets (App pools)
//
// Any number of Apps may be installed on the same account, each with its own installation
// (its own ID, repositories and permissions): list them in the fixture, or call Server.AddApp
// and Server.AddInstallation. Every App-authenticated endpoint answers for the JWT's App only:
// GET /orgs/acme/installation gives each App its own installation, and an App asking for
// another App's installation gets 404. PoolFixture (cmd/fakegithub/fixture.pool.example.json)
// is DemoFixture plus Apps 1002 and 1003 installed on acme as 2102 and 2103.
//
// Per-App faults: Server.SetAppFaults(appID, Faults) or PUT /_fake/apps/{id}/faults (the body of
// PUT /_fake/faults) hit the calls of one App: those made with its JWT, token creation included,
// and those made with its installations' tokens. They come on top of the emulator-wide faults:
// latencies and clock offsets add up; the emulator's 5xx and rate limits are taken first, then
// the App's. An App's clock offset moves its JWT checks, Date headers and its tokens' expiry, as
// a GitHub Enterprise Server with a skewed clock would. Faults{} (or PUT {}) removes them.
//
// Rate limits: the emulator counts every API call against a core counter, as GitHub does: calls
// with an installation token against that installation, calls with an App JWT (token creation
// included) against the App, anonymous calls against the caller's IP address. The
// X-RateLimit-Limit/Remaining/Used/Reset headers of each answer show the caller's counter after
// the call; GET /rate_limit shows the same counter as resources.core (and as the top-level rate
// before API version 2026-03-10) without counting itself. A window starts with the first call
// and lasts an hour; then the budget is whole again. A budget that a test has set or spent from
// is enforced: while nothing remains, calls against it get GitHub's primary rate-limit answer
// (403, X-RateLimit-Remaining: 0, "API rate limit exceeded for installation ID N."), GET
// /rate_limit excepted, until X-RateLimit-Reset. The other budgets count but never refuse, so
// that benchmarks are limited by the plugin and not by GitHub's 5,000 requests an hour.
//
//	Server.SetInstallationRateLimit(id, RateLimit{Limit: 5000, Remaining: 500})   10 % left
//	Server.SpendInstallationRateLimit(id, n), Server.InstallationRateLimit(id)
//	Server.SetAppRateLimit, SpendAppRateLimit, AppRateLimit: the App's own budget
//	Server.RateLimits(): every budget
//
// and their admin forms (no User-Agent or credentials needed):
//
//	GET  /_fake/rate-limits                              every App's and installation's budget
//	GET  /_fake/installations/{id}/rate-limit            {"limit", "remaining", "used", "reset", "enforced"}
//	PUT  /_fake/installations/{id}/rate-limit            {"limit": 5000, "remaining": 500, "reset_in": "30m"}
//	POST /_fake/installations/{id}/rate-limit/spend      {"requests": 100}
//	GET, PUT /_fake/apps/{id}/rate-limit, POST /_fake/apps/{id}/rate-limit/spend
//	GET, PUT /_fake/apps/{id}/faults
//
// In a RateLimit, limit 0 means 5,000, remaining is required (0..limit), and reset_in (default an
// hour) is when the window ends, rounded up to a whole second.
//
// Stats (GET /_fake/stats) count the calls of each App apart under "apps", keyed by App ID: calls by
// route, error answers and tokens issued, for calls made with the App's JWT or its installations'
// tokens. A load test reads there how often a client still called an App of its pool that is
// rate limited, and how its mints spread over the Apps.
//
// # Behaviour worth knowing
//
//   - A token request that names permissions also gets metadata:read when the installation
//     has metadata, as GitHub does. A client checking "no more than asked" must allow for it.
//   - JWT clock rules, on the emulator's clock and without leeway: exp <= now is expired,
//     exp more than 10 minutes ahead (or exp - iat over 10 minutes) is too far in the future,
//     iat > now is refused. So a client JWT with iat = now-60s and exp = now+9m passes when
//     GitHub's clock is up to 9 minutes ahead and fails as soon as it is more than a minute behind.
//   - The X-RateLimit counters refuse only once a test has set or spent their budget (see above);
//     otherwise rate limiting comes from Faults. A primary rate limit lifts itself at its
//     X-RateLimit-Reset time.
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
//	      "bot_user_id": 149200001,
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
//	      "suspended": false,
//	      "rate_limit": {"limit": 5000, "remaining": 500, "reset_in": "45m"}
//	    }
//	  ]
//	}
//
// Defaults: client_id is generated from the ID, slug from the name, owner is the first
// installation's account, bot_user_id (the ID of the App's bot user, "<slug>[bot]", served by
// GET /users/{username} and shown by Server.BotUser) is derived from the slug, account_id is
// derived from the login (both stable across runs),
// account_type is "Organization", repository_selection is "all", repository IDs are
// generated. Repositories list what the installation reaches (for "all", every repository
// of the account). Permission levels are checked against GitHub's schema. public_keys is
// optional: tests usually call Server.AddPublicKey, and cmd/fakegithub -generate-key
// registers a generated key with every App. rate_limit (on an installation, or on an App for
// its own budget) is optional: a budget to start with, enforced as SetInstallationRateLimit
// enforces it; without it the counter starts full and is not enforced. An App may be installed
// on any number of accounts, once each; several Apps may be installed on one account.
package fakegithub
