// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

// TestRetryServerErrors counts attempts as the emulator saw them: transport errors and 5xx are retried MaxRetries
// times, then the call fails as KindUnavailable.
func TestRetryServerErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		maxRetries int // Options.MaxRetries: 0 is the default (3), negative is none
		faults     fakegithub.Faults
		wantErr    bool
		wantCalls  int
	}{
		{name: "three failures then success", faults: fakegithub.Faults{FailNext: 3}, wantCalls: 4},
		{name: "one 500 then success", faults: fakegithub.Faults{FailNext: 1, ErrorStatus: 500}, wantCalls: 2},
		{name: "all failing, default retries", faults: fakegithub.Faults{ErrorRate: 1}, wantErr: true, wantCalls: 1 + github.DefaultMaxRetries},
		{name: "all failing, one retry", maxRetries: 1, faults: fakegithub.Faults{ErrorRate: 1}, wantErr: true, wantCalls: 2},
		{name: "all failing, no retries", maxRetries: -1, faults: fakegithub.Faults{ErrorRate: 1}, wantErr: true, wantCalls: 1},
		{name: "retries exhausted by one", maxRetries: 2, faults: fakegithub.Faults{FailNext: 3}, wantErr: true, wantCalls: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			c := h.newClient(t, func(o *github.Options) { o.MaxRetries = tt.maxRetries })
			h.fake.SetFaults(tt.faults)
			start := time.Now()
			tok, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{})
			elapsed := time.Since(start)
			calls := h.calls(mintRoute)
			t.Logf("%s: %d calls to the mint endpoint in %s, error: %v", tt.name, calls, elapsed.Round(time.Millisecond), err)
			if tt.wantErr {
				e := assertKind(t, err, github.KindUnavailable)
				if e.StatusCode != 502 || e.Message != "Bad Gateway" {
					t.Errorf("error = %d %q, want 502 Bad Gateway", e.StatusCode, e.Message)
				}
			} else if err != nil || tok.Token == "" {
				t.Fatalf("CreateToken after transient failures: %v", err)
			}
			if calls != tt.wantCalls {
				t.Fatalf("the mint endpoint was called %d times, want %d", calls, tt.wantCalls)
			}
			// One JWT serves every attempt: retries must not sign again.
			if n := c.JWTSignatures(); n != 1 {
				t.Fatalf("%d JWT signatures for one call with retries, want 1", n)
			}
		})
	}
}

// TestRetryAfter: a secondary rate limit with Retry-After: 2 is waited out, then the call succeeds.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newClient(t)
	h.fake.SetFaults(fakegithub.Faults{SecondaryRateLimit: 429, RetryAfter: 2, RateLimitCalls: 1})
	start := time.Now()
	tok, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{})
	elapsed := time.Since(start)
	t.Logf("429 with Retry-After: 2 -> success after %s, %d calls to the mint endpoint", elapsed.Round(time.Millisecond),
		h.calls(mintRoute))
	if err != nil || tok.Token == "" {
		t.Fatalf("CreateToken after a rate limit: %v", err)
	}
	if elapsed < 2*time.Second {
		t.Fatalf("the client retried after %s, before the 2s GitHub asked for", elapsed)
	}
	if elapsed > 4*time.Second {
		t.Fatalf("the client took %s, far longer than the 2s GitHub asked for", elapsed)
	}
	if n := h.calls(mintRoute); n != 2 {
		t.Fatalf("the mint endpoint was called %d times, want 2", n)
	}
}

