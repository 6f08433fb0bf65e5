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
//	GET  /_fake/stats                             Stats (with each App's calls under "apps", by App ID)
//	POST /_fake/stats/reset                       ResetStats
//	POST /_fake/token-status                      {"token": "..."} → TokenInfo plus "expired" and "hashed_token"
//	GET  /_fake/tokens                            every token issued, by hashed_token (never the token): TokenRecords
//	PUT  /_fake/installations/{id}/suspended      {"suspended": true}
//	PUT  /_fake/token-lifetime                    {"token_lifetime": "5s"}
//	GET  /_fake/apps/{id}/faults                  the App's own Faults (AppFaults)
//	PUT  /_fake/apps/{id}/faults                  replace them (as PUT /_fake/faults; {} removes them)
//	GET  /_fake/rate-limits                       every App's and installation's budget: RateLimitReport
//	GET  /_fake/installations/{id}/rate-limit     RateLimitStatus
//	PUT  /_fake/installations/{id}/rate-limit     {"limit": 5000, "remaining": 500, "reset_in": "30m"} → RateLimitStatus
//	POST /_fake/installations/{id}/rate-limit/spend {"requests": 100} → RateLimitStatus
//	GET, PUT /_fake/apps/{id}/rate-limit, POST /_fake/apps/{id}/rate-limit/spend: the same for an App's own budget
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
	case path == "/_fake/rate-limits" && r.Method == http.MethodGet:
		adminJSON(w, http.StatusOK, s.RateLimits())
	case strings.HasPrefix(path, "/_fake/installations/"):
		s.serveAdminInstallation(w, r, path)
	case strings.HasPrefix(path, "/_fake/apps/"):
		s.serveAdminApp(w, r, path)
	default:
		adminNotFound(w, r, path)
	}
}

func adminNotFound(w http.ResponseWriter, r *http.Request, path string) {
	adminError(w, http.StatusNotFound, fmt.Errorf("no admin endpoint %s %s", r.Method, path))
}

// splitAdminID reads "/_fake/{kind}/{id}/{rest}".
func splitAdminID(path, prefix string) (id int64, rest string, err error) {
	raw, rest, _ := strings.Cut(strings.TrimPrefix(path, prefix), "/")
	id, err = strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("%q is no ID: %w", raw, err)
	}
	return id, rest, nil
}

// serveAdminInstallation serves /_fake/installations/{id}/...
func (s *Server) serveAdminInstallation(w http.ResponseWriter, r *http.Request, path string) {
	id, rest, err := splitAdminID(path, "/_fake/installations/")
	if err != nil {
		adminError(w, http.StatusNotFound, fmt.Errorf("installation: %w", err))
		return
	}
	switch {
	case rest == "suspended" && r.Method == http.MethodPut:
		s.adminSuspend(w, r, id)
	case rest == "rate-limit" || rest == "rate-limit/spend":
		if _, err := s.installationApp(id); err != nil {
			adminError(w, http.StatusNotFound, err)
			return
		}
		s.adminRateLimit(w, r, rest, rateLimitTarget{
			get:   func() (RateLimitStatus, error) { return s.InstallationRateLimit(id) },
			set:   func(rl RateLimit) (RateLimitStatus, error) { return s.SetInstallationRateLimit(id, rl) },
			spend: func(n int) (RateLimitStatus, error) { return s.SpendInstallationRateLimit(id, n) },
		})
	default:
		adminNotFound(w, r, path)
	}
}

// serveAdminApp serves /_fake/apps/{id}/...
func (s *Server) serveAdminApp(w http.ResponseWriter, r *http.Request, path string) {
	id, rest, err := splitAdminID(path, "/_fake/apps/")
	if err != nil {
		adminError(w, http.StatusNotFound, fmt.Errorf("app: %w", err))
		return
	}
	if err := s.checkApp(id); err != nil {
		adminError(w, http.StatusNotFound, err)
		return
	}
	switch {
	case rest == "faults" && r.Method == http.MethodGet:
		f, _ := s.AppFaults(id)
		adminJSON(w, http.StatusOK, f)
	case rest == "faults" && r.Method == http.MethodPut:
		f, err := readFaults(w, r)
		if err == nil {
			err = s.SetAppFaults(id, f)
		}
		if err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		f, _ = s.AppFaults(id)
		adminJSON(w, http.StatusOK, f)
	case rest == "rate-limit" || rest == "rate-limit/spend":
		s.adminRateLimit(w, r, rest, rateLimitTarget{
			get:   func() (RateLimitStatus, error) { return s.AppRateLimit(id) },
			set:   func(rl RateLimit) (RateLimitStatus, error) { return s.SetAppRateLimit(id, rl) },
			spend: func(n int) (RateLimitStatus, error) { return s.SpendAppRateLimit(id, n) },
		})
	default:
		adminNotFound(w, r, path)
	}
}

