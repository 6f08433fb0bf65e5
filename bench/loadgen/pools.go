// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The App pool scenarios of `make bench-pools` (scripts/bench-pools.sh), run by -mode pools:
//
//   - single: a single-App mount of this build against the same role on a mount of an earlier release (v0.2.0) and
//     the no-op leased plugin, in interleaved rounds: the plugin process's CPU per token and the throughput ratio.
//   - pool: a role over three Apps, one of which GitHub limits for the whole run (a primary or a secondary rate limit
//     on that App, set through the emulator's per-App faults), against a healthy single-App mount measured just
//     before: client errors, throughput, and how often the engine still called the limited App.
//   - budget: a role over three Apps whose installations have different budgets left, a 1 s rate_limit_refresh, and
//     one continuous load: which App served each mint, second by second, from a cold start, and after the
//     emulator's accounting changes half-way (the App with the most left drops to almost nothing).
//
// Everything is measured and printed, never asserted.

// poolApp is one App of the pool: its name in the engine, its ID and its installation on the role's owner.
type poolApp struct {
	Name           string `json:"name"`
	AppID          int64  `json:"app_id"`
	InstallationID int64  `json:"installation_id"`
}

// parsePoolApps reads "default=1001=2001,a2=1002=2102".
func parsePoolApps(s string) ([]poolApp, error) {
	var out []poolApp
	for _, f := range strings.Split(s, ",") {
		p := strings.Split(strings.TrimSpace(f), "=")
		if len(p) != 3 {
			return nil, fmt.Errorf("%q: expected NAME=APP_ID=INSTALLATION_ID", f)
		}
		app, err1 := strconv.ParseInt(p[1], 10, 64)
		inst, err2 := strconv.ParseInt(p[2], 10, 64)
		if p[0] == "" || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%q: expected NAME=APP_ID=INSTALLATION_ID", f)
		}
		out = append(out, poolApp{Name: p[0], AppID: app, InstallationID: inst})
	}
	return out, nil
}

// poolsConfig is what -mode pools needs.
type poolsConfig struct {
	vault       *vaultClient
	hot         *http.Client
	emu         *emulator
	scenarios   []string
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	rounds      int
	revokeLimit time.Duration
	vaultPID    int
	emuPID      int

	// single
	pluginBin, prevBin, noopBin string
	version, prevVersion        string
	singlePath, prevPath        string
	noopPath                    string

	// pool and budget
	apps       []poolApp
	poolPrefix string   // the pool scenario's mounts: poolPrefix+limit, e.g. pool-primary
	role       string   // the role of three Apps on every pool mount
	limited    string   // the App GitHub limits in the pool scenario
	limits     []string // primary, secondary
	budgetPath string   // budget/token/pool
	budgetLeft []int    // percent of the budget left, per App in apps order
	changeApp  string   // the App whose budget changes half-way
	changeTo   int      // percent left after the change
	budgetMax  int      // the limit of each installation's budget in the budget scenario (GitHub's 5,000)
	refresh    string   // the budget mount's rate_limit_refresh, for the report
}

// poolsReport is the output of -mode pools.
type poolsReport struct {
	Cores       int          `json:"cores"`
	Concurrency int          `json:"concurrency"`
	Duration    string       `json:"duration"`
	Warmup      string       `json:"warmup"`
	Single      *singleBench `json:"single,omitempty"`
	Pool        []poolBench  `json:"pool,omitempty"`
	Budget      *budgetBench `json:"budget,omitempty"`
	Notes       []string     `json:"notes,omitempty"`
}

// measured is one measured window of load on one path.
type measured struct {
	Label       string             `json:"label"`
	Path        string             `json:"path"`
	Seconds     float64            `json:"seconds"`
	Requests    int                `json:"requests"`
	OK          int                `json:"ok"`
	Errors      int                `json:"errors"`
	ErrorKinds  map[string]int     `json:"error_kinds,omitempty"`
	FirstError  string             `json:"first_error,omitempty"`
	PerSecond   float64            `json:"per_second"`
	P50Ms       float64            `json:"p50_ms"`
	P99Ms       float64            `json:"p99_ms"`
	CPU         map[string]float64 `json:"cpu_percent"`          // share of all cores, per process
	PluginCPUus float64            `json:"plugin_cpu_us_per_op"` // of the plugin process that served the window
	VaultCPUus  float64            `json:"vault_cpu_us_per_op"`
	ByApp       map[string]int     `json:"by_app,omitempty"` // successful mints by the answer's app field
	LoadAvg     string             `json:"loadavg"`          // /proc/loadavg when the window ended
	Revoked     int                `json:"leases_revoked"`
	RevokeSecs  float64            `json:"revoke_seconds"`
}

