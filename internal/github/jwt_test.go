// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

// TestClockSkew runs the client against an emulator whose clock is off. GitHub checks JWT times without leeway, so
// a client whose clock disagrees by minutes gets a 401 about iat or exp; it must read GitHub's Date, sign again with
// corrected times and retry exactly once. Small disagreements the JWT's slack absorbs need no retry at all.
func TestClockSkew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		offset    time.Duration // GitHub's clock minus ours
		warm      bool          // mint once before the clock moves, so that a cached JWT meets the new clock
		wantCalls int           // calls to the mint endpoint for the measured mint
		wantJWTs  int           // distinct JWTs the emulator saw for it
		wantSigns int64         // signatures the client made for it
	}{
		// exp = our now + 9m is more than 10 minutes ahead of GitHub: "exp too far in the future".
		{name: "GitHub 5m behind", offset: -5 * time.Minute, wantCalls: 2, wantJWTs: 2, wantSigns: 2},
		// exp is already past on GitHub's clock: "exp must be a numeric value representing the future".
		{name: "GitHub 15m ahead", offset: 15 * time.Minute, wantCalls: 2, wantJWTs: 2, wantSigns: 2},
		{name: "GitHub 15m ahead, cached JWT", offset: 15 * time.Minute, warm: true, wantCalls: 2, wantJWTs: 2,
			wantSigns: 1},
		// iat is in the past and exp 4 minutes ahead on GitHub's clock: GitHub accepts it as is.
		{name: "GitHub 5m ahead", offset: 5 * time.Minute, wantCalls: 1, wantJWTs: 1, wantSigns: 1},
		{name: "GitHub 30s behind", offset: -30 * time.Second, wantCalls: 1, wantJWTs: 1, wantSigns: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			c := h.newClient(t)
			signedBefore := int64(0)
			if tt.warm {
				if _, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{}); err != nil {
					t.Fatal(err)
				}
				signedBefore = c.JWTSignatures()
			}
			h.fake.SetFaults(fakegithub.Faults{ClockOffset: tt.offset})
			h.fake.ResetStats()

			tok, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{})
			st := h.fake.Stats()
			signed := c.JWTSignatures() - signedBefore
			t.Logf("clock skew %s (warm %v): %d calls to the mint endpoint, %d distinct JWTs, %d signatures, err %v",
				tt.offset, tt.warm, st.Calls[mintRoute], st.DistinctJWTs, signed, err)
			if err != nil {
				t.Fatalf("CreateToken with GitHub's clock %s off: %v", tt.offset, err)
			}
			// The token's expiry is on GitHub's clock, an hour after GitHub's now.
			if d := tok.ExpiresAt.Sub(time.Now().Add(tt.offset)); d < 59*time.Minute || d > 61*time.Minute {
				t.Errorf("token expires %s after GitHub's now, want about an hour", d)
			}
			if st.Calls[mintRoute] != tt.wantCalls || st.TotalCalls != tt.wantCalls {
				t.Errorf("mint calls %d (total %d), want %d", st.Calls[mintRoute], st.TotalCalls, tt.wantCalls)
			}
			if st.DistinctJWTs != tt.wantJWTs || signed != tt.wantSigns {
				t.Errorf("distinct JWTs %d, signatures %d; want %d, %d", st.DistinctJWTs, signed, tt.wantJWTs,
					tt.wantSigns)
			}

			// Once corrected, the estimate sticks: the next mint needs no retry and no new signature.
			h.fake.ResetStats()
			if _, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{}); err != nil {
				t.Fatal(err)
			}
			if st := h.fake.Stats(); st.Calls[mintRoute] != 1 || c.JWTSignatures()-signedBefore != tt.wantSigns {
				t.Errorf("after the correction: %d mint calls, %d signatures; want 1, %d", st.Calls[mintRoute],
					c.JWTSignatures()-signedBefore, tt.wantSigns)
			}
		})
	}
}

// TestClockSkewRetriedOnce: when GitHub keeps refusing the JWT's times even after the correction (here, a Date
// header that lies), the client gives up after the one skew retry instead of looping.
func TestClockSkewRetriedOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// The client believes it is 20 minutes ahead; every JWT it signs from its own clock expires too late, and
	// correcting from Date fixes it. A clock that jumps again between attempts cannot be fixed; simulate that by
	// moving the client's clock after each signature.
	clock := &fakeClock{}
	c := h.newClient(t, func(o *github.Options) {
		o.Now = func() time.Time {
			clock.mu.Lock()
			defer clock.mu.Unlock()
			clock.offset += 20 * time.Minute
			return time.Now().Add(clock.offset)
		}
	})
	// The deadline ends a client that loops on skew retries, so that the call count below catches it quickly.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := c.CreateToken(ctx, orgInstallation, github.TokenRequest{})
	e := assertKind(t, err, github.KindBadCredentials)
	if e.StatusCode != 401 || !strings.HasPrefix(e.Message, "'Expiration time' claim ('exp')") {
		t.Fatalf("error = %d %q, want a 401 about exp", e.StatusCode, e.Message)
	}
	if n := h.calls(mintRoute); n != 2 {
		t.Fatalf("the mint endpoint was called %d times, want 2 (one skew retry)", n)
	}
}

