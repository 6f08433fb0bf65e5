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
}

func newStatsRecorder() *statsRecorder {
	return &statsRecorder{
		calls: make(map[string]int),
		jwts:  make(map[[sha256.Size]byte]struct{}),
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

func (r *statsRecorder) sawJWT(hash [sha256.Size]byte) {
	r.mu.Lock()
	r.jwts[hash] = struct{}{}
	r.mu.Unlock()
}

func (r *statsRecorder) issuedToken() {
	r.mu.Lock()
	r.tokensIssued++
	r.mu.Unlock()
}

func (r *statsRecorder) snapshot() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Stats{
		Calls:        maps.Clone(r.calls),
		TotalCalls:   r.total,
		MaxInFlight:  int(r.maxInFlight.Load()),
		InFlight:     int(r.inFlight.Load()),
		DistinctJWTs: len(r.jwts),
		TokensIssued: r.tokensIssued,
	}
}

func (r *statsRecorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.calls)
	clear(r.jwts)
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

// ResetStats zeroes the call counters, the distinct-JWT set and TokensIssued.
// Token state (live, revoked, expired) is not touched.
func (s *Server) ResetStats() { s.stats.reset() }
