// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github_test

import (
	"context"
	"crypto/rsa"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/signer"
)

// countingSigner stands for a KMS or HSM: it signs with the shared key after a delay like a network round trip,
// counts its signatures, and can be told to fail or to hold each signature until released.
type countingSigner struct {
	key   *signer.Key
	delay time.Duration
	fail  error
	hold  chan struct{} // when set, each signature waits for a value or for ctx's end
	signs atomic.Int64
}

func newCountingSigner(t *testing.T) *countingSigner {
	t.Helper()
	k, err := signer.NewKey(github.SharedKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return &countingSigner{key: k}
}

func (s *countingSigner) Public() *rsa.PublicKey       { return s.key.Public() }
func (s *countingSigner) Describe() signer.Description { return s.key.Describe() }
func (s *countingSigner) Close() error                 { return nil }

func (s *countingSigner) SignRS256(ctx context.Context, digest []byte) ([]byte, error) {
	s.signs.Add(1)
	if s.hold != nil {
		select {
		case <-s.hold:
		case <-ctx.Done():
			return nil, &signer.Error{Signer: "test", Kind: signer.KindUnavailable, Msg: "held", Err: ctx.Err()}
		}
	}
	time.Sleep(s.delay)
	if s.fail != nil {
		return nil, s.fail
	}
	return s.key.SignRS256(ctx, digest)
}

// TestSignerJWTReuseBurst: a burst of 1,000 App calls from 50 goroutines through a signer that takes 20 ms per
// signature (a KMS round trip) costs one signature. Callers that arrive while it is being made wait for it rather
// than sign on their own, and every later call reuses the JWT. The emulator verifies every JWT with the App's public
// key, so a call that succeeds proves the signer's signature good.
//
// Not parallel: a thousand calls under the race detector would starve the package's tests of short timeouts.
func TestSignerJWTReuseBurst(t *testing.T) {
	h := newHarness(t)
	s := newCountingSigner(t)
	s.delay = 20 * time.Millisecond
	c := h.newClient(t, func(o *github.Options) { o.PrivateKey, o.Signer = nil, s })

	const calls, workers = 1000, 50
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= calls {
				if _, err := c.App(t.Context()); err != nil {
					if failed.Add(1) == 1 {
						t.Errorf("App: %v", err)
					}
				}
			}
		})
	}
	wg.Wait()
	st := h.fake.Stats()
	t.Logf("JWT reuse through a signer: %d App calls from %d goroutines -> %d Sign calls, %d distinct JWTs at the "+
		"emulator, %d calls failed", calls, workers, s.signs.Load(), st.DistinctJWTs, failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d of %d calls failed", failed.Load(), calls)
	}
	if st.TotalCalls != calls {
		t.Fatalf("the emulator saw %d calls, want %d", st.TotalCalls, calls)
	}
	if n := s.signs.Load(); n != 1 || c.JWTSignatures() != 1 || st.DistinctJWTs != 1 {
		t.Fatalf("%d Sign calls, %d signatures counted by the client, %d distinct JWTs; want 1, 1, 1", n,
			c.JWTSignatures(), st.DistinctJWTs)
	}
	if c.Signer() != signer.Signer(s) {
		t.Fatal("Client.Signer does not return the signer it was given")
	}
}

