// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// module is stripped from package names in the Go benchmark table.
const module = "github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app"

// Targets of the benchmark. They are reported, never asserted: a miss is a finding to explain, not a failed run.
const (
	targetRatio = 0.85 // ours / no-op leased plugin at the highest concurrency (the first benchmark's goal)
	// The leaner mint's goals, at the highest concurrency: the plugin process's CPU per token against the no-op's,
	// the no-op's Vault + plugin CPU per read against ours (the emulator, GitHub's stand-in, left out), and
	// throughput against the no-op's.
	targetPluginCPU  = 2.0
	targetVaultCPU   = 0.75
	targetThroughput = 0.6
	targetRSSMB      = 64.0 // plugin peak RSS under load
	targetJWTMins    = 5.0  // at most one JWT per this many minutes per mount
)

// writeReport prints the markdown summary of a run. Missing inputs are skipped, so that a partial run still
// reports what it measured.
func writeReport(w io.Writer, metaPath, loadPath, stormPath, goBenchPath string) error {
	var load *loadReport
	var storm *stormReport
	if loadPath != "" {
		load = &loadReport{}
		if err := readJSON(loadPath, load); err != nil {
			fmt.Fprintf(w, "> load results unreadable: %v\n\n", err)
			load = nil
		}
	}
	if stormPath != "" {
		storm = &stormReport{}
		if err := readJSON(stormPath, storm); err != nil {
			fmt.Fprintf(w, "> storm results unreadable: %v\n\n", err)
			storm = nil
		}
	}

	writeHeader(w, "## Benchmark summary", metaPath)
	if load != nil {
		writeLoad(w, load)
	}
	if storm != nil {
		writeStorm(w, storm)
	}
	if goBenchPath != "" {
		writeGoBench(w, goBenchPath)
	}
	writeTargets(w, load, storm)
	return nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(data)) == "null" {
		return fmt.Errorf("%s: the run produced no result", path)
	}
	return json.Unmarshal(data, v)
}

// readMeta reads "Key: value" lines in order.
func readMeta(path string) [][2]string {
	if path == "" {
		return nil
	}
	var out [][2]string
	eachLine(path, 0, func(line string) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) != "" {
			out = append(out, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
		}
	})
	return out
}

func phase(load *loadReport, name string, conc int) *phaseResult {
	for i := range load.Phases {
		if load.Phases[i].Target == name && load.Phases[i].Concurrency == conc {
			return &load.Phases[i]
		}
	}
	return nil
}

func concurrencies(load *loadReport) []int {
	var out []int
	seen := map[int]bool{}
	for _, p := range load.Phases {
		if !seen[p.Concurrency] {
			seen[p.Concurrency] = true
			out = append(out, p.Concurrency)
		}
	}
	return out
}

var targetLabel = map[string]string{
	"kv": "KV v1 read", "noop": "no-op leased", "shaped": "no-op, our shape", "github": "**github token**",
}

var loadTargets = []string{"kv", "noop", "shaped", "github"}

// perOp turns a CPU share (percent of all cores) at a rate into CPU microseconds per operation.
func perOp(load *loadReport, p *phaseResult, pct float64) float64 {
	if p.PerSecond <= 0 {
		return 0
	}
	cores := float64(max(load.Cores, 1))
	return pct / 100 * cores * 1e6 / p.PerSecond
}

// servingPlugin is the CPU share of the plugin process that served a phase.
func servingPlugin(p *phaseResult) float64 {
	switch p.Target {
	case "github":
		return p.CPU["plugin"]
	case "noop", "shaped":
		return p.CPU["noop"]
	}
	return 0
}

// cpuTotal is the CPU per operation of everything the benchmark runs: Vault, the serving plugin, the emulator and
// the load generator.
func cpuTotal(load *loadReport, p *phaseResult) float64 {
	return perOp(load, p, p.CPU["vault"]+servingPlugin(p)+p.CPU["emulator"]+p.CPU["loadgen"])
}