type singleBench struct {
	Version     string        `json:"version"`
	PrevVersion string        `json:"prev_version"`
	Rounds      []singleRound `json:"rounds"`
}

type singleRound struct {
	Noop measured `json:"noop"`
	Prev measured `json:"prev"`
	Cur  measured `json:"current"`
}

type poolBench struct {
	Limit      string         `json:"limit"` // primary or secondary
	Fault      map[string]any `json:"fault"` // the per-App faults set on the limited App
	LimitedApp poolApp        `json:"limited_app"`
	// The healthy single-App mount's windows just before and just after the pool's.
	HealthyBefore measured `json:"healthy_before"`
	HealthyAfter  measured `json:"healthy_after"`
	WarmupErrors  int      `json:"warmup_errors"`
	WarmupError   string   `json:"warmup_first_error,omitempty"`
	Pool          measured `json:"pool"`
	// The emulator's accounting of the limited App over the measured window: every call made with its JWT or its
	// installation's tokens, by route; probes are those calls but GET /rate_limit (which GitHub never limits).
	LimitedCalls  map[string]int `json:"limited_calls"`
	LimitedErrors int            `json:"limited_errors"`
	Probes        int            `json:"probes"`
	ProbesPerSec  float64        `json:"probes_per_second"`
	ProbeSamples  []float64      `json:"probe_samples_per_second"` // probes per sampling interval of about 1 s
	TokensByApp   map[string]int `json:"tokens_by_app"`            // the emulator's count over the window
	RateLimitGets map[string]int `json:"rate_limit_reads_by_app"`  // GET /rate_limit by App over the window
}

type budgetBench struct {
	Apps       []string         `json:"apps"` // in the role's order
	Limit      int              `json:"limit"`
	LeftPct    map[string]int   `json:"left_percent"`
	Remaining  map[string]int   `json:"remaining"`
	Refresh    string           `json:"rate_limit_refresh"`
	ChangeApp  string           `json:"change_app"`
	ChangeTo   int              `json:"change_to_percent"`
	Leader     string           `json:"leader"`     // the most left before the change
	NewLeader  string           `json:"new_leader"` // the most left after it
	BucketMs   int              `json:"bucket_ms"`
	Buckets    []map[string]int `json:"buckets"` // successful mints by App per bucket of BucketMs
	Seconds    float64          `json:"seconds"`
	ChangeAt   float64          `json:"change_at_s"` // from the start of the load to the emulator's answer to the change
	Requests   int              `json:"requests"`
	Errors     int              `json:"errors"`
	ErrorKinds map[string]int   `json:"error_kinds,omitempty"`
	FirstError string           `json:"first_error,omitempty"`
	PerSecond  float64          `json:"per_second"`
	// SettleS is from the start of the load (the engine knows no budget yet) until the leader served at least
	// settleShare of every bucket up to the change; FollowS is the same from the change for the new leader;
	// LastOldS is the last mint by the former leader after the change. -1: never.
	SettleS       float64            `json:"settle_s"`
	FollowS       float64            `json:"follow_s"`
	LastOldS      float64            `json:"last_old_leader_mint_s"`
	SharesBefore  map[string]float64 `json:"shares_before"`        // from settling to the change
	SharesFirst   map[string]float64 `json:"shares_first_half"`    // the whole first half, cold start included
	SharesAfter   map[string]float64 `json:"shares_after"`         // from following to the end
	RateLimitGets map[string]int     `json:"rate_limit_reads"`     // GET /rate_limit by App over the whole load
	EngineBefore  map[string]int     `json:"engine_budget_before"` // remaining as the engine's status showed it
	EngineAfter   map[string]int     `json:"engine_budget_after"`
	LoadAvg       string             `json:"loadavg"`
}

// settleShare is the share of a bucket's mints the expected App must serve for the shares to count as following.
const settleShare = 0.9

// runPools runs the scenarios in order.
func runPools(ctx context.Context, cfg poolsConfig, logf func(string, ...any)) (*poolsReport, error) {
	rep := &poolsReport{Cores: runtime.NumCPU(), Concurrency: cfg.concurrency, Duration: cfg.duration.String(),
		Warmup: cfg.warmup.String()}
	for _, sc := range cfg.scenarios {
		var err error
		switch sc {
		case "single":
			rep.Single, err = runSingle(ctx, cfg, logf)
		case "pool":
			rep.Pool, err = runPoolScenario(ctx, cfg, logf)
		case "budget":
			rep.Budget, err = runBudget(ctx, cfg, logf)
		default:
			err = fmt.Errorf("unknown scenario %q (single, pool, budget)", sc)
		}
		if err != nil {
			return rep, fmt.Errorf("scenario %s: %w", sc, err)
		}
	}
	return rep, nil
}

