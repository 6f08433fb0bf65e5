// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"encoding/json"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Fuzz target for GitHub's error answers as the client reads them (errorFrom, Error): rate limits, the wait they
// give, and the message. It goes through errorFrom, not through rateLimit itself, so that it keeps working when
// rate-limit handling moves elsewhere in the package. `make fuzz` runs it; `go test` runs its seeds (f.Add and
// testdata/fuzz/FuzzXxx) as ordinary tests.

// fuzzNow is the client's clock in the rate-limit target: 2023-11-14T22:13:20Z.
const fuzzNow = 1_700_000_000

// maxErrorMessage bounds GitHub's message as an Error keeps it; maxErrorText bounds Error() for a call whose method
// and path are short. An answer can be 8 MiB; its message must not become an 8 MiB Vault error or log line.
const (
	maxErrorMessage = 1024
	maxErrorText    = 256 + maxErrorMessage
)

// minCappedWait is the least a capped rate-limit wait may be: GitHub's rate-limit windows are an hour long, so a
// cap below that would retry before GitHub allows it.
const minCappedWait = time.Hour

// FuzzRateLimitAnswer drives errorFrom with an error answer: status, GitHub's rate-limit headers, Date and a body.
// Properties: RetryAfter is never negative; a rate limit is only a 403 or 429 (and a 429 always is one); a
// Retry-After of s seconds waits exactly s seconds, or, when s is huge, at least minCappedWait (never a wrapped,
// shorter or negative wait); without Retry-After a reset in the past waits nothing and a reset in the future waits
// until then (measured on the answer's Date when it has one), capped the same way; the message is GitHub's, and
// the error's text stays bounded.
func FuzzRateLimitAnswer(f *testing.F) {
	const date = "Tue, 14 Nov 2023 22:13:20 GMT" // fuzzNow
	type seed struct {
		status                                           int
		body, retryAfter, remaining, reset, resource, dt string
		now                                              int64
	}
	for _, s := range []seed{
		{403, `{"message":"API rate limit exceeded for app ID 1001."}`, "", "0", "1700000060", "core", date, fuzzNow},
		{403, `{"message":"API rate limit exceeded"}`, "", "0", "1699999000", "core", date, fuzzNow}, // reset passed
		{403, `{"message":"API rate limit exceeded"}`, "", "0", "1700000030", "core", "", fuzzNow},   // no Date: clock
		{403, `{"message":"API rate limit exceeded"}`, "", "0", "1700000030", "", "garbage", fuzzNow},
		{403, `{"message":"API rate limit exceeded"}`, "", "0", "9223372036854775807", "core", date, fuzzNow},
		{403, `{"message":"API rate limit exceeded"}`, "", "0", "-9223372036854775808", "core", date, fuzzNow},
		{429, `{"message":"You have exceeded a secondary rate limit."}`, "60", "", "", "", date, fuzzNow},
		{429, `{"message":"You have exceeded a secondary rate limit."}`, "0", "", "", "", date, fuzzNow},
		{429, `{"message":"slow down"}`, "-1", "", "", "", date, fuzzNow},
		{429, `{"message":"slow down"}`, "Wed, 21 Oct 2015 07:28:00 GMT", "", "", "", date, fuzzNow}, // HTTP-date form
		{403, `{"message":"You have exceeded a secondary rate limit."}`, "120", "4999", "1700003600", "core", date, fuzzNow},
		{429, `{}`, "9300000000", "", "", "", date, fuzzNow},          // s·1e9 wraps below zero
		{429, `{}`, "18446744074", "", "", "", date, fuzzNow},         // s·1e9 wraps to 0.29s
		{429, `{}`, "9223372036854775807", "", "", "", date, fuzzNow}, // the largest int64
		{403, `{"message":"Resource not accessible by integration"}`, "", "5000", "1700000060", "core", date, fuzzNow},
		{403, `{"message":"This installation has been suspended"}`, "", "", "", "", date, fuzzNow},
		{401, `{"message":"Bad credentials"}`, "30", "0", "1700000060", "", date, fuzzNow},
		{404, `not json`, "", "", "", "", "", fuzzNow},
		{500, ``, "", "", "", "", "", fuzzNow},
		{422, `{"message":` + strconv.Quote(strings.Repeat("a very long message ", 500)) + `}`, "", "", "", "", "", fuzzNow},
		{599, `{"message":12}`, "", "", "", "", "", 0},
	} {
		f.Add(s.status, s.body, s.retryAfter, s.remaining, s.reset, s.resource, s.dt, s.now)
	}

	f.Fuzz(func(t *testing.T, status int, body, retryAfter, remaining, reset, resource, date string, now int64) {
		// errorFrom sees every non-2xx status a server can send.
		if status < 300 || status > 599 {
			status = 300 + int(uint(status)%300)
		}
		h := http.Header{}
		for k, v := range map[string]string{"Retry-After": retryAfter, "X-RateLimit-Remaining": remaining,
			"X-RateLimit-Reset": reset, "X-RateLimit-Resource": resource, "Date": date} {
			if v != "" {
				h.Set(k, v)
			}
		}
		clock := time.Unix(now, 0)
		c, err := NewClient(Options{Now: func() time.Time { return clock }})
		if err != nil {
			t.Fatal(err)
		}
		resp := &http.Response{StatusCode: status, Header: h, Body: http.NoBody}
		e := c.errorFrom(call{method: http.MethodGet, path: "/app"}, resp, []byte(body))

		checkError(t, e, status, []byte(body))
		// GitHub's documented signs of a rate limit on a 403: no requests remaining, a Retry-After, or a message
		// saying so.
		if status == http.StatusForbidden && e.Kind != KindRateLimited &&
			(remaining == "0" || retryAfter != "" || strings.Contains(strings.ToLower(e.Message), "rate limit")) {
			t.Fatalf("a 403 with X-RateLimit-Remaining %q, Retry-After %q and message %q is a %s error", remaining,
				retryAfter, e.Message, e.Kind)
		}
		if e.Kind != KindRateLimited {
			return
		}
		if secs, err := strconv.Atoi(retryAfter); err == nil && secs >= 0 {
			checkWait(t, "Retry-After "+retryAfter, e.RetryAfter, durationOfSeconds(secs))
			return
		}
		resetAt, err := strconv.ParseInt(reset, 10, 64)
		if err != nil {
			if e.RetryAfter != 0 {
				t.Fatalf("a rate limit without Retry-After or a reset waits %s", e.RetryAfter)
			}
			return
		}
		ref := clock
		if d, err := http.ParseTime(date); err == nil {
			ref = d
		}
		// The distance in whole seconds (both ends are whole seconds), computed without overflow: time.Unix wraps
		// for seconds near the int64 limits.
		ahead := new(big.Int).Sub(big.NewInt(resetAt), big.NewInt(ref.Unix()))
		if ahead.Sign() <= 0 {
			if e.RetryAfter != 0 {
				t.Fatalf("a reset %s s in the past (Date %q) waits %s", ahead.Neg(ahead), date, e.RetryAfter)
			}
			return
		}
		asked := maxDuration
		if ahead.IsInt64() && ahead.Int64() <= int64(maxDuration/time.Second) {
			asked = time.Duration(ahead.Int64()) * time.Second
		}
		checkWait(t, "X-RateLimit-Reset "+reset+" (Date "+strconv.Quote(date)+")", e.RetryAfter, asked)
	})
}

