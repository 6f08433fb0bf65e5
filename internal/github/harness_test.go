// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github_test

import (
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/ghcontract"
)

// The fixture every emulator test starts from: one App installed on an organisation, on a user and on a suspended
// organisation.
const (
	testAppID         = 1001
	testClientID      = "Iv23liTESTAPP0001"
	testUserAgent     = "vault-plugin-secrets-github-app/test"
	orgInstallation   = 2001 // acme: api, web, infra
	userInstallation  = 2002 // octocat: dotfiles
	suspendedInstall  = 2003 // dormant: old
	unknownInstallID  = 9999
	repoAPI, repoWeb  = 3001, 3002
	repoInfra         = 3003
	repoDotfiles      = 3101
	mintRoute         = "POST /app/installations/{installation_id}/access_tokens"
	appRoute          = "GET /app"
	installationsRt   = "GET /app/installations"
	installationRoute = "GET /app/installations/{installation_id}"
	orgInstRoute      = "GET /orgs/{org}/installation"
	userInstRoute     = "GET /users/{username}/installation"
	revokeRoute       = "DELETE /installation/token"
	tokenReposRoute   = "GET /installation/repositories"
)

// orgPermissions is what the acme installation was granted.
var orgPermissions = map[string]string{
	"contents":      "write",
	"metadata":      "read",
	"issues":        "write",
	"pull_requests": "read",
}

func testFixture(t testing.TB) fakegithub.Fixture {
	t.Helper()
	pub, err := fakegithub.EncodePublicKey(&github.SharedKey(t).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return fakegithub.Fixture{
		Apps: []fakegithub.App{{
			ID: testAppID, ClientID: testClientID, Slug: "vault-test", Name: "Vault Test", Owner: "acme",
			PublicKeys: []string{string(pub)},
		}},
		Installations: []fakegithub.Installation{
			{
				ID: orgInstallation, AppID: testAppID, Account: "acme", AccountID: 5001, AccountType: "Organization",
				RepositorySelection: "selected",
				Repositories: []fakegithub.Repository{
					{ID: repoAPI, Name: "api", Private: true},
					{ID: repoWeb, Name: "web"},
					{ID: repoInfra, Name: "infra", Private: true},
				},
				Permissions: orgPermissions,
			},
			{
				ID: userInstallation, AppID: testAppID, Account: "octocat", AccountID: 583231, AccountType: "User",
				RepositorySelection: "selected",
				Repositories:        []fakegithub.Repository{{ID: repoDotfiles, Name: "dotfiles"}},
				Permissions:         map[string]string{"contents": "read", "metadata": "read"},
			},
			{
				ID: suspendedInstall, AppID: testAppID, Account: "dormant", AccountID: 5003, AccountType: "Organization",
				RepositorySelection: "all",
				Repositories:        []fakegithub.Repository{{ID: 3201, Name: "old"}},
				Permissions:         map[string]string{"metadata": "read"},
				Suspended:           true,
			},
		},
	}
}

// seenRequest is a request as it reached the server, before the emulator.
type seenRequest struct {
	Method     string
	Path       string // r.URL.Path
	RequestURI string
	Header     http.Header
}

// requestLog records what reaches a handler: the test's own view of the wire, independent of the emulator.
type requestLog struct {
	mu   sync.Mutex
	reqs []seenRequest
}

func (l *requestLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.reqs = append(l.reqs, seenRequest{Method: r.Method, Path: r.URL.Path, RequestURI: r.RequestURI,
			Header: r.Header.Clone()})
		l.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (l *requestLog) all() []seenRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]seenRequest(nil), l.reqs...)
}

// harness is one emulator behind a contract check, reached over real HTTP on 127.0.0.1.
type harness struct {
	fake *fakegithub.Server
	srv  *httptest.Server
	log  *requestLog
	// server checks what the emulator receives and answers; client checks what the client sends and gets. Both
	// see the same exchanges from either end, so a bug in one wrapper cannot hide a violation.
	server, client *ghcontract.Validator
}

type harnessConfig struct {
	fixture *fakegithub.Fixture // default testFixture
	tls     bool
}

