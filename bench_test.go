// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

// The benchmarks drive the backend in process, the way Vault's router would, against the in-process emulator:
// the plugin's own cost per mint and per revocation, without Vault's lease bookkeeping or the gRPC hop (make bench
// measures those against a real Vault). Their role matches the one make bench uses.
//
//	go test -run '^$' -bench . -benchmem .
//	go test -run '^$' -bench Mint -cpuprofile cpu.out . && go tool pprof -top cpu.out

const benchRole = "bench"

// benchHarness is a test env whose backend counts its calls back into Vault: system view and storage calls, each of
// which is a gRPC round trip to Vault when the plugin runs as a plugin.
type benchHarness struct {
	*testEnv
	sys *countingSystemView
	st  *countingStorage
}

type countingSystemView struct {
	*logical.StaticSystemView
	calls atomic.Int64
}

func (c *countingSystemView) DefaultLeaseTTL() time.Duration {
	c.calls.Add(1)
	return c.StaticSystemView.DefaultLeaseTTL()
}

func (c *countingSystemView) MaxLeaseTTL() time.Duration {
	c.calls.Add(1)
	return c.StaticSystemView.MaxLeaseTTL()
}

func (c *countingSystemView) LocalMount() bool {
	c.calls.Add(1)
	return c.StaticSystemView.LocalMount()
}

func (c *countingSystemView) ReplicationState() consts.ReplicationState {
	c.calls.Add(1)
	return c.StaticSystemView.ReplicationState()
}

func (h *benchHarness) vaultCalls() int64 { return h.sys.calls.Load() + h.st.calls.Load() }

// benchEnv is a configured backend with the bench role. wrap, when set, wraps the plugin's HTTP transport.
func benchEnv(b *testing.B, wrap func(http.RoundTripper) http.RoundTripper) *benchHarness {
	b.Helper()
	e := newTestEnv(b)
	h := &benchHarness{
		testEnv: e,
		sys:     &countingSystemView{StaticSystemView: e.sys},
		st:      &countingStorage{Storage: e.storage},
	}
	// The env's backend is replaced by one on the counting system view and storage, with a silent logger (a
	// plugin logs at Vault's level, info by default, not at the tests' trace level). newTestEnv's cleanup cleans
	// whichever backend e.b holds at the end.
	e.b.Cleanup(context.Background())
	e.storage = h.st
	be, err := Factory(context.Background(), &logical.BackendConfig{
		Logger: hclog.NewNullLogger(), System: h.sys, StorageView: h.st,
	})
	if err != nil {
		b.Fatal(err)
	}
	e.b = be.(*backend)
	if wrap != nil {
		e.b.clientOptions = func(o *github.Options) { o.WrapTransport = wrap }
	}
	benchDo(b, h, logical.UpdateOperation, "config", map[string]any{
		"app_id": testAppID, "private_key": testKeyPEM, "base_url": e.srv.URL,
	})
	benchDo(b, h, logical.UpdateOperation, "roles/"+benchRole, map[string]any{
		"owner": "acme", "repositories": "api,web", "permissions": "contents=read,pull_requests=write", "ttl": "30m",
	})
	// One mint outside the timer builds the client, signs the JWT, caches the installation and the role, as the
	// first read after a mount does; the benchmarks measure the steady state after it.
	benchMint(b, h)
	return h
}

func benchDo(b *testing.B, h *benchHarness, op logical.Operation, path string, data map[string]any) *logical.Response {
	resp, err := tryDo(h, op, path, data)
	if err != nil {
		b.Fatal(err)
	}
	return resp
}

// tryDo runs a request and returns its failure as an error. Benchmark code that runs in RunParallel's goroutines
// reports with b.Error, since b.Fatal may only be called from the benchmark's own goroutine.
func tryDo(h *benchHarness, op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	req := &logical.Request{Operation: op, Path: path, Data: data, Storage: h.storage}
	resp, err := h.b.HandleRequest(context.Background(), req)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s %s: %w", op, path, err)
	case resp != nil && resp.IsError():
		return nil, fmt.Errorf("%s %s: %w", op, path, resp.Error())
	}
	return resp, nil
}

// tryMint mints a token of the benchmark role and checks that one came back.
func tryMint(h *benchHarness) (*logical.Response, error) {
	resp, err := tryDo(h, logical.ReadOperation, "token/"+benchRole, nil)
	if err != nil {
		return nil, err
	}
	if tok, _ := resp.Data["token"].(string); resp.Secret == nil || tok == "" {
		return nil, fmt.Errorf("token/%s: no token in the answer", benchRole)
	}
	return resp, nil
}

