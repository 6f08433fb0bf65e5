// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// defaultTokenLifetime is how long GitHub's installation tokens live.
const defaultTokenLifetime = time.Hour

// TokenInfo describes an installation token the emulator issued.
type TokenInfo struct {
	Value               string            `json:"token"`
	AppID               int64             `json:"app_id"`
	InstallationID      int64             `json:"installation_id"`
	ExpiresAt           time.Time         `json:"expires_at"`
	Permissions         map[string]string `json:"permissions"`
	Repositories        []string          `json:"repositories"` // names; nil when the token reaches all the installation's repositories
	RepositorySelection string            `json:"repository_selection"`
	Revoked             bool              `json:"revoked"`
	RevokedAt           time.Time         `json:"revoked_at"`
}

// Token describes an issued token. The second result is false for values the emulator never issued.
func (s *Server) Token(value string) (TokenInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.st.tokens[value]
	if !ok {
		return TokenInfo{}, false
	}
	return s.st.tokenInfo(t), true
}

// Tokens describes every token issued so far, oldest expiry first.
func (s *Server) Tokens() []TokenInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]TokenInfo, 0, len(s.st.tokens))
	for _, t := range s.st.tokens {
		out = append(out, s.st.tokenInfo(t))
	}
	slices.SortFunc(out, func(a, b TokenInfo) int {
		if c := a.ExpiresAt.Compare(b.ExpiresAt); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
	return out
}

func (st *state) tokenInfo(t *tokenState) TokenInfo {
	info := TokenInfo{
		Value:               t.value,
		AppID:               t.appID,
		InstallationID:      t.installationID,
		ExpiresAt:           t.expiresAt,
		Permissions:         maps.Clone(t.permissions),
		RepositorySelection: t.selection,
		Revoked:             t.revoked,
		RevokedAt:           t.revokedAt,
	}
	if t.repoIDs != nil {
		info.Repositories = []string{}
		for _, repo := range st.tokenRepositories(t) {
			info.Repositories = append(info.Repositories, repo.Name)
		}
	}
	return info
}

// SetTokenLifetime sets how long tokens issued from now on live (GitHub: one hour).
// A zero or negative lifetime issues tokens that are already expired.
func (s *Server) SetTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenLifetime = d
}

// authenticateToken checks "Authorization: token X" (or "Bearer X") for a live installation token.
// Tokens of suspended installations are refused unless allowSuspended.
func (s *Server) authenticateToken(r *http.Request, allowSuspended bool) (*tokenState, *apiError) {
	h := r.Header.Get("Authorization")
	if strings.TrimSpace(h) == "" {
		return nil, newError(http.StatusUnauthorized, msgRequiresAuth)
	}
	scheme, cred := splitAuthorization(h)
	if !strings.EqualFold(scheme, "token") && !strings.EqualFold(scheme, "Bearer") {
		return nil, errBadCredentials()
	}
	s.mu.RLock()
	t := s.st.tokens[cred]
	s.mu.RUnlock()
	if t == nil {
		return nil, errBadCredentials()
	}
	now := s.nowFor(t.appID) // the clock of the GitHub that issued it
	s.mu.RLock()
	defer s.mu.RUnlock()
	if t.revoked || !now.Before(t.expiresAt) {
		return nil, errBadCredentials()
	}
	if in := s.st.installations[t.installationID]; in.Suspended && !allowSuspended {
		return nil, generalError(http.StatusForbidden, msgSuspended)
	}
	return t, nil
}

// isInstallationToken tells installation tokens from JWTs: both may come as Bearer,
// and the long token form has dots like a JWT, but installation tokens start with ghs_.
func isInstallationToken(scheme, cred string) bool {
	return strings.EqualFold(scheme, "token") || strings.HasPrefix(cred, "ghs_")
}

const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// classicToken is GitHub's long-standing form: ghs_ and 36 alphanumerics.
func classicToken() string {
	const n = 36
	out := make([]byte, 0, 4+n)
	out = append(out, "ghs_"...)
	buf := make([]byte, 64)
	for len(out) < cap(out) {
		rand.Read(buf)
		for _, b := range buf {
			// Rejection sampling keeps every character equally likely: 248 = 4 * 62.
			if b < 248 && len(out) < cap(out) {
				out = append(out, tokenAlphabet[b%62])
			}
		}
	}
	return string(out)
}

// longToken is the stateless form GitHub rolled out in 2026, ghs_<app ID>_<JWT>:
// about 520 characters with dots, underscores and hyphens. Clients must not assume 40.
func longToken(appID, installationID int64, issued, expires time.Time) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	jti := make([]byte, 16)
	rand.Read(jti)
	payload, _ := json.Marshal(struct {
		AppID          int64  `json:"aid"`
		InstallationID int64  `json:"iid"`
		IssuedAt       int64  `json:"iat"`
		Expires        int64  `json:"exp"`
		ID             string `json:"jti"`
	}{appID, installationID, issued.Unix(), expires.Unix(), hex.EncodeToString(jti)})
	sig := make([]byte, 256) // the size of an RS256 signature with a 2048-bit key
	rand.Read(sig)
	return "ghs_" + strconv.FormatInt(appID, 10) + "_" + header + "." + enc.EncodeToString(payload) + "." + enc.EncodeToString(sig)
}