// TestSignerFailure: a signer's failure reaches the caller as the signer's *signer.Error, without a call to GitHub,
// without counting as a GitHub failure (the Gate sees no outage), and without being cached: the next call asks the
// signer again.
func TestSignerFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// One good call, so that the harness's contract check has traffic to check.
	if _, err := h.newClient(t).App(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.fake.ResetStats()

	s := newCountingSigner(t)
	s.fail = &signer.Error{Signer: signer.KindAWSKMS, Kind: signer.KindUnavailable,
		Msg: "AWS KMS is throttling requests (ThrottlingException)"}
	c := h.newClient(t, func(o *github.Options) { o.PrivateKey, o.Signer = nil, s })
	for i := range 3 {
		_, err := c.App(t.Context())
		serr, ok := signer.AsError(err)
		if !ok || serr.Kind != signer.KindUnavailable || serr.Signer != signer.KindAWSKMS {
			t.Fatalf("call %d: error %v (%T), want the signer's *signer.Error", i, err, err)
		}
		if github.KindOf(err) != github.KindOther {
			t.Fatalf("call %d: a signer failure has GitHub kind %s", i, github.KindOf(err))
		}
	}
	if n := s.signs.Load(); n != 3 {
		t.Fatalf("%d Sign calls for 3 failing App calls, want 3 (failures are not cached)", n)
	}
	if st := h.fake.Stats(); st.TotalCalls != 0 {
		t.Fatalf("the emulator saw %d calls without a JWT to send, want 0", st.TotalCalls)
	}
	if gs := c.Gate().Status(); !gs.FailingSince.IsZero() {
		t.Fatalf("the Gate counts signer failures as a GitHub outage since %s", gs.FailingSince)
	}

	// Once the signer works again, so does the client.
	s.fail = nil
	if _, err := c.App(t.Context()); err != nil {
		t.Fatalf("after the signer recovered: %v", err)
	}
}

// TestSignerWaitersOwnDeadlines: while one caller's signature is in progress, another caller waits within its own
// deadline, not the signer's; and when the signing caller gives up (its context ends), a waiter with time left signs
// on its own instead of inheriting the first caller's cancellation.
func TestSignerWaitersOwnDeadlines(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	s := newCountingSigner(t)
	s.hold = make(chan struct{})
	c := h.newClient(t, func(o *github.Options) { o.PrivateKey, o.Signer = nil, s })

	leaderCtx, cancelLeader := context.WithCancel(t.Context())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := c.App(leaderCtx)
		leaderErr <- err
	}()
	waitFor(t, func() bool { return s.signs.Load() == 1 })

	// A waiter with a short deadline gives up at its deadline while the signature is still held.
	short, cancelShort := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancelShort()
	if _, err := c.App(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a waiter past its deadline got %v, want context.DeadlineExceeded", err)
	}

	// A waiter with time left outlives the leader, who gives up: it signs itself.
	followerErr := make(chan error, 1)
	go func() {
		_, err := c.App(t.Context())
		followerErr <- err
	}()
	// Give the waiter time to join the signature in progress. Should it come later, it finds none and signs
	// itself: the assertions below hold either way.
	time.Sleep(100 * time.Millisecond)
	cancelLeader()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled leader got %v, want context.Canceled", err)
	}
	waitFor(t, func() bool { return s.signs.Load() == 2 })
	s.hold <- struct{}{}
	if err := <-followerErr; err != nil {
		t.Fatalf("the waiter that outlived the leader: %v", err)
	}
	if n := s.signs.Load(); n != 2 {
		t.Fatalf("%d Sign calls, want 2 (the abandoned one and the waiter's)", n)
	}
}

// TestNewClientSignerOptions: a private key and a signer together are refused; a signer needs an app ID or client
// ID like a key does.
func TestNewClientSignerOptions(t *testing.T) {
	t.Parallel()
	s := newCountingSigner(t)
	if _, err := github.NewClient(github.Options{AppID: 1, PrivateKey: github.SharedKey(t), Signer: s}); err == nil {
		t.Fatal("NewClient accepted both a private key and a signer")
	}
	if _, err := github.NewClient(github.Options{Signer: s}); err == nil {
		t.Fatal("NewClient accepted a signer without an app ID or client ID")
	}
	c, err := github.NewClient(github.Options{AppID: 1, PrivateKey: github.SharedKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := github.Fingerprint(&github.SharedKey(t).PublicKey)
	if d := c.Signer().Describe(); d.Kind != signer.KindKey || d.Fingerprint != want {
		t.Fatalf("a private key is described as %+v, want kind %q and fingerprint %s", d, signer.KindKey, want)
	}
}

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
