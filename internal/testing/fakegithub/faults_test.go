// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// statuses sends n GET /app calls and lists their statuses.
func (e *testEnv) statuses(n int) []int {
	e.t.Helper()
	auth := e.bearer()
	out := make([]int, n)
	for i := range out {
		out[i] = e.do(http.MethodGet, "/app", auth, nil).status
	}
	return out
}

func TestServerErrors(t *testing.T) {
	tests := []struct {
		name   string
		faults Faults
		want   []int
	}{
		{"fail next 2", Faults{FailNext: 2}, []int{502, 502, 200, 200}},
		{"fail next with status", Faults{FailNext: 1, ErrorStatus: 503}, []int{503, 200}},
		{"rate 0.5", Faults{ErrorRate: 0.5}, []int{200, 502, 200, 502, 200, 502}},
		{"rate 0.25", Faults{ErrorRate: 0.25, ErrorStatus: 500}, []int{200, 200, 200, 500, 200, 200, 200, 500}},
		{"rate 1", Faults{ErrorRate: 1}, []int{502, 502, 502}},
		{"fail next before rate", Faults{FailNext: 1, ErrorRate: 0.5}, []int{502, 200, 502, 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.srv.SetFaults(tt.faults)
			if got := e.statuses(len(tt.want)); !slices.Equal(got, tt.want) {
				t.Errorf("statuses %v, want %v", got, tt.want)
			}
		})
	}

	e := newEnv(t)
	e.srv.SetFaults(Faults{FailNext: 3})
	e.statuses(1)
	if got := e.srv.Faults().FailNext; got != 2 {
		t.Errorf("FailNext counted down to %d, want 2", got)
	}
	e.srv.SetFaults(Faults{FailNext: 1})
	e.do(http.MethodGet, "/app", e.bearer(), nil).wantError(t, 502, "Bad Gateway")
}

func TestPrimaryRateLimit(t *testing.T) {
	e := newEnv(t)
	e.srv.SetFaults(Faults{PrimaryRateLimit: true, RateLimitCalls: 2})
	start := time.Now()
	for i := range 2 {
		resp := e.do(http.MethodGet, "/app", e.bearer(), nil)
		if resp.status != 403 {
			t.Fatalf("call %d: status %d", i, resp.status)
		}
		if got := resp.header.Get("X-RateLimit-Remaining"); got != "0" {
			t.Errorf("X-RateLimit-Remaining %q, want 0", got)
		}
		reset, _ := strconv.ParseInt(resp.header.Get("X-RateLimit-Reset"), 10, 64)
		if d := time.Unix(reset, 0).Sub(start); d < 58*time.Second || d > 62*time.Second {
			t.Errorf("X-RateLimit-Reset %v ahead, want 60s", d)
		}
		msg := resp.errorBody(t).Message
		if !strings.HasPrefix(msg, "API rate limit exceeded for app ID 1001. If you reach out to GitHub Support") ||
			!strings.Contains(msg, resp.header.Get("X-GitHub-Request-Id")) {
			t.Errorf("message %q", msg)
		}
		if resp.header.Get("Retry-After") != "" {
			t.Error("primary limit sent Retry-After")
		}
	}
	if resp := e.do(http.MethodGet, "/app", e.bearer(), nil); resp.status != 200 || resp.header.Get("X-RateLimit-Remaining") == "0" {
		t.Errorf("after RateLimitCalls: status %d, remaining %s", resp.status, resp.header.Get("X-RateLimit-Remaining"))
	}
	if e.srv.Faults().PrimaryRateLimit {
		t.Error("PrimaryRateLimit still on after RateLimitCalls")
	}

	// An installation token names the installation.
	tok := e.mint(acmeID, nil)
	e.srv.SetFaults(Faults{PrimaryRateLimit: true})
	msg := e.do(http.MethodGet, "/installation/repositories", "token "+tok.Token, nil).errorBody(t).Message
	if !strings.HasPrefix(msg, "API rate limit exceeded for installation ID 2001.") {
		t.Errorf("message %q", msg)
	}
	// GET /rate_limit is never limited, and shows the exhausted counter.
	resp := e.do(http.MethodGet, "/rate_limit", "token "+tok.Token, nil)
	var body rateLimitOverview
	resp.decode(t, &body)
	if resp.status != 200 || body.Resources["core"].Remaining != 0 {
		t.Errorf("rate_limit: %d, core %+v", resp.status, body.Resources["core"])
	}

	// The limit ends at its reset time, as GitHub's does.
	e.srv.SetFaults(Faults{PrimaryRateLimit: true, RateLimitReset: 300 * time.Millisecond})
	if got := e.statuses(1); got[0] != 403 {
		t.Fatalf("status %d", got[0])
	}
	time.Sleep(350 * time.Millisecond)
	if got := e.statuses(1); got[0] != 200 {
		t.Errorf("after the reset time: status %d", got[0])
	}
}