// rateLimitTarget is the budget an admin rate-limit call reads or changes: an existing installation's or App's.
type rateLimitTarget struct {
	get   func() (RateLimitStatus, error)
	set   func(RateLimit) (RateLimitStatus, error)
	spend func(int) (RateLimitStatus, error)
}

func (s *Server) adminRateLimit(w http.ResponseWriter, r *http.Request, rest string, t rateLimitTarget) {
	var st RateLimitStatus
	var err error
	switch {
	case rest == "rate-limit" && r.Method == http.MethodGet:
		st, err = t.get()
	case rest == "rate-limit" && r.Method == http.MethodPut:
		var rl RateLimit
		if err := decodeStrict(w, r, &rl); err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		st, err = t.set(rl)
	case rest == "rate-limit/spend" && r.Method == http.MethodPost:
		var in struct {
			Requests *int `json:"requests"`
		}
		if err := decodeStrict(w, r, &in); err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		if in.Requests == nil {
			adminError(w, http.StatusBadRequest, errors.New(`body must be {"requests": N}, N >= 0`))
			return
		}
		st, err = t.spend(*in.Requests)
	default:
		adminNotFound(w, r, r.URL.Path)
		return
	}
	if err != nil {
		adminError(w, http.StatusBadRequest, err)
		return
	}
	adminJSON(w, http.StatusOK, st)
}

// faultsInput is PUT /_fake/faults: Faults plus a relative outage, handy from shell scripts.
type faultsInput struct {
	faultsJSON
	OutageFor duration `json:"outage_for"`
}

func (s *Server) adminPutFaults(w http.ResponseWriter, r *http.Request) {
	f, err := readFaults(w, r)
	if err != nil {
		adminError(w, http.StatusBadRequest, err)
		return
	}
	s.SetFaults(f)
	adminJSON(w, http.StatusOK, s.Faults())
}

// readFaults reads and checks a faultsInput body.
func readFaults(w http.ResponseWriter, r *http.Request) (Faults, error) {
	var in faultsInput
	if err := decodeStrict(w, r, &in); err != nil {
		return Faults{}, err
	}
	f := in.faults()
	if in.OutageFor > 0 {
		f.OutageUntil = time.Now().Add(time.Duration(in.OutageFor))
	}
	return f, f.Validate()
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
	AppID          int64     `json:"app_id"`
	InstallationID int64     `json:"installation_id"`
	ExpiresAt      time.Time `json:"expires_at"`
	Revoked        bool      `json:"revoked"`
	RevokedAt      time.Time `json:"revoked_at,omitzero"`
	Expired        bool      `json:"expired"`
}

// TokenRecords describes every token issued so far, oldest expiry first, by hashed token.
func (s *Server) TokenRecords() []TokenRecord {
	now := s.clocks()
	infos := s.Tokens()
	out := make([]TokenRecord, 0, len(infos))
	for _, info := range infos {
		out = append(out, TokenRecord{
			HashedToken:    hashToken(info.Value),
			AppID:          info.AppID,
			InstallationID: info.InstallationID,
			ExpiresAt:      info.ExpiresAt,
			Revoked:        info.Revoked,
			RevokedAt:      info.RevokedAt,
			Expired:        !now(info.AppID).Before(info.ExpiresAt),
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
		Expired:     !s.nowFor(info.AppID).Before(info.ExpiresAt),
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

func (s *Server) adminSuspend(w http.ResponseWriter, r *http.Request, id int64) {
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