// TestRetryAfterBeyondDeadline: when GitHub's wait is longer than the caller's deadline, the client fails at once
// with the rate limit (not a deadline error), so the caller learns when to retry without burning its time.
func TestRetryAfterBeyondDeadline(t *testing.T) {
	t.Parallel()
	for _, deadline := range []time.Duration{500 * time.Millisecond, 1500 * time.Millisecond} {
		t.Run(deadline.String(), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			c := h.newClient(t)
			if _, err := c.App(t.Context()); err != nil { // sign the JWT outside the measured time
				t.Fatal(err)
			}
			h.fake.SetFaults(fakegithub.Faults{SecondaryRateLimit: 429, RetryAfter: 2, RateLimitCalls: 1})
			ctx, cancel := context.WithTimeout(t.Context(), deadline)
			defer cancel()
			start := time.Now()
			_, err := c.CreateToken(ctx, orgInstallation, github.TokenRequest{})
			elapsed := time.Since(start)
			t.Logf("Retry-After 2s with a %s deadline -> %v after %s", deadline, err, elapsed.Round(time.Millisecond))
			e := assertKind(t, err, github.KindRateLimited)
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("the error is the deadline, not the rate limit: %v", err)
			}
			if e.RetryAfter != 2*time.Second || e.StatusCode != 429 {
				t.Fatalf("error = %d, RetryAfter %s; want 429, 2s", e.StatusCode, e.RetryAfter)
			}
			// Waiting until the deadline would take the whole 500ms or more; failing at once takes milliseconds.
			if elapsed >= 400*time.Millisecond {
				t.Fatalf("the client took %s to give up, want at once (well under the %s deadline)", elapsed, deadline)
			}
			if n := h.calls(mintRoute); n != 1 {
				t.Fatalf("the mint endpoint was called %d times, want 1", n)
			}
		})
	}
}

// TestPrimaryRateLimitReset: a primary rate limit (403, X-RateLimit-Remaining: 0) carries no Retry-After; the client
// waits until X-RateLimit-Reset, measured on GitHub's Date, not a short backoff.
func TestPrimaryRateLimitReset(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newClient(t)
	if _, err := c.App(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.fake.SetFaults(fakegithub.Faults{PrimaryRateLimit: true, RateLimitReset: 2 * time.Second, RateLimitCalls: 1})
	start := time.Now()
	_, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{})
	elapsed := time.Since(start)
	t.Logf("primary rate limit resetting in 2s -> %v after %s, %d calls", err, elapsed.Round(time.Millisecond),
		h.calls(mintRoute))
	if err != nil {
		t.Fatalf("CreateToken after a primary rate limit: %v", err)
	}
	// X-RateLimit-Reset and Date are whole seconds, so the computed wait is 1s or 2s; a backoff is at most 300ms.
	if elapsed < 900*time.Millisecond {
		t.Fatalf("the client retried after %s: it did not wait for X-RateLimit-Reset", elapsed)
	}
	if n := h.calls(mintRoute); n != 2 {
		t.Fatalf("the mint endpoint was called %d times, want 2", n)
	}
}

// TestContextCancellation: a slow GitHub does not hold the caller past its deadline.
func TestContextCancellation(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newClient(t)
	if _, err := c.App(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.fake.SetFaults(fakegithub.Faults{Latency: 5 * time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.CreateToken(ctx, orgInstallation, github.TokenRequest{})
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want the context's deadline", err)
	}
	if elapsed > time.Second {
		t.Fatalf("the call returned after %s, long after the 200ms deadline", elapsed)
	}
	// The deadline is the caller's: nothing is retried after it passed.
	if n := h.calls(mintRoute); n != 1 {
		t.Fatalf("the mint endpoint was called %d times, want 1", n)
	}
}

// TestRequestTimeout: a per-attempt timeout is a transport failure, retried like one.
func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newClient(t, func(o *github.Options) { o.RequestTimeout = 100 * time.Millisecond; o.MaxRetries = 1 })
	if _, err := c.App(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.fake.SetFaults(fakegithub.Faults{Latency: 2 * time.Second})

	// A GET that times out is retried.
	_, err := c.Installation(t.Context(), orgInstallation)
	e := assertKind(t, err, github.KindUnavailable)
	if e.StatusCode != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v (status %d), want a per-attempt timeout", err, e.StatusCode)
	}
	if n := h.calls("GET /app/installations/{installation_id}"); n != 2 {
		t.Fatalf("the installation endpoint was called %d times, want 2", n)
	}

	// A mint that times out is retried too, and counted: GitHub may have issued a token that nobody received.
	_, err = c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{})
	assertKind(t, err, github.KindUnavailable)
	if n, dup := h.calls(mintRoute), c.PossibleDuplicateTokens(); n != 2 || dup != 1 {
		t.Fatalf("the mint endpoint was called %d times with %d possible duplicates, want 2 and 1", n, dup)
	}
}
