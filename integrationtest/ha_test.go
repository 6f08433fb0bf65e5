// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCluster runs the plugin the way production runs Vault: three nodes on integrated storage (Raft). One cluster
// serves every subtest, in this order, because starting one costs a third of a minute: each subtest uses roles of
// its own, and each leaves the cluster healthy (all nodes unsealed, autopilot healthy) for the next.
//
// The rolling restart leaves 200 leases of two minutes behind it; the check that they all end and revoke their
// tokens runs after the failover, the plugin upgrade and a snapshot restore, so that the wait for their expiry is
// spent testing something else (and those leases live through all three). The audit check comes last, over the
// audit logs of everything before it.
func TestCluster(t *testing.T) {
	s := requireStack(t)
	c := startCluster(t, s.bins)

	// The upgrade's second build of the plugin runs meanwhile (a relink: only the Version ldflag differs).
	upgradeVersion, err := higherVersion(s.bins.pluginVersion)
	if err != nil {
		t.Fatal(err)
	}
	upgradeBin := filepath.Join(c.dir, pluginName+"-upgrade")
	built := make(chan error, 1)
	go func() {
		built <- goBuild(upgradeBin, "./cmd/"+pluginName, "-ldflags", "-s -w -X "+modulePath+".Version="+upgradeVersion)
	}()
	t.Cleanup(func() { <-built })

	// Each subtest starts from a full cluster, even if one before it failed half-way.
	run := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			c.revive(t)
			f(t)
		})
	}
	run("standbys", func(t *testing.T) { testStandbys(t, c) })
	var rollingDone func(t *testing.T)
	run("rolling restart", func(t *testing.T) { rollingDone = testRollingRestart(t, c) })
	run("failover", func(t *testing.T) { runFailover(t, c) })
	run("plugin upgrade", func(t *testing.T) {
		if err := <-built; err != nil {
			built <- err
			t.Fatal(err)
		}
		built <- nil
		testUpgrade(t, c, upgradeBin, upgradeVersion)
	})
	run("snapshot", func(t *testing.T) { testSnapshot(t, c) })
	run("rolling restart leases end", func(t *testing.T) {
		if rollingDone == nil {
			t.Fatal("the rolling restart did not get as far as its leases")
		}
		rollingDone(t)
	})
	run("audit", func(t *testing.T) { testAudit(t, c) })
	run("production commands", func(t *testing.T) { testProductionCommands(t, c) })
}

// writeRole writes a role for tokens on the repository api.
func (c *cluster) writeRole(t *testing.T, role, ttl string) {
	t.Helper()
	c.cli(t, "write", clusterMount+"/roles/"+role, "owner="+acmeOwner, "repositories=api",
		"permissions=contents=read", "ttl="+ttl)
}

// ---------------------------------------------------------------------------------------------------- standbys

// testStandbys: a token read sent to a standby is forwarded to the active node (which alone runs the plugin), and
// what was written on the active node reads back on every node after a leader change.
func testStandbys(t *testing.T, c *cluster) {
	active := c.waitHealthy(t, 60*time.Second)
	c.writeRole(t, "standby", "5m")
	for _, v := range c.standbys(active) {
		h, err := v.health()
		if err != nil || !h.Standby {
			t.Fatalf("%s is not a standby (%+v, %v)", v.name, h, err)
		}
		out := c.mint(t, v, "standby")
		c.gh.mustReach(t, out.Data.Token, "api")
		if _, err := active.leaseExpiry(t, out.LeaseID); err != nil {
			t.Errorf("the lease of a token read on %s is unknown to the active node: %v", v.name, redactErr(err))
		}
		// A standby of Vault Community Edition serves no request itself: it runs no plugin process.
		if pids, err := pluginPIDs(v); err != nil || len(pids) != 0 {
			t.Errorf("the standby %s runs plugin processes %v (%v): it should have forwarded the read", v.name, pids, err)
		}
		t.Logf("vault read %s/token/standby on the standby %s: a token and a lease, minted by the active %s",
			clusterMount, v.name, active.name)
	}
	if pids, err := pluginPIDs(active); err != nil || len(pids) == 0 {
		t.Errorf("the active node %s runs no plugin process (%v)", active.name, err)
	}

	// A config and a role written on the active node survive a leader change, and every node reads them.
	c.configure(t, "request_timeout=7s")
	c.cli(t, "write", clusterMount+"/roles/after-step-down", "owner="+acmeOwner, "repositories=web",
		"permissions=issues=write", "ttl=3m")
	old, now := c.stepDown(t)
	t.Logf("vault operator step-down: %s handed over to %s", old.name, now.name)
	c.waitHealthy(t, 60*time.Second)
	wantFingerprint := keyFingerprint(t, c.gh.keyFile)
	for _, v := range c.nodes {
		var cfg struct {
			Data struct {
				AppID          int64  `json:"app_id"`
				BaseURL        string `json:"base_url"`
				RequestTimeout any    `json:"request_timeout"`
				Fingerprint    string `json:"private_key_fingerprint"`
			} `json:"data"`
		}
		c.cliJSONOn(t, v, &cfg, "read", "-format=json", clusterMount+"/config")
		if d := cfg.Data; d.AppID != appID || d.BaseURL != c.gh.url || d.Fingerprint != wantFingerprint ||
			!durationIs(d.RequestTimeout, 7*time.Second) {
			t.Errorf("config read on %s after the leader change: %+v", v.name, d)
		}
		var role struct {
			Data struct {
				Repositories []string          `json:"repositories"`
				Permissions  map[string]string `json:"permissions"`
				TTL          int               `json:"ttl"`
			} `json:"data"`
		}
		c.cliJSONOn(t, v, &role, "read", "-format=json", clusterMount+"/roles/after-step-down")
		if d := role.Data; !sameSet(d.Repositories, []string{"web"}) || d.Permissions["issues"] != "write" || d.TTL != 180 {
			t.Errorf("role read on %s after the leader change: %+v", v.name, d)
		}
	}
	// The new active node's plugin process starts from storage: the seal-wrapped key included.
	out := c.mint(t, now, "after-step-down")
	c.gh.mustReach(t, out.Data.Token, "web")
	c.cli(t, "lease", "revoke", "-sync", "-prefix", clusterMount+"/token/standby")
	c.cli(t, "lease", "revoke", "-sync", out.LeaseID)
	c.gh.waitDead(t, out.Data.Token, 10*time.Second, "the token minted after the leader change, after its revocation")
}

