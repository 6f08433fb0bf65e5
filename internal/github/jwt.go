// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/signer"
)

// GitHub refuses App JWTs that live longer than ten minutes. Backdating iat by a minute absorbs small clock
// differences; nine minutes of life stays inside GitHub's limit even then. A JWT is reused until a minute before
// it expires, so the plugin signs about once every eight minutes, not once per request.
const (
	jwtBackdate = 60 * time.Second
	jwtLifetime = 9 * time.Minute
	jwtRenewal  = time.Minute
)

// jwtSource signs and caches the App JWT. skew is GitHub's clock minus ours, learned from a Date header when
// GitHub says the JWT's times are off.
//
// The signer may be a KMS or an HSM, a network call away: one caller signs while the others wait for its result
// (each within its own context) instead of queueing signatures of their own.
type jwtSource struct {
	signer signer.Signer
	issuer any // client ID (string) or app ID (int64); GitHub accepts both
	now    func() time.Time
	onSign func() // told of every signature

	mu      sync.Mutex
	skew    time.Duration
	token   string
	expires time.Time // on GitHub's clock
	gen     uint64    // bumped when the cached JWT is dropped, so that a signature begun before is not cached
	flight  *jwtFlight

	signatures atomic.Int64
}

// jwtFlight is one signature in progress, shared by the callers who arrive while it runs.
type jwtFlight struct {
	done      chan struct{}
	gen       uint64
	token     string
	err       error
	abandoned bool // the signing caller's context ended: waiters with time left sign again
}

func newJWTSource(s signer.Signer, appID int64, clientID string, now func() time.Time, onSign func()) *jwtSource {
	j := &jwtSource{signer: s, now: now, onSign: onSign}
	if clientID != "" {
		j.issuer = clientID
	} else {
		j.issuer = appID
	}
	return j
}

// get returns a JWT valid for at least another minute on GitHub's (estimated) clock.
func (s *jwtSource) get(ctx context.Context) (string, error) {
	for {
		s.mu.Lock()
		now := s.now().Add(s.skew)
		if s.token != "" && now.Before(s.expires.Add(-jwtRenewal)) {
			tok := s.token
			s.mu.Unlock()
			return tok, nil
		}
		if f := s.flight; f != nil {
			s.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return "", fmt.Errorf("waiting for the App JWT's signature: %w", ctx.Err())
			}
			if f.abandoned || (f.err == nil && f.gen != s.generation()) {
				continue
			}
			return f.token, f.err
		}
		f := &jwtFlight{done: make(chan struct{}), gen: s.gen}
		s.flight = f
		iat := now.Add(-jwtBackdate).Truncate(time.Second)
		exp := now.Add(jwtLifetime).Truncate(time.Second)
		s.mu.Unlock()

		signed, err := s.sign(ctx, iat, exp)

		s.mu.Lock()
		s.flight = nil
		if err == nil && f.gen == s.gen {
			s.token, s.expires = signed, exp
		}
		f.token, f.err, f.abandoned = signed, err, err != nil && ctx.Err() != nil
		close(f.done)
		s.mu.Unlock()
		return signed, err
	}
}

// sign makes one JWT: golang-jwt encodes header and claims, the signer signs their SHA-256 digest.
func (s *jwtSource) sign(ctx context.Context, iat, exp time.Time) (string, error) {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iat": iat.Unix(),
		"exp": exp.Unix(),
		"iss": s.issuer,
	})
	unsigned, err := tok.SigningString()
	if err != nil {
		return "", fmt.Errorf("encoding the App JWT: %w", err)
	}
	digest := sha256.Sum256([]byte(unsigned))
	sig, err := s.signer.SignRS256(ctx, digest[:])
	if err != nil {
		return "", fmt.Errorf("signing the App JWT: %w", err)
	}
	s.signatures.Add(1)
	s.onSign()
	return unsigned + "." + tok.EncodeSegment(sig), nil
}

func (s *jwtSource) generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// expiry returns when the cached JWT expires on GitHub's clock; zero when none is cached.
func (s *jwtSource) expiry() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == "" {
		return time.Time{}
	}
	return s.expires
}

// correct records GitHub's clock, as read from a Date header, and drops the cached JWT so that the next get signs
// one with times GitHub accepts. It reports whether the estimate changed.
func (s *jwtSource) correct(githubNow time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	skew := githubNow.Sub(s.now()).Round(time.Second)
	s.token = ""
	s.gen++
	changed := skew != s.skew
	s.skew = skew
	return changed
}

// drop forgets the cached JWT, so that the next get signs a new one.
func (s *jwtSource) drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = ""
	s.gen++
}
