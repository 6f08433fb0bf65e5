// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

// Fixture IDs shared by the tests.
const (
	testAppID       = 1001
	testClientID    = "Iv23liTESTAPP00001"
	otherAppID      = 1002 // a second App, whose key is otherKey
	otherClientID   = "Iv23liOTHERAPP0002"
	testOrgInstall  = 2001
	testUserInstall = 2002
	testSuspended   = 2003
)

var (
	keysOnce             sync.Once
	testKey, otherKey    *rsa.PrivateKey
	testKeyPEM, otherPEM string
)

// testKeys generates two 2048-bit keys once for the package: the App's and a stranger's.
func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if testKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if otherKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		testKeyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(testKey)}))
		otherPEM = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(otherKey)}))
	})
}

func testFixture() fakegithub.Fixture {
	return fakegithub.Fixture{
		Apps: []fakegithub.App{
			{ID: testAppID, ClientID: testClientID, Slug: "vault-test", Name: "Vault Test", Owner: "acme"},
			{ID: otherAppID, ClientID: otherClientID, Slug: "other-app", Name: "Other App", Owner: "globex"},
		},
		Installations: []fakegithub.Installation{
			{
				ID: testOrgInstall, AppID: testAppID, Account: "acme", AccountType: "Organization",
				RepositorySelection: "selected",
				Repositories: []fakegithub.Repository{
					{ID: 3001, Name: "api"}, {ID: 3002, Name: "web"}, {ID: 3003, Name: "infra", Private: true},
				},
				Permissions: map[string]string{"contents": "write", "metadata": "read", "pull_requests": "write", "issues": "write"},
			},
			{
				ID: testUserInstall, AppID: testAppID, Account: "octocat", AccountType: "User",
				RepositorySelection: "all",
				Repositories:        []fakegithub.Repository{{ID: 4001, Name: "dotfiles"}},
				Permissions:         map[string]string{"contents": "read", "metadata": "read"},
			},
			{
				ID: testSuspended, AppID: testAppID, Account: "frozen", AccountType: "Organization",
				RepositorySelection: "all",
				Repositories:        []fakegithub.Repository{{ID: 5001, Name: "ice"}},
				Permissions:         map[string]string{"contents": "read"}, Suspended: true,
			},
		},
	}
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// testEnv is a backend on in-memory storage in front of an in-process GitHub emulator. Every response and error
// the backend gives is recorded, and its log goes to a buffer at trace level, so that tests can look for leaks.
type testEnv struct {
	t       *testing.T
	b       *backend
	storage logical.Storage
	gh      *fakegithub.Server
	srv     *httptest.Server
	logs    *syncBuffer
	sys     *logical.StaticSystemView

	mu      sync.Mutex
	outputs []string // every response and error, JSON-encoded
	minted  []string // every token returned
}

// newTestEnv takes testing.TB so that the benchmarks (bench_test.go) share this setup. Under a benchmark e.t is
// nil: the helpers that report through it (configure, do, mint, revoke, reach) are for tests, and benchmarks call
// e.b directly.
func newTestEnv(tb testing.TB) *testEnv {
	tb.Helper()
	gh, srv := newEmulator(tb, testFixture())
	logs := &syncBuffer{}
	sys := &logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour}
	t, _ := tb.(*testing.T)
	e := &testEnv{t: t, gh: gh, srv: srv, logs: logs, sys: sys, storage: &logical.InmemStorage{}}
	e.b = e.newBackend(tb)
	return e
}

// newEmulator starts an emulator serving fixture, with testKey registered for the App testAppID and otherKey for
// otherAppID when the fixture has them.
func newEmulator(tb testing.TB, fixture fakegithub.Fixture) (*fakegithub.Server, *httptest.Server) {
	tb.Helper()
	testKeys(tb)
	gh, err := fakegithub.New(fixture)
	if err != nil {
		tb.Fatal(err)
	}
	for _, a := range fixture.Apps {
		key := &testKey.PublicKey
		if a.ID == otherAppID {
			key = &otherKey.PublicKey
		}
		if err := gh.AddPublicKey(a.ID, key); err != nil {
			tb.Fatal(err)
		}
	}
	srv := httptest.NewServer(gh)
	tb.Cleanup(srv.Close)
	return gh, srv
}

// newBackend builds a backend on the environment's storage, log and system view, as Vault does when it loads the
// plugin.
func (e *testEnv) newBackend(tb testing.TB) *backend {
	tb.Helper()
	conf := &logical.BackendConfig{
		Logger:      hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: e.logs}),
		System:      e.sys,
		StorageView: e.storage,
	}
	b, err := Factory(context.Background(), conf)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Cleanup(context.Background()) })
	return b.(*backend)
}