func writeLoad(w io.Writer, load *loadReport) {
	fmt.Fprintf(w, "### Load: %s per phase after a %s warm-up\n\n", load.Duration, load.Warmup)
	fmt.Fprintln(w, "| target | conc | ok/s | p50 ms | p99 ms | errors | GitHub calls/token | JWTs/1k tokens "+
		"| plugin RSS peak MB | CPU µs/op: Vault | plugin | emulator | loadgen | **sum** | machine busy % "+
		"| other procs % | leases revoked after |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, c := range concurrencies(load) {
		for _, name := range loadTargets {
			p := phase(load, name, c)
			if p == nil {
				continue
			}
			calls, jwts, rss, revoke := "–", "–", "–", "–"
			if name == "github" {
				calls = fmt.Sprintf("%.2f", p.CallsPerToken)
				jwts = fmt.Sprintf("%.2f", p.JWTsPer1000)
			}
			if p.PluginRSSPeakM > 0 {
				rss = fmt.Sprintf("%.1f", p.PluginRSSPeakM)
			}
			if p.LeasesRevoked > 0 || p.RevokeSeconds > 0 {
				revoke = fmt.Sprintf("%d in %.1f s", p.LeasesRevoked, p.RevokeSeconds)
			}
			ours := p.CPU["vault"] + p.CPU["plugin"] + p.CPU["noop"] + p.CPU["emulator"] + p.CPU["loadgen"]
			fmt.Fprintf(w, "| %s | %d | %.0f | %.2f | %.2f | %d | %s | %s | %s "+
				"| %.0f | %.0f | %.0f | %.0f | **%.0f** | %.0f | %.0f | %s |\n",
				targetLabel[name], c, p.PerSecond, p.P50Ms, p.P99Ms, p.Errors, calls, jwts, rss,
				perOp(load, p, p.CPU["vault"]), perOp(load, p, servingPlugin(p)), perOp(load, p, p.CPU["emulator"]),
				perOp(load, p, p.CPU["loadgen"]), cpuTotal(load, p), p.CPU["machine"], max(p.CPU["machine"]-ours, 0), revoke)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "CPU µs/op: CPU time each process spent per successful read over the measured window "+
		"(from /proc/PID/stat). "+
		"\"plugin\" is the process that served the phase (ours for github, the no-op plugin for the no-op rows). "+
		"Machine busy: all cores, from /proc/stat; other procs: busy time of processes outside the benchmark.")
	fmt.Fprintln(w)

	fmt.Fprintln(w, "| conc | github tokens/s | no-op/s | no-op, our shape/s | KV v1/s | **ours / no-op** "+
		"| ours / no-op our shape | same, by CPU per op without the emulator |")
	fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, c := range concurrencies(load) {
		gh, noop := phase(load, "github", c), phase(load, "noop", c)
		shaped, kv := phase(load, "shaped", c), phase(load, "kv", c)
		if gh == nil || noop == nil {
			continue
		}
		rate := func(p *phaseResult) float64 {
			if p == nil {
				return 0
			}
			return p.PerSecond
		}
		byCPU := "–"
		if o := cpuTotal(load, gh) - perOp(load, gh, gh.CPU["emulator"]); o > 0 {
			byCPU = fmt.Sprintf("%.2f", cpuTotal(load, noop)/o)
		}
		fmt.Fprintf(w, "| %d | %.0f | %.0f | %.0f | %.0f | **%s** | %s | %s |\n", c, gh.PerSecond, noop.PerSecond,
			rate(shaped), rate(kv), ratio(gh.PerSecond, noop.PerSecond), ratio(gh.PerSecond, rate(shaped)), byCPU)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "The last column is the no-op's CPU per op over ours without the emulator's share (the emulator "+
		"stands in for GitHub, which runs elsewhere): the ratio a CPU-bound Vault host would see if GitHub did not "+
		"share its cores.")
	fmt.Fprintln(w)
	mins := load.GitHubSeconds / 60
	fmt.Fprintf(w, "Distinct App JWTs over the %.1f min of GitHub load phases (warm-ups and cleanups included): %d. "+
		"Plugin VmHWM (process lifetime) after the load phases: %.1f MB; no-op plugin: %.1f MB.\n\n",
		mins, load.JWTsTotal, load.PluginHWMM, load.NoopHWMM)
	fmt.Fprintf(w, "Leases: %s.\n\n", load.Cleanup)
	for _, n := range load.Notes {
		fmt.Fprintf(w, "- note: %s\n", n)
	}
	if len(load.Notes) > 0 {
		fmt.Fprintln(w)
	}
}

func ratio(a, b float64) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func writeStorm(w io.Writer, s *stormReport) {
	fmt.Fprintf(w, "### Revocation storm: %d tokens at concurrency %d, lease TTL %.0f s, left to expire\n\n",
		s.Requested, s.Concurrency, s.TTLSeconds)
	fmt.Fprintln(w, "| figure | value |")
	fmt.Fprintln(w, "|---|--:|")
	row := func(k string, format string, args ...any) {
		fmt.Fprintf(w, "| %s | "+format+" |\n", append([]any{k}, args...)...)
	}
	row("tokens minted (errors)", "%d (%d)", s.Minted, s.MintErrors)
	row("minting time, rate", "%.1f s, %.0f/s", s.MintSeconds, s.MintPerSecond)
	row("GitHub calls per minted token; new JWTs while minting", "%.2f; %d", s.MintCallsPerTok, s.MintNewJWTs)
	row("leases already expired and revoked when minting ended", "%d", s.RevokedDuringMnt)
	row("every token revoked at the emulator", "%s (%d of %d)", yes(s.AllRevoked), s.Revoked, s.Minted)
	row("last mint → every revocation seen", "%.1f s", s.SecondsAfterLast)
	row("… of which after the last lease's TTL ran out", "%.1f s", s.LagAfterExpiry)
	row("revocations in flight at the emulator, at most", "%d", s.MaxInFlight)
	row("revocation rate: peak 1 s window, mean", "%.0f/s, %.0f/s", s.PeakRevokesPerSec, s.MeanRevokesPerSec)
	row("expired but not yet revoked, at worst", "%d", s.MaxBacklog)
	row("DELETE /installation/token after the reset (other calls)", "%d (%d)", s.DeleteCalls, s.OtherCalls)
	row("DELETE statuses in the emulator log, whole storm", "%s", describeStatuses(s.DeleteStatuses))
	row("revocation errors in Vault's log", "%d", s.VaultRevokeErrors)
	row("leases left under the role (LIST sys/leases/lookup)", "%d", s.LeasesLeft)
	irr := "n/a"
	if s.Irrevocable >= 0 {
		irr = strconv.Itoa(s.Irrevocable)
	}
	row("irrevocable leases (sys/leases/count)", "%s", irr)
	row("connections to the emulator, peak: open / TIME_WAIT, minting", "%d / %d", s.MintConns, s.MintTimeWait)
	row("connections to the emulator, peak: open / TIME_WAIT, revoking", "%d / %d", s.RevokeConns, s.RevokeTimeWait)
	row("plugin RSS peak during the storm", "%.1f MB", s.PluginRSSPeakM)
	row("CPU % while revoking: vault / plugin / emulator / machine", "%.0f / %.0f / %.0f / %.0f",
		s.CPU["vault"], s.CPU["plugin"], s.CPU["emulator"], s.CPU["machine"])
	row("storm total", "%.0f s", s.TotalSeconds)
	fmt.Fprintln(w)
	if s.VaultErrorSample != "" {
		fmt.Fprintf(w, "First revocation error in Vault's log: `%s`\n\n", s.VaultErrorSample)
	}
	if s.FirstMintError != "" {
		fmt.Fprintf(w, "First mint error: `%s`\n\n", s.FirstMintError)
	}
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

// goBench is one line of go test -bench output.
type goBench struct {
	pkg, name string
	iters     string
	metrics   [][2]string // value, unit
}

func parseGoBench(path string) []goBench {
	var out []goBench
	pkg := ""
	eachLine(path, 0, func(line string) {
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			return
		}
		if !strings.HasPrefix(line, "Benchmark") {
			return
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			return
		}
		b := goBench{pkg: pkg, name: f[0], iters: f[1]}
		for i := 2; i+1 < len(f); i += 2 {
			b.metrics = append(b.metrics, [2]string{f[i], f[i+1]})
		}
		out = append(out, b)
	})
	return out
}

func writeGoBench(w io.Writer, path string) {
	benches := parseGoBench(path)
	fmt.Fprintln(w, "### Go benchmarks (`go test -bench . -benchmem -run '^$'`)")
	fmt.Fprintln(w)
	if len(benches) == 0 {
		fmt.Fprintf(w, "No benchmark lines in %s.\n\n", path)
		return
	}
	fmt.Fprintln(w, "| package | benchmark | iterations | ns/op | B/op | allocs/op | other |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|---|")
	for _, b := range benches {
		std := map[string]string{}
		var other []string
		for _, m := range b.metrics {
			switch m[1] {
			case "ns/op", "B/op", "allocs/op":
				std[m[1]] = m[0]
			default:
				other = append(other, m[0]+" "+m[1])
			}
		}
		pkg := strings.TrimPrefix(strings.TrimPrefix(b.pkg, module), "/")
		if pkg == "" {
			pkg = "(root)"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", pkg, b.name, b.iters,
			orDash(std["ns/op"]), orDash(std["B/op"]), orDash(std["allocs/op"]), strings.Join(other, ", "))
	}
	fmt.Fprintln(w)
}

// writeHeader prints a report's title and the table of its meta file ("Key: value" lines about the run).
func writeHeader(w io.Writer, title, metaPath string) {
	fmt.Fprintln(w, title)
	fmt.Fprintln(w)
	if meta := readMeta(metaPath); len(meta) > 0 {
		fmt.Fprintln(w, "| | |")
		fmt.Fprintln(w, "|---|---|")
		for _, kv := range meta {
			fmt.Fprintf(w, "| %s | %s |\n", kv[0], kv[1])
		}
		fmt.Fprintln(w)
	}
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// writeTargets checks the run against the targets.
func writeTargets(w io.Writer, load *loadReport, storm *stormReport) {
	fmt.Fprintln(w, "### Targets")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | measured | met |")
	fmt.Fprintln(w, "|---|---|:-:|")
	row := func(t, m string, ok bool) { fmt.Fprintf(w, "| %s | %s | %s |\n", t, m, mark(ok)) }
	if load != nil {
		cs := concurrencies(load)
		if len(cs) > 0 {
			top := cs[len(cs)-1]
			gh, noop := phase(load, "github", top), phase(load, "noop", top)
			if gh != nil && noop != nil && noop.PerSecond > 0 {
				r := gh.PerSecond / noop.PerSecond
				row(fmt.Sprintf("ours / no-op leased plugin ≥ %.2f at concurrency %d", targetRatio, top),
					fmt.Sprintf("%.2f (%.0f vs %.0f/s)", r, gh.PerSecond, noop.PerSecond), r >= targetRatio)
				// The leaner-mint targets: the plugin process's own CPU, and Vault's with it, against the no-op's.
				ours, theirs := perOp(load, gh, servingPlugin(gh)), perOp(load, noop, servingPlugin(noop))
				row(fmt.Sprintf("plugin CPU per token ≤ %.0f× the no-op plugin's at concurrency %d", targetPluginCPU, top),
					fmt.Sprintf("%.2f× (%.0f vs %.0f µs)", ours/theirs, ours, theirs), ours <= targetPluginCPU*theirs)
				vaultOurs := ours + perOp(load, gh, gh.CPU["vault"])
				vaultTheirs := theirs + perOp(load, noop, noop.CPU["vault"])
				row(fmt.Sprintf("no-op / ours by Vault + plugin CPU per read ≥ %.2f at concurrency %d", targetVaultCPU, top),
					fmt.Sprintf("%.2f (%.0f vs %.0f µs)", vaultTheirs/vaultOurs, vaultTheirs, vaultOurs), vaultTheirs >= targetVaultCPU*vaultOurs)
				row(fmt.Sprintf("ours / no-op throughput ≥ %.2f at concurrency %d", targetThroughput, top),
					fmt.Sprintf("%.2f", r), r >= targetThroughput)
			}
		}
		errs, minC, maxC := 0, 1e9, 0.0
		var rss float64
		for _, p := range load.Phases {
			errs += p.Errors
			if p.Target == "github" {
				minC, maxC = min(minC, p.CallsPerToken), max(maxC, p.CallsPerToken)
				rss = max(rss, p.PluginRSSPeakM)
			}
		}
		row("zero errors in the load phases", strconv.Itoa(errs), errs == 0)
		row("1.00 GitHub calls per minted token", fmt.Sprintf("%.2f … %.2f over the github phases", minC, maxC),
			minC == 1 && maxC == 1)
		// The JWT target spans every GitHub load of the run: the load phases and the storm's minting (its new JWTs
		// are those the emulator had not seen before it, as the distinct-JWT set is reset only after minting).
		jwts, span := load.JWTsTotal, time.Duration(load.GitHubSeconds*float64(time.Second))
		if storm != nil && !storm.MintEnd.IsZero() && !load.GitHubStart.IsZero() {
			jwts += storm.MintNewJWTs
			span = storm.MintEnd.Sub(load.GitHubStart)
		}
		jwtOK, per := true, "–"
		if mins := span.Minutes(); mins > 0 {
			allowed := int(mins/targetJWTMins) + 1
			jwtOK = jwts <= allowed
			per = fmt.Sprintf("%d new distinct JWTs in %.1f min of GitHub load (at most %d allowed)", jwts, mins, allowed)
		}
		row(fmt.Sprintf("at most one JWT per %.0f minutes per mount", targetJWTMins), per, jwtOK)
		if storm != nil {
			rss = max(rss, storm.PluginRSSPeakM)
		}
		row(fmt.Sprintf("plugin peak RSS under load < %.0f MB", targetRSSMB),
			fmt.Sprintf("%.1f MB (VmRSS sampled every 50–100 ms)", rss),
			rss > 0 && rss < targetRSSMB)
	}
	if storm != nil {
		row("storm: every token revoked", fmt.Sprintf("%d of %d", storm.Revoked, storm.Minted),
			storm.AllRevoked && storm.Minted == storm.Requested)
		row("storm: no lease left behind", strconv.Itoa(storm.LeasesLeft), storm.LeasesLeft == 0)
		serr := storm.MintErrors + storm.VaultRevokeErrors
		row("storm: no error (mints, revocations)",
			fmt.Sprintf("%d mint, %d revocation", storm.MintErrors, storm.VaultRevokeErrors), serr == 0)
	}
	fmt.Fprintln(w)
}

func mark(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}
