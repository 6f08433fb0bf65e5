// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// GitHub's hourly core limits: Apps and installations get 5,000 (more on big installations),
// unauthenticated callers 60 per IP address.
const (
	authenticatedLimit   = 5000
	unauthenticatedLimit = 60
	rateWindow           = time.Hour
)

// RateLimit sets the core rate limit of an installation (spent by requests made with its tokens)
// or of an App (spent by requests made with its JWT, token creation among them).
//
// In JSON: {"limit": 5000, "remaining": 500, "reset_in": "30m"}; remaining is required.
type RateLimit struct {
	// Limit is the number of requests per window; 0 means GitHub's 5,000.
	Limit int
	// Remaining is how many requests are left in the window from now on, 0..Limit.
	Remaining int
	// ResetIn is how long until the window ends and the budget is whole again; 0 means an hour.
	// The end is rounded up to a whole second, as X-RateLimit-Reset shows it.
	ResetIn time.Duration
}

// Validate reports a rate limit that cannot be set as asked.
func (rl RateLimit) Validate() error {
	var errs []error
	limit := rl.limitOrDefault()
	if rl.Limit < 0 {
		errs = append(errs, fmt.Errorf("limit %d: must be 0 (GitHub's %d) or positive", rl.Limit, authenticatedLimit))
	}
	if rl.Remaining < 0 || rl.Remaining > limit {
		errs = append(errs, fmt.Errorf("remaining %d: must be between 0 and the limit, %d", rl.Remaining, limit))
	}
	if rl.ResetIn < 0 {
		errs = append(errs, fmt.Errorf("reset_in %s: must not be negative", rl.ResetIn))
	}
	return errors.Join(errs...)
}

func (rl RateLimit) limitOrDefault() int {
	if rl.Limit == 0 {
		return authenticatedLimit
	}
	return rl.Limit
}

type rateLimitJSON struct {
	Limit     int      `json:"limit"`
	Remaining *int     `json:"remaining"`
	ResetIn   duration `json:"reset_in"`
}

// MarshalJSON writes reset_in as a string such as "30m0s".
func (rl RateLimit) MarshalJSON() ([]byte, error) {
	return json.Marshal(rateLimitJSON{Limit: rl.Limit, Remaining: &rl.Remaining, ResetIn: duration(rl.ResetIn)})
}

// UnmarshalJSON refuses unknown fields and a missing remaining: in a fixture, "limit" alone
// could mean a full budget or an empty one, and a guess would mislead the test.
func (rl *RateLimit) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var j rateLimitJSON
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("rate_limit: %w", err)
	}
	if j.Remaining == nil {
		return errors.New(`rate_limit: "remaining" is required (requests left in the window, 0..limit)`)
	}
	*rl = RateLimit{Limit: j.Limit, Remaining: *j.Remaining, ResetIn: time.Duration(j.ResetIn)}
	return nil
}

// RateLimitStatus is a core counter as the emulator keeps it: what GET /rate_limit and the
// X-RateLimit-* headers show to its callers.
type RateLimitStatus struct {
	Limit     int       `json:"limit"`
	Remaining int       `json:"remaining"`
	Used      int       `json:"used"`
	Reset     time.Time `json:"reset"`
	// Enforced is true once a test has set or spent this budget: requests then get the primary
	// rate-limit answer while nothing remains. Other counters count but never refuse.
	Enforced bool `json:"enforced"`
}

// rateKind says whose counter a rateKey names.
type rateKind int

const (
	rateIP rateKind = iota
	rateApp
	rateInstallation
)

// rateKey names one counter: an App's, an installation's or an IP address's.
type rateKey struct {
	kind rateKind
	id   int64
	ip   string
}

// rateLimits keeps GitHub's per-identity request counters for the X-RateLimit headers and
// GET /rate_limit. A counter refuses calls only when enforced (see RateLimitStatus.Enforced),
// so that benchmarks are limited by the plugin and not by GitHub's 5,000 requests an hour.
type rateLimits struct {
	mu      sync.Mutex
	buckets map[rateKey]*rateBucket
}

type rateBucket struct {
	limit    int
	used     int
	reset    time.Time
	enforced bool
}

// rateView is what the X-RateLimit headers and GET /rate_limit show.
type rateView struct {
	limit int
	used  int
	reset time.Time
}

func (v rateView) remaining() int { return max(v.limit-v.used, 0) }

// rateSubject is who a call counts against: an App, an installation or an IP address.
type rateSubject struct {
	key   rateKey
	limit int // the counter's limit unless a test set another
	// exceeded ends GitHub's "API rate limit exceeded for ..." sentence, full stop included.
	exceeded string
	// appID is the App the call comes from (its JWT's or its token's), 0 when none: it picks the App's faults and clock.
	appID int64
}

// bucketLocked returns subject's counter, starting a window when none is running. A window starts
// with the first call and lasts an hour, as on GitHub; a new window keeps the limit and enforcement.
func (l *rateLimits) bucketLocked(key rateKey, defaultLimit int, now time.Time) *rateBucket {
	if l.buckets == nil {
		l.buckets = make(map[rateKey]*rateBucket)
	}
	b := l.buckets[key]
	if b == nil {
		b = &rateBucket{limit: defaultLimit}
		l.buckets[key] = b
	}
	if !now.Before(b.reset) {
		b.used = 0
		b.reset = now.Add(rateWindow).Truncate(time.Second)
	}
	return b
}

