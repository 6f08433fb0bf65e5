// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestStatsCalls(t *testing.T) {
	e := newEnv(t)
	auth := e.bearer()
	e.do(http.MethodGet, "/app", auth, nil)
	e.do(http.MethodGet, "/api/v3/app", auth, nil)
	tok := e.mint(acmeID, nil)
	e.do(http.MethodGet, "/installation/repositories", "token "+tok.Token, nil)
	e.do(http.MethodDelete, "/installation/token", "token "+tok.Token, nil)
	e.do(http.MethodGet, "/nowhere", auth, nil)
	e.do(http.MethodGet, "/_fake/stats", "", nil) // admin calls are not counted

	st := e.srv.Stats()
	want := map[string]int{
		"GET /app": 2,
		"POST /app/installations/{installation_id}/access_tokens": 1,
		"GET /installation/repositories":                          1,
		"DELETE /installation/token":                              1,
		"GET (no route)":                                          1,
	}
	if !maps.Equal(st.Calls, want) {
		t.Errorf("Calls = %v, want %v", st.Calls, want)
	}
	if st.TotalCalls != 6 || st.TokensIssued != 1 || st.TokensRevoked != 1 || st.TokensLive != 0 || st.InFlight != 0 {
		t.Errorf("Stats = %+v", st)
	}

	e.srv.ResetStats()
	st = e.srv.Stats()
	if len(st.Calls) != 0 || st.TotalCalls != 0 || st.TokensIssued != 0 || st.DistinctJWTs != 0 || st.MaxInFlight != 0 {
		t.Errorf("after ResetStats: %+v", st)
	}
	if st.TokensRevoked != 1 {
		t.Errorf("ResetStats forgot token state: %+v", st)
	}
}

func TestStatsTokens(t *testing.T) {
	e := newEnv(t)
	e.mint(acmeID, nil)
	revoked := e.mint(acmeID, nil)
	e.do(http.MethodDelete, "/installation/token", "token "+revoked.Token, nil)
	e.srv.SetTokenLifetime(0)
	e.mint(octocatID, nil)

	st := e.srv.Stats()
	if st.TokensIssued != 3 || st.TokensLive != 1 || st.TokensRevoked != 1 || st.TokensExpired != 1 {
		t.Errorf("Stats = %+v, want issued 3, live 1, revoked 1, expired 1", st)
	}
	// Expiry is on the emulator's clock.
	e.srv.SetFaults(Faults{ClockOffset: 2 * time.Hour})
	if st := e.srv.Stats(); st.TokensLive != 0 || st.TokensExpired != 2 {
		t.Errorf("two hours later: %+v", st)
	}
	if n := len(e.srv.Tokens()); n != 3 {
		t.Errorf("Tokens lists %d, want 3", n)
	}
}

func TestStatsDistinctJWTs(t *testing.T) {
	e := newEnv(t)
	now := time.Now().Unix()
	a := "Bearer " + signJWT(t, testKey(), jwt.MapClaims{"iss": demoAppID, "iat": now - 60, "exp": now + 540})
	b := "Bearer " + signJWT(t, testKey(), jwt.MapClaims{"iss": demoAppID, "iat": now - 61, "exp": now + 539})
	for _, auth := range []string{a, a, a, b, b, "Bearer garbage"} {
		e.do(http.MethodGet, "/app", auth, nil)
	}
	tok := e.mint(acmeID, nil) // signs one more JWT, with the client ID as iss
	e.do(http.MethodGet, "/installation/repositories", "token "+tok.Token, nil)
	// a, b, garbage, and the JWT e.mint used; installation tokens do not count.
	if got := e.srv.Stats().DistinctJWTs; got != 4 {
		t.Errorf("DistinctJWTs = %d, want 4", got)
	}
}

func TestStatsMaxInFlight(t *testing.T) {
	e := newEnv(t)
	e.srv.SetFaults(Faults{Latency: 300 * time.Millisecond})
	auth := e.bearer()
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if resp, err := e.send(http.MethodGet, "/app", auth, nil); err != nil || resp.status != 200 {
				t.Errorf("concurrent call: %v", err)
			}
		})
	}
	wg.Wait()
	st := e.srv.Stats()
	if st.MaxInFlight != 5 || st.InFlight != 0 {
		t.Errorf("MaxInFlight %d, InFlight %d; want 5 and 0", st.MaxInFlight, st.InFlight)
	}
}

