// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// target is one kind of read the load phases drive.
type target struct {
	name   string // "kv", "noop", "shaped", "github"; with "-standby" when sent to a standby of a cluster
	path   string // the Vault path read, e.g. github/token/bench
	leased bool   // whether every read creates a lease (then the phase's leases are revoked afterwards)
	addr   string // where the reads go, when not to -vault-addr (a standby, which forwards them to the active node)
}

// kind is the target without where its reads go: "github" for "github" and "github-standby".
func (tg target) kind() string { return strings.TrimSuffix(tg.name, standbySuffix) }

// standbySuffix marks a target whose reads go to a standby.
const standbySuffix = "-standby"

// phaseResult is one target at one concurrency.
type phaseResult struct {
	Target      string  `json:"target"`
	Path        string  `json:"path"`
	ActiveNode  string  `json:"active_node,omitempty"` // in a cluster: the active node during the phase
	SentTo      string  `json:"sent_to,omitempty"`     // in a cluster: the node the reads went to
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	PerSecond   float64 `json:"per_second"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`

	// GitHub figures, for the github target: the emulator's counters over the measured window only.
	GitHubCalls     int            `json:"github_calls,omitempty"`
	CallsByRoute    map[string]int `json:"calls_by_route,omitempty"`
	CallsPerToken   float64        `json:"calls_per_token,omitempty"`
	NewJWTs         int            `json:"new_jwts,omitempty"`
	JWTsPer1000     float64        `json:"jwts_per_1000,omitempty"`
	EmuMaxInFlight  int            `json:"emulator_max_in_flight,omitempty"`
	TokensMintedEmu int            `json:"tokens_minted_emulator,omitempty"`
	EmuConnsPeak    int            `json:"emulator_conns_peak,omitempty"`     // client-side ESTABLISHED
	EmuTimeWaitPeak int            `json:"emulator_time_wait_peak,omitempty"` // TIME_WAIT, either side

	// Process figures over the measured window.
	PluginPID      int                `json:"plugin_pid,omitempty"`
	PluginRSSPeakM float64            `json:"plugin_rss_peak_mb,omitempty"` // highest VmRSS sampled under load
	PluginHWMM     float64            `json:"plugin_hwm_mb,omitempty"`      // VmHWM after the phase (lifetime peak)
	CPU            map[string]float64 `json:"cpu_percent"`                  // share of all cores, per process

	// Cleanup after the phase.
	LeasesRevoked int     `json:"leases_revoked,omitempty"`
	RevokeSeconds float64 `json:"revoke_seconds,omitempty"`
}

// loadReport is the output of -mode load.
type loadReport struct {
	Duration      string        `json:"duration"`
	Cores         int           `json:"cores"`
	Warmup        string        `json:"warmup"`
	Phases        []phaseResult `json:"phases"`
	JWTsTotal     int           `json:"jwts_total"`     // distinct JWTs the emulator saw over all github phases
	GitHubSeconds float64       `json:"github_seconds"` // from the first github phase's start to the last's end
	GitHubStart   time.Time     `json:"github_start"`
	PluginHWMM    float64       `json:"plugin_hwm_mb"`   // VmHWM of the plugin at the end
	NoopHWMM      float64       `json:"noop_hwm_mb"`     // VmHWM of the no-op plugin at the end
	Cleanup       string        `json:"cleanup"`         // how leases were kept from piling up
	Notes         []string      `json:"notes,omitempty"` // anything odd worth a line in the report
}

// worker state for one phase.
type workerResult struct {
	lat      []time.Duration
	errors   int
	firstErr string
}

// drive reads the target's path with conc workers for dur and returns every latency, the errors, the first error
// and the time it took. A read counts as good when Vault answers 200 and, for leased targets, with a lease ID.
func drive(ctx context.Context, hc *http.Client, v *vaultClient, tg target, conc int, dur time.Duration,
) ([]time.Duration, int, string, time.Duration) {
	addr := v.addr
	if tg.addr != "" {
		addr = tg.addr
	}
	url, token, leased := addr+"/v1/"+tg.path, v.token, tg.leased
	results := make([]workerResult, conc)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(dur)
	for w := range conc {
		wg.Add(1)
		go func(r *workerResult) {
			defer wg.Done()
			r.lat = make([]time.Duration, 0, 4096)
			var buf bytes.Buffer
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t0 := time.Now()
				msg := readOnce(ctx, hc, url, token, leased, &buf)
				r.lat = append(r.lat, time.Since(t0))
				if msg != "" {
					r.errors++
					if r.firstErr == "" {
						r.firstErr = msg
					}
				}
			}
		}(&results[w])
	}
	wg.Wait()
	elapsed := time.Since(start)
	var lat []time.Duration
	errs, first := 0, ""
	for _, r := range results {
		lat = append(lat, r.lat...)
		errs += r.errors
		if first == "" {
			first = r.firstErr
		}
	}
	return lat, errs, first, elapsed
}

var leaseMarker = []byte(`"lease_id":"`)

