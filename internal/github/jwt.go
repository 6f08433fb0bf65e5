// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"crypto/rsa"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
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
type jwtSource struct {
	key    *rsa.PrivateKey
	issuer any // client ID (string) or app ID (int64); GitHub accepts both
	now    func() time.Time
	onSign func() // told of every signature

	mu      sync.Mutex
	skew    time.Duration
	token   string
	expires time.Time // on GitHub's clock

	signatures atomic.Int64
}

func newJWTSource(key *rsa.PrivateKey, appID int64, clientID string, now func() time.Time, onSign func()) *jwtSource {
	s := &jwtSource{key: key, now: now, onSign: onSign}
	if clientID != "" {
		s.issuer = clientID
	} else {
		s.issuer = appID
	}
	return s
}

// get returns a JWT valid for at least another minute on GitHub's (estimated) clock.
func (s *jwtSource) get() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().Add(s.skew)
	if s.token != "" && now.Before(s.expires.Add(-jwtRenewal)) {
		return s.token, nil
	}
	iat := now.Add(-jwtBackdate).Truncate(time.Second)
	exp := now.Add(jwtLifetime).Truncate(time.Second)
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iat": iat.Unix(),
		"exp": exp.Unix(),
		"iss": s.issuer,
	})
	signed, err := tok.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("signing the App JWT: %w", err)
	}
	s.signatures.Add(1)
	s.onSign()
	s.token, s.expires = signed, exp
	return signed, nil
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
	changed := skew != s.skew
	s.skew = skew
	return changed
}

// drop forgets the cached JWT, so that the next get signs a new one.
func (s *jwtSource) drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = ""
}