// TestJWTReuse: 100 mints in a row use one JWT. The client's clock and the emulator's move 3 seconds per mint (5
// minutes in all), so a client that signed per request would send 100 different JWTs (iat differs), not 100
// byte-identical ones; and the signature counter catches re-signing even where the bytes would match.
func TestJWTReuse(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	clock := &fakeClock{}
	c := h.newClient(t, func(o *github.Options) { o.Now = clock.Now })
	const mints = 100
	for i := range mints {
		if _, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{}); err != nil {
			t.Fatalf("mint %d: %v", i, err)
		}
		clock.advance(h, 3*time.Second)
	}
	st := h.fake.Stats()
	t.Logf("JWT reuse: %d mints over %s of client time -> %d calls to the mint endpoint, %d distinct JWTs at the "+
		"emulator, %d JWT signatures", mints, mints*3*time.Second, st.Calls[mintRoute], st.DistinctJWTs, c.JWTSignatures())
	if st.Calls[mintRoute] != mints || st.TokensIssued != mints {
		t.Fatalf("%d mint calls, %d tokens issued; want %d", st.Calls[mintRoute], st.TokensIssued, mints)
	}
	if st.DistinctJWTs != 1 || c.JWTSignatures() != 1 {
		t.Fatalf("%d distinct JWTs, %d signatures for %d mints; want 1 and 1", st.DistinctJWTs, c.JWTSignatures(), mints)
	}

	// Concurrent callers share the cached JWT too (and the race detector watches the cache).
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			if _, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent mint: %v", err)
	}
	if st := h.fake.Stats(); st.DistinctJWTs != 1 || c.JWTSignatures() != 1 {
		t.Fatalf("after 20 concurrent mints: %d distinct JWTs, %d signatures; want 1 and 1", st.DistinctJWTs,
			c.JWTSignatures())
	}
}

// TestJWTRenewal: the JWT lives nine minutes and is renewed a minute before it expires, i.e. after eight minutes.
// The fake clock moves the client and the emulator together.
func TestJWTRenewal(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	clock := &fakeClock{}
	c := h.newClient(t, func(o *github.Options) { o.Now = clock.Now })

	steps := []struct {
		advance        time.Duration // before the call
		wantSignatures int64
	}{
		{0, 1},
		{4 * time.Minute, 1},
		{3*time.Minute + 55*time.Second, 1}, // 7m55s: still more than a minute of life left
		{10 * time.Second, 2},               // 8m05s: renewed
		{time.Minute, 2},                    // the new JWT is reused in turn
		{8 * time.Minute, 3},                // and renewed eight minutes after it was signed
	}
	var elapsed time.Duration
	var jwts []string
	for i, s := range steps {
		clock.advance(h, s.advance)
		elapsed += s.advance
		if _, err := c.App(t.Context()); err != nil {
			t.Fatalf("step %d (+%s): %v", i, elapsed, err)
		}
		t.Logf("JWT renewal: client time +%s -> %d signatures", elapsed, c.JWTSignatures())
		if got := c.JWTSignatures(); got != s.wantSignatures {
			t.Fatalf("at +%s: %d signatures, want %d", elapsed, got, s.wantSignatures)
		}
		reqs := h.log.all()
		jwts = append(jwts, reqs[len(reqs)-1].Header.Get("Authorization"))
	}
	// The emulator saw exactly the JWTs the counter claims, and only GET /app calls: no skew retries.
	if st := h.fake.Stats(); st.DistinctJWTs != 3 || st.TotalCalls != len(steps) {
		t.Fatalf("emulator: %d distinct JWTs in %d calls, want 3 in %d", st.DistinctJWTs, st.TotalCalls, len(steps))
	}
	if jwts[2] != jwts[0] || jwts[3] == jwts[2] || jwts[4] != jwts[3] || jwts[5] == jwts[4] {
		t.Fatal("the JWTs sent do not follow reuse, renewal, reuse, renewal")
	}
	// The renewed JWT's times follow the (fake) clock: iat a minute back, exp nine minutes ahead.
	raw := strings.TrimPrefix(jwts[5], "Bearer ")
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, claims); err != nil {
		t.Fatal(err)
	}
	exp, _ := claims.GetExpirationTime()
	if d := exp.Sub(clock.Now()); d < 8*time.Minute+55*time.Second || d > 9*time.Minute {
		t.Fatalf("renewed JWT expires %s after the client's now, want 9m", d)
	}
}
