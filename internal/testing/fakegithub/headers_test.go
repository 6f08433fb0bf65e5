// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCommonHeaders(t *testing.T) {
	e := newEnv(t)
	requestID := regexp.MustCompile(`^[0-9A-F]{4}:[0-9A-F]{4}:[0-9A-F]{6}:[0-9A-F]{6}:[0-9A-F]{8}$`)
	seen := map[string]bool{}
	for i, c := range []struct {
		method, path, auth string
		status             int
	}{
		{"GET", "/app", e.bearer(), 200},
		{"GET", "/app", "", 401},
		{"GET", "/nope", e.bearer(), 404},
		{"POST", "/app/installations/9/access_tokens", e.bearer(), 404},
	} {
		resp := e.do(c.method, c.path, c.auth, nil)
		if resp.status != c.status {
			t.Fatalf("%s %s: status %d, want %d", c.method, c.path, resp.status, c.status)
		}
		h := resp.header
		if ct := h.Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		date, err := http.ParseTime(h.Get("Date"))
		if err != nil || time.Since(date).Abs() > 5*time.Second {
			t.Errorf("Date %q (%v)", h.Get("Date"), err)
		}
		id := h.Get("X-GitHub-Request-Id")
		if !requestID.MatchString(id) || seen[id] {
			t.Errorf("X-GitHub-Request-Id %q (repeated: %v)", id, seen[id])
		}
		seen[id] = true
		if h.Get("X-RateLimit-Resource") != "core" || h.Get("X-RateLimit-Reset") == "" || h.Get("X-RateLimit-Limit") == "" {
			t.Errorf("X-RateLimit headers %v", h)
		}
		if c.auth != "" && c.status == 200 {
			used, _ := strconv.Atoi(h.Get("X-RateLimit-Used"))
			remaining, _ := strconv.Atoi(h.Get("X-RateLimit-Remaining"))
			if h.Get("X-RateLimit-Limit") != "5000" || used != i+1 || remaining != 5000-used {
				t.Errorf("App call %d: limit %s used %d remaining %d", i, h.Get("X-RateLimit-Limit"), used, remaining)
			}
		}
		if got := h.Get("X-GitHub-Api-Version-Selected"); got != "2022-11-28" {
			t.Errorf("X-GitHub-Api-Version-Selected %q", got)
		}
	}
}

func TestAPIVersion(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		version string
		status  int
	}{
		{"", 200}, // absent
		{"2022-11-28", 200},
		{"2026-03-10", 200},
		{"2023-01-01", 400},
		{"v3", 400},
	}
	for _, tt := range tests {
		resp := e.do(http.MethodGet, "/app", e.bearer(), nil, withHeader("X-GitHub-Api-Version", tt.version))
		if tt.status == 200 {
			if resp.status != 200 {
				t.Errorf("version %q: %d %s", tt.version, resp.status, resp.body)
			}
			continue
		}
		resp.wantError(t, 400, `The version you specified in the "X-GitHub-Api-Version" request header, "`+tt.version+
			`", is not a supported version. The following versions are currently supported: "2026-03-10" (most recent), "2022-11-28".`)
	}
}

func TestUserAgentRequired(t *testing.T) {
	e := newEnv(t)
	resp := e.do(http.MethodGet, "/app", e.bearer(), nil, withoutUserAgent)
	resp.wantError(t, 403, msgUserAgentRequired)
	if !strings.HasPrefix(msgUserAgentRequired, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header") {
		t.Error("message does not start the way GitHub's does")
	}
}

func TestUnknownRoutes(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct{ method, path string }{
		{"GET", "/"},
		{"GET", "/apps"},
		{"GET", "/app/"},
		{"PUT", "/app"},
		{"GET", "/app/installations/2001/access_tokens"},
		{"POST", "/installation/token"},
		{"GET", "/api/v3"},
		{"GET", "/api/v4/app"},
		{"GET", "//app"},
	} {
		e.do(c.method, c.path, e.bearer(), nil).wantError(t, 404, msgNotFound)
	}
	if got := e.srv.Stats().Calls["GET (no route)"]; got != 7 {
		t.Errorf(`Calls["GET (no route)"] = %d, want 7`, got)
	}
}

func TestGHESPrefix(t *testing.T) {
	e := newEnv(t)
	resp := e.do(http.MethodGet, "/api/v3/app/installations/2001", e.bearer(), nil)
	var in installationObject
	resp.decode(t, &in)
	if want := e.ts.URL + "/api/v3/app/installations/2001/access_tokens"; in.AccessTokensURL != want {
		t.Errorf("access_tokens_url = %q, want %q", in.AccessTokensURL, want)
	}
	if want := e.ts.URL + "/organizations/acme/settings/installations/2001"; in.HTMLURL != want {
		t.Errorf("html_url = %q, want %q (the GHES host)", in.HTMLURL, want)
	}
	tok := e.mint(acmeID, nil)
	resp = e.do(http.MethodGet, "/api/v3/installation/repositories", "token "+tok.Token, nil)
	if resp.status != 200 {
		t.Errorf("list: %d", resp.status)
	}
	if resp := e.do(http.MethodDelete, "/api/v3/installation/token", "token "+tok.Token, nil); resp.status != 204 {
		t.Errorf("revoke: %d", resp.status)
	}
	if got := e.srv.Stats().Calls["GET /app/installations/{installation_id}"]; got != 1 {
		t.Errorf("stats key without prefix counted %d, want 1", got)
	}
}

func TestRateLimitEndpoint(t *testing.T) {
	e := newEnv(t)
	type overview struct {
		Resources map[string]rateLimitObject `json:"resources"`
		Rate      *rateLimitObject           `json:"rate"`
	}
	var anon overview
	e.do(http.MethodGet, "/rate_limit", "", nil).decode(t, &anon)
	if anon.Resources["core"].Limit != 60 || anon.Rate == nil || anon.Rate.Limit != 60 {
		t.Errorf("unauthenticated = %+v", anon)
	}

	auth := e.bearer()
	e.do(http.MethodGet, "/app", auth, nil)
	var first, second overview
	e.do(http.MethodGet, "/rate_limit", auth, nil).decode(t, &first)
	e.do(http.MethodGet, "/rate_limit", auth, nil).decode(t, &second)
	if c := first.Resources["core"]; c.Limit != 5000 || c.Used != 1 || c.Remaining != 4999 {
		t.Errorf("App core = %+v, want one call used", c)
	}
	if second.Resources["core"].Used != 1 {
		t.Errorf("GET /rate_limit counted against the limit: %+v", second.Resources["core"])
	}

	var v2026 overview
	e.do(http.MethodGet, "/rate_limit", auth, nil, withHeader("X-GitHub-Api-Version", "2026-03-10")).decode(t, &v2026)
	if v2026.Rate != nil || v2026.Resources["core"].Limit != 5000 {
		t.Errorf("2026-03-10 = %+v, want no top-level rate", v2026)
	}

	tok := e.mint(acmeID, nil)
	e.do(http.MethodDelete, "/installation/token", "token "+tok.Token, nil)
	e.do(http.MethodGet, "/rate_limit", "token "+tok.Token, nil).wantError(t, 401, msgBadCredentials)
	e.do(http.MethodGet, "/rate_limit", "Bearer garbage", nil).wantError(t, 401, msgJWTDecode)
}
