// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/kmstest"
)

// Edges of App pools found by a review (SPEC 3.7); each test failed before its fix.

// goroutinesIn counts the goroutines whose stack holds frame.
func goroutinesIn(frame string) int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, frame) {
			n++
		}
	}
	return n
}

// waitUntil polls cond until it holds; the deadline only bounds a broken setup, it asserts no speed.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<22)
			buf = buf[:runtime.Stack(buf, true)]
			for _, g := range strings.Split(string(buf), "\n\n") {
				if strings.Contains(g, "sharedCall") {
					t.Log(g)
				}
			}
			t.Fatalf("setup: %s did not happen", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// holdFirstLookup answers the first GET /orgs/acme/installation of any client with 502 once released, and lets every
// other request through.
type holdFirstLookup struct {
	arrived chan struct{}
	release chan struct{}
	taken   atomic.Bool
}

// wrap is the transport of one client.
func (h *holdFirstLookup) wrap(next http.RoundTripper) http.RoundTripper {
	return heldTransport{h: h, next: next}
}

// heldTransport is one client's transport through a holdFirstLookup.
type heldTransport struct {
	h    *holdFirstLookup
	next http.RoundTripper
}

func (t heldTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	h := t.h
	if r.Method == http.MethodGet && r.URL.Path == "/orgs/acme/installation" && h.taken.CompareAndSwap(false, true) {
		close(h.arrived)
		<-h.release
		return &http.Response{StatusCode: http.StatusBadGateway, Status: "502 Bad Gateway", Request: r,
			Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(`{"message":"Server Error"}`))}, nil
	}
	return t.next.RoundTrip(r)
}