// durationIs reads a duration as Vault prints it in JSON (seconds as a number, or a string such as "7s").
func durationIs(v any, want time.Duration) bool {
	switch x := v.(type) {
	case float64:
		return time.Duration(x)*time.Second == want
	case string:
		if d, err := time.ParseDuration(x); err == nil {
			return d == want
		}
		n, err := strconv.Atoi(x)
		return err == nil && time.Duration(n)*time.Second == want
	}
	return false
}

// ---------------------------------------------------------------------------------------------------- failover

// failoverReport is what the failover test measured; make bench-ha collects it from several runs.
type failoverReport struct {
	PerformanceMultiplier int     `json:"performance_multiplier"` // Raft's, see defaultPerformanceMultiplier
	Readers               int     `json:"readers"`
	LoadSeconds           float64 `json:"load_seconds"`
	KillAfterSeconds      float64 `json:"kill_after_seconds"`
	KilledNode            string  `json:"killed_node"`
	NewActive             string  `json:"new_active"`
	InFlightAtKill        int     `json:"in_flight_at_kill"`
	// RecoverySeconds: from the SIGKILL to the first mint that succeeded after it.
	RecoverySeconds float64 `json:"recovery_seconds"`
	// LongestGapSeconds: the longest time without a successful mint over the whole load.
	LongestGapSeconds float64     `json:"longest_gap_seconds"`
	Mints             int         `json:"mints"`
	MintsPerSecond    float64     `json:"mints_per_second_before_kill"`
	Errors            int         `json:"errors"`
	ErrorsBeforeKill  int         `json:"errors_before_kill"` // a leader that lost its lease on a busy machine
	ErrorKinds        []errorKind `json:"error_kinds"`

	// The emulator's records of the tokens issued during the load, when the load ended.
	Issued          int `json:"issued"`
	HeldSeen        int `json:"held_by_lease_seen"`   // held by a lease Vault lists, whose answer a reader got
	HeldUnseen      int `json:"held_by_lease_unseen"` // held by a lease Vault lists, whose answer no reader got
	Revoked         int `json:"revoked"`
	LeasesAfterLoad int `json:"leases_after_load"`
	UnseenLeases    int `json:"unseen_leases"` // listed leases whose answer no reader got
	// Orphans: issued, never held by a lease, never revoked (hashed tokens). They die at GitHub's expiry.
	Orphans []string `json:"orphans"`

	// After the load: every lease ends at its TTL and the new active node revokes it.
	SecondsToNoLeases float64 `json:"seconds_to_no_leases"` // after the last lease's expiry
	Irrevocable       int     `json:"irrevocable"`
	RejoinSeconds     float64 `json:"rejoin_seconds"` // restart of the killed node → the cluster healthy again
}

