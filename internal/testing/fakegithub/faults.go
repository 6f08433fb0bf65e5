// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Faults are failures the emulator injects on demand. The zero value injects nothing.
//
// For each API call (never for /_fake/ admin calls) they apply in this order:
// Latency, then OutageUntil, then 5xx (FailNext, then ErrorRate), then rate limits
// (primary before secondary). GET /rate_limit is never rate limited, as on GitHub.
//
// In JSON, durations are strings such as "250ms" (numbers are read as nanoseconds).
type Faults struct {
	// Latency is added to every API call. A request whose context ends while waiting gets no answer.
	Latency time.Duration `json:"latency"`
	// ErrorRate is the share (0..1) of API calls answered with ErrorStatus. It is deterministic:
	// 0.5 fails every second call, 0.25 every fourth, 1 every call.
	ErrorRate float64 `json:"error_rate"`
	// ErrorStatus is the status of injected server errors, 500..599; 0 means 502.
	ErrorStatus int `json:"error_status"`
	// FailNext makes the next N API calls answer ErrorStatus; it counts down.
	FailNext int `json:"fail_next"`
	// PrimaryRateLimit answers 403 with X-RateLimit-Remaining: 0 and GitHub's
	// "API rate limit exceeded for ..." message until X-RateLimit-Reset (RateLimitReset after
	// SetFaults, on the emulator's clock) has passed, or until RateLimitCalls calls were refused.
	PrimaryRateLimit bool `json:"primary_rate_limit"`
	// RateLimitReset is how long the primary limit lasts; 0 means 60s.
	RateLimitReset time.Duration `json:"rate_limit_reset"`
	// SecondaryRateLimit, when 403 or 429, answers with that status, Retry-After and GitHub's
	// "You have exceeded a secondary rate limit" message. 0 is off.
	SecondaryRateLimit int `json:"secondary_rate_limit"`
	// RetryAfter is the Retry-After of secondary limits in seconds; 0 means 60.
	RetryAfter int `json:"retry_after"`
	// RateLimitCalls, when positive, limits the rate limit (primary or secondary) to the next
	// N calls; then both clear themselves, so that a test can see "wait, then succeed".
	RateLimitCalls int `json:"rate_limit_calls"`
	// ClockOffset sets the emulator's clock against real time (positive: GitHub is ahead).
	// It moves JWT checks, the Date header, expires_at and token expiry.
	ClockOffset time.Duration `json:"clock_offset"`
	// OutageUntil drops every API call's connection without an answer until this instant
	// (real time, not the emulator's clock): GitHub unreachable.
	OutageUntil time.Time `json:"outage_until"`
	// OverGrant makes token creation grant every permission and repository of the
	// installation, whatever was asked: for testing that a client notices.
	OverGrant bool `json:"over_grant"`
	// LongTokens issues the long stateless token form (about 520 characters, with dots)
	// as if every request carried X-GitHub-Stateless-S2S-Token: enabled.
	LongTokens bool `json:"long_tokens"`
}

const (
	defaultErrorStatus    = http.StatusBadGateway
	defaultRateLimitReset = 60 * time.Second
	defaultRetryAfter     = 60
)

// Validate reports faults that cannot be injected as asked.
func (f Faults) Validate() error {
	var errs []error
	if f.Latency < 0 {
		errs = append(errs, errors.New("latency must not be negative"))
	}
	if f.ErrorRate < 0 || f.ErrorRate > 1 {
		errs = append(errs, fmt.Errorf("error_rate %v: must be between 0 and 1", f.ErrorRate))
	}
	if f.ErrorStatus != 0 && (f.ErrorStatus < 500 || f.ErrorStatus > 599) {
		errs = append(errs, fmt.Errorf("error_status %d: must be 0 (502) or 500..599", f.ErrorStatus))
	}
	if f.FailNext < 0 {
		errs = append(errs, errors.New("fail_next must not be negative"))
	}
	if f.RateLimitReset < 0 {
		errs = append(errs, errors.New("rate_limit_reset must not be negative"))
	}
	switch f.SecondaryRateLimit {
	case 0, http.StatusForbidden, http.StatusTooManyRequests:
	default:
		errs = append(errs, fmt.Errorf("secondary_rate_limit %d: must be 0 (off), 403 or 429", f.SecondaryRateLimit))
	}
	if f.RetryAfter < 0 {
		errs = append(errs, errors.New("retry_after must not be negative"))
	}
	if f.RateLimitCalls < 0 {
		errs = append(errs, errors.New("rate_limit_calls must not be negative"))
	}
	return errors.Join(errs...)
}

