// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"crypto/sha256"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// GitHub refuses App JWTs that expire more than ten minutes ahead or live longer than that.
const maxJWTLifetime = 10 * 60 // seconds

// verifiedJWT is what a JWT with a good signature says; the time checks are redone on every use.
type verifiedJWT struct {
	appID int64
	iat   int64
	exp   int64
}

// jwtCache remembers JWTs whose signature checked out, so that a client that reuses its JWT
// (as it should) does not cost the emulator an RSA verification per call. Only successes are
// kept: a key added later may make a refused signature good.
type jwtCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]verifiedJWT
}

const jwtCacheSize = 10_000

func (c *jwtCache) get(hash [sha256.Size]byte) (verifiedJWT, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[hash]
	return v, ok
}

func (c *jwtCache) put(hash [sha256.Size]byte, v verifiedJWT) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= jwtCacheSize {
		c.m = make(map[[sha256.Size]byte]verifiedJWT)
	}
	c.m[hash] = v
}

// authenticateApp checks "Authorization: Bearer <JWT>" the way GitHub does and returns the App.
func (s *Server) authenticateApp(r *http.Request) (*appState, *apiError) {
	scheme, cred := splitAuthorization(r.Header.Get("Authorization"))
	if cred == "" {
		return nil, errJWT(msgJWTDecode)
	}
	hash := sha256.Sum256([]byte(cred))
	s.stats.sawJWT(hash)
	if !strings.EqualFold(scheme, "Bearer") {
		return nil, errJWT(msgJWTDecode)
	}

	v, ok := s.jwtCache.get(hash)
	if !ok {
		var apiErr *apiError
		v, apiErr = s.verifyJWT(cred)
		if apiErr != nil {
			return nil, apiErr
		}
		s.jwtCache.put(hash, v)
	}
	if apiErr := checkJWTTimes(v, s.nowFor(v.appID)); apiErr != nil {
		return nil, apiErr
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.apps[v.appID], nil
}

// verifyJWT finds the issuing App and checks the signature against each of its keys.
func (s *Server) verifyJWT(raw string) (verifiedJWT, *apiError) {
	claims, tok, err := parseUnverified(raw)
	if err != nil {
		return verifiedJWT{}, errJWT(msgJWTDecode)
	}
	iss, ok := issuerString(claims["iss"])
	if !ok {
		return verifiedJWT{}, generalError(http.StatusNotFound, msgIntegrationNotFound)
	}

	s.mu.RLock()
	app := s.st.appByIssuer(iss)
	var keys []jwt.VerificationKey
	if app != nil {
		for _, k := range app.keys {
			keys = append(keys, k)
		}
	}
	s.mu.RUnlock()
	if app == nil {
		return verifiedJWT{}, generalError(http.StatusNotFound, msgIntegrationNotFound)
	}
	if tok.Method.Alg() != jwt.SigningMethodRS256.Alg() || len(keys) == 0 {
		return verifiedJWT{}, errJWT(msgJWTDecode)
	}

	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
		jwt.WithoutClaimsValidation(), // GitHub's time rules and messages differ from the library's
		jwt.WithJSONNumber(),
	)
	if _, err := parser.Parse(raw, func(*jwt.Token) (any, error) {
		return jwt.VerificationKeySet{Keys: keys}, nil
	}); err != nil {
		return verifiedJWT{}, errJWT(msgJWTDecode)
	}

	iat, ok := integerClaim(claims["iat"])
	if !ok {
		return verifiedJWT{}, errJWT(msgIATInvalid)
	}
	exp, ok := numericClaim(claims["exp"])
	if !ok {
		return verifiedJWT{}, errJWT(msgEXPInvalid)
	}
	return verifiedJWT{appID: app.ID, iat: iat, exp: exp}, nil
}

// checkJWTTimes applies GitHub's clock rules, without leeway, on the emulator's clock.
//
// The order follows what clients see on GitHub: a client whose clock runs ahead usually hears
// that exp is too far in the future, one whose clock runs far behind that the JWT expired.
func checkJWTTimes(v verifiedJWT, now time.Time) *apiError {
	n := now.Unix()
	switch {
	case v.exp <= n:
		return errJWT(msgEXPInvalid)
	case v.exp-n > maxJWTLifetime || v.exp-v.iat > maxJWTLifetime:
		return errJWT(msgEXPTooFar)
	case v.iat > n:
		return errJWT(msgIATInvalid)
	}
	return nil
}

func parseUnverified(raw string) (jwt.MapClaims, *jwt.Token, error) {
	claims := jwt.MapClaims{}
	tok, _, err := jwt.NewParser(jwt.WithJSONNumber()).ParseUnverified(raw, claims)
	if err != nil {
		return nil, nil, err
	}
	return claims, tok, nil
}

// issuerString reads iss, which GitHub takes as the App ID (a JSON number or string) or the client ID.
func issuerString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, v != ""
	case json.Number:
		if _, err := v.Int64(); err == nil {
			return v.String(), true
		}
	}
	return "", false
}

func integerClaim(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	return i, err == nil
}

func numericClaim(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	if i, err := n.Int64(); err == nil {
		return i, true
	}
	f, err := n.Float64()
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return int64(math.Floor(f)), true
}

// splitAuthorization splits "Scheme credentials".
func splitAuthorization(h string) (scheme, cred string) {
	h = strings.TrimSpace(h)
	scheme, cred, found := strings.Cut(h, " ")
	if !found {
		return "", h
	}
	return scheme, strings.TrimSpace(cred)
}
