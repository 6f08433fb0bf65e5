// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// serveAdmin serves the emulator's own API under /_fake/, for scripts and tests that run it
// as a separate process. These calls are not counted in Stats and never get faults.
//
//	GET  /_fake/health                            200 {"status":"ok"}
//	GET  /_fake/faults                            the Faults in force
//	PUT  /_fake/faults                            replace them (Faults JSON; "outage_for": "30s" sets outage_until from now)
//	GET  /_fake/stats                             Stats
//	POST /_fake/stats/reset                       ResetStats
//	POST /_fake/token-status                      {"token": "..."} → TokenInfo plus "expired" and "hashed_token"
//	GET  /_fake/tokens                            every token issued, by hashed_token (never the token): TokenRecords
//	PUT  /_fake/installations/{id}/suspended      {"suspended": true}
//	PUT  /_fake/token-lifetime                    {"token_lifetime": "5s"}
//
// Token values travel in bodies, never in URLs, so that they stay out of logs.
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request, path string) {
	switch {
	case path == "/_fake/health" && r.Method == http.MethodGet:
		adminJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	case path == "/_fake/faults" && r.Method == http.MethodGet:
		adminJSON(w, http.StatusOK, s.Faults())
	case path == "/_fake/faults" && r.Method == http.MethodPut:
		s.adminPutFaults(w, r)
	case path == "/_fake/stats" && r.Method == http.MethodGet:
		adminJSON(w, http.StatusOK, s.Stats())
	case path == "/_fake/stats/reset" && r.Method == http.MethodPost:
		s.ResetStats()
		w.WriteHeader(http.StatusNoContent)
	case path == "/_fake/token-status" && r.Method == http.MethodPost:
		s.adminTokenStatus(w, r)
	case path == "/_fake/tokens" && r.Method == http.MethodGet:
		adminJSON(w, http.StatusOK, map[string]any{"tokens": s.TokenRecords()})
	case path == "/_fake/token-lifetime" && r.Method == http.MethodPut:
		s.adminTokenLifetime(w, r)
	case strings.HasPrefix(path, "/_fake/installations/") && strings.HasSuffix(path, "/suspended") && r.Method == http.MethodPut:
		s.adminSuspend(w, r, strings.TrimSuffix(strings.TrimPrefix(path, "/_fake/installations/"), "/suspended"))
	default:
		adminError(w, http.StatusNotFound, fmt.Errorf("no admin endpoint %s %s", r.Method, path))
	}
}

// faultsInput is PUT /_fake/faults: Faults plus a relative outage, handy from shell scripts.
type faultsInput struct {
	faultsJSON
	OutageFor duration `json:"outage_for"`
}

func (s *Server) adminPutFaults(w http.ResponseWriter, r *http.Request) {
	var in faultsInput
	if err := decodeStrict(w, r, &in); err != nil {
		adminError(w, http.StatusBadRequest, err)
		return
	}
	f := in.faults()
	if in.OutageFor > 0 {
		f.OutageUntil = time.Now().Add(time.Duration(in.OutageFor))
	}
	if err := f.Validate(); err != nil {
		adminError(w, http.StatusBadRequest, err)
		return
	}
	s.SetFaults(f)
	adminJSON(w, http.StatusOK, s.Faults())
}

// tokenStatus is the answer of POST /_fake/token-status.
type tokenStatus struct {
	TokenInfo
	Expired bool `json:"expired"`
	// HashedToken is base64(SHA-256(token)), the form GitHub's audit log shows.
	HashedToken string `json:"hashed_token"`
}

// TokenRecord is what GET /_fake/tokens says of one issued token. It names the token by its hashed_token only, so
// that the list can be printed or kept with a test's logs: a test matches it with the hashed_token of Vault's
// response data and with Vault's audit log, as an operator would match GitHub's audit log.
type TokenRecord struct {
	HashedToken    string    `json:"hashed_token"`
	InstallationID int64     `json:"installation_id"`
	ExpiresAt      time.Time `json:"expires_at"`
	Revoked        bool      `json:"revoked"`
	RevokedAt      time.Time `json:"revoked_at,omitzero"`
	Expired        bool      `json:"expired"`
}

// TokenRecords describes every token issued so far, oldest expiry first, by hashed token.
func (s *Server) TokenRecords() []TokenRecord {
	now := s.Now()
	infos := s.Tokens()
	out := make([]TokenRecord, 0, len(infos))
	for _, info := range infos {
		out = append(out, TokenRecord{
			HashedToken:    hashToken(info.Value),
			InstallationID: info.InstallationID,
			ExpiresAt:      info.ExpiresAt,
			Revoked:        info.Revoked,
			RevokedAt:      info.RevokedAt,
			Expired:        !now.Before(info.ExpiresAt),
		})
	}
	return out
}

// hashToken is base64(SHA-256(token)), the form GitHub's audit log shows.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.StdEncoding.EncodeToString(sum[:])
}

func (s *Server) adminTokenStatus(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Token string `json:"token"`
	}
	if err := decodeStrict(w, r, &in); err != nil {
		adminError(w, http.StatusBadRequest, err)
		return
	}
	info, ok := s.Token(in.Token)
	if !ok {
		adminError(w, http.StatusNotFound, errors.New("the emulator never issued this token"))
		return
	}
	adminJSON(w, http.StatusOK, tokenStatus{
		TokenInfo:   info,
		Expired:     !s.Now().Before(info.ExpiresAt),
		HashedToken: hashToken(in.Token),
	})
}

func (s *Server) adminTokenLifetime(w http.ResponseWriter, r *http.Request) {
	var in struct {
		TokenLifetime duration `json:"token_lifetime"`
	}
	if err := decodeStrict(w, r, &in); err != nil {
		adminError(w, http.StatusBadRequest, err)
		return
	}
	s.SetTokenLifetime(time.Duration(in.TokenLifetime))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) adminSuspend(w http.ResponseWriter, r *http.Request, rawID string) {
	id, err := strconv.ParseInt(rawID, 10, 64)
	if err != nil {
		adminError(w, http.StatusNotFound, fmt.Errorf("installation %q: %w", rawID, err))
		return
	}
	var in struct {
		Suspended *bool `json:"suspended"`
	}
	if err := decodeStrict(w, r, &in); err != nil {
		adminError(w, http.StatusBadRequest, err)
		return
	}
	if in.Suspended == nil {
		adminError(w, http.StatusBadRequest, errors.New(`body must be {"suspended": true|false}`))
		return
	}
	if err := s.SetSuspended(id, *in.Suspended); err != nil {
		adminError(w, http.StatusNotFound, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// decodeStrict reads a JSON body and refuses unknown fields, so that typos do not pass silently.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxRequestBody)); err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	dec := json.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("parse body: %w", err)
	}
	return nil
}

func adminJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

func adminError(w http.ResponseWriter, status int, err error) {
	adminJSON(w, status, map[string]string{"message": err.Error()})
}