// window drives path with the scenario's concurrency for dur after a warm-up (whose leases are revoked first),
// measures the CPU of Vault, the given plugin process and the emulator, and revokes the window's leases afterwards.
func window(ctx context.Context, cfg poolsConfig, label, path, pluginBin string, dur time.Duration,
	logf func(string, ...any)) (measured, error) {
	if cfg.warmup > 0 {
		d := drivePool(ctx, cfg.hot, cfg.vault, path, cfg.concurrency, cfg.warmup, 0, nil)
		if d.errors > 0 {
			logf("  %s warm-up: %d errors, first: %s", label, d.errors, d.firstErr)
		}
		if _, err := cfg.vault.revokePrefix(ctx, path, cfg.revokeLimit); err != nil {
			return measured{}, fmt.Errorf("revoking the warm-up leases of %s: %w", path, err)
		}
	}
	m, err := measure(ctx, cfg, label, path, pluginBin, dur, nil)
	if err != nil {
		return m, err
	}
	logf("  %s: %.0f/s, p50 %.2f ms, p99 %.2f ms, plugin %.0f µs/token, %d errors", label, m.PerSecond, m.P50Ms,
		m.P99Ms, m.PluginCPUus, m.Errors)
	return m, nil
}

// measure drives one measured window (no warm-up) and revokes its leases afterwards. during, when set, runs
// alongside the load until it ends.
func measure(ctx context.Context, cfg poolsConfig, label, path, pluginBin string, dur time.Duration,
	during func(stop <-chan struct{})) (measured, error) {
	m := measured{Label: label, Path: path}
	pid, _ := findPluginPID(pluginBin, cfg.vaultPID)
	cpu := startCPU(map[string]int{"vault": cfg.vaultPID, "plugin": pid, "emulator": cfg.emuPID, "loadgen": selfPID()})
	stop, done := make(chan struct{}), make(chan struct{})
	if during != nil {
		go func() { defer close(done); during(stop) }()
	} else {
		close(done)
	}
	d := drivePool(ctx, cfg.hot, cfg.vault, path, cfg.concurrency, dur, 0, nil)
	close(stop)
	<-done
	m.CPU = cpu.stop()
	m.LoadAvg = loadAvg()
	d.fill(&m)
	if m.OK > 0 {
		perOp := func(pct float64) float64 {
			return round1(pct / 100 * float64(runtime.NumCPU()) * d.elapsed.Seconds() * 1e6 / float64(m.OK))
		}
		m.PluginCPUus, m.VaultCPUus = perOp(m.CPU["plugin"]), perOp(m.CPU["vault"])
	}
	n, _ := cfg.vault.listLeases(ctx, path)
	t, err := cfg.vault.revokePrefix(ctx, path, cfg.revokeLimit)
	m.Revoked, m.RevokeSecs = n, round2(t.Seconds())
	return m, err
}

// runSingle compares the single-App mount of this build with an earlier release and the no-op plugin, in rounds
// whose order turns, so that a drift of the machine's load weighs on each target alike.
func runSingle(ctx context.Context, cfg poolsConfig, logf func(string, ...any)) (*singleBench, error) {
	sb := &singleBench{Version: cfg.version, PrevVersion: cfg.prevVersion}
	type tgt struct {
		label, path, bin string
		into             func(*singleRound) *measured
	}
	targets := []tgt{
		{"no-op leased", cfg.noopPath, cfg.noopBin, func(r *singleRound) *measured { return &r.Noop }},
		{cfg.prevVersion, cfg.prevPath, cfg.prevBin, func(r *singleRound) *measured { return &r.Prev }},
		{cfg.version, cfg.singlePath, cfg.pluginBin, func(r *singleRound) *measured { return &r.Cur }},
	}
	for r := range cfg.rounds {
		logf("single-App mount, round %d of %d: concurrency %d, %s each", r+1, cfg.rounds, cfg.concurrency, cfg.duration)
		var round singleRound
		for i := range targets {
			t := targets[(i+r)%len(targets)]
			if t.path == "" {
				continue
			}
			m, err := window(ctx, cfg, t.label, t.path, t.bin, cfg.duration, logf)
			*t.into(&round) = m
			if err != nil {
				sb.Rounds = append(sb.Rounds, round)
				return sb, err
			}
		}
		sb.Rounds = append(sb.Rounds, round)
	}
	return sb, nil
}

