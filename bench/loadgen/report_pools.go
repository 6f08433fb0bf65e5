// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
)

// The targets of the App pool scenarios, as BENCHMARKS.md states them. Reported, never asserted.
const (
	targetPrevCPU      = 1.05 // plugin CPU per token of a single-App mount against the earlier release's
	targetPoolNoop     = 0.7  // single-App mount's throughput against the no-op leased plugin
	targetPoolHealthy  = 0.9  // a pool with one App limited against a healthy single-App mount
	targetProbesPerSec = 1.0  // calls the limited App sees per second
)

// writePoolsReport prints the markdown summary of -mode pools.
func writePoolsReport(w io.Writer, metaPath, poolsPath string) error {
	rep := &poolsReport{}
	if err := readJSON(poolsPath, rep); err != nil {
		return err
	}
	writeHeader(w, "## App pools (`make bench-pools`)", metaPath)
	type row struct {
		target, measured string
		ok               bool
	}
	var targets []row
	add := func(t, m string, ok bool) { targets = append(targets, row{t, m, ok}) }

	if s := rep.Single; s != nil && len(s.Rounds) > 0 {
		fmt.Fprintf(w, "### Single-App mount: this build (%s) against %s and the no-op plugin\n\n", s.Version, s.PrevVersion)
		fmt.Fprintf(w, "Concurrency %d, %d round(s) of %s per target after a %s warm-up, the order of the targets "+
			"turning each round; all three mounted in the same Vault, each plugin in its own process. Plugin CPU: "+
			"the serving plugin process's user and system time (/proc/PID/stat) per successful read.\n\n",
			rep.Concurrency, len(s.Rounds), rep.Duration, rep.Warmup)
		fmt.Fprintln(w, "| round | target | ok/s | p50 ms | p99 ms | errors | plugin CPU µs/token | Vault CPU µs/token "+
			"| machine busy % | other procs % | load average after |")
		fmt.Fprintln(w, "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|---|")
		for i, r := range s.Rounds {
			for _, m := range []measured{r.Noop, r.Prev, r.Cur} {
				if m.Path == "" {
					continue
				}
				fmt.Fprintf(w, "| %d | %s | %.0f | %.2f | %.2f | %d | %.0f | %.0f | %.0f | %.0f | %s |\n", i+1, m.Label,
					m.PerSecond, m.P50Ms, m.P99Ms, m.Errors, m.PluginCPUus, m.VaultCPUus, m.CPU["machine"], otherProcs(m),
					m.LoadAvg)
			}
		}
		fmt.Fprintln(w)
		prevCPU, curCPU := pooledCPU(s.Rounds, func(r singleRound) measured { return r.Prev }),
			pooledCPU(s.Rounds, func(r singleRound) measured { return r.Cur })
		var noopRate, curRate, prevRate float64
		for _, r := range s.Rounds {
			noopRate += r.Noop.PerSecond
			curRate += r.Cur.PerSecond
			prevRate += r.Prev.PerSecond
		}
		n := float64(len(s.Rounds))
		noopRate, curRate, prevRate = noopRate/n, curRate/n, prevRate/n
		var perRound []string
		for _, r := range s.Rounds {
			perRound = append(perRound, ratio(r.Cur.PluginCPUus, r.Prev.PluginCPUus))
		}
		fmt.Fprintln(w, "| over all rounds | no-op | "+s.PrevVersion+" | this build | this build / "+s.PrevVersion+" |")
		fmt.Fprintln(w, "|---|--:|--:|--:|--:|")
		fmt.Fprintf(w, "| plugin CPU per token, µs | %.0f | %.0f | %.0f | **%s** (rounds: %s) |\n",
			pooledCPU(s.Rounds, func(r singleRound) measured { return r.Noop }), prevCPU, curCPU, ratio(curCPU, prevCPU),
			strings.Join(perRound, ", "))
		fmt.Fprintf(w, "| tokens/s (mean of rounds) | %.0f | %.0f | %.0f | %s |\n", noopRate, prevRate, curRate,
			ratio(curRate, prevRate))
		fmt.Fprintf(w, "| throughput / no-op | 1 | %s | **%s** | |\n", ratio(prevRate, noopRate), ratio(curRate, noopRate))
		noopVP := pooledVaultPlugin(s.Rounds, func(r singleRound) measured { return r.Noop })
		prevVP := pooledVaultPlugin(s.Rounds, func(r singleRound) measured { return r.Prev })
		curVP := pooledVaultPlugin(s.Rounds, func(r singleRound) measured { return r.Cur })
		fmt.Fprintf(w, "| Vault + plugin CPU per token, µs | %.0f | %.0f | %.0f | %s |\n", noopVP, prevVP, curVP, ratio(curVP, prevVP))
		fmt.Fprintf(w, "| no-op / ours by Vault + plugin CPU per token | 1 | %s | %s | |\n\n", ratio(noopVP, prevVP), ratio(noopVP, curVP))
		fmt.Fprintln(w, "On a machine that other work shares, how much of it each window gets moves the rates more than "+
			"anything the plugin does; CPU per token is steadier. The last row is the throughput ratio a host whose "+
			"cores Vault and the plugin have to themselves would see.")
		fmt.Fprintln(w)
		if prevCPU > 0 && curCPU > 0 {
			add(fmt.Sprintf("single-App mount: plugin CPU per token within %.0f %% of %s's", (targetPrevCPU-1)*100,
				s.PrevVersion), fmt.Sprintf("%s (%.0f vs %.0f µs)", ratio(curCPU, prevCPU), curCPU, prevCPU),
				curCPU <= targetPrevCPU*prevCPU)
		}
		if noopRate > 0 {
			add(fmt.Sprintf("single-App mount: throughput / no-op leased plugin ≥ %.2f", targetPoolNoop),
				fmt.Sprintf("%s (%.0f vs %.0f/s; %s's %s); by Vault + plugin CPU per token %s", ratio(curRate, noopRate),
					curRate, noopRate, s.PrevVersion, ratio(prevRate, noopRate), ratio(noopVP, curVP)),
				curRate >= targetPoolNoop*noopRate)
		}
	}

	if len(rep.Pool) > 0 {
		lim := rep.Pool[0].LimitedApp
		fmt.Fprintf(w, "### Pool of three Apps, %s limited for the whole run\n\n", lim.Name)
		fmt.Fprintf(w, "Concurrency %d, windows of %s after a %s warm-up, in the order healthy single-App mount, "+
			"pool, healthy, pool, …: each pool window is compared with the mean of the healthy windows on either side "+
			"of it. The limit is on from the pool's warm-up to the end of its window; each kind of limit has a mount "+
			"of its own (pool-primary, pool-secondary), so that the second starts from an engine that has seen no "+
			"limit. Probes: calls the emulator saw with the limited App's JWT or its installation's tokens (App %d), "+
			"GET /rate_limit left out.\n\n", rep.Concurrency, rep.Duration, rep.Warmup, lim.AppID)
		fmt.Fprintln(w, "| limit (per-App fault) | healthy single-App ok/s before / after | pool ok/s | **pool / healthy** "+
			"| Vault + plugin CPU µs/token: healthy (mean), pool | healthy / pool by that CPU | p50 / p99 ms "+
			"| client errors: window (warm-up) | mints by App | probes of "+lim.Name+": total, **per s**, per 1 s sample "+
			"| limited App's calls by route | GET /rate_limit by App | load average after |")
		fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|---|---|---|---|---|")
		for _, p := range rep.Pool {
			var samples []string
			for _, s := range p.ProbeSamples {
				samples = append(samples, fmt.Sprintf("%.0f", s))
			}
			fmt.Fprintf(w, "| %s `%s` | %.0f / %.0f | %.0f | **%s** | %.0f, %.0f | %s | %.2f / %.2f | %d (%d) | %s | %d, **%.2f**, [%s] | %s | %s | %s |\n",
				p.Limit, faultJSON(p.Fault), p.HealthyBefore.PerSecond, p.HealthyAfter.PerSecond, p.Pool.PerSecond,
				ratio(p.Pool.PerSecond, p.healthyRate()), p.healthyCPU(), vaultPlugin(p.Pool),
				ratio(p.healthyCPU(), vaultPlugin(p.Pool)),
				p.Pool.P50Ms, p.Pool.P99Ms, p.Pool.Errors, p.WarmupErrors, counts(p.Pool.ByApp), p.Probes, p.ProbesPerSec,
				strings.Join(samples, " "), counts(p.LimitedCalls), counts(p.RateLimitGets), p.Pool.LoadAvg)
		}
		fmt.Fprintln(w)
		errLines := false
		for _, p := range rep.Pool {
			if p.Pool.FirstError != "" || p.WarmupError != "" {
				fmt.Fprintf(w, "- %s limit: errors %s; first error %q (warm-up: %q)\n", p.Limit,
					counts(p.Pool.ErrorKinds), p.Pool.FirstError, p.WarmupError)
				errLines = true
			}
			add(fmt.Sprintf("pool, %s limit: zero client errors", p.Limit),
				fmt.Sprintf("%d in the window, %d in the warm-up", p.Pool.Errors, p.WarmupErrors), p.Pool.Errors+p.WarmupErrors == 0)
			if h := p.healthyRate(); h > 0 {
				add(fmt.Sprintf("pool, %s limit: throughput ≥ %.1f of a healthy single-App mount's", p.Limit, targetPoolHealthy),
					fmt.Sprintf("%s (%.0f vs %.0f/s); by Vault + plugin CPU per token %s", ratio(p.Pool.PerSecond, h),
						p.Pool.PerSecond, h, ratio(p.healthyCPU(), vaultPlugin(p.Pool))),
					p.Pool.PerSecond >= targetPoolHealthy*h)
			}
			// One probe a second allows ⌊T⌋+1 in a window of T seconds: one at its start and one after each second.
			allowed := int(math.Floor(targetProbesPerSec*p.Pool.Seconds)) + 1
			add(fmt.Sprintf("pool, %s limit: the limited App sees at most %.0f probe a second", p.Limit, targetProbesPerSec),
				fmt.Sprintf("%.2f/s (%d in %.1f s, at most %d allowed; at most %.0f in a 1 s sample)", p.ProbesPerSec,
					p.Probes, p.Pool.Seconds, allowed, slices.Max(append([]float64{0}, p.ProbeSamples...))),
				p.Probes <= allowed)
		}
		if errLines {
			fmt.Fprintln(w)
		}
	}

	if b := rep.Budget; b != nil {
		writeBudget(w, rep, b)
		add("budget: zero client errors", fmt.Sprintf("%d", b.Errors), b.Errors == 0)
	}

	if len(targets) > 0 {
		fmt.Fprintln(w, "### Targets")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| target | measured | met |")
		fmt.Fprintln(w, "|---|---|:-:|")
		for _, t := range targets {
			fmt.Fprintf(w, "| %s | %s | %s |\n", t.target, t.measured, mark(t.ok))
		}
		fmt.Fprintln(w)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "- note: %s\n", n)
	}
	return nil
}

