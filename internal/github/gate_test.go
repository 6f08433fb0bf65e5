// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

// hammer calls f from n goroutines until d has passed, and returns how many calls failed with each Kind.
func hammer(n int, d time.Duration, f func() error) map[github.Kind]int {
	var mu sync.Mutex
	kinds := map[github.Kind]int{}
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if err := f(); err != nil {
					mu.Lock()
					kinds[github.KindOf(err)]++
					mu.Unlock()
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return kinds
}

// TestGateSecondaryLimit: once GitHub has limited the App, calls fail at once with when to come back, and GitHub
// sees about one probe a second, which finds the limit lifted.
func TestGateSecondaryLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newClient(t)
	if _, err := c.App(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.fake.SetFaults(fakegithub.Faults{SecondaryRateLimit: 429, RetryAfter: 60})
	_, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{})
	first := assertKind(t, err, github.KindRateLimited)
	if first.StatusCode != 429 || first.Limit != "secondary" {
		t.Fatalf("first refusal: %v (limit %q)", err, first.Limit)
	}
	h.fake.ResetStats()

	// Many callers for 2.5 s: every call fails fast, naming the limit and when it ends.
	var slowest atomic.Int64
	kinds := hammer(8, 2500*time.Millisecond, func() error {
		start := time.Now()
		_, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{})
		if d := int64(time.Since(start)); d > slowest.Load() {
			slowest.Store(d)
		}
		if e := assertKind(t, err, github.KindRateLimited); e.RetryAfter < 55*time.Second || e.RetryAfter > 60*time.Second {
			t.Errorf("RetryAfter %s, want about a minute", e.RetryAfter)
		} else if e.StatusCode == 0 && !strings.Contains(e.Message, "secondary rate limit for the App is in force until") {
			t.Errorf("the refusal does not name the limit and its end: %q", e.Message)
		}
		return err
	})
	calls := h.fake.Stats().TotalCalls
	t.Logf("8 callers for 2.5 s: %v refusals, %d calls reached GitHub, slowest call %s", kinds[github.KindRateLimited],
		calls, time.Duration(slowest.Load()).Round(time.Millisecond))
	if calls > 4 {
		t.Errorf("%d calls reached GitHub in 2.5 s, want at most one probe a second", calls)
	}
	// Refused at once, not after waiting for the limit's minute: the bound leaves room for a loaded machine.
	if time.Duration(slowest.Load()) > github.MaxGateWait {
		t.Errorf("a refused call took %s", time.Duration(slowest.Load()))
	}

	// GitHub lifts the limit early: the next probe (within a second) sees it, and calls flow again.
	h.fake.SetFaults(fakegithub.Faults{})
	var ok time.Time
	deadline := time.Now().Add(3 * time.Second)
	for ok.IsZero() && time.Now().Before(deadline) {
		if _, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{}); err == nil {
			ok = time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ok.IsZero() {
		t.Fatal("calls still refused 3 s after GitHub lifted the limit")
	}
	if st := c.Gate().Status(); !st.LimitedUntil.IsZero() {
		t.Fatalf("the Gate still records a limit until %s", st.LimitedUntil)
	}
}

// TestGateShortLimitWaits: a limit that ends within MaxGateWait and the caller's deadline is waited out.
func TestGateShortLimitWaits(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newClient(t)
	h.fake.SetFaults(fakegithub.Faults{SecondaryRateLimit: 403, RetryAfter: 1, RateLimitCalls: 1})
	start := time.Now()
	if _, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{}); err != nil {
		t.Fatalf("a 1 s limit was not waited out: %v", err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("the call took %s: it did not wait for the 1 s limit to end", d)
	}
}

// TestGateLimitSparesRevocation: a limit on the App does not hold revocations, which GitHub counts per installation
// token; Vault would otherwise mark their leases irrevocable after its retries.
func TestGateLimitSparesRevocation(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newClient(t)
	tok, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	h.fake.SetFaults(fakegithub.Faults{PrimaryRateLimit: true, RateLimitReset: 10 * time.Minute, RateLimitCalls: 1})
	if _, err := c.App(t.Context()); github.KindOf(err) != github.KindRateLimited {
		t.Fatalf("App: %v, want the primary limit", err)
	}
	if st := c.Gate().Status(); st.LimitKind != "primary" || time.Until(st.LimitedUntil) < 9*time.Minute {
		t.Fatalf("the Gate records %q until %s", st.LimitKind, st.LimitedUntil)
	}
	if err := c.RevokeToken(t.Context(), tok.Token); err != nil {
		t.Fatalf("revocation during the App's limit: %v", err)
	}
	if _, err := c.App(t.Context()); !strings.Contains(err.Error(), "primary rate limit for the App is in force") {
		t.Fatalf("App during the limit: %v", err)
	}
}