// runFailover: 8 readers mint for 20 s through the three nodes; at 5 s the active node is killed with SIGKILL. Every
// failure must be one a retrying client would retry; every token GitHub issued must be held by a lease Vault
// lists, or revoked, or be one of at most as many orphans as requests were in flight at the kill; every lease ends
// at its TTL and the new active node revokes its token; the killed node rejoins. The report goes to the log and,
// when HA_FAILOVER_REPORT names a file, as one JSON line to that file (make bench-ha).
func runFailover(t *testing.T, c *cluster) failoverReport {
	const (
		readers   = 8
		loadFor   = 20 * time.Second
		killAfter = 5 * time.Second
		ttl       = 30 * time.Second
	)
	role := "failover"
	prefix := clusterMount + "/token/" + role + "/"
	c.writeRole(t, role, ttl.String())
	c.waitHealthy(t, 60*time.Second)
	before := c.gh.tokenRecords(t)
	multiplier, _ := performanceMultiplier()
	rep := failoverReport{PerformanceMultiplier: multiplier, Readers: readers, LoadSeconds: loadFor.Seconds(),
		KillAfterSeconds: killAfter.Seconds(), Orphans: []string{}}

	load := c.startLoad(t, clusterMount+"/token/"+role, readers, 0)
	time.Sleep(killAfter)
	// The active node of this moment (on a busy machine a leader may have changed since the load began).
	victim, err := c.findActive(nil)
	if err != nil {
		victim = c.active(t)
	}
	rep.KilledNode = victim.name
	inFlight := load.inFlight.Load()
	killAt := time.Now()
	victim.proc.kill()
	inFlight = max(inFlight, load.inFlight.Load())
	rep.KillAfterSeconds = roundTo(killAt.Sub(load.started).Seconds(), 2)
	time.Sleep(time.Until(load.started.Add(loadFor)))
	results := load.stop()
	loadEnd := time.Now()
	rep.InFlightAtKill = int(inFlight)

	newActive := c.active(t)
	rep.NewActive = newActive.name
	if newActive == victim {
		t.Fatalf("the killed node %s is active again", victim.name)
	}

	// What the readers saw.
	beforeKill := 0
	for _, r := range results {
		if r.ok() {
			rep.Mints++
			if r.end.Before(killAt) {
				beforeKill++
			}
			if rep.RecoverySeconds == 0 && r.end.After(killAt) {
				rep.RecoverySeconds = roundTo(r.end.Sub(killAt).Seconds(), 2)
			}
			continue
		}
		rep.Errors++
		if r.end.Before(killAt) {
			rep.ErrorsBeforeKill++
		}
		if !r.retryable() {
			t.Errorf("a reader got an error that a retrying client would not retry (HTTP %d) from %s: %s",
				r.status, r.node, r.err)
		}
	}
	rep.MintsPerSecond = roundTo(float64(beforeKill)/killAt.Sub(load.started).Seconds(), 1)
	rep.ErrorKinds = c.errorKinds(results, load.started)
	gap, _ := longestGap(results, load.started, loadEnd)
	rep.LongestGapSeconds = roundTo(gap.Seconds(), 2)
	if rep.RecoverySeconds == 0 {
		t.Fatalf("no mint succeeded in the %s after the kill", loadEnd.Sub(killAt).Round(time.Second))
	}

	// The emulator's records at the end of the load, against the leases Vault lists.
	listed := map[string]bool{}
	for _, id := range c.leases(t, prefix) {
		listed[id] = true
	}
	rep.LeasesAfterLoad = len(listed)
	seenLease := map[string]string{} // hashed token → lease ID, of every answer a reader got
	var seenTokens []string
	for _, r := range results {
		if r.ok() {
			seenLease[r.hashed] = r.leaseID
			seenTokens = append(seenTokens, r.token)
			if !listed[r.leaseID] {
				t.Errorf("a lease a reader got (minted on %s at %.2f s) is not in Vault's list: lost", r.node,
					r.end.Sub(load.started).Seconds())
			}
		}
	}
	unseenLeases := 0
	knownIDs := map[string]bool{}
	for _, id := range seenLease {
		knownIDs[id] = true
	}
	for id := range listed {
		if !knownIDs[id] {
			unseenLeases++
		}
	}
	atEnd := c.gh.tokenRecords(t)
	var unmatched []string // issued during the load, live, and held by no lease a reader saw
	for h, r := range atEnd {
		if _, old := before[h]; old {
			continue
		}
		rep.Issued++
		switch _, seen := seenLease[h]; {
		case r.Revoked:
			rep.Revoked++
		case seen:
			rep.HeldSeen++
		default:
			unmatched = append(unmatched, h)
		}
	}

	// Every lease ends at its TTL; the new active node (the killed one is still down) revokes its token.
	expiryOfLast := loadEnd.Add(ttl)
	eventually(t, time.Until(expiryOfLast)+90*time.Second, time.Second, "every lease of the failover role has ended", func() error {
		if n := len(c.leases(t, prefix)); n > 0 {
			return fmt.Errorf("%d leases left under %s", n, prefix)
		}
		return nil
	})
	rep.SecondsToNoLeases = roundTo(max(time.Since(expiryOfLast).Seconds(), 0), 1)
	if !victim.proc.exited() {
		t.Fatal("the killed node runs again: the revocations cannot be told apart")
	}
	rep.Irrevocable = c.irrevocable(t)
	if rep.Irrevocable != 0 {
		t.Errorf("%d irrevocable leases after the failover", rep.Irrevocable)
	}
	final := c.gh.tokenRecords(t)
	for _, h := range unmatched {
		if final[h].Revoked {
			rep.HeldUnseen++ // held by a lease no reader saw: its revocation at expiry killed it
		} else {
			rep.Orphans = append(rep.Orphans, h)
		}
	}
	slices.Sort(rep.Orphans)
	for h := range seenLease {
		if !final[h].Revoked {
			t.Errorf("the token %s of a lease that ended is not revoked at the emulator", h)
		}
	}
	if alive, err := c.gh.allDead(seenTokens); err != nil || alive > 0 {
		t.Errorf("%d of %d leased tokens still work at the emulator after their leases ended (%v)", alive, len(seenTokens), err)
	}
	// Each lease no reader saw holds one token: live when the load ended (its revocation at expiry killed it), or
	// already revoked. The latter happens when a leader loses its lease in the middle of a mint: Vault answers
	// 500, revokes the new token at once, and fails to delete the lease entry, which Raft may still commit; the
	// lease then ends normally, and its revocation finds GitHub answering 401 (done).
	if rep.HeldUnseen > unseenLeases {
		t.Errorf("%d leases Vault listed were never seen by a reader, but their revocations killed %d tokens", unseenLeases, rep.HeldUnseen)
	}
	rep.UnseenLeases = unseenLeases
	if sum := rep.HeldSeen + rep.HeldUnseen + rep.Revoked + len(rep.Orphans); sum != rep.Issued {
		t.Errorf("accounting: %d held (seen) + %d held (unseen) + %d revoked + %d orphans = %d, but GitHub issued %d",
			rep.HeldSeen, rep.HeldUnseen, rep.Revoked, len(rep.Orphans), sum, rep.Issued)
	}
	if len(rep.Orphans) > rep.InFlightAtKill {
		t.Errorf("%d orphaned tokens, more than the %d requests in flight at the kill", len(rep.Orphans), rep.InFlightAtKill)
	}

	// The killed node comes back: started again on its data, unsealed, a healthy voter.
	rejoin := time.Now()
	c.startAgain(t, victim)
	c.unsealAPI(t, victim)
	c.waitHealthy(t, 120*time.Second)
	rep.RejoinSeconds = roundTo(time.Since(rejoin).Seconds(), 1)

	t.Logf("failover: %d readers for %s; %s (active) killed with SIGKILL at %.2f s with %d requests in flight; %s active; "+
		"mints succeeded again %.2f s after the kill (longest gap without a mint %.2f s); %d mints (%.1f/s before the kill), "+
		"%d errors (%d before the kill)",
		readers, loadFor, victim.name, rep.KillAfterSeconds, rep.InFlightAtKill, rep.NewActive, rep.RecoverySeconds,
		rep.LongestGapSeconds, rep.Mints, rep.MintsPerSecond, rep.Errors, rep.ErrorsBeforeKill)
	for _, k := range rep.ErrorKinds {
		t.Logf("  error ×%d from %s at %.2f–%.2f s (HTTP %d): %s", k.Count, k.Node, k.FirstS, k.LastS, k.Status, k.Message)
	}
	t.Logf("accounting: GitHub issued %d tokens: %d held by leases the readers got, %d by leases Vault listed that no "+
		"reader got (%d such leases), %d revoked, %d orphans (at most %d allowed); %d leases listed after the load; no "+
		"lease left %.1f s after the last one expired, %d irrevocable; %s rejoined in %.1f s",
		rep.Issued, rep.HeldSeen, rep.HeldUnseen, rep.UnseenLeases, rep.Revoked, len(rep.Orphans), rep.InFlightAtKill,
		rep.LeasesAfterLoad, rep.SecondsToNoLeases, rep.Irrevocable, victim.name, rep.RejoinSeconds)
	for _, h := range rep.Orphans {
		t.Logf("  orphan (hashed token, dies at GitHub's expiry): %s", h)
	}
	if path := os.Getenv("HA_FAILOVER_REPORT"); path != "" {
		if err := appendJSONLine(path, rep); err != nil {
			t.Errorf("writing the report to %s: %v", path, err)
		}
	}
	return rep
}

