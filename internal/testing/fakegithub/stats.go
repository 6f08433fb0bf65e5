// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"crypto/sha256"
	"maps"
	"sync"
	"sync/atomic"
)

// Stats is what the emulator saw since it started or since ResetStats.
type Stats struct {
	// Calls counts API calls by route, keyed "METHOD /route/template", e.g.
	// "POST /app/installations/{installation_id}/access_tokens". Calls to paths that are no
	// route count under "METHOD (no route)". The /api/v3 prefix is not part of the key.
	Calls         map[string]int `json:"calls"`
	TotalCalls    int            `json:"total_calls"`
	MaxInFlight   int            `json:"max_in_flight"`
	InFlight      int            `json:"in_flight"`
	DistinctJWTs  int            `json:"distinct_jwts"` // distinct JWT strings on App-authenticated calls, valid or not
	TokensIssued  int            `json:"tokens_issued"`
	TokensLive    int            `json:"tokens_live"`    // from state, not reset by ResetStats
	TokensRevoked int            `json:"tokens_revoked"` // from state, not reset by ResetStats
	TokensExpired int            `json:"tokens_expired"` // from state, not reset by ResetStats
	// Apps counts the calls of each App, keyed by App ID: those made with its JWT and those made with its
	// installations' tokens (credentials read as rate limiting reads them, unverified). Anonymous calls and calls
	// with credentials the emulator cannot tie to an App count under none. An App of a pool that is rate limited
	// shows here how often a client still probes it. Reset by ResetStats.
	Apps map[int64]AppStats `json:"apps"`
}

// AppStats is what one App's calls came to (see Stats.Apps).
type AppStats struct {
	// Calls counts the App's calls by route, keyed like Stats.Calls.
	Calls      map[string]int `json:"calls"`
	TotalCalls int            `json:"total_calls"`
	// Errors counts the calls answered with an error status (4xx or 5xx: refused by a rate limit or an injected
	// fault, or by the endpoint itself); dropped connections (outages) are not answers and do not count.
	Errors       int `json:"errors"`
	TokensIssued int `json:"tokens_issued"`
}

// statsRecorder counts calls. It has its own locks so that counting never waits for state.
type statsRecorder struct {
	inFlight    atomic.Int64
	maxInFlight atomic.Int64

	mu           sync.Mutex
	calls        map[string]int
	total        int
	jwts         map[[sha256.Size]byte]struct{}
	tokensIssued int
	apps         map[int64]*AppStats
}

func newStatsRecorder() *statsRecorder {
	return &statsRecorder{
		calls: make(map[string]int),
		jwts:  make(map[[sha256.Size]byte]struct{}),
		apps:  make(map[int64]*AppStats),
	}
}

// begin counts a call and raises the in-flight gauge; end lowers it.
func (r *statsRecorder) begin(key string) {
	n := r.inFlight.Add(1)
	for {
		peak := r.maxInFlight.Load()
		if n <= peak || r.maxInFlight.CompareAndSwap(peak, n) {
			break
		}
	}
	r.mu.Lock()
	r.calls[key]++
	r.total++
	r.mu.Unlock()
}

func (r *statsRecorder) end() { r.inFlight.Add(-1) }

// appLocked returns appID's counters, creating them; r.mu must be held.
func (r *statsRecorder) appLocked(appID int64) *AppStats {
	a := r.apps[appID]
	if a == nil {
		a = &AppStats{Calls: make(map[string]int)}
		r.apps[appID] = a
	}
	return a
}

// appCall counts a call under the App it comes from; 0 (no App) counts nowhere.
func (r *statsRecorder) appCall(appID int64, key string) {
	if appID == 0 {
		return
	}
	r.mu.Lock()
	a := r.appLocked(appID)
	a.Calls[key]++
	a.TotalCalls++
	r.mu.Unlock()
}

// appError counts a call of appID answered with an error status.
func (r *statsRecorder) appError(appID int64) {
	if appID == 0 {
		return
	}
	r.mu.Lock()
	r.appLocked(appID).Errors++
	r.mu.Unlock()
}

func (r *statsRecorder) sawJWT(hash [sha256.Size]byte) {
	r.mu.Lock()
	r.jwts[hash] = struct{}{}
	r.mu.Unlock()
}

func (r *statsRecorder) issuedToken(appID int64) {
	r.mu.Lock()
	r.tokensIssued++
	r.appLocked(appID).TokensIssued++
	r.mu.Unlock()
}

func (r *statsRecorder) snapshot() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	apps := make(map[int64]AppStats, len(r.apps))
	for id, a := range r.apps {
		c := *a
		c.Calls = maps.Clone(a.Calls)
		apps[id] = c
	}
	return Stats{
		Calls:        maps.Clone(r.calls),
		TotalCalls:   r.total,
		MaxInFlight:  int(r.maxInFlight.Load()),
		InFlight:     int(r.inFlight.Load()),
		DistinctJWTs: len(r.jwts),
		TokensIssued: r.tokensIssued,
		Apps:         apps,
	}
}

func (r *statsRecorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.calls)
	clear(r.jwts)
	clear(r.apps)
	r.total = 0
	r.tokensIssued = 0
	// Calls still running when the stats are reset count toward the new maximum.
	r.maxInFlight.Store(r.inFlight.Load())
}

// Stats returns the counters, with token counts computed from the current state.
func (s *Server) Stats() Stats {
	st := s.stats.snapshot()
	now := s.clocks()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, t := range s.st.tokens {
		switch {
		case t.revoked:
			st.TokensRevoked++
		case !now(t.appID).Before(t.expiresAt):
			st.TokensExpired++
		default:
			st.TokensLive++
		}
	}
	return st
}

// ResetStats zeroes the call counters (the Apps' too), the distinct-JWT set and TokensIssued.
// Token state (live, revoked, expired) is not touched.
func (s *Server) ResetStats() { s.stats.reset() }
