// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"encoding/json"
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
