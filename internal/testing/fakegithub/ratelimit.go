// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
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

// rateLimits keeps GitHub's per-identity request counters for the X-RateLimit headers.
// They are informational: running out does not refuse calls (use Faults.PrimaryRateLimit),
// so that benchmarks are limited by the plugin and not by a counter.
type rateLimits struct {
	mu      sync.Mutex
	buckets map[string]*rateBucket
}

type rateBucket struct {
	used  int
	reset time.Time
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
	key   string
	limit int
	// exceeded ends GitHub's "API rate limit exceeded for ..." sentence, full stop included.
	exceeded string
}

// use counts a call against subject (unless count is false) and returns the counter.
// A window starts with the first call and lasts an hour, as on GitHub.
func (l *rateLimits) use(subject rateSubject, now time.Time, count bool) rateView {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buckets == nil {
		l.buckets = make(map[string]*rateBucket)
	}
	b := l.buckets[subject.key]
	if b == nil || !now.Before(b.reset) {
		b = &rateBucket{reset: now.Add(rateWindow).Truncate(time.Second)}
		l.buckets[subject.key] = b
	}
	if count {
		b.used++
	}
	return rateView{limit: subject.limit, used: b.used, reset: b.reset}
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
				key:      fmt.Sprintf("installation:%d", t.installationID),
				limit:    authenticatedLimit,
				exceeded: fmt.Sprintf("installation ID %d.", t.installationID),
			}
		}
	default:
		if appID, ok := s.peekJWTIssuer(cred); ok {
			return rateSubject{
				key:      fmt.Sprintf("app:%d", appID),
				limit:    authenticatedLimit,
				exceeded: fmt.Sprintf("app ID %d.", appID),
			}
		}
	}
	ip := r.RemoteAddr
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	return rateSubject{
		key:      "ip:" + ip,
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
