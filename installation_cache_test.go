// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// TestOwnerNotFoundCacheBounded: with templated owners, callers choose the logins looked up, and every login GitHub
// does not know is remembered for a while. Those entries are capped, the oldest going first, and forgotten once
// expired; what was found stays.
func TestOwnerNotFoundCacheBounded(t *testing.T) {
	testKeys(t)
	// GitHub knows only acme.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/orgs/acme/installation" {
			io.WriteString(w, `{"id": 2001, "account": {"id": 5, "login": "acme", "type": "Organization"}}`)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"message": "Not Found"}`)
	}))
	t.Cleanup(srv.Close)
	gh, err := github.NewClient(github.Options{BaseURL: srv.URL, AppID: testAppID, PrivateKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gh.CloseIdleConnections)

	c := newInstallationCache()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	lookup := func(owner string, at time.Time) (cached bool) {
		t.Helper()
		_, cached, err := c.byOwner(t.Context(), gh, owner, at)
		if owner == "acme" && err != nil {
			t.Fatalf("looking up acme: %v", err)
		}
		if owner != "acme" && github.KindOf(err) != github.KindNotFound {
			t.Fatalf("looking up %s: %v, want not found", owner, err)
		}
		return cached
	}
	held := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.owners)
	}

	lookup("acme", t0)
	const unknown = 1100
	for i := range unknown {
		lookup(fmt.Sprintf("nobody-%d", i), t0.Add(time.Duration(i)*time.Millisecond))
	}
	last := t0.Add(unknown * time.Millisecond)
	if n := held(); n > 1000+1 {
		t.Fatalf("after %d logins GitHub does not know, %d owners are held; want at most 1000 unknown and acme", unknown, n)
	}
	if !lookup(fmt.Sprintf("nobody-%d", unknown-1), last) {
		t.Error("the newest unknown login is no longer cached")
	}
	if !lookup("acme", last) {
		t.Error("the cap evicted an owner that was found")
	}
	if lookup("nobody-0", last) {
		t.Error("the oldest unknown login is still cached")
	}

	// An hour later, one lookup sweeps what expired.
	lookup("nobody-new", t0.Add(time.Hour))
	if n := held(); n != 2 {
		t.Fatalf("an hour later %d owners are held; want acme and the login just looked up", n)
	}
	if !lookup("acme", t0.Add(time.Hour)) {
		t.Error("the sweep dropped an owner that was found")
	}
}

// TestSharedLookupOutlivesTheCallerThatStartedIt: concurrent misses for one owner share one call to GitHub; the
// caller that started it going away must not fail the others that wait on it.
func TestSharedLookupOutlivesTheCallerThatStartedIt(t *testing.T) {
	testKeys(t)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id": 2001, "account": {"id": 5, "login": "acme", "type": "Organization"}}`)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	gh, err := github.NewClient(github.Options{BaseURL: srv.URL, AppID: testAppID, PrivateKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gh.CloseIdleConnections)

	c := newInstallationCache()
	now := time.Now()
	first, cancel := context.WithCancel(t.Context())
	firstDone := make(chan error, 1)
	go func() {
		_, _, err := c.byOwner(first, gh, "acme", now)
		firstDone <- err
	}()
	time.Sleep(100 * time.Millisecond) // the first caller's lookup is at GitHub
	secondDone := make(chan error, 1)
	go func() {
		_, _, err := c.byOwner(t.Context(), gh, "acme", now)
		secondDone <- err
	}()
	time.Sleep(100 * time.Millisecond) // the second caller waits on the same lookup
	cancel()
	<-firstDone
	close(release)
	if err := <-secondDone; err != nil {
		t.Fatalf("the second caller failed with the first caller's cancellation: %v", err)
	}
}