// durationOfSeconds is s seconds, saturating at the largest Duration instead of wrapping.
func durationOfSeconds(s int) time.Duration {
	if int64(s) > int64(maxDuration/time.Second) {
		return maxDuration
	}
	return time.Duration(s) * time.Second
}

const maxDuration = time.Duration(1<<63 - 1)

// checkWait asserts that a wait is what was asked, or a cap of at least minCappedWait when more was asked.
func checkWait(t *testing.T, what string, got, asked time.Duration) {
	t.Helper()
	switch {
	case got < 0:
		t.Fatalf("%s gives a negative wait %s", what, got)
	case asked <= minCappedWait && got != asked:
		t.Fatalf("%s gives a wait of %s, want %s", what, got, asked)
	case asked > minCappedWait && (got < minCappedWait || got > asked):
		t.Fatalf("%s (%s) gives a wait of %s, want between %s and what was asked", what, asked, got, minCappedWait)
	}
}

// checkError asserts what holds for every error answer: the status and GitHub's message are kept, RetryAfter is
// never negative and set only on rate limits, a rate limit is a 403 or 429, and Error() is bounded.
func checkError(t *testing.T, e *Error, status int, body []byte) {
	t.Helper()
	if e == nil {
		t.Fatal("no error for an error answer")
	}
	if e.StatusCode != status {
		t.Fatalf("StatusCode = %d, want %d", e.StatusCode, status)
	}
	if e.RetryAfter < 0 {
		t.Fatalf("RetryAfter = %s: a negative wait", e.RetryAfter)
	}
	if e.RetryAfter > 0 && e.Kind != KindRateLimited {
		t.Fatalf("RetryAfter %s on a %s error", e.RetryAfter, e.Kind)
	}
	if e.Kind == KindRateLimited && status != http.StatusForbidden && status != http.StatusTooManyRequests {
		t.Fatalf("status %d counted as a rate limit", status)
	}
	if status == http.StatusTooManyRequests && e.Kind != KindRateLimited {
		t.Fatalf("a 429 is a %s error, not a rate limit", e.Kind)
	}
	var eb struct {
		Message string `json:"message"`
	}
	want := http.StatusText(status)
	if json.Unmarshal(body, &eb) == nil && eb.Message != "" {
		want = eb.Message
	}
	if len(e.Message) > maxErrorMessage {
		t.Fatalf("the error keeps a message of %d bytes, more than %d", len(e.Message), maxErrorMessage)
	}
	if !strings.HasPrefix(want, strings.TrimSuffix(e.Message, "…")) || (e.Message == "" && want != "") {
		t.Fatalf("Message = %q, want GitHub's %q (or its beginning)", e.Message, want)
	}
	if n := len(e.Error()); n > maxErrorText {
		t.Fatalf("Error() is %d bytes long, more than %d", n, maxErrorText)
	}
}
