// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// failoverRun is one report of integrationtest's TestCluster/failover, as HA_FAILOVER_REPORT collects them (one
// JSON object a line). Only the fields the summary prints are read.
type failoverRun struct {
	Multiplier        int     `json:"performance_multiplier"`
	Readers           int     `json:"readers"`
	LoadSeconds       float64 `json:"load_seconds"`
	KillAfterSeconds  float64 `json:"kill_after_seconds"`
	KilledNode        string  `json:"killed_node"`
	NewActive         string  `json:"new_active"`
	InFlightAtKill    int     `json:"in_flight_at_kill"`
	RecoverySeconds   float64 `json:"recovery_seconds"`
	LongestGapSeconds float64 `json:"longest_gap_seconds"`
	Mints             int     `json:"mints"`
	MintsPerSecond    float64 `json:"mints_per_second_before_kill"`
	Errors            int     `json:"errors"`
	ErrorKinds        []struct {
		Node    string  `json:"node"`
		Status  int     `json:"status"`
		Message string  `json:"message"`
		Count   int     `json:"count"`
		FirstS  float64 `json:"first_s"`
		LastS   float64 `json:"last_s"`
	} `json:"error_kinds"`
	Issued            int      `json:"issued"`
	HeldSeen          int      `json:"held_by_lease_seen"`
	HeldUnseen        int      `json:"held_by_lease_unseen"`
	Revoked           int      `json:"revoked"`
	LeasesAfterLoad   int      `json:"leases_after_load"`
	UnseenLeases      int      `json:"unseen_leases"`
	ErrorsBeforeKill  int      `json:"errors_before_kill"`
	Orphans           []string `json:"orphans"`
	SecondsToNoLeases float64  `json:"seconds_to_no_leases"`
	Irrevocable       int      `json:"irrevocable"`
	RejoinSeconds     float64  `json:"rejoin_seconds"`
}

// writeHAReport prints the summary of `make bench-ha`: mints through a 3-node cluster, sent to the active node and to
// a standby, next to the no-op leased plugin on the same cluster; and the failover runs.
func writeHAReport(w io.Writer, metaPath, loadPath, failoverPath string) error {
	writeHeader(w, "## HA benchmark summary", metaPath)
	if loadPath != "" {
		load := &loadReport{}
		if err := readJSON(loadPath, load); err != nil {
			fmt.Fprintf(w, "> load results unreadable: %v\n\n", err)
		} else {
			writeHALoad(w, load)
		}
	}
	if failoverPath != "" {
		runs, err := readFailoverRuns(failoverPath)
		if err != nil {
			fmt.Fprintf(w, "> failover results unreadable: %v\n\n", err)
		} else {
			writeFailover(w, runs)
		}
	}
	return nil
}

func writeHALoad(w io.Writer, load *loadReport) {
	fmt.Fprintf(w, "### Mints through a 3-node cluster: %s per phase after a %s warm-up\n\n", load.Duration, load.Warmup)
	fmt.Fprintln(w, "| conc | github: active ok/s | standby ok/s | **standby / active** | no-op: active ok/s | "+
		"standby ok/s | standby / active | **github / no-op**: active | standby |")
	fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, c := range concurrencies(load) {
		gh, ghs := phase(load, "github", c), phase(load, "github"+standbySuffix, c)
		noop, noops := phase(load, "noop", c), phase(load, "noop"+standbySuffix, c)
		fmt.Fprintf(w, "| %d | %s | %s | **%s** | %s | %s | %s | **%s** | %s |\n", c,
			rateOf(gh), rateOf(ghs), ratioOf(ghs, gh), rateOf(noop), rateOf(noops), ratioOf(noops, noop),
			ratioOf(gh, noop), ratioOf(ghs, noops))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | sent to | conc | ok/s | p50 ms | p99 ms | errors | CPU µs/op: active node | standby "+
		"| serving plugin | emulator | loadgen | machine busy % |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, c := range concurrencies(load) {
		for _, name := range []string{"github", "github" + standbySuffix, "noop", "noop" + standbySuffix} {
			p := phase(load, name, c)
			if p == nil {
				continue
			}
			to := "active"
			if strings.HasSuffix(name, standbySuffix) {
				to = "standby"
			}
			if p.SentTo != "" {
				to += " (" + p.SentTo + ")"
			}
			label := targetLabel[strings.TrimSuffix(name, standbySuffix)]
			fmt.Fprintf(w, "| %s | %s | %d | %.0f | %.2f | %.2f | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n",
				label, to, c, p.PerSecond, p.P50Ms, p.P99Ms, p.Errors,
				perOp(load, p, p.CPU["vault"]), perOp(load, p, p.CPU["standby"]), perOp(load, p, servingPluginHA(p)),
				perOp(load, p, p.CPU["emulator"]), perOp(load, p, p.CPU["loadgen"]), p.CPU["machine"])
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "A standby of Vault Community Edition serves no request itself: it forwards each one over the cluster "+
		"port (gRPC, mutual TLS) to the active node, which runs the plugin, and relays the answer. The standby "+
		"column is the CPU of the standby that the standby rows go through, per successful read: as a Raft follower "+
		"it applies every write (each lease) even when the reads go to the active node, so the difference between a "+
		"standby row and the active row above it is what forwarding costs the standby. The active node is looked up "+
		"before every phase; the node names say where the reads went.")
	fmt.Fprintln(w)
	for _, n := range load.Notes {
		fmt.Fprintf(w, "- note: %s\n", n)
	}
	if len(load.Notes) > 0 {
		fmt.Fprintln(w)
	}
}

// servingPluginHA is the CPU share of the plugin that served a phase, for targets sent to a standby too.
func servingPluginHA(p *phaseResult) float64 {
	if strings.TrimSuffix(p.Target, standbySuffix) == "github" {
		return p.CPU["plugin"]
	}
	return p.CPU["noop"]
}

func rateOf(p *phaseResult) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprintf("%.0f", p.PerSecond)
}