func writeBudget(w io.Writer, rep *poolsReport, b *budgetBench) {
	names := b.Apps
	if len(names) == 0 {
		names = slices.Sorted(maps.Keys(b.LeftPct))
	}
	// Answers that named no App of the pool (an engine without pools answers without app) get a column too.
	cols := slices.Clone(names)
	seen := map[string]bool{}
	for _, bk := range b.Buckets {
		for k := range bk {
			if !slices.Contains(names, k) && !seen[k] {
				seen[k] = true
				cols = append(cols, k)
			}
		}
	}
	fmt.Fprintf(w, "### Budget: three Apps with %s of their installations' budget left\n\n", pctList(names, b.LeftPct))
	fmt.Fprintf(w, "One load of %.0f s at concurrency %d on a cold mount (the engine has seen no budget yet), "+
		"rate_limit_refresh %s, each installation's budget set through the emulator (limit %d); at %.2f s the "+
		"emulator's accounting of %s drops to %d %%. Shares are of successful mints, by the answer's `app`; "+
		"\"settled\" and \"followed\" are the end of the first %d ms bucket from which the App with the most left "+
		"served at least %.0f %% of every bucket.\n\n", b.Seconds, rep.Concurrency, b.Refresh, b.Limit, b.ChangeAt,
		b.ChangeApp, b.ChangeTo, b.BucketMs, settleShare*100)
	fmt.Fprintln(w, "| App | left | share, first half | share once settled | left after the change | "+
		"share once followed | GET /rate_limit in the run | engine's budget before / after the change |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|---|")
	for _, n := range names {
		after := b.Remaining[n]
		if n == b.ChangeApp {
			after = b.Limit * b.ChangeTo / 100
		}
		eng := "–"
		if b.EngineBefore != nil || b.EngineAfter != nil {
			eng = fmt.Sprintf("%s / %s", intOrDash(b.EngineBefore, n), intOrDash(b.EngineAfter, n))
		}
		fmt.Fprintf(w, "| %s | %d (%d %%) | %s | %s | %d | %s | %d | %s |\n", n, b.Remaining[n], b.LeftPct[n],
			pct(b.SharesFirst, n), pct(b.SharesBefore, n), after, pct(b.SharesAfter, n), b.RateLimitGets[n], eng)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "- %.0f mints/s, %d errors%s.\n", b.PerSecond, b.Errors, firstErr(b.FirstError))
	fmt.Fprintf(w, "- From a cold start, the shares settled on %s within **%s**.\n", b.Leader, secs(b.SettleS))
	last := fmt.Sprintf("%s's last mint came %s after the change", b.Leader, secs(b.LastOldS))
	if b.LastOldS < 0 {
		last = fmt.Sprintf("%s minted nothing after the %d ms bucket in which the change fell", b.Leader, b.BucketMs)
	}
	fmt.Fprintf(w, "- After the change (at %.2f s) the shares followed to %s within **%s**; %s.\n\n", b.ChangeAt,
		b.NewLeader, secs(b.FollowS), last)
	// One row a second: the mints of each App in it.
	per := 1000 / max(b.BucketMs, 1)
	fmt.Fprintf(w, "| second | mints | %s |\n", strings.Join(cols, " | "))
	fmt.Fprintf(w, "|--:|--:|%s\n", strings.Repeat("--:|", len(cols)))
	for s := 0; s*per < len(b.Buckets); s++ {
		sum := map[string]int{}
		for _, bk := range b.Buckets[s*per : min((s+1)*per, len(b.Buckets))] {
			for k, v := range bk {
				sum[k] += v
			}
		}
		total := sumCounts(sum)
		var cells []string
		for _, n := range cols {
			cells = append(cells, fmt.Sprintf("%d", sum[n]))
		}
		mark := ""
		if float64(s) <= b.ChangeAt && b.ChangeAt < float64(s+1) {
			mark = " (change)"
		}
		fmt.Fprintf(w, "| %d–%d%s | %d | %s |\n", s, s+1, mark, total, strings.Join(cells, " | "))
	}
	fmt.Fprintln(w)
}

