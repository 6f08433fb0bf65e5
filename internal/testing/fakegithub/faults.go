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
// Faults set with SetFaults hit every call; those set with SetAppFaults hit the calls of one App
// (made with its JWT or its installations' tokens) on top of them.
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
	// OmitTokenScope leaves permissions, repository_selection and repositories out of token
	// answers, which then state only the token and its expiry, as some GitHub Enterprise Server
	// answers do. The token still holds what was asked: for testing that a client notices.
	OmitTokenScope bool `json:"omit_token_scope"`
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
	primaryResetAt time.Time // on the clock of whom the faults hit
}

// newFaultState starts injecting f; now is the clock of whom the faults hit, without f's own ClockOffset.
func newFaultState(f Faults, now time.Time) faultState {
	fs := faultState{Faults: f}
	if f.PrimaryRateLimit {
		reset := f.RateLimitReset
		if reset == 0 {
			reset = defaultRateLimitReset
		}
		fs.primaryResetAt = now.Add(f.ClockOffset).Add(reset)
	}
	return fs
}

// SetFaults replaces the injected faults, which hit every API call. Invalid faults are a bug in the
// caller's test, so SetFaults panics on them; the admin endpoint answers 400 instead.
// Faults set for one App (SetAppFaults) stay as they are.
func (s *Server) SetFaults(f Faults) {
	if err := f.Validate(); err != nil {
		panic(fmt.Sprintf("fakegithub: invalid faults: %v", err))
	}
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.faults = newFaultState(f, time.Now())
}

// Faults returns the faults in force, with FailNext and RateLimitCalls as far as they have
// counted down and rate limits that have ended switched off.
func (s *Server) Faults() Faults {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.faults.expirePrimary(time.Now().Add(s.faults.ClockOffset))
	return s.faults.Faults
}

// SetAppFaults replaces the faults injected into one App's calls: those made with its JWT
// (token creation among them) and with its installations' tokens. They come on top of the
// emulator's (SetFaults): latencies and clock offsets add up, and either one's errors, rate
// limits and outages hit the call. Faults{} removes them.
func (s *Server) SetAppFaults(appID int64, f Faults) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("fakegithub: app %d: invalid faults: %w", appID, err)
	}
	if err := s.checkApp(appID); err != nil {
		return err
	}
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if f == (Faults{}) {
		delete(s.appFaults, appID)
		return nil
	}
	if s.appFaults == nil {
		s.appFaults = make(map[int64]*faultState)
	}
	fs := newFaultState(f, time.Now().Add(s.faults.ClockOffset))
	s.appFaults[appID] = &fs
	return nil
}

// AppFaults returns the faults in force for one App's calls (not counting the emulator's), as
// Faults does.
func (s *Server) AppFaults(appID int64) (Faults, error) {
	if err := s.checkApp(appID); err != nil {
		return Faults{}, err
	}
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	fs := s.appFaults[appID]
	if fs == nil {
		return Faults{}, nil
	}
	fs.expirePrimary(time.Now().Add(s.faults.ClockOffset + fs.ClockOffset))
	return fs.Faults, nil
}

// Now is the emulator's clock: real time plus Faults.ClockOffset.
func (s *Server) Now() time.Time {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	return time.Now().Add(s.faults.ClockOffset)
}

// nowFor is the clock an App's calls see: the emulator's plus the App's own ClockOffset.
func (s *Server) nowFor(appID int64) time.Time {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	return time.Now().Add(s.offsetLocked(appID))
}

func (s *Server) offsetLocked(appID int64) time.Duration {
	d := s.faults.ClockOffset
	if fs := s.appFaults[appID]; fs != nil {
		d += fs.ClockOffset
	}
	return d
}

// clocks takes one reading of every App's clock, for code that looks at many tokens at once.
func (s *Server) clocks() func(appID int64) time.Time {
	s.faultMu.Lock()
	base := s.faults.ClockOffset
	offsets := make(map[int64]time.Duration, len(s.appFaults))
	for id, fs := range s.appFaults {
		offsets[id] = fs.ClockOffset
	}
	s.faultMu.Unlock()
	now := time.Now()
	return func(appID int64) time.Time { return now.Add(base + offsets[appID]) }
}

