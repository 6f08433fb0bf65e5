// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The scenarios of GitHub at its limits run short in make test. With LIMITS_SCENARIO=full (make bench)
// they run at full size and print a FIGURES line each, which scripts/bench.sh collects into BENCHMARKS.md.
type scenarioSize struct {
	stormConc  int
	storm      time.Duration // how long the emulator answers with a secondary limit
	primaryFor time.Duration // how long reads go on under a primary limit
	outageConc int
	outage     time.Duration
	burst      int
	settle     time.Duration // normal load before and after a window
	pause      time.Duration // between a reader's reads: the short runs keep the leases to revoke at teardown few
	// slowestRead bounds a read refused under a primary limit: 50 ms at full size (make bench, a quiet machine),
	// more in make test, which must pass on a busier one; either is far from the 10 minutes a wait would take.
	slowestRead time.Duration
	description string
}

func limitsSize() scenarioSize {
	if os.Getenv("LIMITS_SCENARIO") == "full" {
		return scenarioSize{stormConc: 32, storm: 20 * time.Second, primaryFor: 10 * time.Second, outageConc: 32,
			outage: 30 * time.Second, burst: 500, settle: 3 * time.Second, slowestRead: 50 * time.Millisecond,
			description: "full"}
	}
	return scenarioSize{stormConc: 16, storm: 4 * time.Second, primaryFor: 3 * time.Second, outageConc: 16,
		outage: 4 * time.Second, burst: 500, settle: 2 * time.Second, pause: 50 * time.Millisecond,
		slowestRead: 500 * time.Millisecond, description: "short"}
}

// figures prints a scenario's measurements for the log and, at full size, for BENCHMARKS.md.
func figures(t *testing.T, scenario string, kv ...any) {
	t.Helper()
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
	}
	t.Logf("FIGURES scenario=%s size=%s%s", scenario, limitsSize().description, b.String())
}

// readResult is one read of a token path through Vault's HTTP API.
type readResult struct {
	start, end time.Time
	status     int // 0: no answer
	retryAfter string
	errText    string
}

func (r readResult) ok() bool { return r.status == http.StatusOK }

// reader reads a token path with a plain HTTP client, which (unlike Vault's API client) never retries on its own.
type reader struct {
	v      *vaultServer
	token  string
	path   string
	client *http.Client
	pause  time.Duration
}

func newReader(v *vaultServer, token, path string, conns int) *reader {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = conns
	return &reader{v: v, token: token, path: path, client: &http.Client{Transport: tr, Timeout: 60 * time.Second},
		pause: limitsSize().pause}
}

func (r *reader) read() readResult {
	res := readResult{start: time.Now()}
	req, _ := http.NewRequest(http.MethodGet, r.v.addr+"/v1/"+r.path, nil)
	req.Header.Set("X-Vault-Token", r.token)
	resp, err := r.client.Do(req)
	if err != nil {
		res.end, res.errText = time.Now(), err.Error()
		return res
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	res.end, res.status, res.retryAfter = time.Now(), resp.StatusCode, resp.Header.Get("Retry-After")
	if resp.StatusCode != http.StatusOK {
		res.errText = redact(string(body))
	}
	return res
}

// loadAsync starts load in the background; the function it returns waits for the results.
func (r *reader) loadAsync(conc int, d time.Duration) func() []readResult {
	done := make(chan []readResult, 1)
	go func() { done <- r.load(conc, d) }()
	return func() []readResult { return <-done }
}

// load reads from conc goroutines until d has passed, and returns every result in order of start.
func (r *reader) load(conc int, d time.Duration) []readResult {
	var mu sync.Mutex
	var all []readResult
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				res := r.read()
				mu.Lock()
				all = append(all, res)
				mu.Unlock()
				time.Sleep(r.pause)
			}
		}()
	}
	wg.Wait()
	sort.Slice(all, func(i, j int) bool { return all[i].start.Before(all[j].start) })
	return all
}

// limitsMount mounts the plugin, configures it, lets Retry-After through to clients and writes role ci.
func limitsMount(t *testing.T, s *shared, extraConfig ...string) string {
	t.Helper()
	v := s.vault
	mount := v.newMount(t, s.bins.pluginVersion)
	v.cli(t, "secrets", "tune", "-allowed-response-headers=Retry-After", mount)
	args := append([]string{"write", mount + "/config", fmt.Sprintf("app_id=%d", appID), "private_key=@" + s.gh.keyFile,
		"base_url=" + s.gh.url}, extraConfig...)
	v.cli(t, args...)
	v.cli(t, "write", mount+"/roles/ci", "owner="+acmeOwner, "repositories=api", "permissions=contents=read", "ttl=10m")
	return mount
}