// TestConcurrentUse mints, lists and revokes from many goroutines; run with -race.
func TestConcurrentUse(t *testing.T) {
	e := newEnv(t)
	auth := e.bearer()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			resp, err := e.send(http.MethodPost, "/app/installations/2001/access_tokens", auth, map[string]any{"repositories": []string{"api"}})
			if err != nil || resp.status != 201 {
				t.Errorf("mint %d: %v", i, err)
				return
			}
			var tok installationTokenBody
			if err := json.Unmarshal(resp.body, &tok); err != nil {
				t.Errorf("mint %d: %v", i, err)
				return
			}
			e.send(http.MethodGet, "/installation/repositories", "token "+tok.Token, nil)
			e.send(http.MethodDelete, "/installation/token", "token "+tok.Token, nil)
			e.srv.Stats()
		})
	}
	wg.Wait()
	if st := e.srv.Stats(); st.TokensIssued != 20 || st.TokensRevoked != 20 {
		t.Errorf("Stats = %+v", st)
	}
}

// TestStatsPerApp counts each App's calls of a pool apart: with its JWT, with its installations' tokens, refused or
// not; anonymous calls and unknown credentials count under no App. The admin API shows the same, keyed by App ID.
func TestStatsPerApp(t *testing.T) {
	e := newPoolEnv(t)
	if err := e.srv.SetAppFaults(poolApp3, Faults{SecondaryRateLimit: http.StatusTooManyRequests}); err != nil {
		t.Fatal(err)
	}
	const mintKey = "POST /app/installations/{installation_id}/access_tokens"

	e.do(http.MethodGet, "/app", e.bearerFor(demoAppID), nil)
	tok := e.mintAs(poolApp2, poolInstall2)
	e.do(http.MethodGet, repositoryURL, "token "+tok, nil)
	e.do(http.MethodGet, "/rate_limit", "token "+tok, nil)
	e.do(http.MethodPost, fmt.Sprintf("/app/installations/%d/access_tokens", acmeID), e.bearerFor(poolApp2), nil).
		wantError(t, http.StatusNotFound, msgNotFound) // another App's installation
	for range 2 {
		if status, _ := e.mintStatus(poolApp3, poolInstall3); status != http.StatusTooManyRequests {
			t.Fatalf("mint as the limited App: status %d, want 429", status)
		}
	}
	e.do(http.MethodGet, "/users/octocat", "", nil)                              // anonymous
	e.do(http.MethodGet, "/app", "Bearer garbage", nil)                          // no App to tie it to
	e.do(http.MethodGet, repositoryURL, "token ghs_neverissuedneverissued", nil) // unknown token

	want := map[int64]AppStats{
		demoAppID: {Calls: map[string]int{"GET /app": 1}, TotalCalls: 1},
		poolApp2: {Calls: map[string]int{mintKey: 2, "GET /installation/repositories": 1, "GET /rate_limit": 1},
			TotalCalls: 4, Errors: 1, TokensIssued: 1},
		poolApp3: {Calls: map[string]int{mintKey: 2}, TotalCalls: 2, Errors: 2},
	}
	st := e.srv.Stats()
	if !maps.EqualFunc(st.Apps, want, func(a, b AppStats) bool {
		return maps.Equal(a.Calls, b.Calls) && a.TotalCalls == b.TotalCalls && a.Errors == b.Errors &&
			a.TokensIssued == b.TokensIssued
	}) {
		t.Errorf("Apps = %+v\nwant %+v", st.Apps, want)
	}
	if st.TotalCalls != 10 || st.TokensIssued != 1 {
		t.Errorf("TotalCalls %d, TokensIssued %d; want 10 and 1", st.TotalCalls, st.TokensIssued)
	}

	// The admin API: App IDs as JSON object keys.
	var admin struct {
		Apps map[string]AppStats `json:"apps"`
	}
	e.do(http.MethodGet, "/_fake/stats", "", nil).decode(t, &admin)
	if a := admin.Apps["1003"]; a.TotalCalls != 2 || a.Errors != 2 || a.Calls[mintKey] != 2 || len(admin.Apps) != 3 {
		t.Errorf("GET /_fake/stats apps = %+v", admin.Apps)
	}

	e.srv.ResetStats()
	if st := e.srv.Stats(); len(st.Apps) != 0 {
		t.Errorf("after ResetStats: Apps = %+v", st.Apps)
	}
}