// use counts a call against subject (unless count is false) and returns the counter. exhausted
// reports an enforced counter with nothing left: the call is refused and not counted, as on GitHub.
func (l *rateLimits) use(subject rateSubject, now time.Time, count bool) (view rateView, exhausted bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketLocked(subject.key, subject.limit, now)
	switch {
	case count && b.enforced && b.used >= b.limit:
		exhausted = true
	case count:
		b.used++
	}
	return rateView{limit: b.limit, used: b.used, reset: b.reset}, exhausted
}

// set replaces a counter's limit and what is left of its window, and enforces it from then on.
func (l *rateLimits) set(key rateKey, rl RateLimit, now time.Time) RateLimitStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketLocked(key, authenticatedLimit, now)
	b.limit = rl.limitOrDefault()
	b.used = b.limit - rl.Remaining
	b.enforced = true
	if rl.ResetIn > 0 {
		b.reset = ceilSecond(now.Add(rl.ResetIn))
	} else {
		b.reset = now.Add(rateWindow).Truncate(time.Second)
	}
	return b.status()
}

// spend takes n requests from a counter (at most what is left) and enforces it from then on.
func (l *rateLimits) spend(key rateKey, n int, now time.Time) RateLimitStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketLocked(key, authenticatedLimit, now)
	b.used = max(b.used, min(b.used+n, b.limit))
	b.enforced = true
	return b.status()
}

// status reads a counter without counting.
func (l *rateLimits) status(key rateKey, now time.Time) RateLimitStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bucketLocked(key, authenticatedLimit, now).status()
}

func (b *rateBucket) status() RateLimitStatus {
	return RateLimitStatus{
		Limit:     b.limit,
		Remaining: max(b.limit-b.used, 0),
		Used:      b.used,
		Reset:     b.reset,
		Enforced:  b.enforced,
	}
}

// ceilSecond rounds t up to a whole second.
func ceilSecond(t time.Time) time.Time {
	r := t.Truncate(time.Second)
	if !r.Equal(t) {
		r = r.Add(time.Second)
	}
	return r
}

func installationKey(id int64) rateKey { return rateKey{kind: rateInstallation, id: id} }
func appKey(id int64) rateKey          { return rateKey{kind: rateApp, id: id} }

// SetInstallationRateLimit sets an installation's budget: what requests made with its tokens may
// spend until the window ends. From then on the budget is enforced: while nothing remains, those
// requests get GitHub's primary rate-limit answer (403, X-RateLimit-Remaining: 0) until the reset.
func (s *Server) SetInstallationRateLimit(installationID int64, rl RateLimit) (RateLimitStatus, error) {
	if err := rl.Validate(); err != nil {
		return RateLimitStatus{}, fmt.Errorf("fakegithub: installation %d: rate limit: %w", installationID, err)
	}
	appID, err := s.installationApp(installationID)
	if err != nil {
		return RateLimitStatus{}, err
	}
	return s.limits.set(installationKey(installationID), rl, s.nowFor(appID)), nil
}

// SpendInstallationRateLimit spends n requests of an installation's budget (never below 0), as n
// calls with its tokens would, and enforces the budget from then on.
func (s *Server) SpendInstallationRateLimit(installationID int64, n int) (RateLimitStatus, error) {
	if n < 0 {
		return RateLimitStatus{}, fmt.Errorf("fakegithub: installation %d: cannot spend %d requests", installationID, n)
	}
	appID, err := s.installationApp(installationID)
	if err != nil {
		return RateLimitStatus{}, err
	}
	return s.limits.spend(installationKey(installationID), n, s.nowFor(appID)), nil
}

// InstallationRateLimit reads an installation's budget, as GET /rate_limit shows it to its tokens.
func (s *Server) InstallationRateLimit(installationID int64) (RateLimitStatus, error) {
	appID, err := s.installationApp(installationID)
	if err != nil {
		return RateLimitStatus{}, err
	}
	return s.limits.status(installationKey(installationID), s.nowFor(appID)), nil
}

// SetAppRateLimit sets an App's own budget, spent by requests made with its JWT (token creation
// among them), and enforces it like SetInstallationRateLimit.
func (s *Server) SetAppRateLimit(appID int64, rl RateLimit) (RateLimitStatus, error) {
	if err := rl.Validate(); err != nil {
		return RateLimitStatus{}, fmt.Errorf("fakegithub: app %d: rate limit: %w", appID, err)
	}
	if err := s.checkApp(appID); err != nil {
		return RateLimitStatus{}, err
	}
	return s.limits.set(appKey(appID), rl, s.nowFor(appID)), nil
}