func ratioOf(a, b *phaseResult) string {
	if a == nil || b == nil {
		return "–"
	}
	return ratio(a.PerSecond, b.PerSecond)
}

func readFailoverRuns(path string) ([]failoverRun, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var runs []failoverRun
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r failoverRun
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return runs, fmt.Errorf("%s: %w", path, err)
		}
		runs = append(runs, r)
	}
	return runs, sc.Err()
}

func writeFailover(w io.Writer, runs []failoverRun) {
	if len(runs) == 0 {
		fmt.Fprintln(w, "No failover run reported.")
		fmt.Fprintln(w)
		return
	}
	r0 := runs[0]
	fmt.Fprintf(w, "### Failover under load: %d runs of TestCluster/failover\n\n", len(runs))
	fmt.Fprintln(w, "Raft's performance_multiplier scales its heartbeat and election timeouts (multiplier × 1 s) and the "+
		"leader's lease (multiplier × 0.5 s): 1 is Vault's advice for production hardware, 3 what the tests use on "+
		"two cores shared with everything else.")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%d readers mint for %.0f s through the three nodes; at %.0f s the active node is killed with SIGKILL "+
		"(with its plugin). Leases have a 30 s TTL; the killed node stays down until every lease has ended, then "+
		"rejoins.\n\n", r0.Readers, r0.LoadSeconds, r0.KillAfterSeconds)
	fmt.Fprintln(w, "| run | Raft performance_multiplier | killed at s | killed → new active | mints/s before the kill "+
		"| in flight at the kill | **recovery s** | longest gap s | mints | errors (before the kill) | issued by GitHub "+
		"| held by a lease: seen | not seen | revoked at load end | **orphans** | no lease left, s after the last expiry "+
		"| irrevocable | rejoin s |")
	fmt.Fprintln(w, "|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for i, r := range runs {
		fmt.Fprintf(w, "| %d | %d | %.2f | %s → %s | %.0f | %d | **%.2f** | %.2f | %d | %d (%d) | %d | %d | %d | %d | **%d** "+
			"| %.1f | %d | %.1f |\n",
			i+1, r.Multiplier, r.KillAfterSeconds, r.KilledNode, r.NewActive, r.MintsPerSecond, r.InFlightAtKill, r.RecoverySeconds,
			r.LongestGapSeconds, r.Mints, r.Errors, r.ErrorsBeforeKill, r.Issued, r.HeldSeen, r.HeldUnseen, r.Revoked,
			len(r.Orphans), r.SecondsToNoLeases, r.Irrevocable, r.RejoinSeconds)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Recovery: from the SIGKILL to the first successful mint after it. Held by a lease \"seen\": the "+
		"reader got the answer; \"not seen\": Vault lists the lease, but the answer was lost with the killed node (its "+
		"token was revoked when the lease ended). Orphans: tokens GitHub issued whose lease was never written; they "+
		"live until GitHub expires them, at most an hour.")
	fmt.Fprintln(w)
	for i, r := range runs {
		fmt.Fprintf(w, "Errors of run %d (every one a connection error or a 5xx, which a retrying client retries):\n\n", i+1)
		if len(r.ErrorKinds) == 0 {
			fmt.Fprintln(w, "- none")
		}
		for _, k := range r.ErrorKinds {
			status := "no answer"
			if k.Status != 0 {
				status = fmt.Sprintf("HTTP %d", k.Status)
			}
			fmt.Fprintf(w, "- ×%d, sent to %s, %.2f–%.2f s, %s: `%s`\n", k.Count, k.Node, k.FirstS, k.LastS, status, k.Message)
		}
		for _, h := range r.Orphans {
			fmt.Fprintf(w, "- orphan (hashed token): `%s`\n", h)
		}
		fmt.Fprintln(w)
	}
}