// TestGateOutage: while GitHub is unreachable, calls fail fast after the first failures, GitHub sees about one probe
// a second however many callers there are, and the first call after it recovers succeeds. Another GitHub behind the
// same Gate (as a mount revokes tokens of a former GitHub) is another destination: its calls go on meanwhile, and
// its own outage neither fails the first GitHub's calls nor shows in the Gate's status.
func TestGateOutage(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newClient(t, func(o *github.Options) { o.RequestTimeout = time.Second })
	if _, err := c.App(t.Context()); err != nil {
		t.Fatal(err)
	}
	other := newHarness(t)
	otherToken, err := other.newClient(t).CreateToken(t.Context(), orgInstallation, github.TokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// A client without a key, as the mount keeps for revocation at another GitHub, sharing c's Gate.
	oc := other.newClient(t, func(o *github.Options) {
		o.Gate, o.PrivateKey, o.RequestTimeout = c.Gate(), nil, time.Second
	})

	h.fake.SetFaults(fakegithub.Faults{OutageUntil: time.Now().Add(time.Hour)})
	h.fake.ResetStats()
	const callers = 16
	var slowest atomic.Int64
	var otherFailures atomic.Int64
	var otherFailure atomic.Value
	otherDone := make(chan struct{})
	go func() {
		defer close(otherDone)
		for stop := time.Now().Add(3 * time.Second); time.Now().Before(stop); time.Sleep(50 * time.Millisecond) {
			if _, err := oc.TokenRepositories(t.Context(), otherToken.Token); err != nil {
				otherFailures.Add(1)
				otherFailure.Store(err.Error())
			}
		}
	}()
	kinds := hammer(callers, 3*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		start := time.Now()
		_, err := c.Installation(ctx, orgInstallation)
		if d := int64(time.Since(start)); d > slowest.Load() {
			slowest.Store(d)
		}
		return err
	})
	<-otherDone
	if n := otherFailures.Load(); n > 0 {
		t.Fatalf("%d calls to the other GitHub failed during the first one's outage; last: %v", n, otherFailure.Load())
	}
	calls := h.fake.Stats().TotalCalls
	st := c.Gate().Status()
	t.Logf("%d callers for 3 s of outage: %v, %d calls reached GitHub, slowest call %s, failing since %s",
		callers, kinds, calls, time.Duration(slowest.Load()).Round(time.Millisecond), st.FailingSince.Format(time.RFC3339Nano))
	if kinds[github.KindUnavailable] == 0 || len(kinds) != 1 {
		t.Fatalf("failures %v, want unavailable only", kinds)
	}
	// Each caller's first attempt, a few retries before the Gate knew, then about a probe a second.
	if calls > callers+outageBudget(3*time.Second) {
		t.Errorf("%d calls reached a failing GitHub from %d callers in 3 s", calls, callers)
	}
	if st.FailingSince.IsZero() {
		t.Fatal("the Gate does not record the outage")
	}
	// Failing fast: no caller waits for its 10 s deadline (the bound leaves room for a loaded machine; make bench
	// reports the real figures).
	if time.Duration(slowest.Load()) > 8*time.Second {
		t.Errorf("the slowest call took %s", time.Duration(slowest.Load()))
	}
	_, err = c.Installation(t.Context(), orgInstallation)
	if e := assertKind(t, err, github.KindUnavailable); !strings.Contains(e.Error(), "since") {
		t.Errorf("the error does not say since when: %v", e)
	}

	// GitHub recovers: the first call after it goes through (within the probe interval).
	h.fake.SetFaults(fakegithub.Faults{})
	start := time.Now()
	if _, err := c.Installation(t.Context(), orgInstallation); err != nil {
		t.Fatalf("the first call after the recovery failed: %v", err)
	}
	t.Logf("the first call after the recovery succeeded in %s", time.Since(start).Round(time.Millisecond))
	if !c.Gate().Status().FailingSince.IsZero() {
		t.Fatal("the Gate still records the outage")
	}

	// Now the other GitHub fails, long enough to count as an outage (a call and its retries): the Gate's status,
	// which describes the App's GitHub, stays healthy, and the App's calls go on.
	other.fake.SetFaults(fakegithub.Faults{OutageUntil: time.Now().Add(time.Hour)})
	if _, err := oc.TokenRepositories(t.Context(), otherToken.Token); err == nil {
		t.Fatal("a call to the failing other GitHub succeeded")
	}
	if st := c.Gate().Status(); !st.FailingSince.IsZero() || st.LastOutcome != "ok" {
		t.Fatalf("the Gate's status shows the other GitHub's outage: failing since %s, last outcome %q", st.FailingSince, st.LastOutcome)
	}
	for range 5 {
		if _, err := c.Installation(t.Context(), orgInstallation); err != nil {
			t.Fatalf("a call to the healthy GitHub failed during the other one's outage: %v", err)
		}
	}
}