// limitFaults are the per-App faults of each kind of limit: GitHub limits the App for longer than the run.
var limitFaults = map[string]map[string]any{
	"primary":   {"primary_rate_limit": true, "rate_limit_reset": "1h"},
	"secondary": {"secondary_rate_limit": 429, "retry_after": 3600},
}

// runPoolScenario measures each kind of limit on a pool mount between two windows of a healthy single-App mount
// (healthy, pool with a primary limit, healthy, pool with a secondary limit, healthy), so that each pool window is
// compared with the mean of the healthy windows on either side of it: on a machine whose load drifts, that is
// fairer than one window before.
func runPoolScenario(ctx context.Context, cfg poolsConfig, logf func(string, ...any)) ([]poolBench, error) {
	if err := healthyBudgets(ctx, cfg); err != nil {
		return nil, err
	}
	logf("pool of %d Apps, %s limited: %s, each between two windows of a healthy single-App mount; concurrency %d, "+
		"%s each", len(cfg.apps), cfg.limited, strings.Join(cfg.limits, ", "), cfg.concurrency, cfg.duration)
	healthy := func() (measured, error) {
		return window(ctx, cfg, "healthy single-App mount", cfg.singlePath, cfg.pluginBin, cfg.duration, logf)
	}
	var out []poolBench
	prev, err := healthy()
	if err != nil {
		return out, err
	}
	for _, kind := range cfg.limits {
		pb, err := runPoolLimited(ctx, cfg, kind, logf)
		if pb == nil {
			return out, err
		}
		pb.HealthyBefore = prev
		if err == nil {
			pb.HealthyAfter, err = healthy()
			prev = pb.HealthyAfter
		}
		out = append(out, *pb)
		if err != nil {
			return out, err
		}
		logf("  pool / healthy single-App mount: %s", ratio(pb.Pool.PerSecond, pb.healthyRate()))
	}
	return out, nil
}

// healthyRate is the mean rate of the healthy windows around the pool's, or the one there is.
func (pb *poolBench) healthyRate() float64 {
	switch {
	case pb.HealthyBefore.PerSecond > 0 && pb.HealthyAfter.PerSecond > 0:
		return (pb.HealthyBefore.PerSecond + pb.HealthyAfter.PerSecond) / 2
	case pb.HealthyBefore.PerSecond > 0:
		return pb.HealthyBefore.PerSecond
	}
	return pb.HealthyAfter.PerSecond
}