func newHarness(t *testing.T) *harness { return newHarnessWith(t, harnessConfig{}) }

func newHarnessWith(t *testing.T, cfg harnessConfig) *harness {
	t.Helper()
	fixture := cfg.fixture
	if fixture == nil {
		f := testFixture(t)
		fixture = &f
	}
	fake, err := fakegithub.New(*fixture)
	if err != nil {
		t.Fatalf("fakegithub.New: %v", err)
	}
	h := &harness{fake: fake, log: &requestLog{}}
	if h.server, err = ghcontract.NewValidator(ghcontract.EditionDotcom); err != nil {
		t.Fatal(err)
	}
	if h.client, err = ghcontract.NewValidator(ghcontract.EditionDotcom); err != nil {
		t.Fatal(err)
	}
	handler := h.log.wrap(h.server.Middleware(fake))
	h.srv = httptest.NewUnstartedServer(handler)
	if cfg.tls {
		// Tests that refuse the certificate make the server log handshake errors; they are expected.
		h.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		h.srv.StartTLS()
	} else {
		h.srv.Start()
	}
	// Cleanups run last-in first-out: the server closes first, which waits for its handlers, so that the
	// server-side check has recorded the last exchange before the contract is checked.
	t.Cleanup(func() { h.checkContract(t) })
	t.Cleanup(h.srv.Close)
	return h
}

// checkContract fails the test when either end saw traffic outside GitHub's description, or saw nothing at all
// (a contract check that checked nothing proves nothing).
func (h *harness) checkContract(t *testing.T) {
	t.Helper()
	for name, v := range map[string]*ghcontract.Validator{"server": h.server, "client": h.client} {
		for _, violation := range v.Violations() {
			t.Errorf("contract violation seen by the %s side: %s", name, violation)
		}
		if req, resp := v.Checked(); req == 0 || resp == 0 {
			t.Errorf("the %s-side contract check validated %d requests and %d responses: want some of each",
				name, req, resp)
		}
	}
}

// newClient builds a client for the emulator: App 1001 by ID, the shared key, every exchange contract-checked.
// mutate adjusts the options before the client is built.
func (h *harness) newClient(t *testing.T, mutate ...func(*github.Options)) *github.Client {
	t.Helper()
	o := github.Options{
		BaseURL:       h.srv.URL,
		AppID:         testAppID,
		PrivateKey:    github.SharedKey(t),
		UserAgent:     testUserAgent,
		WrapTransport: h.client.RoundTripper,
	}
	if h.srv.TLS != nil {
		o.CACertificate = h.caPEM()
	}
	for _, m := range mutate {
		m(&o)
	}
	c, err := github.NewClient(o)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// caPEM is the TLS emulator's certificate, the CA bundle a GHES user would configure.
func (h *harness) caPEM() string { return string(pemCert(h.srv.Certificate().Raw)) }

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// calls returns how often the emulator served a route since the last reset.
func (h *harness) calls(route string) int { return h.fake.Stats().Calls[route] }

// fakeClock is the client's clock in tests that move time. It stays in step with the emulator's clock through
// Faults.ClockOffset, so that the client and "GitHub" agree on the time as real ones would.
type fakeClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// advance moves the client's clock and the emulator's together.
func (c *fakeClock) advance(h *harness, d time.Duration) {
	c.mu.Lock()
	c.offset += d
	off := c.offset
	c.mu.Unlock()
	f := h.fake.Faults()
	f.ClockOffset = off
	h.fake.SetFaults(f)
}

// assertKind fails unless err is a *Error of the wanted kind.
func assertKind(t *testing.T, err error, want github.Kind) *github.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", want)
	}
	var gerr *github.Error
	if !errors.As(err, &gerr) {
		t.Fatalf("error %q (%T) is not a *github.Error", err, err)
	}
	if gerr.Kind != want {
		t.Fatalf("error %q has kind %s, want %s", err, gerr.Kind, want)
	}
	return gerr
}

// assertNoSecret fails if an error's text holds any of the secrets (a token, a JWT).
func assertNoSecret(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		for _, text := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
			if strings.Contains(text, s) {
				t.Fatalf("error text holds a secret: %s", text)
			}
		}
	}
}