// outageBudget is how many calls a failing GitHub may see over d besides the callers' first attempts: the retries
// made before the Gate marked GitHub failing, and a probe a second.
func outageBudget(d time.Duration) int { return 3*3 + int(d/time.Second) + 2 }

// TestGateBoundsConcurrency: however many callers, at most the Gate's capacity is in flight at GitHub.
func TestGateBoundsConcurrency(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	gate := github.NewGate(4, nil)
	c := h.newClient(t, func(o *github.Options) { o.Gate = gate })
	if _, err := c.App(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.fake.SetFaults(fakegithub.Faults{Latency: 30 * time.Millisecond})
	h.fake.ResetStats()
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Installation(t.Context(), orgInstallation); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if st := h.fake.Stats(); st.MaxInFlight > 4 || st.TotalCalls != 50 {
		t.Fatalf("%d calls, at most %d in flight; want 50 calls, at most 4 in flight", st.TotalCalls, st.MaxInFlight)
	}

	// A caller whose deadline passes while waiting in line gives up then.
	gate.SetCapacity(1)
	h.fake.SetFaults(fakegithub.Faults{Latency: 500 * time.Millisecond})
	go c.Installation(t.Context(), orgInstallation) // holds the only slot
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Installation(ctx, orgInstallation); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting for a slot: %v after %s, want the caller's deadline", err, time.Since(start))
	}
}

// TestRateLimitLow: the App's rate limit is read from GitHub's headers, and is low under a tenth.
func TestRateLimitLow(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newClient(t)
	if _, err := c.App(t.Context()); err != nil {
		t.Fatal(err)
	}
	rl := c.Gate().RateLimit()
	if rl.Limit != 5000 || rl.Remaining <= 0 || rl.Remaining >= 5000 || rl.Resource != "core" || rl.Reset.Before(time.Now()) {
		t.Fatalf("rate limit as seen: %+v", rl)
	}
	for _, tt := range []struct {
		limit, remaining int
		low              bool
	}{{5000, 499, true}, {5000, 500, false}, {5000, 0, true}, {0, 0, false}} {
		if got := (github.RateLimit{Limit: tt.limit, Remaining: tt.remaining}).Low(); got != tt.low {
			t.Errorf("%d of %d: Low() = %v", tt.remaining, tt.limit, got)
		}
	}
}

// TestWithoutWaiting: a caller with somewhere else to go (another App of a pool) is refused at once where others
// wait: for a rate limit about to end, for the retry of a failed attempt, for an outage probe; and it still carries
// the probe that finds GitHub serving again.
func TestWithoutWaiting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		faults fakegithub.Faults
		kind   github.Kind
	}{
		{"a limit that ends within the Gate's wait", fakegithub.Faults{SecondaryRateLimit: 429, RetryAfter: 2, RateLimitCalls: 1}, github.KindRateLimited},
		{"a failed attempt", fakegithub.Faults{FailNext: 1}, github.KindUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			c := h.newClient(t)
			h.fake.SetFaults(tt.faults)
			start := time.Now()
			_, err := c.CreateToken(github.WithoutWaiting(t.Context()), orgInstallation, github.TokenRequest{})
			assertKind(t, err, tt.kind)
			if calls := h.fake.Stats().TotalCalls; calls != 1 {
				t.Fatalf("%d calls reached GitHub, want the one attempt, not retried", calls)
			}
			took := time.Since(start)

			// The same call, willing to wait, gets its token.
			if _, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{}); err != nil {
				t.Fatalf("a caller that waits: %v", err)
			}
			t.Logf("refused after %s", took.Round(time.Millisecond))
		})
	}

	t.Run("a limit in force lets the probe through", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		c := h.newClient(t)
		h.fake.SetFaults(fakegithub.Faults{SecondaryRateLimit: 429, RetryAfter: 60, RateLimitCalls: 1})
		ctx := github.WithoutWaiting(t.Context())
		_, err := c.CreateToken(ctx, orgInstallation, github.TokenRequest{})
		assertKind(t, err, github.KindRateLimited)
		_, err = c.CreateToken(ctx, orgInstallation, github.TokenRequest{})
		if e := assertKind(t, err, github.KindRateLimited); e.StatusCode != 0 {
			t.Fatalf("the second call reached GitHub (%d) while the limit was in force", e.StatusCode)
		}
		// After the probe interval, the next caller probes, finds the limit gone (it covered one call), and mints.
		time.Sleep(1100 * time.Millisecond)
		if _, err := c.CreateToken(ctx, orgInstallation, github.TokenRequest{}); err != nil {
			t.Fatalf("the probe: %v", err)
		}
		if calls := h.fake.Stats().TotalCalls; calls != 2 {
			t.Fatalf("%d calls reached GitHub, want the refused one and the probe", calls)
		}
	})
}
