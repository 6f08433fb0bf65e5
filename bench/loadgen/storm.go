// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// stormConfig is what -mode storm needs.
type stormConfig struct {
	vault       *vaultClient
	hot         *http.Client
	emu         *emulator
	path        string // github/token/storm: a role whose TTL is ttl
	count       int
	concurrency int
	ttl         time.Duration
	wait        time.Duration // the longest wait for revocations after the last mint
	pluginBin   string
	vaultPID    int
	emuPID      int
	vaultLog    string
	emuLog      string
	emuPort     int
}

// stormReport is the output of -mode storm.
type stormReport struct {
	Requested       int       `json:"requested"`
	Concurrency     int       `json:"concurrency"`
	TTLSeconds      float64   `json:"ttl_seconds"`
	Minted          int       `json:"minted"`
	MintErrors      int       `json:"mint_errors"`
	FirstMintError  string    `json:"first_mint_error,omitempty"`
	MintSeconds     float64   `json:"mint_seconds"`
	MintPerSecond   float64   `json:"mint_per_second"`
	MintCallsPerTok float64   `json:"mint_github_calls_per_token"`
	MintNewJWTs     int       `json:"mint_new_jwts"`
	MintEnd         time.Time `json:"mint_end"`
	// Leases that had expired and been revoked before the last mint (when minting outlasts the TTL).
	RevokedDuringMnt int `json:"revoked_during_minting"`

	AllRevoked        bool           `json:"all_revoked"`
	Revoked           int            `json:"revoked"`                   // storm tokens the emulator saw revoked
	SecondsAfterLast  float64        `json:"seconds_after_last_mint"`   // last mint → every revocation seen
	LagAfterExpiry    float64        `json:"lag_after_last_expiry_s"`   // the same, minus the last lease's TTL
	MaxBacklog        int            `json:"max_backlog"`               // past their TTL, not yet revoked: worst
	PeakRevokesPerSec float64        `json:"peak_revocations_per_sec"`  // best one-second window seen while polling
	MeanRevokesPerSec float64        `json:"mean_revocations_per_sec"`  // from the first revocation to the last
	MaxInFlight       int            `json:"emulator_max_in_flight"`    // since the stats reset after the last mint
	DeleteCalls       int            `json:"delete_calls"`              // DELETE /installation/token since the reset
	OtherCalls        int            `json:"other_calls"`               // anything else the emulator saw since the reset
	DeleteStatuses    map[string]int `json:"delete_statuses,omitempty"` // from the emulator's request log, whole storm
	VaultRevokeErrors int            `json:"vault_revoke_errors"`       // Vault log lines about failed revocations
	VaultErrorSample  string         `json:"vault_error_sample,omitempty"`
	LeasesLeft        int            `json:"leases_left"`
	Irrevocable       int            `json:"irrevocable_leases"`
	PluginRSSPeakM    float64        `json:"plugin_rss_peak_mb"`
	// Connections to the emulator: client-side ESTABLISHED and TIME_WAIT peaks while minting and while revoking.
	MintConns      int                `json:"mint_conns_peak"`
	MintTimeWait   int                `json:"mint_time_wait_peak"`
	RevokeConns    int                `json:"revoke_conns_peak"`
	RevokeTimeWait int                `json:"revoke_time_wait_peak"`
	CPU            map[string]float64 `json:"cpu_percent"` // from the last mint to the last revocation
	TotalSeconds   float64            `json:"total_seconds"`
}