// tune changes the mount's TTLs, as vault secrets tune does, and lets the backend see it at once rather than after
// its cache of them expires.
func (e *testEnv) tune(defaultTTL, maxTTL time.Duration) {
	e.sys.DefaultLeaseTTLVal, e.sys.MaxLeaseTTLVal = defaultTTL, maxTTL
	e.b.System().(*cachedSystemView).forget()
}

// restart replaces the backend by a new one on the same storage: what a plugin restart does. Nothing kept in memory
// survives it.
func (e *testEnv) restart() {
	e.t.Helper()
	e.b.Cleanup(context.Background())
	e.b = e.newBackend(e.t)
}

// configure writes a verified config for the fixture App.
func (e *testEnv) configure(extra map[string]any) {
	e.t.Helper()
	data := map[string]any{"app_id": testAppID, "private_key": testKeyPEM, "base_url": e.srv.URL}
	for k, v := range extra {
		data[k] = v
	}
	resp, err := e.do(logical.UpdateOperation, "config", data)
	mustOK(e.t, resp, err)
}

func (e *testEnv) do(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	e.t.Helper()
	req := &logical.Request{Operation: op, Path: path, Data: data, Storage: e.storage}
	resp, err := e.b.HandleRequest(context.Background(), req)
	e.record(resp, err)
	return resp, err
}

func (e *testEnv) record(resp *logical.Response, err error) {
	var parts []string
	if resp != nil {
		if tok, ok := resp.Data["token"].(string); ok {
			e.mu.Lock()
			e.minted = append(e.minted, tok)
			e.mu.Unlock()
		}
		// Everything but the token field itself.
		data := map[string]any{}
		for k, v := range resp.Data {
			if k != "token" {
				data[k] = v
			}
		}
		j, _ := json.Marshal(struct {
			Data     map[string]any
			Warnings []string
		}{data, resp.Warnings})
		parts = append(parts, string(j))
	}
	if err != nil {
		parts = append(parts, err.Error())
	}
	e.mu.Lock()
	e.outputs = append(e.outputs, parts...)
	e.mu.Unlock()
}

// mint reads token/<role> and fails the test unless a token came back.
func (e *testEnv) mint(role string) *logical.Response {
	e.t.Helper()
	resp, err := e.do(logical.ReadOperation, "token/"+role, nil)
	mustOK(e.t, resp, err)
	if resp == nil || resp.Secret == nil {
		e.t.Fatalf("token/%s: no lease in %#v", role, resp)
	}
	if tok, _ := resp.Data["token"].(string); tok == "" {
		e.t.Fatalf("token/%s: no token in the answer (keys %v)", role, sortedKeys(resp.Data))
	}
	return resp
}

// revoke runs the lease's revocation as Vault would when it ends.
func (e *testEnv) revoke(resp *logical.Response) error {
	// Vault keeps the lease's internal data as JSON; go through the same round trip.
	raw, err := json.Marshal(resp.Secret.InternalData)
	if err != nil {
		e.t.Fatal(err)
	}
	secret := *resp.Secret
	secret.InternalData = nil
	if err := json.Unmarshal(raw, &secret.InternalData); err != nil {
		e.t.Fatal(err)
	}
	req := logical.RevokeRequest("token/"+fmt.Sprint(secret.InternalData["role"]), &secret, nil)
	req.Storage = e.storage
	out, err := e.b.HandleRequest(context.Background(), req)
	e.record(out, err)
	return err
}

func (e *testEnv) reach(token string) []string {
	e.t.Helper()
	c, err := github.NewClient(github.Options{BaseURL: e.srv.URL})
	if err != nil {
		e.t.Fatal(err)
	}
	repos, err := c.TokenRepositories(context.Background(), token)
	if err != nil {
		e.t.Fatalf("listing the token's repositories: %v", err)
	}
	names := make([]string, len(repos))
	for i, r := range repos {
		names[i] = r.Name
	}
	return names
}

func mustOK(t *testing.T, resp *logical.Response, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if resp != nil && resp.IsError() {
		t.Fatalf("unexpected error response: %v", resp.Error())
	}
}

// mustFail asserts a user error (error response) or a coded error, returns its status and message.
func mustFail(t *testing.T, resp *logical.Response, err error) (int, string) {
	t.Helper()
	if err != nil {
		if coded, ok := err.(logical.HTTPCodedError); ok {
			return coded.Code(), coded.Error()
		}
		return 500, err.Error()
	}
	if resp == nil || !resp.IsError() {
		t.Fatalf("expected an error, got %#v", resp)
	}
	return 400, resp.Error().Error()
}

func wantContains(t *testing.T, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%q does not contain %q", got, w)
		}
	}
}