// readOnce does one read and returns "" on success, else what went wrong. It never returns the body of a
// successful answer, which holds a secret.
func readOnce(ctx context.Context, hc *http.Client, url, token string, leased bool, buf *bytes.Buffer) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err.Error()
	}
	req.Header.Set("X-Vault-Token", token)
	resp, err := hc.Do(req)
	if err != nil {
		return err.Error()
	}
	buf.Reset()
	_, err = io.Copy(buf, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err.Error()
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("HTTP %d: %s", resp.StatusCode, trimBody(buf.Bytes()))
	}
	if leased {
		b := buf.Bytes()
		i := bytes.Index(b, leaseMarker)
		if i < 0 || bytes.HasPrefix(b[i+len(leaseMarker):], []byte(`"`)) {
			return "HTTP 200 without a lease"
		}
	}
	return ""
}

// percentile of sorted latencies, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return round2(float64(d) / float64(time.Millisecond)) }

// loadConfig is what -mode load needs.
type loadConfig struct {
	vault       *vaultClient
	hot         *http.Client
	emu         *emulator
	targets     []target
	concurrency []int
	duration    time.Duration
	warmup      time.Duration
	pluginBin   string
	noopBin     string
	vaultPID    int
	standbyPID  int // the standby that the -standby targets go through, when there is one (its CPU share)
	emuPID      int
	revokeLimit time.Duration
	emuPort     int
	cluster     *clusterNodes // when set, the active node and a standby are looked up before every phase
}

// clusterNodes are the nodes of a Vault cluster. On a busy machine the active node may change between phases, so
// the load generator asks each node before every phase which one is active, and sends the phase's reads, its
// cleanup and its CPU accounting to the node that has the role the target names.
type clusterNodes struct {
	names      []string
	addrs      []string
	pids       []int
	pluginDirs []string
}