// faultState is the current Faults plus what injecting them needs to remember.
// Server.faultMu guards it.
type faultState struct {
	Faults
	errorCredit    float64   // accumulates ErrorRate per call; a call fails each time it reaches 1
	primaryResetAt time.Time // on the emulator's clock
}

// SetFaults replaces the injected faults. Invalid faults are a bug in the caller's test,
// so SetFaults panics on them; the admin endpoint answers 400 instead.
func (s *Server) SetFaults(f Faults) {
	if err := f.Validate(); err != nil {
		panic(fmt.Sprintf("fakegithub: invalid faults: %v", err))
	}
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.faults = faultState{Faults: f}
	if f.PrimaryRateLimit {
		reset := f.RateLimitReset
		if reset == 0 {
			reset = defaultRateLimitReset
		}
		s.faults.primaryResetAt = time.Now().Add(f.ClockOffset).Add(reset)
	}
}

// Faults returns the faults in force, with FailNext and RateLimitCalls as far as they have
// counted down and rate limits that have ended switched off.
func (s *Server) Faults() Faults {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.expirePrimaryLocked(time.Now().Add(s.faults.ClockOffset))
	return s.faults.Faults
}

// Now is the emulator's clock: real time plus Faults.ClockOffset.
func (s *Server) Now() time.Time {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	return time.Now().Add(s.faults.ClockOffset)
}

func (s *Server) latency() time.Duration {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	return s.faults.Latency
}

// wait sleeps for d unless ctx ends first; it reports whether the full time passed.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Server) inOutage() bool {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	return time.Now().Before(s.faults.OutageUntil)
}

// takeServerError decides whether this call gets an injected 5xx, counting it down.
func (s *Server) takeServerError() *apiError {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	f := &s.faults
	fail := false
	if f.FailNext > 0 {
		f.FailNext--
		fail = true
	} else if f.ErrorRate > 0 {
		f.errorCredit += f.ErrorRate
		// The epsilon keeps rates such as 0.1 from drifting a call late through rounding.
		if f.errorCredit >= 1-1e-9 {
			f.errorCredit--
			fail = true
		}
	}
	if !fail {
		return nil
	}
	status := f.ErrorStatus
	if status == 0 {
		status = defaultErrorStatus
	}
	msg := http.StatusText(status)
	if status == http.StatusInternalServerError {
		msg = "Server Error"
	}
	if msg == "" {
		msg = "Server Error"
	}
	return generalError(status, msg)
}

// rateLimitFault is a rate limit to answer with, decided before the call is handled.
type rateLimitFault struct {
	primary    bool
	resetAt    time.Time // primary only
	status     int
	retryAfter int // secondary only
}

// primaryRateLimit reports the primary limit in force, if any, without counting a call:
// its reset time also shows in the X-RateLimit headers of every answer.
func (s *Server) primaryRateLimit() (time.Time, bool) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.expirePrimaryLocked(time.Now().Add(s.faults.ClockOffset))
	return s.faults.primaryResetAt, s.faults.PrimaryRateLimit
}

