// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestContract walks every endpoint, under / and /api/v3, in both API versions, with several
// Apps on one account and an installation whose budget is spent; the test client checks each
// answer against GitHub's OpenAPI description.
func TestContract(t *testing.T) {
	for _, prefix := range []string{"", "/api/v3"} {
		for _, version := range []string{"2022-11-28", "2026-03-10"} {
			t.Run(strings.TrimPrefix(prefix, "/")+version, func(t *testing.T) {
				e := newPoolEnv(t)
				if err := e.srv.SetSuspended(octocatID, true); err != nil {
					t.Fatal(err)
				}
				pool := e.bearerFor(poolApp2)
				v := withHeader("X-GitHub-Api-Version", version)
				checks := []struct {
					method, path string
					auth         string
					body         any
					want         int
				}{
					{"GET", "/app", e.bearer(), nil, 200},
					{"GET", "/app/installations", e.bearer(), nil, 200},
					{"GET", "/app/installations/2001", e.bearer(), nil, 200},
					{"GET", "/app/installations/2002", e.bearer(), nil, 200}, // suspended: suspended_by and suspended_at set
					{"GET", "/app/installations/9999", e.bearer(), nil, 404},
					{"GET", "/orgs/acme/installation", e.bearer(), nil, 200},
					{"GET", "/users/octocat/installation", e.bearer(), nil, 200},
					{"GET", "/repos/acme/api/installation", e.bearer(), nil, 200},
					{"GET", "/repos/acme/nope/installation", e.bearer(), nil, 404},
					{"POST", "/app/installations/2001/access_tokens", e.bearer(), map[string]any{"repositories": []string{"api"}}, 201},
					{"POST", "/app/installations/2001/access_tokens", e.bearer(), nil, 201},
					{"POST", "/app/installations/2001/access_tokens", e.bearer(), map[string]any{"repositories": []string{"nope"}}, 422},
					{"POST", "/app/installations/2001/access_tokens", "", nil, 401},
					{"POST", "/app/installations/2002/access_tokens", e.bearer(), nil, 403},
					{"POST", "/app/installations/9999/access_tokens", e.bearer(), nil, 404},
					{"GET", "/rate_limit", "", nil, 200},
					{"GET", "/rate_limit", pool, nil, 200},
					{"GET", "/installation/repositories", "", nil, 401},
					{"GET", "/orgs/acme/installation", pool, nil, 200},
					{"GET", "/app/installations", pool, nil, 200},
					{"POST", "/app/installations/2102/access_tokens", pool, nil, 201},
					{"POST", "/app/installations/2001/access_tokens", pool, nil, 404},
					{"GET", "/users/vault-demo%5Bbot%5D", "", nil, 200},
					{"GET", "/users/vault-demo-2%5Bbot%5D", pool, nil, 200},
					{"GET", "/users/acme", "", nil, 200},
					{"GET", "/users/nobody%5Bbot%5D", "", nil, 404},
				}
				for _, c := range checks {
					resp := e.do(c.method, prefix+c.path, c.auth, c.body, v)
					if resp.status != c.want {
						t.Errorf("%s %s: status %d, want %d; body %s", c.method, c.path, resp.status, c.want, resp.body)
					}
				}

				tok := e.mint(acmeID, nil, v)
				if resp := e.do("GET", prefix+"/installation/repositories", "token "+tok.Token, nil, v); resp.status != 200 {
					t.Errorf("list repositories: %d %s", resp.status, resp.body)
				}
				if resp := e.do("GET", prefix+"/rate_limit", "token "+tok.Token, nil, v); resp.status != 200 {
					t.Errorf("rate_limit: %d %s", resp.status, resp.body)
				}
				if resp := e.do("GET", prefix+"/users/vault-demo%5Bbot%5D", "token "+tok.Token, nil, v); resp.status != 200 {
					t.Errorf("bot user: %d %s", resp.status, resp.body)
				}
				if resp := e.do("DELETE", prefix+"/installation/token", "token "+tok.Token, nil, v); resp.status != 204 {
					t.Errorf("revoke: %d %s", resp.status, resp.body)
				}

				// An installation with nothing left: refused, and GET /rate_limit says so.
				spent := "token " + e.mintAs(poolApp2, poolInstall2)
				if _, err := e.srv.SetInstallationRateLimit(poolInstall2, RateLimit{Remaining: 0}); err != nil {
					t.Fatal(err)
				}
				if resp := e.do("GET", prefix+"/installation/repositories", spent, nil, v); resp.status != 403 {
					t.Errorf("list repositories with nothing left: %d, want 403", resp.status)
				}
				if resp := e.do("GET", prefix+"/rate_limit", spent, nil, v); resp.status != 200 {
					t.Errorf("rate_limit with nothing left: %d %s", resp.status, resp.body)
				}
				if resp := e.do("GET", prefix+"/users/vault-demo-2%5Bbot%5D", spent, nil, v); resp.status != 403 {
					t.Errorf("bot user with nothing left: %d, want 403", resp.status)
				}
			})
		}
	}
}

// TestContractCheckCanFail makes sure the contract check would notice a missing required field.
func TestContractCheckCanFail(t *testing.T) {
	e := newEnv(t)
	resp := e.do("GET", "/app/installations/2001", e.bearer(), nil)
	var obj map[string]any
	resp.decode(t, &obj)
	delete(obj, "suspended_at")
	broken, _ := json.Marshal(obj)
	req, _ := http.NewRequest("GET", e.ts.URL+"/app/installations/2001", nil)
	if err := contractError(req, 200, resp.header, broken); err == nil {
		t.Fatal("an installation without suspended_at passed the contract check")
	}
	if err := contractError(req, 200, resp.header, resp.body); err != nil {
		t.Fatalf("the untouched answer failed the contract check: %v", err)
	}
	_ = bytes.MinRead
}