func appendJSONLine(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ---------------------------------------------------------------------------------------------- rolling restart

// testRollingRestart: with 200 leases of two minutes outstanding, restart the nodes one by one, standbys first,
// then the active node, unsealing each, while a light load mints through all nodes: mints go on but for the
// leader change. It returns the check that every lease still ends and revokes its token, which the caller runs
// once the leases have expired.
func testRollingRestart(t *testing.T, c *cluster) func(t *testing.T) {
	const outstanding = 200
	c.writeRole(t, "rolling", "2m")
	c.writeRole(t, "rolling-probe", "1m")
	active := c.waitHealthy(t, 60*time.Second)

	// 200 leases, minted through all nodes by 8 workers.
	var tokens []string
	for _, r := range c.mintN(t, clusterMount+"/token/rolling", outstanding, 8) {
		tokens = append(tokens, r.token)
	}
	mintedBy := time.Now()
	if n := len(c.leases(t, clusterMount+"/token/rolling/")); n != len(tokens) {
		t.Fatalf("%d leases listed after minting %d tokens", n, len(tokens))
	}

	// An operator does not stop a node that stepped down less than ten seconds ago (see stepDownSleep).
	c.mu.Lock()
	settle := time.Until(c.steppedDown.Add(stepDownSleep + time.Second))
	c.mu.Unlock()
	if settle > 0 {
		t.Logf("waiting %s: a node stepped down less than %s ago", settle.Round(100*time.Millisecond), stepDownSleep)
		time.Sleep(settle)
	}

	probe := c.startLoad(t, clusterMount+"/token/rolling-probe", 2, 100*time.Millisecond)
	type window struct {
		node          string
		active        bool
		start, end    time.Time
		leaderChanged bool // the Raft term moved during the restart of a standby (a busy machine)
	}
	var windows []window
	for _, v := range append(c.standbys(active), active) {
		term := c.raftTerm(t)
		w := window{node: v.name, active: v == active, start: time.Now()}
		pid := v.proc.pid()
		c.restart(t, v)
		now := c.waitHealthy(t, 120*time.Second)
		w.end = time.Now()
		w.leaderChanged = !w.active && c.raftTerm(t) != term
		windows = append(windows, w)
		role := "a standby"
		if w.active {
			role = "the active node; " + now.name + " took over"
		}
		t.Logf("restarted %s (%s; pid %d, now %d) and unsealed it: the cluster was healthy again after %.1f s", v.name,
			role, pid, v.proc.pid(), w.end.Sub(w.start).Seconds())
	}
	time.Sleep(time.Second) // a last second of mints on the healthy cluster
	results := probe.stop()
	probeEnd := time.Now()

	for _, r := range results {
		if !r.ok() && !r.retryable() {
			t.Errorf("a mint failed with an error a retrying client would not retry (HTTP %d) on %s: %s", r.status, r.node, r.err)
		}
	}
	// Mints must go on through every standby's restart; across the active node's they stop for the leader change.
	// A standby's restart changes no leader: where the Raft term moved anyway (a leader that lost its lease on a
	// busy machine), that window counts as a leader change too. The margin is for two busy cores.
	const allowedGap = 10 * time.Second
	for _, w := range windows {
		gap, at := longestGap(results, w.start, w.end)
		if w.active || w.leaderChanged {
			what := "leader change"
			if w.leaderChanged {
				what = "a leader change (not caused by the restart) during a standby's restart"
			}
			t.Logf("%s: no mint succeeded for %.2f s, from %.2f s into %s's restart", what, gap.Seconds(),
				at.Sub(w.start).Seconds(), w.node)
			if gap > 60*time.Second {
				t.Errorf("mints stopped for %s across the leader change", gap.Round(time.Millisecond))
			}
			continue
		}
		t.Logf("%s (standby) restarted: the longest time without a successful mint was %.2f s", w.node, gap.Seconds())
		if gap > allowedGap {
			t.Errorf("while the standby %s restarted, no mint succeeded for %s (from %.2f s into its restart)", w.node,
				gap.Round(time.Millisecond), at.Sub(w.start).Seconds())
		}
	}
	if gap, _ := longestGap(results, windows[len(windows)-1].end, probeEnd); gap > allowedGap {
		t.Errorf("after the restarts, no mint succeeded for %s", gap.Round(time.Millisecond))
	}
	var probeTokens []string
	ok := 0
	for _, r := range results {
		if r.ok() {
			ok++
			probeTokens = append(probeTokens, r.token)
		}
	}
	t.Logf("during the restarts: %d mints, %d failures", ok, len(results)-ok)
	for _, r := range results {
		if d := r.end.Sub(r.start); d > 2*time.Second {
			t.Logf("  a slow read: %s at %.2f s took %.2f s (HTTP %d) %s", r.node, r.start.Sub(probe.started).Seconds(),
				d.Seconds(), r.status, r.err)
		}
	}
	for _, w := range windows {
		t.Logf("  %s restarted from %.2f s to %.2f s", w.node, w.start.Sub(probe.started).Seconds(), w.end.Sub(probe.started).Seconds())
	}
	for _, k := range c.errorKinds(results, probe.started) {
		t.Logf("  error ×%d from %s at %.2f–%.2f s (HTTP %d): %s", k.Count, k.Node, k.FirstS, k.LastS, k.Status, k.Message)
	}

	return func(t *testing.T) {
		// The last probe lease (1 min) ends before the last of the 200 (2 min after they were minted).
		expiry := mintedBy.Add(2 * time.Minute)
		if later := probeEnd.Add(time.Minute); later.After(expiry) {
			expiry = later
		}
		if wait := time.Until(expiry); wait > 0 {
			t.Logf("waiting %s for the leases to expire", wait.Round(time.Second))
		}
		for _, prefix := range []string{clusterMount + "/token/rolling/", clusterMount + "/token/rolling-probe/"} {
			eventually(t, time.Until(expiry)+90*time.Second, time.Second, "every lease under "+prefix+" has ended", func() error {
				if n := len(c.leases(t, prefix)); n > 0 {
					return fmt.Errorf("%d leases left", n)
				}
				return nil
			})
		}
		if n := c.irrevocable(t); n != 0 {
			t.Errorf("%d irrevocable leases", n)
		}
		all := append(slices.Clone(tokens), probeTokens...)
		if alive, err := c.gh.allDead(all); err != nil || alive > 0 {
			t.Errorf("%d of %d tokens still work at the emulator after their leases ended (%v)", alive, len(all), err)
		}
		t.Logf("all %d leases that outlived the rolling restart, and the %d minted during it, ended and revoked their tokens",
			len(tokens), len(probeTokens))
	}
}

// ------------------------------------------------------------------------------------------------ plugin upgrade

// higherVersion derives from the registered version one that is higher in semantic versioning: the next patch with
// a pre-release suffix. ("v0.1.0-upgrade" would not do: a pre-release sorts below its release, v0.1.0.)
func higherVersion(v string) (string, error) {
	m := regexp.MustCompile(`^v(\d+)\.(\d+)\.(\d+)`).FindStringSubmatch(v)
	if m == nil {
		return "", fmt.Errorf("plugin version %q is not a semantic version vMAJOR.MINOR.PATCH", v)
	}
	patch, _ := strconv.Atoi(m[3])
	return fmt.Sprintf("v%s.%s.%d-upgrade", m[1], m[2], patch+1), nil
}

// TestHigherVersion: the upgrade's version is above the registered one in semantic versioning, and the obvious
// suffix would not be.
func TestHigherVersion(t *testing.T) {
	tests := []struct{ from, want string }{
		{"v0.1.0", "v0.1.1-upgrade"},
		{"v1.2.3-rc.1", "v1.2.4-upgrade"},
		{"v2.0.9+build.7", "v2.0.10-upgrade"},
	}
	for _, tt := range tests {
		got, err := higherVersion(tt.from)
		if err != nil || got != tt.want {
			t.Errorf("higherVersion(%q) = %q, %v; want %q", tt.from, got, err, tt.want)
		}
		if !semverLess(tt.from, got) {
			t.Errorf("%s does not sort above %s", got, tt.from)
		}
	}
	if !semverLess("v0.1.0-upgrade", "v0.1.0") {
		t.Error("a pre-release should sort below its release")
	}
	if _, err := higherVersion("0.1"); err == nil {
		t.Error("higherVersion accepted 0.1")
	}
}

// semverLess compares vMAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] by semantic versioning's precedence (pre-release
// identifiers compared as whole strings, which is enough here).
func semverLess(a, b string) bool {
	parse := func(v string) (nums [3]int, pre string) {
		v, _, _ = strings.Cut(strings.TrimPrefix(v, "v"), "+")
		core, pre, _ := strings.Cut(v, "-")
		for i, f := range strings.SplitN(core, ".", 3) {
			nums[i], _ = strconv.Atoi(f)
		}
		return nums, pre
	}
	an, ap := parse(a)
	bn, bp := parse(b)
	for i := range an {
		if an[i] != bn[i] {
			return an[i] < bn[i]
		}
	}
	switch {
	case ap == bp:
		return false
	case ap == "":
		return false
	case bp == "":
		return true
	}
	return ap < bp
}

// testUpgrade: a second build of the plugin with a higher version goes into every node's plugin directory, is
// registered beside the first, and the mount switches to it with `vault secrets tune -plugin-version` and a
// reload, while mints go on; leases of the old version are revoked by the new one; a leader change shows that
// every node runs the new version; then the same back down, and the upgrade's registration goes away.
func testUpgrade(t *testing.T, c *cluster, newBin, newVersion string) {
	oldVersion := c.bins.pluginVersion
	newFile := pluginName + "_" + newVersion
	c.writeRole(t, "upgrade", "10m")
	c.writeRole(t, "upgrade-probe", "1m")
	active := c.waitHealthy(t, 60*time.Second)
	if m := c.mountOn(t, active); m.RunningPluginVersion != oldVersion || m.RunningSHA256 != c.pluginSHA {
		t.Fatalf("before the upgrade the mount runs %+v, want %s", m, oldVersion)
	}
	var oldTokens []string
	for range 5 {
		oldTokens = append(oldTokens, c.mint(t, active, "upgrade").Data.Token)
	}

	// switchTo makes the mount run version, with mints going on through all nodes, and checks that none failed.
	switchTo := func(t *testing.T, version, sha string, reload []string) {
		t.Helper()
		term := c.raftTerm(t)
		probe := c.startLoad(t, clusterMount+"/token/upgrade-probe", 2, 20*time.Millisecond)
		time.Sleep(500 * time.Millisecond)
		c.cli(t, "secrets", "tune", "-plugin-version="+version, clusterMount+"/")
		c.cli(t, reload...)
		switched := time.Now()
		time.Sleep(time.Second)
		results := probe.stop()
		// Vault holds the mount's requests while it reloads: no mint may fail, unless the leader changed
		// meanwhile (a busy machine), which makes failures a retrying client retries.
		leaderChanged := c.raftTerm(t) != term
		if leaderChanged {
			t.Logf("the Raft leader changed during the switch to %s (term %d, now %d): failures that a client retries are allowed",
				version, term, c.raftTerm(t))
		}
		ok, after := 0, 0
		for _, r := range results {
			if !r.ok() {
				if !leaderChanged || !r.retryable() {
					t.Errorf("a mint failed during the switch to %s on %s (HTTP %d): %s", version, r.node, r.status, r.err)
				}
				continue
			}
			ok++
			if r.start.After(switched) {
				after++
			}
		}
		if after == 0 {
			t.Errorf("no mint succeeded after the switch to %s", version)
		}
		t.Logf("switched to %s with vault %s: %d mints during the switch, %d failed", version, strings.Join(reload, " "),
			ok, len(results)-ok)
		for _, v := range c.nodes {
			if m := c.mountOn(t, v); m.PluginVersion != version || m.RunningPluginVersion != version || m.RunningSHA256 != sha {
				t.Errorf("sys/mounts read on %s: %+v, want version %s running with sha256 %s", v.name, m, version, sha)
			}
		}
	}

	// docs/production.md warns about this: keep the warning true (or drop it when Vault's CLI honours -mounts).
	if r := c.active(t).run(c.rootToken, "", "plugin", "reload", "-mounts="+clusterMount+"/", "-scope=global"); r.err == nil ||
		!strings.Contains(r.stderr, "sys/plugins/reload/unknown") {
		t.Errorf("vault plugin reload -mounts: docs/production.md says it fails with sys/plugins/reload/unknown; got %s", r)
	}

	newSHA := c.installPlugin(t, newBin, newFile)
	c.cli(t, "plugin", "register", "-sha256="+newSHA, "-version="+newVersion, "-command="+newFile, "secret", pluginName)
	// `vault plugin reload -mounts=github/` of Vault 1.21's CLI ignores -mounts in the root namespace (it asks for
	// sys/plugins/reload/unknown and gets 404), so the upgrade reloads the plugin by name and the downgrade
	// reloads the mount through sys/plugins/reload/backend. -scope=global also reaches performance standbys and
	// replicated clusters (Enterprise); in Community Edition only the active node runs plugins, and a standby that
	// becomes active starts the mount's version from its own plugin directory.
	switchTo(t, newVersion, newSHA, []string{"plugin", "reload", "-type=secret", "-plugin=" + pluginName, "-scope=global"})
	if pids, err := pluginPIDsOf(c.active(t), newFile); err != nil || len(pids) == 0 {
		t.Errorf("no process of %s runs on the active node after the upgrade (%v)", newFile, err)
	}
	// Leases minted by the old version are revoked by the new one.
	c.cli(t, "lease", "revoke", "-sync", "-prefix", clusterMount+"/token/upgrade")
	if alive, err := c.gh.allDead(oldTokens); err != nil || alive > 0 {
		t.Errorf("%d of the old version's tokens still work after the new version revoked their leases (%v)", alive, err)
	}

	// Every node has the new version: the next active node starts it from its own plugin directory.
	old, now := c.stepDown(t)
	c.waitHealthy(t, 60*time.Second)
	if m := c.mountOn(t, now); m.RunningPluginVersion != newVersion || m.RunningSHA256 != newSHA {
		t.Errorf("after %s handed over to %s the mount runs %+v, want %s", old.name, now.name, m, newVersion)
	}
	var newTokens []string
	for range 5 {
		newTokens = append(newTokens, c.mint(t, now, "upgrade").Data.Token)
	}

	// And back down.
	switchTo(t, oldVersion, c.pluginSHA, []string{"write", "sys/plugins/reload/backend", "mounts=" + clusterMount + "/", "scope=global"})
	c.cli(t, "lease", "revoke", "-sync", "-prefix", clusterMount+"/token/upgrade")
	if alive, err := c.gh.allDead(newTokens); err != nil || alive > 0 {
		t.Errorf("%d of the new version's tokens still work after the old version revoked their leases (%v)", alive, err)
	}
	c.cli(t, "plugin", "deregister", "-version="+newVersion, "secret", pluginName)
	var versions struct {
		Data struct {
			Detailed []struct {
				Name    string `json:"name"`
				Version string `json:"version"`
			} `json:"detailed"`
		} `json:"data"`
	}
	c.cliJSON(t, &versions, "read", "-format=json", "sys/plugins/catalog")
	for _, p := range versions.Data.Detailed {
		if p.Name == pluginName && p.Version == newVersion {
			t.Errorf("%s %s is still in the catalog after vault plugin deregister", pluginName, newVersion)
		}
	}
}

// ---------------------------------------------------------------------------------------------------- snapshot

// testSnapshot: `vault operator raft snapshot save` takes a backup; restoring it brings back the leases it holds
// and forgets those made after it, whose tokens then live on at GitHub until GitHub's expiry.
func testSnapshot(t *testing.T, c *cluster) {
	c.writeRole(t, "snapshot", "10m")
	active := c.waitHealthy(t, 60*time.Second)
	before := c.mint(t, active, "snapshot")
	file := filepath.Join(c.dir, "backup.snap")
	c.cli(t, "operator", "raft", "snapshot", "save", file)
	if st, err := os.Stat(file); err != nil || st.Size() == 0 {
		t.Fatalf("vault operator raft snapshot save wrote nothing (%v)", err)
	}
	after := c.mint(t, active, "snapshot")

	c.cli(t, "operator", "raft", "snapshot", "restore", file)
	active = c.waitHealthy(t, 120*time.Second)
	eventually(t, 60*time.Second, 500*time.Millisecond, "the restored state is served", func() error {
		if _, err := active.leaseExpiry(t, before.LeaseID); err != nil {
			return fmt.Errorf("the lease from before the snapshot: %v", redactErr(err))
		}
		return nil
	})
	if _, err := active.leaseExpiry(t, after.LeaseID); err == nil {
		t.Errorf("the lease minted after the snapshot is still known after restoring it")
	}
	// Its token is an orphan now: nothing in Vault will revoke it; GitHub expires it within the hour.
	c.gh.mustReach(t, after.Data.Token, "api")
	st := c.gh.status(t, after.Data.Token)
	if st.Revoked || time.Until(st.ExpiresAt) > time.Hour {
		t.Errorf("the orphaned token: revoked=%v, expires in %s", st.Revoked, time.Until(st.ExpiresAt).Round(time.Second))
	}
	t.Logf("after the restore: the lease from before the snapshot is back, the one from after it is gone; its token "+
		"stays valid at GitHub until %s (GitHub's expiry)", st.ExpiresAt.Format(time.RFC3339))
	c.cli(t, "lease", "revoke", "-sync", before.LeaseID)
	c.gh.waitDead(t, before.Data.Token, 10*time.Second, "the token of the restored lease, after its revocation")
	out := c.mint(t, active, "snapshot")
	c.cli(t, "lease", "revoke", "-sync", out.LeaseID)
}

// -------------------------------------------------------------------------------------------------------- audit

// auditEntry is the part of a file audit device's line the test reads.
type auditEntry struct {
	Type     string `json:"type"`
	Error    string `json:"error"`
	Response *struct {
		MountPoint string         `json:"mount_point"`
		Data       map[string]any `json:"data"`
		Warnings   []string       `json:"warnings"`
	} `json:"response"`
}

// testAudit: after everything above, no node's audit log holds a token or the App key in plain text, error strings
// and warnings included (Vault does not HMAC those); hashed_token is in clear (the mount is tuned with
// audit_non_hmac_response_keys=hashed_token) and is the hash GitHub shows, for every token the tests got.
func testAudit(t *testing.T, c *cluster) {
	active := c.waitHealthy(t, 60*time.Second)
	var tuned struct {
		Data struct {
			Keys []string `json:"audit_non_hmac_response_keys"`
		} `json:"data"`
	}
	c.cliJSON(t, &tuned, "read", "-format=json", "sys/mounts/"+clusterMount+"/tune")
	if !slices.Contains(tuned.Data.Keys, "hashed_token") {
		t.Fatalf("the mount's audit_non_hmac_response_keys are %v", tuned.Data.Keys)
	}
	var devices map[string]struct {
		Type    string            `json:"type"`
		Options map[string]string `json:"options"`
	}
	for _, v := range c.nodes {
		c.cliJSONOn(t, v, &devices, "audit", "list", "-detailed", "-format=json")
		if d, ok := devices["file/"]; !ok || d.Type != "file" {
			t.Errorf("vault audit list on %s: %v", v.name, devices)
		}
	}

	// Requests whose answers carry Vault's error strings, which are not hashed: a config write with a damaged copy
	// of the App's key, one with another key that GitHub refuses, a narrowing beyond the role.
	keyPEM, err := os.ReadFile(c.gh.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := filepath.Join(c.dir, "other.pem")
	damaged := filepath.Join(c.dir, "damaged.pem")
	writeOtherKey(t, otherKey)
	if err := os.WriteFile(damaged, keyPEM[:len(keyPEM)*2/3], 0o600); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{damaged, otherKey} {
		r := active.run(c.rootToken, "", "write", clusterMount+"/config", fmt.Sprintf("app_id=%d", appID),
			"private_key=@"+key, "base_url="+c.gh.url)
		if r.err == nil {
			t.Fatalf("a config write with %s succeeded", filepath.Base(key))
		}
	}
	if r := active.run(c.rootToken, "", "write", clusterMount+"/token/snapshot", "repositories=web"); r.err == nil {
		t.Fatal("a narrowing outside the role succeeded")
	}
	// And warnings, which are not hashed either: a role without limits.
	c.cli(t, "write", clusterMount+"/roles/audit-wide", "owner="+acmeOwner)

	// One token followed from Vault's audit log to GitHub's: mint, and find its response entry.
	out := c.mint(t, active, "snapshot")
	sum := sha256.Sum256([]byte(out.Data.Token))
	want := base64.StdEncoding.EncodeToString(sum[:])
	if out.Data.HashedToken != want || c.gh.status(t, out.Data.Token).HashedToken != want {
		t.Fatalf("hashed_token: Vault says %s, base64(sha256(token)) is %s, the emulator says %s",
			out.Data.HashedToken, want, c.gh.status(t, out.Data.Token).HashedToken)
	}
	c.cli(t, "lease", "revoke", "-sync", out.LeaseID)

	otherPEM, err := os.ReadFile(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	keyLines := pemBodyLines(keyPEM)
	keyLines = append(keyLines, pemBodyLines(otherPEM)...)
	c.mu.Lock()
	minted := make([]string, 0, len(c.minted))
	for tok := range c.minted {
		minted = append(minted, tok)
	}
	hashes := make(map[string]struct{}, len(c.hashed))
	for h := range c.hashed {
		hashes[h] = struct{}{}
	}
	everActive := slices.Sorted(maps.Keys(c.everActive))
	c.mu.Unlock()

	inAudit := map[string]bool{} // hashed_token values found in clear in response entries
	var followed *auditEntry
	errorEntries, warnings := 0, 0
	for _, v := range c.nodes {
		path := filepath.Join(v.home, "audit.log")
		data, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			if slices.Contains(everActive, v.name) {
				t.Errorf("%s was active but has no audit log", v.name)
			}
			t.Logf("%s: no audit log (never the active node: standbys forward requests and do not audit them)", v.name)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		// Every token the emulator issues starts with ghs_ (classic and long forms), and nothing else Vault
		// writes does: its absence covers every token, minted by the tests or not.
		if strings.Contains(text, "ghs_") {
			t.Errorf("%s's audit log holds a GitHub token prefix in plain text", v.name)
		}
		if strings.Contains(text, "PRIVATE KEY") {
			t.Errorf("%s's audit log holds a PEM private key header", v.name)
		}
		for _, line := range keyLines {
			if strings.Contains(text, line) {
				t.Errorf("%s's audit log holds a line of an App key in plain text", v.name)
				break
			}
		}
		lines := 0
		for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
			var e auditEntry
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("%s's audit log: a line that is not JSON: %v", v.name, err)
			}
			lines++
			if e.Error != "" {
				errorEntries++
			}
			if e.Type != "response" || e.Response == nil || e.Response.MountPoint != clusterMount+"/" {
				continue
			}
			warnings += len(e.Response.Warnings)
			h, _ := e.Response.Data["hashed_token"].(string)
			if h == "" {
				continue
			}
			inAudit[h] = true
			if tok, _ := e.Response.Data["token"].(string); !strings.HasPrefix(tok, "hmac-sha256:") {
				t.Errorf("%s's audit log: a response's token is not HMAC'd", v.name)
			}
			if h == want {
				followed = &e
			}
		}
		t.Logf("%s: %d audit entries (%d KB)", v.name, lines, len(data)/1024)
	}
	if errorEntries == 0 || warnings == 0 {
		t.Errorf("%d audit entries carry an error string and %d warnings: the check of what Vault does not hash checked nothing",
			errorEntries, warnings)
	}
	if followed == nil {
		t.Errorf("the hashed_token %s of the token just minted is in no node's audit log", want)
	}
	missing := 0
	for h := range hashes {
		if !inAudit[h] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of the %d tokens the tests got have no response entry with their hashed_token in any audit log", missing, len(hashes))
	}
	t.Logf("audit: no token (the tests got %d) and no key line in plain text; %d entries with an error string, "+
		"%d warnings; hashed_token in clear for all %d tokens the tests got; %s followed to the emulator's record",
		len(minted), errorEntries, warnings, len(hashes), want)
}

// pemBodyLines returns the base64 lines of a PEM file (each long enough to identify the key).
func pemBodyLines(data []byte) []string {
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); len(l) >= 32 && !strings.HasPrefix(l, "-----") {
			out = append(out, l)
		}
	}
	return out
}

// writeOtherKey writes an RSA key that is no key of the App.
func writeOtherKey(t *testing.T, path string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	block := &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
}

// ------------------------------------------------------------------------------------------- docs/production.md

// testProductionCommands: every vault command docs/production.md shows is one these tests ran (the same subcommand
// with the same flags and keys; values differ).
func testProductionCommands(t *testing.T, c *cluster) {
	cmds := docVaultCommands(t, "docs/production.md")
	if len(cmds) < 10 {
		t.Fatalf("docs/production.md shows %d vault commands; the parser must have missed some", len(cmds))
	}
	c.mu.Lock()
	ran := slices.Clone(c.shapes)
	c.mu.Unlock()
	for _, cmd := range cmds {
		want := shapeOf(cmd)
		found := false
		for _, s := range ran {
			if s.covers(want) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("docs/production.md shows `vault %s`, which no cluster test ran (shape %q %v)", strings.Join(cmd, " "), want.words, want.names)
		}
	}
}
