// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// admin calls the /_fake/ API the way a shell script would: no User-Agent rules, no JWT.
func (e *testEnv) admin(method, path, body string) (int, []byte) {
	e.t.Helper()
	resp, err := e.send(method, path, "", body, withoutUserAgent, withHeader("X-GitHub-Api-Version", "bogus"))
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.status, resp.body
}

func TestAdminFaults(t *testing.T) {
	e := newEnv(t)
	status, body := e.admin("PUT", "/_fake/faults", `{"fail_next": 1, "latency": "10ms", "error_status": 503}`)
	if status != 200 {
		t.Fatalf("PUT: %d %s", status, body)
	}
	if f := e.srv.Faults(); f.FailNext != 1 || f.Latency != 10*time.Millisecond || f.ErrorStatus != 503 {
		t.Errorf("faults = %+v", f)
	}
	if got := e.statuses(2); !slices.Equal(got, []int{503, 200}) {
		t.Errorf("statuses %v", got)
	}
	_, body = e.admin("GET", "/_fake/faults", "")
	var f Faults
	if err := json.Unmarshal(body, &f); err != nil || f.FailNext != 0 || f.Latency != 10*time.Millisecond {
		t.Errorf("GET: %s (%v)", body, err)
	}

	for _, bad := range []string{`{"secondary_rate_limit": 500}`, `{"fail_nxet": 1}`, `{"latency": "soon"}`, `[`} {
		if status, body := e.admin("PUT", "/_fake/faults", bad); status != 400 {
			t.Errorf("PUT %s: %d %s", bad, status, body)
		}
	}

	e.admin("PUT", "/_fake/faults", `{"outage_for": "200ms"}`)
	if until := e.srv.Faults().OutageUntil; time.Until(until) < 100*time.Millisecond || time.Until(until) > 250*time.Millisecond {
		t.Errorf("outage_until %v", until)
	}
	if _, err := e.send(http.MethodGet, "/app", e.bearer(), nil); err == nil {
		t.Error("no outage")
	}
	if status, _ := e.admin("GET", "/_fake/health", ""); status != 200 {
		t.Error("admin calls are hit by the outage")
	}
}

func TestAdminStatsAndTokens(t *testing.T) {
	e := newEnv(t)
	tok := e.mint(acmeID, map[string]any{"repositories": []string{"web"}})

	status, body := e.admin("GET", "/_fake/stats", "")
	var st Stats
	if err := json.Unmarshal(body, &st); status != 200 || err != nil || st.TokensIssued != 1 || st.Calls["POST /app/installations/{installation_id}/access_tokens"] != 1 {
		t.Errorf("stats %d %s", status, body)
	}

	status, body = e.admin("POST", "/_fake/token-status", `{"token": "`+tok.Token+`"}`)
	var info tokenStatus
	if err := json.Unmarshal(body, &info); status != 200 || err != nil {
		t.Fatalf("token-status %d %s", status, body)
	}
	sum := sha256.Sum256([]byte(tok.Token))
	if info.Value != tok.Token || info.InstallationID != acmeID || info.Revoked || info.Expired ||
		len(info.Repositories) != 1 || info.Repositories[0] != "web" || info.RepositorySelection != "selected" ||
		info.HashedToken != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Errorf("token-status = %+v", info)
	}
	e.do(http.MethodDelete, "/installation/token", "token "+tok.Token, nil)
	_, body = e.admin("POST", "/_fake/token-status", `{"token": "`+tok.Token+`"}`)
	if !strings.Contains(string(body), `"revoked": true`) {
		t.Errorf("after revoking: %s", body)
	}
	if status, _ := e.admin("POST", "/_fake/token-status", `{"token": "ghs_unknown"}`); status != 404 {
		t.Errorf("unknown token: %d", status)
	}

	if status, _ := e.admin("POST", "/_fake/stats/reset", ""); status != 204 {
		t.Errorf("reset: %d", status)
	}
	if st := e.srv.Stats(); st.TotalCalls != 0 {
		t.Errorf("after reset: %+v", st)
	}
	if status, _ := e.admin("GET", "/_fake/nothing", ""); status != 404 {
		t.Errorf("unknown admin path: %d", status)
	}
	if st := e.srv.Stats(); st.TotalCalls != 0 {
		t.Errorf("admin calls counted: %+v", st)
	}
}