func benchMint(b *testing.B, h *benchHarness) *logical.Response {
	resp, err := tryMint(h)
	if err != nil {
		b.Fatal(err)
	}
	return resp
}

// counters is where a benchmark's GitHub and Vault figures start.
type counters struct {
	ghCalls    int
	sigs       int64
	vaultCalls int64
}

func (h *benchHarness) counters() counters {
	return counters{h.gh.Stats().TotalCalls, h.b.cachedDefault().JWTSignatures(), h.vaultCalls()}
}

// report adds per-operation figures: calls to GitHub, JWT signatures, and calls back into Vault (system view and
// storage; from a real plugin each is a gRPC round trip, and Vault's framework itself makes two per request on
// paths that forward to the active node).
func (h *benchHarness) report(b *testing.B, from counters) {
	n := float64(b.N)
	b.ReportMetric(float64(h.gh.Stats().TotalCalls-from.ghCalls)/n, "gh-calls/op")
	b.ReportMetric(float64(h.b.cachedDefault().JWTSignatures()-from.sigs)/n, "jwt-signs/op")
	b.ReportMetric(float64(h.vaultCalls()-from.vaultCalls)/n, "vault-calls/op")
}

// BenchmarkMint is one read of token/<role>: role from storage, installation from the cache, the JWT from the
// cache, one POST to the emulator, the grant check and the response. The emulator's own work is in the figures.
func BenchmarkMint(b *testing.B) {
	h := benchEnv(b, nil)
	from := h.counters()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		benchMint(b, h)
	}
	b.StopTimer()
	h.report(b, from)
}

// BenchmarkMintParallel is BenchmarkMint from 8 goroutines per core (16 on two cores, as make bench's top
// concurrency): contention on the plugin's locks and its connection pool shows here.
func BenchmarkMintParallel(b *testing.B) {
	h := benchEnv(b, nil)
	from := h.counters()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := tryMint(h); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	h.report(b, from)
}

// replayGitHub lets the first token creation through to the emulator, keeps its answer (GitHub's full shape: for
// a token limited to two repositories about 9 KB, mostly the repository objects) and replays it for every later
// one, so that BenchmarkMintPluginOnly counts the plugin's work alone: the emulator's CPU and allocations are not
// the plugin's, and the loopback round trip is not either. Everything else goes to the emulator.
type replayGitHub struct {
	next http.RoundTripper
	mu   sync.Mutex
	body []byte
}

func (rg *replayGitHub) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/access_tokens") {
		return rg.next.RoundTrip(r)
	}
	rg.mu.Lock()
	body := rg.body
	rg.mu.Unlock()
	if body == nil {
		resp, err := rg.next.RoundTrip(r)
		if err != nil || resp.StatusCode != http.StatusCreated {
			return resp, err
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		rg.mu.Lock()
		rg.body = body
		rg.mu.Unlock()
	} else if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{
		StatusCode:    http.StatusCreated,
		Status:        "201 Created",
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json; charset=utf-8"}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       r,
	}, nil
}

// BenchmarkMintPluginOnly is BenchmarkMint with GitHub's answer replayed in the transport: the plugin's own CPU
// and allocations per mint, Vault's framework included, the emulator and the loopback HTTP round trip not.
func BenchmarkMintPluginOnly(b *testing.B) {
	rg := &replayGitHub{}
	h := benchEnv(b, func(next http.RoundTripper) http.RoundTripper { rg.next = next; return rg })
	from := h.counters()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		benchMint(b, h)
	}
	b.StopTimer()
	h.report(b, from)
	b.ReportMetric(float64(len(rg.body)), "answer-bytes")
}

