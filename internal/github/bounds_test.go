// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Found by FuzzRateLimitAnswer: what an answer asks of the client stays within bounds, whatever its numbers.

// TestRateLimitWaitNeverWraps: a Retry-After or X-RateLimit-Reset too far away to be a real rate limit gives a long
// wait, never one that wrapped around into a negative or short one (which would retry at once), and never one so
// long that adding it to the waits before overflows.
func TestRateLimitWaitNeverWraps(t *testing.T) {
	t.Parallel()
	const date = "Tue, 14 Nov 2023 22:13:20 GMT" // 1700000000
	tests := []struct {
		name             string
		header           map[string]string
		wantMin, wantMax time.Duration
	}{
		{"Retry-After a minute", map[string]string{"Retry-After": "60"}, time.Minute, time.Minute},
		{"Retry-After zero", map[string]string{"Retry-After": "0"}, 0, 0},
		{"Retry-After whose nanoseconds overflow", map[string]string{"Retry-After": "9300000000"}, time.Hour, 24 * time.Hour},
		{"Retry-After that wraps to 0.29s", map[string]string{"Retry-After": "18446744074"}, time.Hour, 24 * time.Hour},
		{"Retry-After the largest int64", map[string]string{"Retry-After": "9223372036854775807"}, time.Hour, 24 * time.Hour},
		{"Retry-After just below overflow", map[string]string{"Retry-After": "9223372036"}, time.Hour, 24 * time.Hour},
		{"reset in a minute", map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1700000060", "Date": date},
			time.Minute, time.Minute},
		{"reset passed", map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1699999000", "Date": date}, 0, 0},
		{"reset far away", map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "9000000000000000000", "Date": date},
			time.Hour, 24 * time.Hour},
		{"reset at the largest int64", map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "9223372036854775807", "Date": date},
			time.Hour, 24 * time.Hour},
		{"reset at the smallest int64", map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "-9223372036854775808", "Date": date},
			0, 0},
	}
	c, err := NewClient(Options{Now: func() time.Time { return time.Unix(1_700_000_000, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.header {
				h.Set(k, v)
			}
			e := c.errorFrom(call{method: http.MethodGet, path: "/app"}, &http.Response{StatusCode: 429, Header: h}, nil)
			if e.Kind != KindRateLimited || e.RetryAfter < tt.wantMin || e.RetryAfter > tt.wantMax {
				t.Fatalf("%v: %s error waiting %s, want a rate limit waiting between %s and %s", tt.header, e.Kind,
					e.RetryAfter, tt.wantMin, tt.wantMax)
			}
		})
	}
}

// TestRateLimitResetWithAnyClock: a reset is measured in whole seconds, so that a clock or reset near the int64
// limits (where time.Unix wraps around) still gives a past reset no wait and a near one its wait.
func TestRateLimitResetWithAnyClock(t *testing.T) {
	t.Parallel()
	const edge = math.MaxInt64 - 62135596800 // the last second time.Unix represents without wrapping
	tests := []struct {
		clock, reset int64
		want         time.Duration
	}{
		{math.MaxInt64, math.MinInt64, 0},
		{math.MaxInt64, math.MaxInt64, 0},
		{edge - 2, edge + 3, 5 * time.Second},
		{edge + 3, edge - 2, 0},
		{math.MinInt64, math.MinInt64 + 7, 7 * time.Second},
		{-1, 1, 2 * time.Second},
	}
	for _, tt := range tests {
		c, err := NewClient(Options{Now: func() time.Time { return time.Unix(tt.clock, 0) }})
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {strconv.FormatInt(tt.reset, 10)}}
		e := c.errorFrom(call{method: http.MethodGet, path: "/app"}, &http.Response{StatusCode: 403, Header: h}, nil)
		if e.Kind != KindRateLimited || e.RetryAfter != tt.want {
			t.Errorf("clock %d, reset %d: %s error waiting %s, want a rate limit waiting %s", tt.clock, tt.reset, e.Kind,
				e.RetryAfter, tt.want)
		}
	}
}

// TestHugeRateLimitWaitDoesNotHang: after one short rate-limit wait, an answer asking for centuries must end the
// call (it is beyond the minute a call without deadline may wait), not overflow the sum of waits and sleep for good.
func TestHugeRateLimitWaitDoesNotHang(t *testing.T) {
	t.Parallel()
	for _, second := range []map[string]string{
		{"Retry-After": "9223372036"},
		{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "9000000000000000000"},
	} {
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if calls.Add(1) == 1 {
				w.Header().Set("Retry-After", "0") // wait a short backoff
			} else {
				for k, v := range second {
					w.Header().Set(k, v)
				}
			}
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"message":"You have exceeded a secondary rate limit."}`))
		}))
		c, err := NewClient(Options{BaseURL: srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		// No deadline: the minute's budget is what must end the call.
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.RevokeToken(ctx, "ghs_x") }()
		select {
		case err := <-done:
			// Whether the short wait is retried at all is the client's choice; a rate limit must come back promptly.
			if KindOf(err) != KindRateLimited || calls.Load() > 2 {
				t.Errorf("%v: error %v after %d calls, want a rate limit after at most 2", second, err, calls.Load())
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%v: the call still waits after 5s", second)
		}
		cancel()
		srv.Close()
	}
}

// TestErrorMessageBounded: GitHub's message is kept as it is, up to a bound; an answer of megabytes does not become
// an error of megabytes in Vault's response and logs. The kind is decided on the whole message.
func TestErrorMessageBounded(t *testing.T) {
	t.Parallel()
	c, err := NewClient(Options{})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("é and ", 2000) + msgSuspended
	e := c.errorFrom(call{method: http.MethodGet, path: "/app"}, &http.Response{StatusCode: 403, Header: http.Header{}},
		[]byte(`{"message":"`+long+`"}`))
	if e.Kind != KindSuspended {
		t.Errorf("Kind = %s, want %s: the kind comes from the whole message", e.Kind, KindSuspended)
	}
	if len(e.Message) > 1024 || !strings.HasPrefix(long, strings.TrimSuffix(e.Message, "…")) {
		t.Fatalf("Message is %d bytes, want at most 1024 from the beginning of GitHub's: %.80q", len(e.Message), e.Message)
	}
	if !strings.HasSuffix(e.Message, "…") {
		t.Errorf("a shortened message does not say so: %.80q", e.Message[len(e.Message)-20:])
	}
	if n := len(e.Error()); n > 1100 {
		t.Fatalf("Error() is %d bytes long", n)
	}
	short := c.errorFrom(call{method: http.MethodGet, path: "/app"}, &http.Response{StatusCode: 404, Header: http.Header{}},
		[]byte(`{"message":"Not Found"}`))
	if short.Message != "Not Found" {
		t.Fatalf("a short message is changed: %q", short.Message)
	}
}