// GET /_fake/tokens lists every token by hashed_token, with its state, and never the token itself: tests use it to
// account for every token GitHub issued (held by a lease, revoked, or orphaned).
func TestAdminTokens(t *testing.T) {
	e := newEnv(t)
	if status, body := e.admin("GET", "/_fake/tokens", ""); status != 200 || !strings.Contains(string(body), `"tokens": []`) {
		t.Fatalf("no tokens yet: %d %s", status, body)
	}
	live := e.mint(acmeID, map[string]any{"repositories": []string{"api"}})
	revoked := e.mint(acmeID, nil)
	e.do(http.MethodDelete, "/installation/token", "token "+revoked.Token, nil)
	e.srv.SetTokenLifetime(0)
	expired := e.mint(acmeID, nil)

	status, body := e.admin("GET", "/_fake/tokens", "")
	if status != 200 {
		t.Fatalf("GET /_fake/tokens: %d %s", status, body)
	}
	for _, tok := range []string{live.Token, revoked.Token, expired.Token} {
		if strings.Contains(string(body), tok) {
			t.Fatalf("GET /_fake/tokens shows a token value: %s", body)
		}
	}
	var out struct {
		Tokens []TokenRecord `json:"tokens"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	byHash := map[string]TokenRecord{}
	for _, r := range out.Tokens {
		byHash[r.HashedToken] = r
	}
	hash := func(tok string) string {
		sum := sha256.Sum256([]byte(tok))
		return base64.StdEncoding.EncodeToString(sum[:])
	}
	tests := []struct {
		name             string
		token            string
		revoked, expired bool
	}{
		{"live", live.Token, false, false},
		{"revoked", revoked.Token, true, false},
		{"expired", expired.Token, false, true},
	}
	if len(out.Tokens) != len(tests) {
		t.Fatalf("%d records, want %d: %s", len(out.Tokens), len(tests), body)
	}
	for _, tt := range tests {
		r, ok := byHash[hash(tt.token)]
		switch {
		case !ok:
			t.Errorf("%s: no record with its hashed_token", tt.name)
		case r.Revoked != tt.revoked || r.Expired != tt.expired || r.InstallationID != acmeID:
			t.Errorf("%s: %+v, want revoked=%v expired=%v installation %d", tt.name, r, tt.revoked, tt.expired, acmeID)
		case r.Revoked == r.RevokedAt.IsZero():
			t.Errorf("%s: revoked=%v but revoked_at %v", tt.name, r.Revoked, r.RevokedAt)
		}
	}
	if st := e.srv.Stats(); st.Calls["GET (no route)"] != 0 || st.TotalCalls != 4 {
		t.Errorf("admin calls counted as API calls: %+v", st)
	}
}

func TestAdminSuspendAndLifetime(t *testing.T) {
	e := newEnv(t)
	if status, body := e.admin("PUT", "/_fake/installations/2001/suspended", `{"suspended": true}`); status != 204 {
		t.Fatalf("suspend: %d %s", status, body)
	}
	e.do(http.MethodPost, "/app/installations/2001/access_tokens", e.bearer(), nil).wantError(t, 403, msgSuspended)
	e.admin("PUT", "/_fake/installations/2001/suspended", `{"suspended": false}`)
	e.mint(acmeID, nil)
	for _, c := range []struct{ path, body string }{
		{"/_fake/installations/9999/suspended", `{"suspended": true}`},
		{"/_fake/installations/abc/suspended", `{"suspended": true}`},
	} {
		if status, _ := e.admin("PUT", c.path, c.body); status != 404 {
			t.Errorf("%s: %d", c.path, status)
		}
	}
	if status, _ := e.admin("PUT", "/_fake/installations/2001/suspended", `{}`); status != 400 {
		t.Errorf("empty body: %d", status)
	}

	if status, body := e.admin("PUT", "/_fake/token-lifetime", `{"token_lifetime": "0s"}`); status != 204 {
		t.Fatalf("token-lifetime: %d %s", status, body)
	}
	tok := e.mint(acmeID, nil)
	e.do(http.MethodGet, "/installation/repositories", "token "+tok.Token, nil).wantError(t, 401, msgBadCredentials)
}

func TestAdminAppFaults(t *testing.T) {
	e := newPoolEnv(t)
	status, body := e.admin("PUT", "/_fake/apps/1002/faults", `{"fail_next": 1, "error_status": 503, "latency": "5ms"}`)
	if status != 200 {
		t.Fatalf("PUT: %d %s", status, body)
	}
	var f Faults
	if err := json.Unmarshal(body, &f); err != nil || f.FailNext != 1 || f.Latency != 5*time.Millisecond {
		t.Errorf("PUT answered %s (%v)", body, err)
	}
	if status, _ := e.mintStatus(poolApp2, poolInstall2); status != 503 {
		t.Errorf("App 1002's mint: %d, want 503", status)
	}
	e.mintAs(poolApp3, poolInstall3)
	_, body = e.admin("GET", "/_fake/apps/1002/faults", "")
	if err := json.Unmarshal(body, &f); err != nil || f.FailNext != 0 || f.Latency != 5*time.Millisecond {
		t.Errorf("GET after the failure: %s (%v)", body, err)
	}
	if _, body := e.admin("GET", "/_fake/faults", ""); !strings.Contains(string(body), `"fail_next": 0`) {
		t.Errorf("the emulator's faults changed: %s", body)
	}

	e.admin("PUT", "/_fake/apps/1002/faults", `{"outage_for": "1h"}`)
	if status, _ := e.mintStatus(poolApp2, poolInstall2); status != 0 {
		t.Errorf("App 1002 in an outage answered %d", status)
	}
	if status, _ := e.admin("PUT", "/_fake/apps/1002/faults", `{}`); status != 200 {
		t.Errorf("clearing: %d", status)
	}
	e.mintAs(poolApp2, poolInstall2)

	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"PUT", "/_fake/apps/1002/faults", `{"error_rate": 2}`, 400},
		{"PUT", "/_fake/apps/1002/faults", `{"fail_nxet": 1}`, 400},
		{"PUT", "/_fake/apps/9/faults", `{}`, 404},
		{"GET", "/_fake/apps/abc/faults", ``, 404},
		{"GET", "/_fake/apps/1002/nothing", ``, 404},
		{"DELETE", "/_fake/apps/1002/faults", ``, 404},
	} {
		if status, body := e.admin(c.method, c.path, c.body); status != c.want {
			t.Errorf("%s %s %s: %d %s, want %d", c.method, c.path, c.body, status, body, c.want)
		}
	}
}

func TestAdminRateLimits(t *testing.T) {
	e := newPoolEnv(t)
	status, body := e.admin("PUT", "/_fake/installations/2102/rate-limit", `{"limit": 100, "remaining": 10, "reset_in": "5m"}`)
	var st RateLimitStatus
	if err := json.Unmarshal(body, &st); status != 200 || err != nil || st.Limit != 100 || st.Remaining != 10 || st.Used != 90 ||
		!st.Enforced || time.Until(st.Reset) < 4*time.Minute || time.Until(st.Reset) > 6*time.Minute {
		t.Fatalf("PUT: %d %s", status, body)
	}
	status, body = e.admin("POST", "/_fake/installations/2102/rate-limit/spend", `{"requests": 3}`)
	if err := json.Unmarshal(body, &st); status != 200 || err != nil || st.Remaining != 7 {
		t.Errorf("spend: %d %s", status, body)
	}
	auth := "token " + e.mintAs(poolApp2, poolInstall2)
	if core, _, _ := e.coreOf(auth); core.Remaining != 7 || core.Limit != 100 {
		t.Errorf("GET /rate_limit after the admin calls: %+v", core)
	}
	e.do(http.MethodGet, repositoryURL, auth, nil)
	_, body = e.admin("GET", "/_fake/installations/2102/rate-limit", "")
	if err := json.Unmarshal(body, &st); err != nil || st.Remaining != 6 {
		t.Errorf("GET: %s", body)
	}

	status, body = e.admin("PUT", "/_fake/apps/1003/rate-limit", `{"remaining": 0}`)
	if status != 200 {
		t.Fatalf("PUT App budget: %d %s", status, body)
	}
	if status, _ := e.mintStatus(poolApp3, poolInstall3); status != 403 {
		t.Errorf("a mint with the App's budget spent: %d", status)
	}
	if status, body := e.admin("POST", "/_fake/apps/1001/rate-limit/spend", `{"requests": 1}`); status != 200 ||
		!strings.Contains(string(body), `"used": 1`) {
		t.Errorf("spend from the demo App: %d %s", status, body)
	}
	if _, body := e.admin("GET", "/_fake/apps/1001/rate-limit", ""); !strings.Contains(string(body), `"remaining": 4999`) {
		t.Errorf("GET App budget: %s", body)
	}

	status, body = e.admin("GET", "/_fake/rate-limits", "")
	var report RateLimitReport
	if err := json.Unmarshal(body, &report); status != 200 || err != nil || len(report.Apps) != 3 || len(report.Installations) != 4 {
		t.Fatalf("GET /_fake/rate-limits: %d %s", status, body)
	}
	if in := report.Installations[2]; in.InstallationID != poolInstall2 || in.AppID != poolApp2 || in.Account != "acme" || in.Remaining != 6 {
		t.Errorf("report of installation 2102: %+v", in)
	}
	if a := report.Apps[2]; a.AppID != poolApp3 || a.Remaining != 0 || !a.Enforced {
		t.Errorf("report of App 1003: %+v", a)
	}

	for _, c := range []struct {
		method, path, body string
		want               int
		message            string
	}{
		{"PUT", "/_fake/installations/2102/rate-limit", `{"limit": 100, "remaining": 101}`, 400, "remaining 101"},
		{"PUT", "/_fake/installations/2102/rate-limit", `{"limit": 100}`, 400, `remaining\" is required`},
		{"PUT", "/_fake/installations/2102/rate-limit", `{"remaining": 1, "reset_in": "-1s"}`, 400, "reset_in"},
		{"PUT", "/_fake/installations/2102/rate-limit", `{"remaining": 1, "extra": 1}`, 400, "extra"},
		{"POST", "/_fake/installations/2102/rate-limit/spend", `{"requests": -1}`, 400, "-1"},
		{"POST", "/_fake/installations/2102/rate-limit/spend", `{}`, 400, "requests"},
		{"PUT", "/_fake/installations/9999/rate-limit", `{"remaining": 1}`, 404, "9999"},
		{"GET", "/_fake/apps/9/rate-limit", ``, 404, "app 9"},
		{"POST", "/_fake/installations/2102/rate-limit", `{}`, 404, "no admin endpoint"},
	} {
		status, body := e.admin(c.method, c.path, c.body)
		if status != c.want || !strings.Contains(string(body), c.message) {
			t.Errorf("%s %s %s: %d %s, want %d with %q", c.method, c.path, c.body, status, body, c.want, c.message)
		}
	}
	if st, _ := e.srv.InstallationRateLimit(poolInstall2); st.Remaining != 6 || st.Limit != 100 {
		t.Errorf("refused writes changed the budget: %+v", st)
	}
}