// TestLimitsSecondaryStorm: the emulator answers every call with a secondary rate limit for a window, under load.
// GitHub sees the first refusals and then about a probe a second; readers get 429 with Retry-After; mints succeed
// again within two seconds of the window's end.
func TestLimitsSecondaryStorm(t *testing.T) {
	s := requireStack(t)
	size := limitsSize()
	mount := limitsMount(t, s)
	r := newReader(s.vault, s.vault.rootToken, mount+"/token/ci", size.stormConc)
	r.read()

	wait := r.loadAsync(size.stormConc, size.settle+size.storm+size.settle)
	time.Sleep(size.settle)
	s.gh.setFaults(t, map[string]any{"secondary_rate_limit": 429, "retry_after": 60})
	s.gh.resetStats(t)
	time.Sleep(size.storm)
	during := s.gh.stats(t)
	s.gh.admin(t, http.MethodPut, "/_fake/faults", map[string]any{}, nil)
	windowEnd := time.Now()
	results := wait()

	var limited, withRetryAfter, otherErrors int
	recovered := time.Time{}
	for _, res := range results {
		switch {
		case res.status == http.StatusTooManyRequests:
			limited++
			if n, err := strconv.Atoi(res.retryAfter); err == nil && n > 0 && n <= 60 {
				withRetryAfter++
			}
		case res.ok() && res.start.After(windowEnd) && recovered.IsZero():
			recovered = res.end
		case !res.ok():
			otherErrors++
			if otherErrors <= 5 {
				t.Errorf("a read failed with HTTP %d: %s", res.status, res.errText)
			}
		}
	}
	recovery := recovered.Sub(windowEnd)
	figures(t, "secondary-storm", "concurrency", size.stormConc, "window", size.storm, "reads", len(results),
		"github_calls_in_window", during.appCalls(), "429s", limited, "with_retry_after", withRetryAfter,
		"other_errors", otherErrors, "recovery", recovery.Round(time.Millisecond))
	if limited == 0 || withRetryAfter != limited {
		t.Errorf("%d reads got 429, %d of them with a Retry-After of at most 60 s", limited, withRetryAfter)
	}
	// The reads in flight when the limit began each meet it once; then a probe a second.
	if budget := size.stormConc + int(size.storm/time.Second) + 2; during.appCalls() > budget {
		t.Errorf("%d App calls reached GitHub in the %s window, want at most %d", during.appCalls(), size.storm, budget)
	}
	if recovered.IsZero() || recovery > 2*time.Second {
		t.Errorf("mints succeeded again %s after the window (zero: never)", recovery)
	}
}

// TestLimitsPrimary: with a primary limit resetting 10 minutes ahead, every read fails at once with 429 and the
// right Retry-After, and GitHub sees at most a probe a second.
func TestLimitsPrimary(t *testing.T) {
	s := requireStack(t)
	size := limitsSize()
	mount := limitsMount(t, s)
	r := newReader(s.vault, s.vault.rootToken, mount+"/token/ci", 4)
	r.read()
	s.gh.setFaults(t, map[string]any{"primary_rate_limit": true, "rate_limit_reset": "10m"})
	reset := time.Now().Add(10 * time.Minute)
	first := r.read() // GitHub's own refusal, which teaches the mount
	s.gh.resetStats(t)
	results := r.load(4, size.primaryFor)
	st := s.gh.stats(t)

	var slowest time.Duration
	for _, res := range append([]readResult{first}, results...) {
		slowest = max(slowest, res.end.Sub(res.start))
		if res.status != http.StatusTooManyRequests {
			t.Fatalf("a read during the limit got HTTP %d: %s", res.status, res.errText)
		}
		want := int(reset.Sub(res.end).Seconds())
		if n, err := strconv.Atoi(res.retryAfter); err != nil || n < want-5 || n > want+5 {
			t.Fatalf("Retry-After %q, want about %d seconds", res.retryAfter, want)
		}
	}
	figures(t, "primary-limit", "reads", len(results)+1, "slowest", slowest.Round(100*time.Microsecond),
		"github_calls", st.appCalls(), "seconds", size.primaryFor.Seconds())
	if slowest >= size.slowestRead {
		t.Errorf("the slowest read took %s, want under %s", slowest, size.slowestRead)
	}
	if budget := int(size.primaryFor/time.Second) + 1; st.appCalls() > budget {
		t.Errorf("GitHub saw %d calls in %s, want at most a probe a second (%d)", st.appCalls(), size.primaryFor, budget)
	}
}