func TestSecondaryRateLimit(t *testing.T) {
	tests := []struct {
		faults         Faults
		wantStatus     int
		wantRetryAfter string
	}{
		{Faults{SecondaryRateLimit: 403}, 403, "60"},
		{Faults{SecondaryRateLimit: 429, RetryAfter: 7}, 429, "7"},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.wantStatus), func(t *testing.T) {
			e := newEnv(t)
			tt.faults.RateLimitCalls = 1
			e.srv.SetFaults(tt.faults)
			resp := e.do(http.MethodPost, "/app/installations/2001/access_tokens", e.bearer(), nil)
			if resp.status != tt.wantStatus {
				t.Fatalf("status %d", resp.status)
			}
			if got := resp.header.Get("Retry-After"); got != tt.wantRetryAfter {
				t.Errorf("Retry-After %q, want %q", got, tt.wantRetryAfter)
			}
			if resp.header.Get("X-RateLimit-Remaining") == "0" {
				t.Error("secondary limit reported the primary counter exhausted")
			}
			if msg := resp.errorBody(t).Message; !strings.HasPrefix(msg, "You have exceeded a secondary rate limit.") {
				t.Errorf("message %q", msg)
			}
			if len(e.srv.Tokens()) != 0 {
				t.Error("a rate-limited request issued a token")
			}
			e.mint(acmeID, nil) // the one limited call is over
		})
	}
}

func TestClockOffset(t *testing.T) {
	e := newEnv(t)
	e.srv.SetFaults(Faults{ClockOffset: time.Hour})
	if d := e.srv.Now().Sub(time.Now()); d < time.Hour-time.Second || d > time.Hour+time.Second {
		t.Errorf("Now is %v ahead, want an hour", d)
	}
	// A JWT made on GitHub's (skewed) clock passes.
	now := e.srv.Now().Unix()
	auth := "Bearer " + signJWT(t, testKey(), map[string]any{"iss": demoAppID, "iat": now - 60, "exp": now + 540})
	resp := e.do(http.MethodPost, "/app/installations/2001/access_tokens", auth, nil)
	date, err := http.ParseTime(resp.header.Get("Date"))
	if err != nil {
		t.Fatal(err)
	}
	if d := date.Sub(time.Now()); d < time.Hour-2*time.Second || d > time.Hour+2*time.Second {
		t.Errorf("Date is %v ahead, want an hour", d)
	}
	var tok installationTokenBody
	resp.decode(t, &tok)
	exp, _ := time.Parse(time.RFC3339, tok.ExpiresAt)
	if d := exp.Sub(time.Now()); d < 2*time.Hour-2*time.Second || d > 2*time.Hour+2*time.Second {
		t.Errorf("expires_at is %v ahead, want two hours", d)
	}
}

func TestOutage(t *testing.T) {
	e := newEnv(t)
	e.srv.SetFaults(Faults{OutageUntil: time.Now().Add(300 * time.Millisecond)})
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		resp, err := e.send(method, "/app/installations/2001/access_tokens", e.bearer(), nil)
		if err == nil {
			t.Errorf("%s during the outage answered %d, want a dropped connection", method, resp.status)
		}
	}
	if n := e.srv.Stats().TotalCalls; n < 2 {
		t.Errorf("TotalCalls %d: calls during the outage were not counted", n)
	}
	time.Sleep(350 * time.Millisecond)
	e.mint(acmeID, nil)
}

func TestLatency(t *testing.T) {
	e := newEnv(t)
	e.srv.SetFaults(Faults{Latency: 200 * time.Millisecond})
	start := time.Now()
	e.statuses(1)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("call took %v, want at least 200ms", d)
	}

	// A client that gives up is not kept waiting, and the server lets go too.
	e.srv.SetFaults(Faults{Latency: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := e.send(http.MethodGet, "/app", e.bearer(), nil, withContext(ctx)); err == nil {
		t.Error("a call with a 100ms deadline and 10s latency succeeded")
	}
	deadline := time.Now().Add(2 * time.Second)
	for e.srv.Stats().InFlight != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.srv.Stats().InFlight; n != 0 || time.Since(start) > 2*time.Second {
		t.Errorf("in flight %d after %v: the handler did not stop with the request", n, time.Since(start))
	}
}

func TestFaultsValidate(t *testing.T) {
	bad := []Faults{
		{Latency: -1},
		{ErrorRate: 1.5},
		{ErrorStatus: 404},
		{FailNext: -1},
		{SecondaryRateLimit: 500},
		{RetryAfter: -1},
		{RateLimitCalls: -2},
	}
	for _, f := range bad {
		if f.Validate() == nil {
			t.Errorf("%+v passed Validate", f)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("SetFaults(%+v) did not panic", f)
				}
			}()
			newEnv(t).srv.SetFaults(f)
		}()
	}
	if err := (Faults{SecondaryRateLimit: 429, ErrorStatus: 503, ErrorRate: 1}).Validate(); err != nil {
		t.Errorf("valid faults refused: %v", err)
	}
}

func TestFaultsJSON(t *testing.T) {
	in := Faults{
		Latency: 250 * time.Millisecond, ErrorRate: 0.5, FailNext: 2, PrimaryRateLimit: true,
		RateLimitReset: time.Minute, SecondaryRateLimit: 429, RetryAfter: 3, RateLimitCalls: 4,
		ClockOffset: -5 * time.Minute, OutageUntil: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
		OverGrant: true, LongTokens: true, OmitTokenScope: true,
	}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"latency":"250ms"`, `"clock_offset":"-5m0s"`, `"rate_limit_reset":"1m0s"`, `"outage_until":"2030-01-02T03:04:05Z"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("%s lacks %s", data, want)
		}
	}
	var out Faults
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Errorf("round trip: %+v, want %+v", out, in)
	}
	if err := json.Unmarshal([]byte(`{"latency": 1000000}`), &out); err != nil || out.Latency != time.Millisecond {
		t.Errorf("nanoseconds: %v, %v", out.Latency, err)
	}
	if err := json.Unmarshal([]byte(`{"latency": "soon"}`), &out); err == nil {
		t.Error(`"soon" parsed as a duration`)
	}
}
