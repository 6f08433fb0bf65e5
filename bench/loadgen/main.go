// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

// Command loadgen drives the benchmarks of `make bench` (scripts/bench.sh) against a real Vault dev server with the
// GitHub App plugin mounted at github/, the no-op plugin (bench/noopplugin) at noop/ (paths creds and shaped) and
// KV v1 at kv/, with internal/testing/cmd/fakegithub standing in for GitHub. Everything it talks to listens on
// 127.0.0.1.
//
//	loadgen -mode load   ...  throughput and latency of KV v1, no-op, shaped no-op and GitHub reads
//	loadgen -mode storm  ...  mint many tokens from a short-TTL role and watch their leases expire and revoke
//	loadgen -mode report ...  print the markdown summary from the JSON the other modes wrote and `go test -bench`
//	loadgen -mode ha-report   the summary of `make bench-ha`: a cluster's load phases (-targets with -standby
//	                          reads) and the failover reports of integrationtest's TestCluster/failover
//	loadgen -mode pools  ...  the App pool scenarios of `make bench-pools` (single-App mount against an earlier
//	                          release, a pool with one App limited, budget shares): see pools.go
//	loadgen -mode pools-report  print their markdown summary from -pools
//
// Every loop is bounded in time (phases by -duration, the storm's wait by -storm-wait) and the whole run by
// -timeout, so the program always stops by itself.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		mode        = flag.String("mode", "load", "load, storm, report or ha-report")
		vaultAddr   = flag.String("vault-addr", os.Getenv("VAULT_ADDR"), "Vault's address")
		vaultToken  = flag.String("vault-token", os.Getenv("VAULT_TOKEN"), "Vault token (the dev root token)")
		githubURL   = flag.String("github-url", "", "the emulator's URL (its admin API gives the GitHub figures)")
		pluginBin   = flag.String("plugin-bin", "", "the GitHub App plugin binary in Vault's plugin directory")
		noopBin     = flag.String("noop-bin", "", "the no-op plugin binary in Vault's plugin directory")
		vaultPID    = flag.Int("vault-pid", 0, "Vault's PID (CPU share; the plugins are its children)")
		targetsFlag = flag.String("targets", "kv,noop,shaped,github", "load: targets in order; NAME-standby sends NAME's reads to -standby-addr")
		standbyAddr = flag.String("standby-addr", "", "a standby of the cluster at -vault-addr (the -standby targets)")
		standbyPID  = flag.Int("standby-pid", 0, "the standby's PID (CPU share)")
		clusterFlag = flag.String("cluster", "", "load: the cluster's nodes as NAME=ADDR=PID=PLUGIN_DIR,...; the "+
			"active node and a standby are looked up before every phase (then -vault-addr, -standby-addr and the PIDs "+
			"are not needed)")
		failoverRep = flag.String("failover", "", "ha-report: the failover reports, one JSON object a line")
		emuPID      = flag.Int("emulator-pid", 0, "the emulator's PID (CPU share)")
		vaultLog    = flag.String("vault-log", "", "Vault's log file (the storm counts failed revocations in it)")
		emuLog      = flag.String("emulator-log", "", "the emulator's request log (the storm counts DELETE statuses in it)")
		out         = flag.String("out", "", "write the JSON result here (load, storm)")
		timeout     = flag.Duration("timeout", 30*time.Minute, "stop everything after this long")
		duration    = flag.Duration("duration", 10*time.Second, "measured time of each load phase")
		warmup      = flag.Duration("warmup", time.Second, "unmeasured warm-up before each load phase")
		concurrency = flag.String("concurrency", "1,4,16", "concurrencies of the load phases")
		githubPath  = flag.String("github-path", "github/token/bench", "the plugin path the load phases read")
		noopPath    = flag.String("noop-path", "noop/creds", "the no-op plugin path")
		shapedPath  = flag.String("shaped-path", "noop/shaped", "the no-op plugin path that answers in our shape")
		kvPath      = flag.String("kv-path", "kv/bench", "the KV v1 secret")
		revokeLimit = flag.Duration("revoke-limit", 5*time.Minute, "the longest a cleanup between phases may take")
		stormPath   = flag.String("storm-path", "github/token/storm", "the short-TTL role the storm mints from")
		stormCount  = flag.Int("storm-count", 20000, "tokens the storm mints")
		stormConc   = flag.Int("storm-concurrency", 16, "concurrency of the storm's minting")
		stormTTL    = flag.Duration("storm-ttl", 30*time.Second, "the storm role's TTL (must match the role)")
		stormWait   = flag.Duration("storm-wait", 10*time.Minute, "the longest wait for revocations after the last mint")
		loadJSON    = flag.String("load", "", "report: the load result")
		stormJSON   = flag.String("storm", "", "report: the storm result")
		goBench     = flag.String("gobench", "", "report: output of go test -bench")
		metaFile    = flag.String("meta", "", "report: 'Key: value' lines about the machine and versions")

		poolsJSON     = flag.String("pools", "", "pools-report: the result of -mode pools")
		scenarios     = flag.String("pools-scenarios", "single,pool,budget", "pools: the scenarios to run, in order")
		rounds        = flag.Int("pools-rounds", 2, "pools: rounds of the single-App comparison")
		version       = flag.String("version", "", "pools: this build's version (for the report)")
		prevBin       = flag.String("prev-bin", "", "pools: the earlier release's plugin binary in Vault's plugin directory")
		prevPath      = flag.String("prev-path", "", "pools: the earlier release's bench role (empty: not compared)")
		prevVersion   = flag.String("prev-version", "v0.2.0", "pools: the earlier release's version")
		poolApps      = flag.String("pool-apps", "default=1001=2001,a2=1002=2102,a3=1003=2103", "pools: the pool's Apps as NAME=APP_ID=INSTALLATION_ID, in the role's order")
		poolPrefix    = flag.String("pool-prefix", "pool-", "pools: the pool scenario's mounts are this plus the limit's kind")
		poolRole      = flag.String("pool-role", "pool", "pools: the role of all the pool's Apps on every pool mount")
		poolLimited   = flag.String("pool-limited", "a2", "pools: the App GitHub limits in the pool scenario")
		poolLimits    = flag.String("pool-limits", "primary,secondary", "pools: the kinds of limit, one pool run each")
		budgetPath    = flag.String("budget-path", "budget/token/pool", "pools: the budget scenario's role")
		budgetLeft    = flag.String("budget-left", "10,50,90", "pools: percent of each installation's budget left, in -pool-apps order")
		budgetChange  = flag.String("budget-change", "a3=5", "pools: NAME=PERCENT, the budget that changes half-way")
		budgetLimit   = flag.Int("budget-limit", 5000, "pools: each installation's limit in the budget scenario")
		budgetRefresh = flag.String("budget-refresh", "1s", "pools: the budget mount's rate_limit_refresh (for the report)")
	)
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	}

	switch *mode {
	case "report":
		return writeReport(os.Stdout, *metaFile, *loadJSON, *stormJSON, *goBench)
	case "ha-report":
		return writeHAReport(os.Stdout, *metaFile, *loadJSON, *failoverRep)
	case "pools-report":
		return writePoolsReport(os.Stdout, *metaFile, *poolsJSON)
	}

	var cluster *clusterNodes
	if *clusterFlag != "" {
		cluster = &clusterNodes{}
		for _, n := range strings.Split(*clusterFlag, ",") {
			f := strings.SplitN(n, "=", 4)
			pid, err := strconv.Atoi(f[min(2, len(f)-1)])
			if len(f) != 4 || err != nil {
				return fmt.Errorf("-cluster %q: expected NAME=ADDR=PID=PLUGIN_DIR", n)
			}
			cluster.names = append(cluster.names, f[0])
			cluster.addrs = append(cluster.addrs, strings.TrimRight(f[1], "/"))
			cluster.pids = append(cluster.pids, pid)
			cluster.pluginDirs = append(cluster.pluginDirs, f[3])
		}
		if *vaultAddr == "" {
			*vaultAddr = cluster.addrs[0]
		}
		if *standbyAddr == "" {
			*standbyAddr = cluster.addrs[1%len(cluster.addrs)]
		}
	}
	if *vaultAddr == "" || *vaultToken == "" || *githubURL == "" {
		return fmt.Errorf("-vault-addr, -vault-token and -github-url are required (VAULT_ADDR and VAULT_TOKEN work too)")
	}
	conc, err := parseInts(*concurrency)
	if err != nil {
		return fmt.Errorf("-concurrency %w", err)
	}
	maxConc := max(*stormConc, 1)
	for _, c := range conc {
		maxConc = max(maxConc, c)
	}
	admin := &vaultClient{addr: strings.TrimRight(*vaultAddr, "/"), token: *vaultToken, http: newHTTPClient(4)}
	admin.http.Timeout = 2 * time.Minute // a sync revoke-prefix can take a while; Vault cuts it at 90 s anyway
	hot := newHTTPClient(maxConc)
	hot.Timeout = time.Minute
	ghURL, err := url.Parse(*githubURL)
	if err != nil || ghURL.Port() == "" {
		return fmt.Errorf("-github-url %q: expected http://127.0.0.1:PORT", *githubURL)
	}
	emuPort, _ := strconv.Atoi(ghURL.Port())
	emu := &emulator{url: strings.TrimRight(*githubURL, "/"), http: &http.Client{Timeout: 30 * time.Second}}

	var result any
	switch *mode {
	case "load":
		paths := map[string]target{
			"kv":     {name: "kv", path: *kvPath},
			"noop":   {name: "noop", path: *noopPath, leased: true},
			"shaped": {name: "shaped", path: *shapedPath, leased: true},
			"github": {name: "github", path: *githubPath, leased: true},
		}
		var targets []target
		for _, name := range strings.Split(*targetsFlag, ",") {
			name = strings.TrimSpace(name)
			tg, ok := paths[strings.TrimSuffix(name, standbySuffix)]
			if !ok {
				return fmt.Errorf("-targets: unknown target %q (kv, noop, shaped, github, each optionally -standby)", name)
			}
			if strings.HasSuffix(name, standbySuffix) {
				if *standbyAddr == "" {
					return fmt.Errorf("-targets %s needs -standby-addr", name)
				}
				tg.name, tg.addr = name, strings.TrimRight(*standbyAddr, "/")
			}
			targets = append(targets, tg)
		}
		result, err = runLoad(ctx, loadConfig{
			vault: admin, hot: hot, emu: emu, targets: targets,
			concurrency: conc, duration: *duration, warmup: *warmup,
			pluginBin: *pluginBin, noopBin: *noopBin, vaultPID: *vaultPID, standbyPID: *standbyPID, emuPID: *emuPID,
			cluster:     cluster,
			revokeLimit: *revokeLimit, emuPort: emuPort,
		}, logf)
	case "storm":
		result, err = runStorm(ctx, stormConfig{
			vault: admin, hot: hot, emu: emu, path: *stormPath,
			count: *stormCount, concurrency: *stormConc, ttl: *stormTTL, wait: *stormWait,
			pluginBin: *pluginBin, vaultPID: *vaultPID, emuPID: *emuPID, vaultLog: *vaultLog, emuLog: *emuLog,
			emuPort: emuPort,
		}, logf)
	case "pools":
		apps, perr := parsePoolApps(*poolApps)
		if perr != nil {
			return fmt.Errorf("-pool-apps %w", perr)
		}
		left, perr := parseInts(*budgetLeft)
		if perr != nil {
			return fmt.Errorf("-budget-left %w", perr)
		}
		changeApp, changeTo, ok := strings.Cut(*budgetChange, "=")
		to, perr := strconv.Atoi(changeTo)
		if !ok || perr != nil || to < 0 || to > 100 {
			return fmt.Errorf("-budget-change %q: expected NAME=PERCENT", *budgetChange)
		}
		result, err = runPools(ctx, poolsConfig{
			vault: admin, hot: hot, emu: emu, scenarios: splitList(*scenarios),
			concurrency: conc[len(conc)-1], duration: *duration, warmup: *warmup, rounds: max(*rounds, 1),
			revokeLimit: *revokeLimit, vaultPID: *vaultPID, emuPID: *emuPID,
			pluginBin: *pluginBin, prevBin: *prevBin, noopBin: *noopBin,
			version: *version, prevVersion: *prevVersion,
			singlePath: *githubPath, prevPath: *prevPath, noopPath: *noopPath,
			apps: apps, poolPrefix: *poolPrefix, role: *poolRole, limited: *poolLimited, limits: splitList(*poolLimits),
			budgetPath: *budgetPath, budgetLeft: left, changeApp: changeApp, changeTo: to,
			budgetMax: *budgetLimit, refresh: *budgetRefresh,
		}, logf)
	default:
		return fmt.Errorf("-mode %q: expected load, storm, pools, report, ha-report or pools-report", *mode)
	}
	if result != nil && *out != "" {
		data, jerr := json.MarshalIndent(result, "", "  ")
		if jerr != nil {
			return jerr
		}
		if werr := os.WriteFile(*out, append(data, '\n'), 0o644); werr != nil {
			return werr
		}
	}
	return err
}

// splitList reads "a,b" into its non-empty, trimmed items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