// SpendAppRateLimit spends n requests of an App's own budget and enforces it.
func (s *Server) SpendAppRateLimit(appID int64, n int) (RateLimitStatus, error) {
	if n < 0 {
		return RateLimitStatus{}, fmt.Errorf("fakegithub: app %d: cannot spend %d requests", appID, n)
	}
	if err := s.checkApp(appID); err != nil {
		return RateLimitStatus{}, err
	}
	return s.limits.spend(appKey(appID), n, s.nowFor(appID)), nil
}

// AppRateLimit reads an App's own budget, as GET /rate_limit shows it to the App's JWT.
func (s *Server) AppRateLimit(appID int64) (RateLimitStatus, error) {
	if err := s.checkApp(appID); err != nil {
		return RateLimitStatus{}, err
	}
	return s.limits.status(appKey(appID), s.nowFor(appID)), nil
}

func (s *Server) installationApp(installationID int64) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	in, ok := s.st.installations[installationID]
	if !ok {
		return 0, fmt.Errorf("fakegithub: installation %d does not exist", installationID)
	}
	return in.AppID, nil
}

func (s *Server) checkApp(appID int64) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, ok := s.st.apps[appID]; !ok {
		return fmt.Errorf("fakegithub: app %d does not exist", appID)
	}
	return nil
}

// subjectOf names who a call counts against, from its credentials, without verifying them:
// rate limiting happens before authentication, and unknown credentials count as anonymous.
func (s *Server) subjectOf(r *http.Request) rateSubject {
	scheme, cred := splitAuthorization(r.Header.Get("Authorization"))
	switch {
	case cred == "":
	case isInstallationToken(scheme, cred):
		s.mu.RLock()
		t := s.st.tokens[cred]
		s.mu.RUnlock()
		if t != nil {
			return rateSubject{
				key:      installationKey(t.installationID),
				limit:    authenticatedLimit,
				exceeded: fmt.Sprintf("installation ID %d.", t.installationID),
				appID:    t.appID,
			}
		}
	default:
		if appID, ok := s.peekJWTIssuer(cred); ok {
			return rateSubject{
				key:      appKey(appID),
				limit:    authenticatedLimit,
				exceeded: fmt.Sprintf("app ID %d.", appID),
				appID:    appID,
			}
		}
	}
	ip := r.RemoteAddr
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	return rateSubject{
		key:      rateKey{kind: rateIP, ip: ip},
		limit:    unauthenticatedLimit,
		exceeded: ip + ". (But here's the good news: Authenticated requests get a higher rate limit. Check out the documentation for more details.)",
	}
}

// peekJWTIssuer finds the App a JWT claims to come from, trusting it without verification.
func (s *Server) peekJWTIssuer(raw string) (int64, bool) {
	if v, ok := s.jwtCache.get(sha256.Sum256([]byte(raw))); ok {
		return v.appID, true
	}
	claims, _, err := parseUnverified(raw)
	if err != nil {
		return 0, false
	}
	iss, ok := issuerString(claims["iss"])
	if !ok {
		return 0, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if a := s.st.appByIssuer(iss); a != nil {
		return a.ID, true
	}
	return 0, false
}

func setRateLimitHeaders(h http.Header, v rateView) {
	h.Set("X-RateLimit-Limit", strconv.Itoa(v.limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(v.remaining()))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(v.reset.Unix(), 10))
	h.Set("X-RateLimit-Used", strconv.Itoa(v.used))
	h.Set("X-RateLimit-Resource", "core")
}

// RateLimitReport is every App's and installation's budget, by ascending ID.
type RateLimitReport struct {
	Apps          []AppBudget          `json:"apps"`
	Installations []InstallationBudget `json:"installations"`
}

// AppBudget is an App's own budget in a RateLimitReport.
type AppBudget struct {
	AppID int64 `json:"app_id"`
	RateLimitStatus
}

// InstallationBudget is an installation's budget in a RateLimitReport.
type InstallationBudget struct {
	InstallationID int64  `json:"installation_id"`
	AppID          int64  `json:"app_id"`
	Account        string `json:"account"`
	RateLimitStatus
}

// RateLimits reports every App's and installation's budget, as their callers would see it now.
func (s *Server) RateLimits() RateLimitReport {
	s.mu.RLock()
	appIDs := slices.Sorted(maps.Keys(s.st.apps))
	var insts []InstallationBudget
	for _, in := range s.st.installations {
		insts = append(insts, InstallationBudget{InstallationID: in.ID, AppID: in.AppID, Account: in.Account})
	}
	s.mu.RUnlock()
	slices.SortFunc(insts, func(a, b InstallationBudget) int { return cmp.Compare(a.InstallationID, b.InstallationID) })

	now := s.clocks()
	report := RateLimitReport{Apps: make([]AppBudget, 0, len(appIDs)), Installations: insts}
	for _, id := range appIDs {
		report.Apps = append(report.Apps, AppBudget{AppID: id, RateLimitStatus: s.limits.status(appKey(id), now(id))})
	}
	for i := range report.Installations {
		in := &report.Installations[i]
		in.RateLimitStatus = s.limits.status(installationKey(in.InstallationID), now(in.AppID))
	}
	if report.Installations == nil {
		report.Installations = []InstallationBudget{}
	}
	return report
}