// faultLink is one fault state a call goes through, with the clock it is measured on.
type faultLink struct {
	fs  *faultState // nil: the App has no faults of its own
	now time.Time
}

// faultChainLocked lists the fault states a call of appID goes through: the emulator's, then the App's.
func (s *Server) faultChainLocked(appID int64) [2]faultLink {
	wall := time.Now()
	chain := [2]faultLink{{fs: &s.faults, now: wall.Add(s.faults.ClockOffset)}}
	if fs := s.appFaults[appID]; fs != nil {
		chain[1] = faultLink{fs: fs, now: wall.Add(s.faults.ClockOffset + fs.ClockOffset)}
	}
	return chain
}

func (s *Server) latency(appID int64) time.Duration {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	d := s.faults.Latency
	if fs := s.appFaults[appID]; fs != nil {
		d += fs.Latency
	}
	return d
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

func (s *Server) inOutage(appID int64) bool {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	now := time.Now()
	if now.Before(s.faults.OutageUntil) {
		return true
	}
	fs := s.appFaults[appID]
	return fs != nil && now.Before(fs.OutageUntil)
}

// tokenFaults tells how an App's token requests are answered: over-granted, in the long form,
// without their scope.
func (s *Server) tokenFaults(appID int64) (overGrant, longTokens, omitScope bool) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	overGrant, longTokens, omitScope = s.faults.OverGrant, s.faults.LongTokens, s.faults.OmitTokenScope
	if fs := s.appFaults[appID]; fs != nil {
		overGrant, longTokens, omitScope = overGrant || fs.OverGrant, longTokens || fs.LongTokens, omitScope || fs.OmitTokenScope
	}
	return overGrant, longTokens, omitScope
}

// takeServerError decides whether this call gets an injected 5xx, counting down the emulator's
// faults first, then the App's.
func (s *Server) takeServerError(appID int64) *apiError {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	for _, link := range s.faultChainLocked(appID) {
		if link.fs != nil {
			if e := link.fs.takeServerError(); e != nil {
				return e
			}
		}
	}
	return nil
}

func (f *faultState) takeServerError() *apiError {
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

// primaryRateLimit reports the primary limit in force for a call of appID, if any, without
// counting a call: its reset time also shows in the X-RateLimit headers of every answer.
func (s *Server) primaryRateLimit(appID int64) (time.Time, bool) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	var resetAt time.Time
	on := false
	for _, link := range s.faultChainLocked(appID) {
		if link.fs == nil {
			continue
		}
		link.fs.expirePrimary(link.now)
		if link.fs.PrimaryRateLimit {
			on = true
			if link.fs.primaryResetAt.After(resetAt) {
				resetAt = link.fs.primaryResetAt
			}
		}
	}
	return resetAt, on
}

// takeRateLimit decides whether this call is refused by an injected rate limit, the emulator's
// first, then the App's, counting RateLimitCalls down.
func (s *Server) takeRateLimit(appID int64) *rateLimitFault {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	for _, link := range s.faultChainLocked(appID) {
		if link.fs != nil {
			if f := link.fs.takeRateLimit(link.now); f != nil {
				return f
			}
		}
	}
	return nil
}

func (f *faultState) takeRateLimit(now time.Time) *rateLimitFault {
	f.expirePrimary(now)
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

// expirePrimary ends the primary rate limit once its reset time has passed, as GitHub's would.
func (f *faultState) expirePrimary(now time.Time) {
	if f.PrimaryRateLimit && !now.Before(f.primaryResetAt) {
		f.PrimaryRateLimit = false
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
	OmitTokenScope     bool      `json:"omit_token_scope"`
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
		OmitTokenScope:     f.OmitTokenScope,
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
		OmitTokenScope:     j.OmitTokenScope,
	}
}