// TestOneAppRoleWaitsEvenBesideAPool: a pool mint marks its context WithoutWaiting, and the installation lookup
// it starts is shared (sharedCall keeps the context's values through context.WithoutCancel). A one-App role's mint
// that joins that lookup inherits "do not wait, do not retry": a 502 that its own lookup would have retried fails
// the mint. SPEC 3.7: only a pool skips without waiting; a one-App role waits within the caller's deadline (4).
func TestOneAppRoleWaitsEvenBesideAPool(t *testing.T) {
	e := newPoolEnv(t, map[string]any{"app_selection": "ordered"}, nil)
	e.role("one", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	e.restart() // no installation cached yet
	hold := &holdFirstLookup{arrived: make(chan struct{}), release: make(chan struct{})}
	e.b.clientOptions = func(o *github.Options) {
		o.WrapTransport = hold.wrap
	}
	defer func() {
		select {
		case <-hold.release:
		default:
			close(hold.release)
		}
	}()

	type result struct {
		resp *logical.Response
		err  error
	}
	read := func(role string) chan result {
		ch := make(chan result, 1)
		go func() {
			req := &logical.Request{Operation: logical.ReadOperation, Path: "token/" + role, Storage: e.storage}
			resp, err := e.b.HandleRequest(context.Background(), req)
			ch <- result{resp, err}
		}()
		return ch
	}
	before := goroutinesIn("vault-plugin-secrets-github-app.sharedCall(")
	pool := read("pool") // the default App's lookup, WithoutWaiting, held at "GitHub"
	<-hold.arrived
	one := read("one") // joins the same lookup of the default App
	// It joins the pool's lookup, or (as it should) makes its own and is done.
	waitUntil(t, "the one-App mint joining the pool's lookup or finishing", func() bool {
		return len(one) == 1 || goroutinesIn("vault-plugin-secrets-github-app.sharedCall(") >= before+2
	})
	close(hold.release)

	if r := <-pool; r.err != nil || r.resp == nil || r.resp.IsError() || r.resp.Data["app"] != "second" {
		t.Fatalf("the pool mint: %v %v", r.resp, r.err)
	}
	r := <-one
	if r.err != nil || r.resp == nil || r.resp.IsError() {
		t.Fatalf("a one-App role's mint failed on one 502 that it would have retried, because it shared a lookup "+
			"started by a pool mint that does not wait: %v %v", r.resp, r.err)
	}
}

// countingKMS is a local KMS behind a proxy that counts requests and notes whether the backend's lock was held
// while one was served.
type countingKMS struct {
	*kmstest.Server
	URL        string
	requests   atomic.Int64
	lockedCall atomic.Int64
	b          atomic.Pointer[backend]
}

func newCountingKMS(t *testing.T) *countingKMS {
	t.Helper()
	k := kmstest.New(t, kmstest.Seed{
		RSA:     []kmstest.Key{{ID: kmsAppKey, PEM: pkcs8(t, testKey)}},
		Aliases: map[string]string{kmsAlias: kmsAppKey},
	})
	target, err := url.Parse(k.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := &countingKMS{Server: k}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.requests.Add(1)
		if b := c.b.Load(); b != nil {
			if b.lock.TryRLock() {
				b.lock.RUnlock()
			} else {
				c.lockedCall.Add(1)
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

// kmsApp is an App write for appID whose key is in k.
func kmsApp(e *testEnv, k *countingKMS, appID int64) map[string]any {
	return map[string]any{
		"app_id": appID, "base_url": e.srv.URL, "signer": "awskms", "kms_key_id": kmsAlias,
		"aws_region": kmstest.Region, "aws_endpoint": k.URL, "aws_access_key_id": kmstest.AccessKeyID,
		"aws_secret_access_key": kmstest.SecretAccessKey,
	}
}

// TestPoolSignerFailureIsNotNotConfigured: when the signers of a pool's Apps cannot be opened (KMS refuses),
// mintFromPool drops those Apps before the loop, which then reports each as "not configured" (400, reason
// not_configured). SPEC 3.8: a KMS or HSM failure at mint is a 502 naming the signer, as it is for a one-App role.
func TestPoolSignerFailureIsNotNotConfigured(t *testing.T) {
	e := newPoolEnv(t, map[string]any{"apps": "default,second"}, nil)
	k := newCountingKMS(t)
	for _, app := range []struct {
		path string
		id   int64
	}{{"config", testAppID}, {"apps/second", poolApp2}} {
		resp, err := e.do(logical.UpdateOperation, app.path, kmsApp(e, k, app.id))
		mustOK(t, resp, err)
	}
	e.mint("pool")
	e.restart() // new clients, which open their signers again
	k.Deny.Store(true)

	resp, err := e.do(logical.ReadOperation, "token/pool", nil)
	status, msg := mustFail(t, resp, err)
	if status != http.StatusBadGateway || !strings.Contains(msg, "awskms signer") || strings.Contains(msg, "not configured") {
		t.Fatalf("every App's KMS refuses: %d %s\nwant 502 naming the awskms signer, as a one-App role answers", status, msg)
	}
}

// TestPoolDoesNotOpenSignersItDoesNotUse: an ordered pool whose first App serves still builds the client of
// every App on each mint (mintFromPool calls appClientFor for all names first). An App whose signer cannot be opened
// is never cached, so every mint calls its KMS again, holding the backend's write lock (b.lock) for the round trip:
// every mint of every App and role of the mount queues behind a KMS that has nothing to do with it.
func TestPoolDoesNotOpenSignersItDoesNotUse(t *testing.T) {
	e := newPoolEnv(t, map[string]any{"app_selection": "ordered", "apps": "default,second"}, nil)
	k := newCountingKMS(t)
	resp, err := e.do(logical.UpdateOperation, "apps/second", kmsApp(e, k, poolApp2))
	mustOK(t, resp, err)
	e.restart()
	k.b.Store(e.b)
	k.Deny.Store(true)
	k.requests.Store(0)

	for range 5 {
		if app := e.mintedBy(); app != "default" {
			t.Fatalf("minted by %q, want default", app)
		}
	}
	if n, locked := k.requests.Load(), k.lockedCall.Load(); n > 1 || locked > 0 {
		t.Fatalf("5 mints served by the healthy first App made %d calls to the second App's KMS, %d of them "+
			"under the backend's write lock", n, locked)
	}
}

// failingListStorage fails List under a prefix.
type failingListStorage struct {
	logical.Storage
	prefix string
}

func (s failingListStorage) List(ctx context.Context, prefix string) ([]string, error) {
	if strings.HasPrefix(prefix, s.prefix) {
		return nil, errors.New("storage unavailable")
	}
	return s.Storage.List(ctx, prefix)
}

// TestFailedAppDeleteKeepsTheApp: deleteApp deletes the App, then lists roles for its warning; when that
// fails, the delete answers with an error although the App is gone. A failed write must leave storage as it was (or
// a delete that happened must not be reported as failed).
func TestFailedAppDeleteKeepsTheApp(t *testing.T) {
	e := newPoolEnv(t, nil, nil)
	req := &logical.Request{Operation: logical.DeleteOperation, Path: "apps/second",
		Storage: failingListStorage{Storage: e.storage, prefix: roleStoragePrefix}}
	resp, err := e.b.HandleRequest(context.Background(), req)
	failed := err != nil || (resp != nil && resp.IsError())
	cfg, gerr := getAppConfig(t.Context(), e.storage, "second")
	if gerr != nil {
		t.Fatal(gerr)
	}
	if failed && cfg == nil {
		t.Fatalf("the delete of apps/second answered with an error (%v %v) but deleted the App", resp, err)
	}
}

// holdMints plays a failing GitHub for the default App's token requests (mode failing), or holds them until released
// (mode holding), counting those held.
type holdMints struct {
	next    http.RoundTripper
	mode    atomic.Int32
	held    atomic.Int32
	release chan struct{}
}

const (
	mintsPass int32 = iota
	mintsFail
	mintsHold
)

func (h *holdMints) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/app/installations/"+strconv.Itoa(testOrgInstall)+"/") {
		switch h.mode.Load() {
		case mintsFail:
			return &http.Response{StatusCode: http.StatusBadGateway, Status: "502 Bad Gateway", Request: r,
				Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(`{"message":"Server Error"}`))}, nil
		case mintsHold:
			h.held.Add(1)
			<-h.release
		}
	}
	return h.next.RoundTrip(r)
}

// TestNoWaitCallerDoesNotStartASecondProbe: during an outage of an App, a pool mint (WithoutWaiting) skips the
// "wait for the probe in flight" case of Gate.clear and, once nextProbe has passed, starts a probe of its own while
// the first is still in flight, replacing d.outage.probe. The first probe's end then closes the second's channel, and
// the channel that one-App callers of the same App wait on is never closed: they sit out MaxGateWait instead of being
// woken when the probe ends. WithoutWaiting should refuse there, as its documentation says, not probe again.
func TestNoWaitCallerDoesNotStartASecondProbe(t *testing.T) {
	e := newPoolEnv(t, map[string]any{"app_selection": "ordered"}, nil)
	e.role("one", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	h := &holdMints{release: make(chan struct{})}
	e.b.clientOptions = func(o *github.Options) {
		o.WrapTransport = func(next http.RoundTripper) http.RoundTripper { h.next = next; return h }
	}
	e.mint("one") // the default App's client, installation cached
	released := false
	defer func() {
		if !released {
			close(h.release)
		}
	}()

	// GitHub fails for the default App: a one-App mint retries, and the default App's Gate sees an outage.
	h.mode.Store(mintsFail)
	e.fails(t, logical.ReadOperation, "token/one", nil)
	h.mode.Store(mintsHold)

	read := func(role string) chan error {
		ch := make(chan error, 1)
		go func() {
			req := &logical.Request{Operation: logical.ReadOperation, Path: "token/" + role, Storage: e.storage}
			resp, err := e.b.HandleRequest(context.Background(), req)
			if err == nil && resp != nil && resp.IsError() {
				err = resp.Error()
			}
			ch <- err
		}()
		return ch
	}
	time.Sleep(1100 * time.Millisecond) // the next probe slot (outageProbeInterval)
	first := read("pool")               // the default App's probe, held at GitHub
	waitUntil(t, "the first probe reaching GitHub", func() bool { return h.held.Load() == 1 })
	waiter := read("one") // a one-App mint waits for that probe's outcome
	waitUntil(t, "the one-App mint waiting for the probe", func() bool {
		return goroutinesIn("github.(*Gate).clear(") >= 1
	})
	time.Sleep(1100 * time.Millisecond) // the next probe slot
	second := read("pool")
	var secondDone error
	waitUntil(t, "the second pool mint to end or reach GitHub", func() bool {
		select {
		case secondDone = <-second:
			second = nil
			return true
		default:
			return h.held.Load() >= 2
		}
	})
	held := h.held.Load()
	close(h.release)
	released = true
	for _, ch := range []chan error{first, waiter, second} {
		if ch != nil {
			<-ch
		}
	}
	if held != 1 {
		t.Fatalf("%d probes of the default App were in flight at GitHub at once, want one: a pool mint that "+
			"does not wait started another probe while the first was in flight (second pool mint: %v)", held, secondDone)
	}
}