// TestLimitsOutage: GitHub is unreachable for a window under load. Reads fail only inside it (and up to a probe
// interval after), with 502 saying since when; they succeed again within two seconds; GitHub issued no token that no
// lease holds.
func TestLimitsOutage(t *testing.T) {
	s := requireStack(t)
	size := limitsSize()
	mount := limitsMount(t, s)
	r := newReader(s.vault, s.vault.rootToken, mount+"/token/ci", size.outageConc)
	r.read()
	s.gh.resetStats(t)

	wait := r.loadAsync(size.outageConc, size.settle+size.outage+size.settle)
	time.Sleep(size.settle)
	windowStart := time.Now()
	s.gh.setFaults(t, map[string]any{"outage_for": size.outage.String()})
	windowEnd := windowStart.Add(size.outage)
	results := wait()
	st := s.gh.stats(t)

	var ok, failed, misplaced int
	var recovered time.Time
	var sample string
	for _, res := range results {
		if res.ok() {
			ok++
			if res.start.After(windowEnd) && recovered.IsZero() {
				recovered = res.end
			}
			continue
		}
		failed++
		if res.status != http.StatusBadGateway || !strings.Contains(res.errText, "unreachable") {
			t.Errorf("a read during the outage got HTTP %d: %s", res.status, res.errText)
		}
		if res.end.Before(windowStart) || res.start.After(windowEnd.Add(2*time.Second)) {
			misplaced++
		}
		if sample == "" && strings.Contains(res.errText, "since") {
			sample = res.errText
		}
	}
	recovery := recovered.Sub(windowEnd)
	figures(t, "outage", "concurrency", size.outageConc, "window", size.outage, "reads", len(results), "ok", ok,
		"failed", failed, "failed_outside_window", misplaced, "recovery", recovery.Round(time.Millisecond),
		"tokens_issued", st.TokensIssued, "github_calls", st.appCalls())
	t.Logf("a refusal during the outage: %s", sample)
	if failed == 0 || sample == "" {
		t.Errorf("%d reads failed, none saying since when GitHub is unreachable", failed)
	}
	if misplaced != 0 {
		t.Errorf("%d reads failed outside the outage window", misplaced)
	}
	if recovered.IsZero() || recovery > 2*time.Second {
		t.Errorf("mints succeeded again %s after the outage (zero: never)", recovery)
	}
	if st.TokensIssued != ok {
		t.Errorf("GitHub issued %d tokens for %d leases", st.TokensIssued, ok)
	}
}

// TestLimitsColdBurst: 500 concurrent first reads of a fresh mount: at most max_concurrent_requests calls in
// flight at GitHub, one owner lookup, one JWT, every read served.
func TestLimitsColdBurst(t *testing.T) {
	s := requireStack(t)
	size := limitsSize()
	mount := limitsMount(t, s, "max_concurrent_requests=32")
	s.gh.setFaults(t, map[string]any{"latency": "20ms"})
	s.gh.resetStats(t)
	r := newReader(s.vault, s.vault.rootToken, mount+"/token/ci", size.burst)

	var wg sync.WaitGroup
	results := make([]readResult, size.burst)
	start := make(chan struct{})
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = r.read()
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(began)
	st := s.gh.stats(t)
	served := 0
	for _, res := range results {
		if res.ok() {
			served++
		} else if served+5 > len(results) {
			t.Errorf("a read failed with HTTP %d: %s", res.status, res.errText)
		}
	}
	figures(t, "cold-burst", "reads", size.burst, "served", served, "elapsed", elapsed.Round(time.Millisecond),
		"max_in_flight_at_github", st.MaxInFlight, "owner_lookups", st.Calls["GET /orgs/{org}/installation"],
		"distinct_jwts", st.DistinctJWTs)
	if served != size.burst {
		t.Errorf("%d of %d reads served", served, size.burst)
	}
	if st.MaxInFlight > 32 || st.Calls["GET /orgs/{org}/installation"] != 1 || st.DistinctJWTs != 1 {
		t.Errorf("at GitHub: %d in flight (max 32), %d owner lookups (want 1), %d JWTs (want 1)",
			st.MaxInFlight, st.Calls["GET /orgs/{org}/installation"], st.DistinctJWTs)
	}
}