// healthyCPU is the mean Vault + plugin CPU per token of the healthy windows around the pool's.
func (pb *poolBench) healthyCPU() float64 {
	var sum, n float64
	for _, m := range []measured{pb.HealthyBefore, pb.HealthyAfter} {
		if m.OK > 0 {
			sum += m.PluginCPUus + m.VaultCPUus
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / n
}

// runPoolLimited limits one App and measures the pool mount for kind.
func runPoolLimited(ctx context.Context, cfg poolsConfig, kind string, logf func(string, ...any)) (*poolBench, error) {
	fault, ok := limitFaults[kind]
	if !ok {
		return nil, fmt.Errorf("unknown limit %q (primary, secondary)", kind)
	}
	limited, ok := findApp(cfg.apps, cfg.limited)
	if !ok {
		return nil, fmt.Errorf("the limited App %q is not in the pool", cfg.limited)
	}
	pb := &poolBench{Limit: kind, Fault: fault, LimitedApp: limited}
	path := cfg.poolPrefix + kind + "/token/" + cfg.role
	logf("  %s limited by a %s rate limit", limited.Name, kind)
	faultPath := fmt.Sprintf("/_fake/apps/%d/faults", limited.AppID)
	if err := cfg.emu.put(ctx, faultPath, fault); err != nil {
		return pb, err
	}
	defer func() {
		// The next scenario finds every App healthy, even when this one failed half-way.
		if err := cfg.emu.put(context.WithoutCancel(ctx), faultPath, map[string]any{}); err != nil {
			logf("removing the faults of App %d: %v", limited.AppID, err)
		}
	}()
	if cfg.warmup > 0 {
		d := drivePool(ctx, cfg.hot, cfg.vault, path, cfg.concurrency, cfg.warmup, 0, nil)
		pb.WarmupErrors, pb.WarmupError = d.errors, d.firstErr
		if _, err := cfg.vault.revokePrefix(ctx, path, cfg.revokeLimit); err != nil {
			return pb, fmt.Errorf("revoking the warm-up leases: %w", err)
		}
	}

	before, err := cfg.emu.stats(ctx)
	if err != nil {
		return pb, err
	}
	key := strconv.FormatInt(limited.AppID, 10)
	probes := func(s emuStats) int { a := s.Apps[key]; return a.TotalCalls - a.Calls[rateLimitRoute] }
	var samples []float64
	var after emuStats
	var afterErr error
	sample := func(stop <-chan struct{}) {
		last, lastT := probes(before), time.Now()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				// The load has ended; the leases' revocation has not begun.
				after, afterErr = cfg.emu.stats(ctx)
				return
			case <-t.C:
			}
			s, err := cfg.emu.stats(ctx)
			if err != nil {
				continue
			}
			now := time.Now()
			samples = append(samples, round2(float64(probes(s)-last)/now.Sub(lastT).Seconds()))
			last, lastT = probes(s), now
		}
	}
	pb.Pool, err = measure(ctx, cfg, "pool, "+limited.Name+" limited", path, cfg.pluginBin, cfg.duration, sample)
	if err != nil {
		return pb, err
	}
	if afterErr != nil {
		return pb, afterErr
	}
	a, b := after.Apps[key], before.Apps[key]
	pb.LimitedCalls = callsDelta(a.Calls, b.Calls)
	pb.LimitedErrors = a.Errors - b.Errors
	pb.Probes = probes(after) - probes(before)
	pb.ProbesPerSec = round2(float64(pb.Probes) / pb.Pool.Seconds)
	pb.ProbeSamples = samples
	pb.TokensByApp, pb.RateLimitGets = map[string]int{}, map[string]int{}
	for _, app := range cfg.apps {
		k := strconv.FormatInt(app.AppID, 10)
		pb.TokensByApp[app.Name] = after.Apps[k].TokensIssued - before.Apps[k].TokensIssued
		pb.RateLimitGets[app.Name] = after.Apps[k].Calls[rateLimitRoute] - before.Apps[k].Calls[rateLimitRoute]
	}
	logf("  pool: %.0f/s, %d errors (warm-up %d), %d probes of %s (%.2f/s), mints by App %v", pb.Pool.PerSecond,
		pb.Pool.Errors, pb.WarmupErrors, pb.Probes, limited.Name, pb.ProbesPerSec, pb.Pool.ByApp)
	return pb, nil
}

const rateLimitRoute = "GET /rate_limit"

// healthyBudget is the budget every installation and App gets outside the budget scenario: the emulator enforces a
// budget once set, so it must be large enough that the benchmark's own revocations never exhaust it. It is set
// again before each scenario, the same for every App; revocations then spend from it (mints do not: they count
// against the App, not the installation), so under app_selection=budget the App whose tokens were revoked least
// ranks first.
const healthyBudget = 100_000_000

// healthyBudgets gives every installation and App of the pool the same, ample budget.
func healthyBudgets(ctx context.Context, cfg poolsConfig) error {
	body := map[string]any{"limit": healthyBudget, "remaining": healthyBudget}
	for _, a := range cfg.apps {
		if err := cfg.emu.put(ctx, fmt.Sprintf("/_fake/installations/%d/rate-limit", a.InstallationID), body); err != nil {
			return err
		}
		if err := cfg.emu.put(ctx, fmt.Sprintf("/_fake/apps/%d/rate-limit", a.AppID), body); err != nil {
			return err
		}
	}
	return nil
}

func findApp(apps []poolApp, name string) (poolApp, bool) {
	for _, a := range apps {
		if a.Name == name {
			return a, true
		}
	}
	return poolApp{}, false
}