func TestBackendVersionAndPaths(t *testing.T) {
	// The version the build stamps into Version (-ldflags -X) is what the backend reports to Vault.
	defer func(v string) { Version = v }(Version)
	Version = "v9.8.7-test"
	e := newTestEnv(t)
	if got := e.b.PluginVersion().Version; got != "v9.8.7-test" {
		t.Fatalf("PluginVersion = %q, want the stamped v9.8.7-test", got)
	}
	if ua := userAgent(); ua != "vault-plugin-secrets-github-app/v9.8.7-test" {
		t.Fatalf("User-Agent %q does not carry the version", ua)
	}
	if e.b.Type() != logical.TypeLogical {
		t.Fatalf("backend type %v", e.b.Type())
	}
	if got := e.b.SpecialPaths().SealWrapStorage; !slices.Equal(got, []string{"config", "revocation/"}) {
		t.Fatalf("SealWrapStorage = %v, want [config revocation/]", got)
	}
	for _, p := range e.b.Paths {
		if p.HelpSynopsis == "" || p.HelpDescription == "" {
			t.Errorf("path %q lacks help", p.Pattern)
		}
		for name, f := range p.Fields {
			if !strings.HasSuffix(strings.TrimSpace(f.Description), ".") {
				t.Errorf("path %q field %q: description is not a full sentence: %q", p.Pattern, name, f.Description)
			}
		}
		if len(p.Operations) == 0 || p.Callbacks != nil {
			t.Errorf("path %q must use Operations, not Callbacks", p.Pattern)
		}
		if p.DisplayAttrs == nil || p.DisplayAttrs.OperationPrefix != operationPrefix {
			t.Errorf("path %q lacks the operation prefix", p.Pattern)
		}
	}
}

// TestInvalidateConfigDropsClient: when another node rewrites the config, Vault invalidates the key here and the
// next mint builds a client from the new config.
func TestInvalidateConfigDropsClient(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme"})
	e.mint("ci")
	if e.b.client == nil {
		t.Fatal("no cached client after a mint")
	}

	cfg, err := getConfig(t.Context(), e.storage)
	if err != nil {
		t.Fatal(err)
	}
	cfg.BaseURL = e.srv.URL + "/api/v3"
	entry, err := logical.StorageEntryJSON(configStoragePath, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.storage.Put(t.Context(), entry); err != nil {
		t.Fatal(err)
	}
	e.b.InvalidateKey(t.Context(), configStoragePath)
	if e.b.client != nil {
		t.Fatal("Invalidate kept the client")
	}
	resp := e.mint("ci")
	if got := resp.Secret.InternalData["base_url"]; got != cfg.BaseURL {
		t.Fatalf("mint used base URL %v, want the new %v", got, cfg.BaseURL)
	}
}

// TestInstallationCacheTiedToClient (issue 8, finding 9): an owner lookup made through the client of a replaced
// config must not be remembered for the new one, where the same installation ID may name another account.
func TestInstallationCacheTiedToClient(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme"})
	r, err := getRole(t.Context(), e.storage, "ci")
	if err != nil {
		t.Fatal(err)
	}
	old, err := e.b.getClient(t.Context(), e.storage)
	if err != nil {
		t.Fatal(err)
	}

	// Another GitHub with the same App, where installation 2001 belongs to globex and acme's is 7001.
	const acmeThere = 7001
	_, srv2 := newEmulator(t, fakegithub.Fixture{
		Apps: []fakegithub.App{{ID: testAppID, ClientID: testClientID, Slug: "vault-test", Name: "Vault Test", Owner: "acme"}},
		Installations: []fakegithub.Installation{
			{ID: testOrgInstall, AppID: testAppID, Account: "globex", AccountType: "Organization", RepositorySelection: "all",
				Repositories: []fakegithub.Repository{{ID: 8001, Name: "secret-plans"}}, Permissions: map[string]string{"contents": "write"}},
			{ID: acmeThere, AppID: testAppID, Account: "acme", AccountType: "Organization", RepositorySelection: "all",
				Repositories: []fakegithub.Repository{{ID: 8002, Name: "api"}}, Permissions: map[string]string{"contents": "write"}},
		},
	})
	resp, err := e.do(logical.UpdateOperation, "config", map[string]any{"base_url": srv2.URL, "private_key": testKeyPEM})
	mustOK(t, resp, err)

	// A mint that started before the config change finishes its lookup with the old client.
	m := &mint{b: e.b, s: e.storage, c: old, roleName: "ci", role: r}
	if _, err := m.installation(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	if got := e.mint("ci").Data["installation_id"]; got != int64(acmeThere) {
		t.Fatalf("a token of owner acme came from installation %v, want %d", got, acmeThere)
	}
}