// BenchmarkRevoke is the lease's end: Vault hands the plugin the lease's internal data (stored as JSON) and the
// plugin sends DELETE /installation/token to the emulator. The tokens are minted before the timer starts.
func BenchmarkRevoke(b *testing.B) {
	h := benchEnv(b, nil)
	reqs := make([]*logical.Request, b.N)
	for i := range reqs {
		resp := benchMint(b, h)
		raw, err := json.Marshal(resp.Secret.InternalData)
		if err != nil {
			b.Fatal(err)
		}
		secret := *resp.Secret
		secret.InternalData = nil
		if err := json.Unmarshal(raw, &secret.InternalData); err != nil {
			b.Fatal(err)
		}
		reqs[i] = logical.RevokeRequest("token/"+benchRole, &secret, nil)
		reqs[i].Storage = h.storage
	}
	before, vaultBefore := h.gh.Stats(), h.vaultCalls()
	b.ReportAllocs()
	b.ResetTimer()
	for _, req := range reqs {
		if _, err := h.b.HandleRequest(context.Background(), req); err != nil {
			b.Fatalf("revoke: %v", err)
		}
	}
	b.StopTimer()
	after := h.gh.Stats()
	b.ReportMetric(float64(after.TotalCalls-before.TotalCalls)/float64(b.N), "gh-calls/op")
	b.ReportMetric(float64(h.vaultCalls()-vaultBefore)/float64(b.N), "vault-calls/op")
	if n := after.TokensRevoked - before.TokensRevoked; n != b.N {
		b.Fatalf("the emulator saw %d revocations, want %d", n, b.N)
	}
}

// BenchmarkTokenAnswerDecode is the single largest piece of the plugin's own work per mint: decoding GitHub's
// answer to POST .../access_tokens (captured from the emulator; GitHub's shape, with full repository objects) into
// github.Token with encoding/json, as the client does.
func BenchmarkTokenAnswerDecode(b *testing.B) {
	body := capturedTokenAnswer(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		var tok github.Token
		if err := json.Unmarshal(body, &tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTokenAnswerValid is the validity scan that json.Unmarshal runs over the whole answer before decoding
// it: the part of BenchmarkTokenAnswerDecode that a decoder without a separate pre-scan would save.
func BenchmarkTokenAnswerValid(b *testing.B) {
	body := capturedTokenAnswer(b)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for range b.N {
		if !json.Valid(body) {
			b.Fatal("invalid JSON")
		}
	}
}

// capturedTokenAnswer mints one token through the plugin and returns the emulator's answer body.
func capturedTokenAnswer(b *testing.B) []byte {
	b.Helper()
	rg := &replayGitHub{}
	benchEnv(b, func(next http.RoundTripper) http.RoundTripper { rg.next = next; return rg })
	rg.mu.Lock()
	defer rg.mu.Unlock()
	if len(rg.body) == 0 {
		b.Fatal("no token answer captured")
	}
	return rg.body
}

// patternBenchRepositories is how many repositories the pattern benchmarks' installation reaches; their role's
// pattern matches a tenth of them.
const patternBenchRepositories = 1000

// patternBenchEnv is benchEnv whose installation reaches 1,000 more repositories, with a role whose pattern
// matches 100 of them.
func patternBenchEnv(b *testing.B) *benchHarness {
	b.Helper()
	h := benchEnv(b, nil)
	for i := range patternBenchRepositories {
		name := fmt.Sprintf("svc-%04d", i)
		if i%10 == 0 {
			name = fmt.Sprintf("team-a-%04d", i)
		}
		if _, err := h.gh.AddRepository(testOrgInstall, fakegithub.Repository{Name: name}); err != nil {
			b.Fatal(err)
		}
	}
	benchDo(b, h, logical.UpdateOperation, "roles/"+benchRole, map[string]any{
		"owner": "acme", "repository_patterns": "team-a-*", "permissions": "contents=read",
	})
	return h
}

// BenchmarkMintPatternColdList is a mint of a role with repository_patterns whose installation's list is not
// cached: a metadata=read token minted, 1,000 repositories read in pages of 100, that token revoked, the pattern
// matched, and the mint. The list is dropped before each mint.
func BenchmarkMintPatternColdList(b *testing.B) {
	h := patternBenchEnv(b)
	benchMint(b, h)
	from := h.counters()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		h.b.cachedDefault().repositories = newRepositoryCache(defaultRepositoryListTTL)
		b.StartTimer()
		benchMint(b, h)
	}
	b.StopTimer()
	h.report(b, from)
}

// BenchmarkMintPatternWarm is the same mint with the list cached: the pattern matched against 1,000 cached names,
// and one call to GitHub.
func BenchmarkMintPatternWarm(b *testing.B) {
	h := patternBenchEnv(b)
	benchMint(b, h)
	from := h.counters()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		benchMint(b, h)
	}
	b.StopTimer()
	h.report(b, from)
}