// runBudget sets each installation's budget, drives one continuous load of twice the duration from a cold mount
// (the engine knows no budget yet), changes one budget half-way, and reports which App served each mint.
func runBudget(ctx context.Context, cfg poolsConfig, logf func(string, ...any)) (*budgetBench, error) {
	if len(cfg.budgetLeft) != len(cfg.apps) {
		return nil, fmt.Errorf("-budget-left has %d shares for %d Apps", len(cfg.budgetLeft), len(cfg.apps))
	}
	change, ok := findApp(cfg.apps, cfg.changeApp)
	if !ok {
		return nil, fmt.Errorf("-budget-change names %q, which is not in the pool", cfg.changeApp)
	}
	const bucket = 100 * time.Millisecond
	bb := &budgetBench{Limit: cfg.budgetMax, LeftPct: map[string]int{}, Remaining: map[string]int{}, Refresh: cfg.refresh,
		ChangeApp: change.Name, ChangeTo: cfg.changeTo, BucketMs: int(bucket / time.Millisecond),
		RateLimitGets: map[string]int{}}
	if err := healthyBudgets(ctx, cfg); err != nil {
		return bb, err
	}
	after := map[string]int{}
	for i, a := range cfg.apps {
		bb.Apps = append(bb.Apps, a.Name)
		bb.LeftPct[a.Name] = cfg.budgetLeft[i]
		bb.Remaining[a.Name] = cfg.budgetMax * cfg.budgetLeft[i] / 100
		after[a.Name] = bb.Remaining[a.Name]
		if err := cfg.emu.put(ctx, fmt.Sprintf("/_fake/installations/%d/rate-limit", a.InstallationID),
			map[string]any{"limit": cfg.budgetMax, "remaining": bb.Remaining[a.Name]}); err != nil {
			return bb, err
		}
	}
	after[change.Name] = cfg.budgetMax * cfg.changeTo / 100
	bb.Leader, bb.NewLeader = mostLeft(cfg.apps, bb.Remaining), mostLeft(cfg.apps, after)
	path := cfg.budgetPath
	mount, _, _ := strings.Cut(path, "/")
	logf("budget: %s left %v of %d, %s to %d %% after %s; concurrency %d, %s in all, no warm-up (a cold mount)",
		cfg.role, bb.LeftPct, cfg.budgetMax, change.Name, cfg.changeTo, cfg.duration, cfg.concurrency, 2*cfg.duration)

	before, err := cfg.emu.stats(ctx)
	if err != nil {
		return bb, err
	}
	var changeAt time.Duration
	event := func(start time.Time) {
		bb.EngineBefore = engineBudgets(ctx, cfg.vault, mount, cfg.apps)
		if err := cfg.emu.put(ctx, fmt.Sprintf("/_fake/installations/%d/rate-limit", change.InstallationID),
			map[string]any{"limit": cfg.budgetMax, "remaining": after[change.Name]}); err != nil {
			logf("changing the budget of %s: %v", change.Name, err)
		}
		changeAt = time.Since(start)
	}
	d := drivePool(ctx, cfg.hot, cfg.vault, path, cfg.concurrency, 2*cfg.duration, bucket,
		&timedEvent{at: cfg.duration, fn: event})
	bb.EngineAfter = engineBudgets(ctx, cfg.vault, mount, cfg.apps)
	bb.LoadAvg = loadAvg()
	st, err := cfg.emu.stats(ctx)
	if err == nil {
		for _, a := range cfg.apps {
			k := strconv.FormatInt(a.AppID, 10)
			bb.RateLimitGets[a.Name] = st.Apps[k].Calls[rateLimitRoute] - before.Apps[k].Calls[rateLimitRoute]
		}
	}
	var m measured
	d.fill(&m)
	bb.Seconds, bb.Requests, bb.Errors, bb.ErrorKinds, bb.FirstError, bb.PerSecond =
		m.Seconds, m.Requests, m.Errors, m.ErrorKinds, m.FirstError, m.PerSecond
	bb.Buckets = d.buckets
	bb.ChangeAt = round2(changeAt.Seconds())
	bb.analyse()
	logf("  %.0f/s, %d errors; settled on %s after %.1f s, shares %v; %s changed at %.1f s, shares followed "+
		"(%s) after %.2f s, shares %v", bb.PerSecond, bb.Errors, bb.Leader, bb.SettleS, bb.SharesBefore, change.Name,
		bb.ChangeAt, bb.NewLeader, bb.FollowS, bb.SharesAfter)

	// The leases' revocations spend the installations' budgets: give them room first.
	if err := healthyBudgets(ctx, cfg); err != nil {
		return bb, err
	}
	if _, err := cfg.vault.revokePrefix(ctx, path, cfg.revokeLimit); err != nil {
		return bb, err
	}
	return bb, nil
}

// mostLeft is the App with the most budget left; the first in the pool's order on a tie.
func mostLeft(apps []poolApp, remaining map[string]int) string {
	best := apps[0].Name
	for _, a := range apps[1:] {
		if remaining[a.Name] > remaining[best] {
			best = a.Name
		}
	}
	return best
}