// pooledVaultPlugin is Vault's and the plugin's CPU per token over every round, weighted by the tokens of each.
func pooledVaultPlugin(rounds []singleRound, pick func(singleRound) measured) float64 {
	var us, ok float64
	for _, r := range rounds {
		m := pick(r)
		us += (m.PluginCPUus + m.VaultCPUus) * float64(m.OK)
		ok += float64(m.OK)
	}
	if ok == 0 {
		return 0
	}
	return us / ok
}

// vaultPlugin is a window's Vault and plugin CPU per token.
func vaultPlugin(m measured) float64 { return m.PluginCPUus + m.VaultCPUus }

// pooledCPU is the plugin CPU per token over every round, weighted by the tokens of each.
func pooledCPU(rounds []singleRound, pick func(singleRound) measured) float64 {
	var us, ok float64
	for _, r := range rounds {
		m := pick(r)
		us += m.PluginCPUus * float64(m.OK)
		ok += float64(m.OK)
	}
	if ok == 0 {
		return 0
	}
	return us / ok
}

func otherProcs(m measured) float64 {
	return max(m.CPU["machine"]-m.CPU["vault"]-m.CPU["plugin"]-m.CPU["emulator"]-m.CPU["loadgen"], 0)
}

func faultJSON(f map[string]any) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(f)) {
		parts = append(parts, fmt.Sprintf("%s: %v", k, f[k]))
	}
	return strings.Join(parts, ", ")
}

// counts prints a map in key order, "a: 1, b: 2"; "–" when empty.
func counts(m map[string]int) string {
	if len(m) == 0 {
		return "–"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func pct(m map[string]float64, k string) string {
	if m == nil {
		return "–"
	}
	return fmt.Sprintf("%.0f %%", 100*m[k])
}

func pctList(names []string, m map[string]int) string {
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%d %%", m[n]))
	}
	return strings.Join(parts, ", ")
}

func intOrDash(m map[string]int, k string) string {
	if v, ok := m[k]; ok {
		return fmt.Sprintf("%d", v)
	}
	return "–"
}

func secs(s float64) string {
	if s < 0 {
		return "never (within the run)"
	}
	return fmt.Sprintf("%.2f s", s)
}

func firstErr(s string) string {
	if s == "" {
		return ""
	}
	return fmt.Sprintf(" (first: %q)", s)
}