// runStorm mints count tokens from a short-TTL role and leaves every lease to expire, then watches the emulator
// until it has seen every token revoked. The emulator's stats are reset after the last mint, so that max_in_flight
// covers the revocations (and whatever minting calls were still running at that instant: none, as all workers
// have returned).
func runStorm(ctx context.Context, cfg stormConfig, logf func(string, ...any)) (*stormReport, error) {
	rep := &stormReport{Requested: cfg.count, Concurrency: cfg.concurrency, TTLSeconds: cfg.ttl.Seconds()}
	start := time.Now()
	vaultLogOff, emuLogOff := fileSize(cfg.vaultLog), fileSize(cfg.emuLog)

	before, err := cfg.emu.stats(ctx)
	if err != nil {
		return nil, err
	}
	pluginPID, _ := findPluginPID(cfg.pluginBin, cfg.vaultPID)
	var rss *rssSampler
	if pluginPID > 0 {
		rss = sampleRSS(pluginPID, 100*time.Millisecond)
	}

	// Mint: workers take numbers until count is reached; each remembers when its mints completed, because that is
	// when Vault started each lease's TTL.
	logf("storm: minting %d tokens from %s at concurrency %d (lease TTL %s)",
		cfg.count, cfg.path, cfg.concurrency, cfg.ttl)
	url := cfg.vault.addr + "/v1/" + cfg.path
	tcp := sampleTCP(cfg.emuPort, 100*time.Millisecond)
	var next atomic.Int64
	var mu sync.Mutex
	var done []time.Time
	var errs int
	var firstErr string
	var wg sync.WaitGroup
	mintStart := time.Now()
	for range cfg.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			var mine []time.Time
			var myErrs int
			var myFirst string
			for next.Add(1) <= int64(cfg.count) && ctx.Err() == nil {
				if msg := readOnce(ctx, cfg.hot, url, cfg.vault.token, true, &buf); msg != "" {
					myErrs++
					if myFirst == "" {
						myFirst = msg
					}
					continue
				}
				mine = append(mine, time.Now())
			}
			mu.Lock()
			done = append(done, mine...)
			errs += myErrs
			if firstErr == "" {
				firstErr = myFirst
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	lastMint := time.Now()
	rep.MintEnd = lastMint
	rep.MintConns, rep.MintTimeWait = tcp.stop()
	slices.SortFunc(done, func(a, b time.Time) int { return a.Compare(b) })
	rep.Minted, rep.MintErrors, rep.FirstMintError = len(done), errs, firstErr
	rep.MintSeconds = round2(lastMint.Sub(mintStart).Seconds())
	rep.MintPerSecond = round1(float64(len(done)) / lastMint.Sub(mintStart).Seconds())

	atLast, err := cfg.emu.stats(ctx)
	if err != nil {
		return nil, err
	}
	if rep.Minted > 0 {
		rep.MintCallsPerTok = round2(float64(atLast.TotalCalls-before.TotalCalls-
			(atLast.Calls["DELETE /installation/token"]-before.Calls["DELETE /installation/token"])) / float64(rep.Minted))
	}
	rep.MintNewJWTs = atLast.DistinctJWTs - before.DistinctJWTs
	rep.RevokedDuringMnt = atLast.TokensRevoked - before.TokensRevoked
	logf("storm: minted %d in %.1f s (%.0f/s), %d errors; %d already revoked when minting ended",
		rep.Minted, rep.MintSeconds, rep.MintPerSecond, errs, rep.RevokedDuringMnt)
	if err := cfg.emu.resetStats(ctx); err != nil {
		return nil, err
	}
	cpu := startCPU(map[string]int{
		"vault": cfg.vaultPID, "plugin": pluginPID, "emulator": cfg.emuPID, "loadgen": selfPID(),
	})
	tcp = sampleTCP(cfg.emuPort, 100*time.Millisecond)

	// Watch the revocations arrive. expiredBy counts the leases whose TTL has run out at t; the backlog is what has
	// expired but is not revoked yet.
	expiredBy := func(t time.Time) int {
		n, _ := slices.BinarySearchFunc(done, t.Add(-cfg.ttl), func(a, b time.Time) int {
			if a.After(b) {
				return 1
			}
			return -1 // equal counts as expired: the search then lands after it
		})
		return n
	}
	type sample struct {
		t time.Time
		n int
	}
	var samples []sample
	deadline := lastMint.Add(cfg.wait)
	var lastRevoke time.Time
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	for {
		st, err := cfg.emu.stats(ctx)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		n := st.TokensRevoked - before.TokensRevoked
		if len(samples) == 0 || n != samples[len(samples)-1].n {
			lastRevoke = now
		}
		samples = append(samples, sample{now, n})
		rep.MaxBacklog = max(rep.MaxBacklog, expiredBy(now)-n)
		rep.Revoked = n
		if n >= rep.Minted {
			rep.AllRevoked = true
			rep.MaxInFlight = st.MaxInFlight
			rep.DeleteCalls = st.Calls["DELETE /installation/token"]
			rep.OtherCalls = st.TotalCalls - rep.DeleteCalls
			break
		}
		if now.After(deadline) {
			rep.MaxInFlight = st.MaxInFlight
			rep.DeleteCalls = st.Calls["DELETE /installation/token"]
			rep.OtherCalls = st.TotalCalls - rep.DeleteCalls
			logf("storm: gave up after %s: %d of %d revoked", cfg.wait, n, rep.Minted)
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-poll.C:
		}
	}
	rep.CPU = cpu.stop()
	rep.RevokeConns, rep.RevokeTimeWait = tcp.stop()
	rep.SecondsAfterLast = round2(lastRevoke.Sub(lastMint).Seconds())
	rep.LagAfterExpiry = round2(lastRevoke.Sub(lastMint).Seconds() - cfg.ttl.Seconds())
	// The best one-second window between polls, and the mean from the first revocation seen to the last.
	var first time.Time
	for i, s := range samples {
		if first.IsZero() && s.n > 0 {
			first = s.t
		}
		for j := i + 1; j < len(samples); j++ {
			if d := samples[j].t.Sub(s.t); d >= time.Second {
				rep.PeakRevokesPerSec = max(rep.PeakRevokesPerSec, round1(float64(samples[j].n-s.n)/d.Seconds()))
				break
			}
		}
	}
	if !first.IsZero() && lastRevoke.After(first) {
		rep.MeanRevokesPerSec = round1(float64(rep.Revoked) / lastRevoke.Sub(first).Seconds())
	}
	logf("storm: %d/%d revoked %.1f s after the last mint (lag after the last expiry %.1f s), max %d in flight",
		rep.Revoked, rep.Minted, rep.SecondsAfterLast, rep.LagAfterExpiry, rep.MaxInFlight)

	// Vault deletes a lease just after its Revoke returns; give the last ones a moment before counting.
	leaseDeadline := time.Now().Add(30 * time.Second)
	for {
		rep.LeasesLeft, err = cfg.vault.listLeases(ctx, cfg.path)
		if err != nil {
			return nil, err
		}
		if rep.LeasesLeft == 0 || time.Now().After(leaseDeadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	rep.Irrevocable = irrevocableCount(ctx, cfg.vault)
	if rss != nil {
		rep.PluginRSSPeakM = rss.stop()
	}
	rep.VaultRevokeErrors, rep.VaultErrorSample = scanVaultLog(cfg.vaultLog, vaultLogOff)
	rep.DeleteStatuses = scanEmulatorLog(cfg.emuLog, emuLogOff)
	rep.TotalSeconds = round1(time.Since(start).Seconds())
	return rep, nil
}

// irrevocableCount asks Vault how many leases it gave up revoking (sys/leases/count?type=irrevocable); -1 when
// Vault does not say.
func irrevocableCount(ctx context.Context, v *vaultClient) int {
	status, body, err := v.call(ctx, http.MethodGet, "sys/leases/count?type=irrevocable", nil)
	if err != nil || status != http.StatusOK {
		return -1
	}
	var out struct {
		Data struct {
			LeaseCount int `json:"lease_count"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &out) != nil {
		return -1
	}
	return out.Data.LeaseCount
}

func fileSize(path string) int64 {
	if path == "" {
		return 0
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// scanVaultLog counts the lines Vault wrote since offset about leases it failed to revoke.
func scanVaultLog(path string, offset int64) (int, string) {
	n, sample := 0, ""
	eachLine(path, offset, func(line string) {
		l := strings.ToLower(line)
		bad := strings.Contains(l, "[error]") || strings.Contains(l, "[warn]") || strings.Contains(l, "failed")
		if strings.Contains(l, "revok") && bad {
			n++
			if sample == "" {
				sample = strings.TrimSpace(line)
				if len(sample) > 300 {
					sample = sample[:300] + "…"
				}
			}
		}
	})
	return n, sample
}

// scanEmulatorLog counts the statuses of DELETE /installation/token in the emulator's request log since offset.
func scanEmulatorLog(path string, offset int64) map[string]int {
	out := map[string]int{}
	eachLine(path, offset, func(line string) {
		if !strings.Contains(line, "method=DELETE") || !strings.Contains(line, "/installation/token") {
			return
		}
		for _, f := range strings.Fields(line) {
			if s, ok := strings.CutPrefix(f, "status="); ok {
				out[s]++
			}
		}
	})
	if len(out) == 0 {
		return nil
	}
	return out
}

func eachLine(path string, offset int64, fn func(string)) {
	if path == "" {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fn(sc.Text())
	}
}

func selfPID() int { return os.Getpid() }

func describeStatuses(m map[string]int) string {
	if len(m) == 0 {
		return "n/a"
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