// takeRateLimit decides whether this call is refused by a rate limit, counting RateLimitCalls down.
func (s *Server) takeRateLimit() *rateLimitFault {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	f := &s.faults
	s.expirePrimaryLocked(time.Now().Add(f.ClockOffset))
	var out *rateLimitFault
	switch {
	case f.PrimaryRateLimit:
		out = &rateLimitFault{primary: true, resetAt: f.primaryResetAt, status: http.StatusForbidden}
	case f.SecondaryRateLimit != 0:
		retry := f.RetryAfter
		if retry == 0 {
			retry = defaultRetryAfter
		}
		out = &rateLimitFault{status: f.SecondaryRateLimit, retryAfter: retry}
	default:
		return nil
	}
	if f.RateLimitCalls > 0 {
		f.RateLimitCalls--
		if f.RateLimitCalls == 0 {
			f.PrimaryRateLimit = false
			f.SecondaryRateLimit = 0
		}
	}
	return out
}

// expirePrimaryLocked ends the primary rate limit once its reset time has passed, as GitHub's would.
func (s *Server) expirePrimaryLocked(now time.Time) {
	if s.faults.PrimaryRateLimit && !now.Before(s.faults.primaryResetAt) {
		s.faults.PrimaryRateLimit = false
	}
}

// duration is a time.Duration that reads and writes JSON as "1.5s" (and reads numbers as nanoseconds).
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *duration) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case string:
		parsed, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("duration %q: %w", v, err)
		}
		*d = duration(parsed)
	case float64:
		*d = duration(v)
	case nil:
		*d = 0
	default:
		return fmt.Errorf("duration: want a string such as \"1.5s\" or nanoseconds, got %s", b)
	}
	return nil
}

// faultsJSON is Faults on the wire.
type faultsJSON struct {
	Latency            duration  `json:"latency"`
	ErrorRate          float64   `json:"error_rate"`
	ErrorStatus        int       `json:"error_status"`
	FailNext           int       `json:"fail_next"`
	PrimaryRateLimit   bool      `json:"primary_rate_limit"`
	RateLimitReset     duration  `json:"rate_limit_reset"`
	SecondaryRateLimit int       `json:"secondary_rate_limit"`
	RetryAfter         int       `json:"retry_after"`
	RateLimitCalls     int       `json:"rate_limit_calls"`
	ClockOffset        duration  `json:"clock_offset"`
	OutageUntil        time.Time `json:"outage_until"`
	OverGrant          bool      `json:"over_grant"`
	LongTokens         bool      `json:"long_tokens"`
}

// MarshalJSON writes durations as strings such as "250ms".
func (f Faults) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultsJSON{
		Latency:            duration(f.Latency),
		ErrorRate:          f.ErrorRate,
		ErrorStatus:        f.ErrorStatus,
		FailNext:           f.FailNext,
		PrimaryRateLimit:   f.PrimaryRateLimit,
		RateLimitReset:     duration(f.RateLimitReset),
		SecondaryRateLimit: f.SecondaryRateLimit,
		RetryAfter:         f.RetryAfter,
		RateLimitCalls:     f.RateLimitCalls,
		ClockOffset:        duration(f.ClockOffset),
		OutageUntil:        f.OutageUntil,
		OverGrant:          f.OverGrant,
		LongTokens:         f.LongTokens,
	})
}

// UnmarshalJSON reads durations as strings such as "250ms" or as nanoseconds.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var j faultsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*f = j.faults()
	return nil
}

func (j faultsJSON) faults() Faults {
	return Faults{
		Latency:            time.Duration(j.Latency),
		ErrorRate:          j.ErrorRate,
		ErrorStatus:        j.ErrorStatus,
		FailNext:           j.FailNext,
		PrimaryRateLimit:   j.PrimaryRateLimit,
		RateLimitReset:     time.Duration(j.RateLimitReset),
		SecondaryRateLimit: j.SecondaryRateLimit,
		RetryAfter:         j.RetryAfter,
		RateLimitCalls:     j.RateLimitCalls,
		ClockOffset:        time.Duration(j.ClockOffset),
		OutageUntil:        j.OutageUntil,
		OverGrant:          j.OverGrant,
		LongTokens:         j.LongTokens,
	}
}