// analyse finds when the shares settled and followed, and the shares in each part of the run.
func (bb *budgetBench) analyse() {
	sec := float64(bb.BucketMs) / 1000
	// Buckets before beforeEnd ended before the change; those from changeIdx on started after it. In whole
	// milliseconds, so that a change at 0.3 s is the end of bucket 2, not somewhere in it.
	changeMs, width := int(math.Round(bb.ChangeAt*1000)), max(bb.BucketMs, 1)
	beforeEnd := min(changeMs/width, len(bb.Buckets))
	changeIdx := min((changeMs+width-1)/width, len(bb.Buckets))
	// firstFollowing is the first bucket from lo on after which every bucket with mints, up to hi, gives leader at
	// least settleShare; -1 when even the last one does not.
	firstFollowing := func(lo, hi int, leader string) int {
		k := -1
		for i := hi - 1; i >= lo; i-- {
			n := sumCounts(bb.Buckets[i])
			if n == 0 {
				continue
			}
			if float64(bb.Buckets[i][leader]) < settleShare*float64(n) {
				break
			}
			k = i
		}
		return k
	}
	bb.SettleS, bb.FollowS, bb.LastOldS = -1, -1, -1
	// Times are to the end of the first bucket that follows: an upper bound, within a bucket's width.
	if settle := firstFollowing(0, beforeEnd, bb.Leader); settle >= 0 {
		bb.SettleS = round2(float64(settle+1) * sec)
		bb.SharesBefore = shares(bb.Buckets[settle:beforeEnd])
	}
	bb.SharesFirst = shares(bb.Buckets[:beforeEnd])
	if follow := firstFollowing(changeIdx, len(bb.Buckets), bb.NewLeader); follow >= 0 {
		bb.FollowS = round2(float64(follow+1)*sec - bb.ChangeAt)
		bb.SharesAfter = shares(bb.Buckets[follow:])
	}
	for i := len(bb.Buckets) - 1; i >= changeIdx; i-- {
		if bb.Buckets[i][bb.Leader] > 0 && bb.Leader != bb.NewLeader {
			bb.LastOldS = round2(float64(i+1)*sec - bb.ChangeAt)
			break
		}
	}
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// shares adds buckets up and turns them into each App's share of the mints.
func shares(buckets []map[string]int) map[string]float64 {
	total := map[string]int{}
	for _, b := range buckets {
		for k, v := range b {
			total[k] += v
		}
	}
	n := sumCounts(total)
	out := map[string]float64{}
	for k, v := range total {
		if n > 0 {
			out[k] = round2(float64(v) / float64(n))
		}
	}
	return out
}

// engineBudgets reads what the engine's status says each App's installation has left (best effort: nil when the
// status does not show it).
func engineBudgets(ctx context.Context, v *vaultClient, mount string, apps []poolApp) map[string]int {
	status, body, err := v.call(ctx, http.MethodGet, mount+"/status", nil)
	if err != nil || status != http.StatusOK {
		return nil
	}
	var out struct {
		Data struct {
			Apps map[string]struct {
				Installations []struct {
					InstallationID int64 `json:"installation_id"`
					Budget         *struct {
						Remaining int `json:"remaining"`
					} `json:"budget"`
				} `json:"installations"`
			} `json:"apps"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &out) != nil {
		return nil
	}
	got := map[string]int{}
	for _, a := range apps {
		for _, in := range out.Data.Apps[a.Name].Installations {
			if in.InstallationID == a.InstallationID && in.Budget != nil {
				got[a.Name] = in.Budget.Remaining
			}
		}
	}
	if len(got) == 0 {
		return nil
	}
	return got
}

// timedEvent runs fn once, at offset at from the start of the load, while the load goes on.
type timedEvent struct {
	at time.Duration
	fn func(start time.Time)
}

// poolDrive is what drivePool saw.
type poolDrive struct {
	elapsed  time.Duration
	lat      []time.Duration
	errors   int
	kinds    map[string]int
	firstErr string
	byApp    map[string]int
	buckets  []map[string]int // successful mints by App per bucket, when bucketing
}

// fill copies the drive's figures into m.
func (d *poolDrive) fill(m *measured) {
	slices.Sort(d.lat)
	m.Seconds = round2(d.elapsed.Seconds())
	m.Requests = len(d.lat)
	m.Errors, m.FirstError = d.errors, d.firstErr
	m.OK = len(d.lat) - d.errors
	if len(d.kinds) > 0 {
		m.ErrorKinds = d.kinds
	}
	if len(d.byApp) > 0 {
		m.ByApp = d.byApp
	}
	if d.elapsed > 0 {
		m.PerSecond = round1(float64(m.OK) / d.elapsed.Seconds())
	}
	m.P50Ms, m.P99Ms = ms(percentile(d.lat, 0.50)), ms(percentile(d.lat, 0.99))
}

// drivePool reads path with conc workers for dur, like drive, and also notes which App served each successful read
// (the answer's app field), per bucket of the given width when it is positive. ev, when set, runs on its own
// goroutine at its offset.
func drivePool(ctx context.Context, hc *http.Client, v *vaultClient, path string, conc int, dur, bucket time.Duration,
	ev *timedEvent) *poolDrive {
	url, token := v.addr+"/v1/"+path, v.token
	type worker struct {
		lat      []time.Duration
		errors   int
		kinds    map[string]int
		firstErr string
		byApp    map[string]int
		buckets  []map[string]int
	}
	ws := make([]worker, conc)
	var wg, evWG sync.WaitGroup
	start := time.Now()
	deadline := start.Add(dur)
	if ev != nil {
		evWG.Add(1)
		go func() {
			defer evWG.Done()
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(start.Add(ev.at))):
			}
			ev.fn(start)
		}()
	}
	for i := range conc {
		wg.Add(1)
		go func(w *worker) {
			defer wg.Done()
			w.lat = make([]time.Duration, 0, 4096)
			w.kinds, w.byApp = map[string]int{}, map[string]int{}
			var buf bytes.Buffer
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t0 := time.Now()
				app, kind, msg := readApp(ctx, hc, url, token, &buf)
				done := time.Now()
				w.lat = append(w.lat, done.Sub(t0))
				if msg != "" {
					w.errors++
					w.kinds[kind]++
					if w.firstErr == "" {
						w.firstErr = msg
					}
					continue
				}
				w.byApp[app]++
				if bucket > 0 {
					b := int(done.Sub(start) / bucket)
					for len(w.buckets) <= b {
						w.buckets = append(w.buckets, map[string]int{})
					}
					w.buckets[b][app]++
				}
			}
		}(&ws[i])
	}
	wg.Wait()
	d := &poolDrive{elapsed: time.Since(start), kinds: map[string]int{}, byApp: map[string]int{}}
	evWG.Wait()
	for _, w := range ws {
		d.lat = append(d.lat, w.lat...)
		d.errors += w.errors
		if d.firstErr == "" {
			d.firstErr = w.firstErr
		}
		for k, n := range w.kinds {
			d.kinds[k] += n
		}
		for k, n := range w.byApp {
			d.byApp[k] += n
		}
		for i, b := range w.buckets {
			for len(d.buckets) <= i {
				d.buckets = append(d.buckets, map[string]int{})
			}
			for k, n := range b {
				d.buckets[i][k] += n
			}
		}
	}
	return d
}

var appMarker = []byte(`"app":"`)

// readApp does one leased read and returns the App named in the answer ("?" when it names none: an engine
// without pools), or the kind of error and what went wrong. It never returns anything else of a successful
// answer, which holds a secret.
func readApp(ctx context.Context, hc *http.Client, url, token string, buf *bytes.Buffer) (app, kind, msg string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", "request", err.Error()
	}
	req.Header.Set("X-Vault-Token", token)
	resp, err := hc.Do(req)
	if err != nil {
		return "", "transport", err.Error()
	}
	buf.Reset()
	_, err = io.Copy(buf, resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", "transport", err.Error()
	}
	b := buf.Bytes()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Sprintf("HTTP %d", resp.StatusCode), fmt.Sprintf("HTTP %d: %s", resp.StatusCode, trimBody(b))
	}
	if i := bytes.Index(b, leaseMarker); i < 0 || bytes.HasPrefix(b[i+len(leaseMarker):], []byte(`"`)) {
		return "", "no lease", "HTTP 200 without a lease"
	}
	app = "?"
	if i := bytes.Index(b, appMarker); i >= 0 {
		rest := b[i+len(appMarker):]
		if j := bytes.IndexByte(rest, '"'); j > 0 && j <= 63 && validAppName(rest[:j]) {
			app = string(rest[:j])
		}
	}
	return app, "", ""
}

// validAppName holds an App name to the engine's rule, ^[a-z0-9_-]{1,63}$, so that nothing else of an answer can
// end up in a report.
func validAppName(b []byte) bool {
	for _, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return len(b) > 0
}

// loadAvg is the first three fields of /proc/loadavg, "" when unreadable.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