// active returns the index of the node that says it is active (sys/health answers 200 only there).
func (cl *clusterNodes) active(ctx context.Context, hc *http.Client) (int, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		for i, a := range cl.addrs {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, a+"/v1/sys/health", nil)
			if err != nil {
				return 0, err
			}
			resp, err := hc.Do(req)
			if err != nil {
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return i, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("no node of %v is active", cl.names)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// runLoad runs every target at every concurrency. Within one concurrency the targets run back to back (KV, no-op,
// shaped no-op, GitHub), so that all of them meet Vault in the same state; the leases of a leased phase, warm-up
// included, are revoked (sync) before the next phase starts, so that no phase pays for another's lease bookkeeping.
func runLoad(ctx context.Context, cfg loadConfig, logf func(string, ...any)) (*loadReport, error) {
	rep := &loadReport{
		Duration: cfg.duration.String(),
		Cores:    runtime.NumCPU(),
		Warmup:   cfg.warmup.String(),
		Cleanup: "every leased phase (warm-up and measured window) is followed by a synchronous " +
			"sys/leases/revoke-prefix of its path; the revocation time is reported and never inside a measured window",
	}
	var jwtStart, jwtEnd int
	var ghStart, ghEnd time.Time
	base := cfg
	lastActive := -1
	for _, conc := range base.concurrency {
		for _, tg := range base.targets {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			cfg := base
			activeName, sentTo := "", ""
			if cl := base.cluster; cl != nil {
				act, err := cl.active(ctx, base.vault.http)
				if err != nil {
					return rep, err
				}
				if lastActive >= 0 && act != lastActive {
					rep.Notes = append(rep.Notes, fmt.Sprintf("before %s c=%d the active node was %s, no longer %s (a leader "+
						"change on a busy machine); the phases follow the roles, not the nodes", tg.name, conc,
						cl.names[act], cl.names[lastActive]))
				}
				lastActive = act
				sb := (act + 1) % len(cl.addrs)
				admin := *base.vault
				admin.addr = cl.addrs[act]
				cfg.vault = &admin
				cfg.vaultPID, cfg.standbyPID = cl.pids[act], cl.pids[sb]
				cfg.pluginBin = filepath.Join(cl.pluginDirs[act], filepath.Base(base.pluginBin))
				cfg.noopBin = filepath.Join(cl.pluginDirs[act], filepath.Base(base.noopBin))
				tg.addr, activeName, sentTo = cl.addrs[act], cl.names[act], cl.names[act]
				if strings.HasSuffix(tg.name, standbySuffix) {
					tg.addr, sentTo = cl.addrs[sb], cl.names[sb]
				}
			}
			logf("%s at concurrency %d: %s warm-up, %s measured%s", tg.name, conc, cfg.warmup, cfg.duration,
				map[bool]string{true: "", false: fmt.Sprintf(" (active %s, sent to %s)", activeName, sentTo)}[activeName == ""])
			if cfg.warmup > 0 {
				if _, errs, first, _ := drive(ctx, cfg.hot, cfg.vault, tg, conc, cfg.warmup); errs > 0 {
					rep.Notes = append(rep.Notes, fmt.Sprintf("%s c=%d warm-up: %d errors, first: %s", tg.name, conc, errs, first))
				}
				if tg.leased {
					if _, err := cfg.vault.revokePrefix(ctx, tg.path, cfg.revokeLimit); err != nil {
						return rep, fmt.Errorf("revoking the warm-up leases: %w", err)
					}
				}
			}

			pr := phaseResult{Target: tg.name, Path: tg.path, Concurrency: conc, ActiveNode: activeName, SentTo: sentTo}
			pids := map[string]int{"vault": cfg.vaultPID, "emulator": cfg.emuPID, "loadgen": selfPID()}
			if cfg.standbyPID > 0 {
				pids["standby"] = cfg.standbyPID
			}
			pluginPID, _ := findPluginPID(cfg.pluginBin, cfg.vaultPID)
			noopPID, _ := findPluginPID(cfg.noopBin, cfg.vaultPID)
			pids["plugin"], pids["noop"] = pluginPID, noopPID
			watched := pluginPID
			if tg.kind() != "github" {
				watched = noopPID
			}
			if tg.kind() == "kv" {
				watched = 0
			}
			var before emuStats
			var err error
			if tg.kind() == "github" {
				if before, err = cfg.emu.stats(ctx); err != nil {
					return rep, err
				}
				if ghStart.IsZero() {
					ghStart, jwtStart = time.Now(), before.DistinctJWTs
				}
			}
			var rss *rssSampler
			if watched > 0 {
				rss = sampleRSS(watched, 50*time.Millisecond)
			}
			var tcp *tcpSampler
			if tg.kind() == "github" {
				tcp = sampleTCP(cfg.emuPort, 100*time.Millisecond)
			}
			cpu := startCPU(pids)

			lat, errs, first, elapsed := drive(ctx, cfg.hot, cfg.vault, tg, conc, cfg.duration)

			pr.CPU = cpu.stop()
			if rss != nil {
				pr.PluginPID = watched
				pr.PluginRSSPeakM = rss.stop()
				if kb, err := memKB(watched, "VmHWM"); err == nil {
					pr.PluginHWMM = round1(float64(kb) / 1024)
				}
			}
			slices.Sort(lat)
			pr.Seconds = round2(elapsed.Seconds())
			pr.Requests = len(lat)
			pr.Errors, pr.FirstError = errs, first
			pr.PerSecond = round1(float64(len(lat)-errs) / elapsed.Seconds())
			pr.P50Ms, pr.P99Ms, pr.MaxMs = ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99)), ms(percentile(lat, 1))

			if tg.kind() == "github" {
				after, err := cfg.emu.stats(ctx)
				if err != nil {
					return rep, err
				}
				ghEnd, jwtEnd = time.Now(), after.DistinctJWTs
				pr.EmuConnsPeak, pr.EmuTimeWaitPeak = tcp.stop()
				good := len(lat) - errs
				pr.CallsByRoute = callsDelta(after.Calls, before.Calls)
				pr.GitHubCalls = after.TotalCalls - before.TotalCalls
				pr.NewJWTs = after.DistinctJWTs - before.DistinctJWTs
				pr.TokensMintedEmu = after.TokensIssued - before.TokensIssued
				pr.EmuMaxInFlight = after.MaxInFlight
				if good > 0 {
					pr.CallsPerToken = round2(float64(pr.GitHubCalls) / float64(good))
					pr.JWTsPer1000 = round2(1000 * float64(pr.NewJWTs) / float64(good))
				}
			}

			if tg.leased {
				n, _ := cfg.vault.listLeases(ctx, tg.path)
				d, err := cfg.vault.revokePrefix(ctx, tg.path, cfg.revokeLimit)
				if err != nil {
					return rep, err
				}
				pr.LeasesRevoked, pr.RevokeSeconds = n, round2(d.Seconds())
			}
			line := fmt.Sprintf("  %.1f/s p50 %.2f ms p99 %.2f ms, %d errors", pr.PerSecond, pr.P50Ms, pr.P99Ms, pr.Errors)
			if tg.kind() == "github" {
				line += fmt.Sprintf(", %.2f GitHub calls/token, %d new JWTs", pr.CallsPerToken, pr.NewJWTs)
			}
			logf("%s", line)
			if first != "" {
				logf("  first error: %s", first)
			}
			rep.Phases = append(rep.Phases, pr)
		}
	}
	rep.JWTsTotal = jwtEnd - jwtStart
	if !ghStart.IsZero() {
		rep.GitHubSeconds = round1(ghEnd.Sub(ghStart).Seconds())
		rep.GitHubStart = ghStart
	}
	if pid, err := findPluginPID(cfg.pluginBin, cfg.vaultPID); err == nil {
		if kb, err := memKB(pid, "VmHWM"); err == nil {
			rep.PluginHWMM = round1(float64(kb) / 1024)
		}
	}
	if pid, err := findPluginPID(cfg.noopBin, cfg.vaultPID); err == nil {
		if kb, err := memKB(pid, "VmHWM"); err == nil {
			rep.NoopHWMM = round1(float64(kb) / 1024)
		}
	}
	return rep, nil
}

// parseInts reads "1,4,16".
func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &n); err != nil || n <= 0 {
			return nil, fmt.Errorf("%q: expected positive integers separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}
