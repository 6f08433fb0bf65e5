// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

// The root package's test harness: a backend on in-memory storage in front of the in-process GitHub emulator
// (testEnv), the App's keys, request helpers and assertions, and the fakes that several test files share.

// ------------------------------------------------------------------------------------------ fixture and keys

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

// ------------------------------------------------------------------------------------------------ environment

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
// revokeAtGitHub ends the leases of resps and fails unless GitHub then holds each token revoked.
func (e *testEnv) revokeAtGitHub(resps ...*logical.Response) {
	e.t.Helper()
	for _, r := range resps {
		if err := e.revoke(r); err != nil {
			e.t.Fatalf("revoke: %v", err)
		}
		if info, _ := e.gh.Token(r.Data["token"].(string)); !info.Revoked {
			e.t.Fatal("a token is not revoked at GitHub")
		}
	}
}

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

func (e *testEnv) role(name string, data map[string]any) {
	e.t.Helper()
	resp, err := e.do(logical.UpdateOperation, "roles/"+name, data)
	mustOK(e.t, resp, err)
}

// ------------------------------------------------------------------------------------------------- assertions

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

// sorted is a sorted copy of s.
func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// ------------------------------------------------------------------------------ GitHub's answers, routes, time

// mintRoute is the token request's route, as the emulator counts calls; userRoute the bot user's lookup.
const (
	mintRouteTemplate = "/app/installations/{installation_id}/access_tokens"
	mintRoute         = "POST " + mintRouteTemplate
	userRoute         = "GET /users/{username}"
)

// testClock is the backend's clock in tests that move time.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// tamperMint rewrites GitHub's answer to token requests before the engine reads it, to play a GitHub that grants
// more than asked in ways the emulator does not.
type tamperMint struct {
	next   http.RoundTripper
	mu     sync.Mutex
	change func(answer map[string]any)
	header http.Header // set on the answers of token requests
	// lose, while positive, drops the answer of that many token requests after GitHub handled them, as a broken
	// connection would.
	lose int
}

func (tm *tamperMint) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := tm.next.RoundTrip(r)
	if err != nil || r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/access_tokens") {
		return resp, err
	}
	tm.mu.Lock()
	change, lose := tm.change, tm.lose > 0
	if lose {
		tm.lose--
	}
	for k, v := range tm.header {
		resp.Header[k] = v
	}
	tm.mu.Unlock()
	if lose {
		resp.Body.Close()
		return nil, io.ErrUnexpectedEOF
	}
	if change == nil || resp.StatusCode != http.StatusCreated {
		return resp, nil
	}
	var answer map[string]any
	err = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	change(answer)
	body, _ := json.Marshal(answer)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return resp, nil
}

// withTamper makes every client the backend builds from now on go through a tamperMint.
func (e *testEnv) withTamper() *tamperMint {
	tm := &tamperMint{}
	e.b.clientOptions = func(o *github.Options) {
		o.WrapTransport = func(next http.RoundTripper) http.RoundTripper { tm.next = next; return tm }
	}
	return tm
}

func (tm *tamperMint) setHeader(key, value string) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if tm.header == nil {
		tm.header = http.Header{}
	}
	tm.header.Set(key, value)
}

func (tm *tamperMint) set(change func(map[string]any)) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	tm.change = change
}

// ---------------------------------------------------------------------------------------------------- metrics

// metricsText scrapes the mount's metrics in Prometheus' text format.
func metricsText(t *testing.T, e *testEnv) string {
	t.Helper()
	resp, err := e.do(logical.ReadOperation, "metrics", map[string]any{"format": "prometheus"})
	mustOK(t, resp, err)
	if ct := resp.Data[logical.HTTPContentType]; !strings.HasPrefix(ct.(string), "text/plain; version=0.0.4") {
		t.Fatalf("content type %v", ct)
	}
	return string(resp.Data[logical.HTTPRawBody].([]byte))
}

// parseMetrics parses a scrape with Prometheus' own parser.
func parseMetrics(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return families
}

// sample returns the value of the sample of family whose labels include want; -1 when there is none.
func sample(families map[string]*dto.MetricFamily, family string, want map[string]string) float64 {
	f, ok := families[family]
	if !ok {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// ---------------------------------------------------------------------------------------------------- storage

// countingStorage counts the calls that reach Vault's storage.
type countingStorage struct {
	logical.Storage
	calls atomic.Int64
}

func (c *countingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	c.calls.Add(1)
	return c.Storage.Get(ctx, key)
}

func (c *countingStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	c.calls.Add(1)
	return c.Storage.Put(ctx, e)
}

func (c *countingStorage) List(ctx context.Context, prefix string) ([]string, error) {
	c.calls.Add(1)
	return c.Storage.List(ctx, prefix)
}

func (c *countingStorage) Delete(ctx context.Context, key string) error {
	c.calls.Add(1)
	return c.Storage.Delete(ctx, key)
}

// ------------------------------------------------------------------------------------ a config writer's proxy

// recordingProxy is the proxy of someone who may write config but holds no App key: it answers GET /app as the App
// would, so that a config naming it verifies, answers every other request 204 (what GitHub answers a revocation),
// and records every request. It serves plain-http requests in absolute form and, for https, CONNECT tunnels whose
// TLS it terminates with its own certificate: ca is that certificate, the ca_certificate its owner configures.
type recordingProxy struct {
	srv  *httptest.Server
	ca   string
	cert tls.Certificate

	mu   sync.Mutex
	seen []string // "METHOD path" of every request
}

func newRecordingProxy(t *testing.T) *recordingProxy {
	t.Helper()
	p := &recordingProxy{}
	p.ca, p.cert = selfSignedCertificate(t)
	p.srv = httptest.NewServer(p)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *recordingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		p.tunnel(w)
		return
	}
	p.answer(w, r)
}

func (p *recordingProxy) answer(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.seen = append(p.seen, r.Method+" "+r.URL.Path)
	p.mu.Unlock()
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/app") {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%d,"slug":"vault-test","name":"Vault Test"}`, testAppID)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// tunnel accepts a CONNECT and serves the requests inside it with its own certificate.
func (p *recordingProxy) tunnel(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	tc := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{p.cert}, MinVersion: tls.VersionTLS12})
	rd := bufio.NewReader(tc)
	for {
		req, err := http.ReadRequest(rd)
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		p.answer(rec, req)
		_, _ = io.Copy(io.Discard, req.Body)
		resp := rec.Result()
		resp.ContentLength = int64(rec.Body.Len())
		if err := resp.Write(tc); err != nil {
			return
		}
	}
}

// requests returns what the proxy has seen and forgets it.
func (p *recordingProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := p.seen
	p.seen = nil
	return seen
}

// takeOver writes config as its owner would: the same base_url, their proxy, their CA and their own key (the key
// makes the write acceptable; the proxy makes it verify). It returns what the proxy saw of the write.
func (p *recordingProxy) takeOver(e *testEnv, baseURL string) []string {
	e.t.Helper()
	resp, err := e.do(logical.UpdateOperation, "config", map[string]any{
		"base_url": baseURL, "proxy_url": p.srv.URL, "ca_certificate": p.ca, "private_key": otherPEM,
	})
	mustOK(e.t, resp, err)
	seen := p.requests()
	if len(seen) == 0 {
		e.t.Fatal("the config write was not verified through the new proxy: the test does not take over as intended")
	}
	return seen
}

// selfSignedCertificate is a certificate of its own, for 127.0.0.1, and its PEM.
func selfSignedCertificate(t *testing.T) (string, tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "a config writer's proxy"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// loseConfig deletes the config and restarts the backend, as asked.
func loseConfig(t *testing.T, e *testEnv, del, restart bool) {
	t.Helper()
	if del {
		if r, err := e.do(logical.DeleteOperation, "config", nil); err != nil || r != nil {
			t.Fatal(r, err)
		}
	}
	if restart {
		e.restart()
	}
}

// parseProxyAuth reads a Basic Proxy-Authorization header.
func parseProxyAuth(header string) (user, pass string, ok bool) {
	r := &http.Request{Header: http.Header{"Authorization": {header}}}
	return r.BasicAuth()
}

// cachedDefault is the default App's client as built so far; nil when none is.
func (b *backend) cachedDefault() *appClient {
	b.lock.RLock()
	defer b.lock.RUnlock()
	return b.apps[defaultAppName]
}

// defaultClient is the client of the App named default, built when it is not yet.
func (b *backend) defaultClient(ctx context.Context, s logical.Storage) (*appClient, error) {
	return b.appClientFor(ctx, s, defaultAppName)
}
