// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The production shape of SPEC section 7: three `vault server` processes on integrated storage (Raft), initialised
// with one Shamir key and unsealed, the plugin in every node's plugin directory, registered by sha256 and version,
// mounted at github/ against an emulator of its own, and a file audit device on. scripts/lib.sh (cluster_start)
// builds the same by hand for `make cluster` and `make bench-ha`.

const (
	clusterSize  = 3
	clusterMount = "github"

	// defaultPerformanceMultiplier scales Raft's timing (heartbeat and election timeouts of multiplier × 1 s, the
	// leader's lease of multiplier × 0.5 s). Vault advises 1 on production hardware. Three nodes sharing two cores
	// with the tests and whatever else runs lose a 0.5 s lease under load: with 1, leadership flapped for a minute
	// at a load average of 11. 3 keeps failover within a few seconds and rides out second-long stalls.
	// HA_PERFORMANCE_MULTIPLIER overrides it (make bench-ha can compare).
	defaultPerformanceMultiplier = 3
)

// performanceMultiplier is the Raft performance_multiplier of the test cluster.
func performanceMultiplier() (int, error) {
	v := os.Getenv("HA_PERFORMANCE_MULTIPLIER")
	if v == "" {
		return defaultPerformanceMultiplier, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 10 {
		return 0, fmt.Errorf("HA_PERFORMANCE_MULTIPLIER=%q: want 1 to 10", v)
	}
	return n, nil
}

// cluster is a running 3-node cluster. Its nodes are vaultServers whose rootToken is the cluster's.
type cluster struct {
	bins      binaries
	dir       string
	gh        *fakeGitHub
	nodes     []*vaultServer
	unsealKey string // a test secret: never logged, never on a command line but in the one test of the CLI form
	rootToken string // a test secret: never logged
	pluginSHA string
	// load is the HTTP client of the mint load: keep-alive connections, and redirects followed, as Vault's own
	// client does when a standby answers 307 (it does when it cannot forward a request to the active node).
	load *http.Client

	mu          sync.Mutex
	minted      map[string]struct{} // every token Vault handed to the tests, in memory only (the audit check)
	hashed      map[string]struct{} // their hashed_token values
	shapes      []commandShape      // every vault CLI call the tests made, reduced to its shape (the docs check)
	everActive  map[string]bool     // the nodes seen as the active node
	steppedDown time.Time           // the last vault operator step-down
}

// stepDownSleep is how long a node that stepped down sleeps before it watches again for leadership, and for its own
// shutdown (manualStepDownSleepPeriod in Vault's vault/ha.go): a node stopped within that time takes until its end
// to seal, and holds the requests that reach it meanwhile (they end in 503).
const stepDownSleep = 10 * time.Second

// startCluster starts a cluster and stops everything it started when t ends. A port that another process takes
// between choosing and binding it makes the attempt fail; then it starts again with other ports.
func startCluster(t *testing.T, bins binaries) *cluster {
	t.Helper()
	start := time.Now()
	c := &cluster{
		bins:       bins,
		dir:        t.TempDir(),
		minted:     map[string]struct{}{},
		hashed:     map[string]struct{}{},
		everActive: map[string]bool{},
		load: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 32, IdleConnTimeout: 30 * time.Second},
		},
	}
	t.Cleanup(func() { c.stop(t) })

	var err error
	ghDir := filepath.Join(c.dir, "github")
	if err = os.MkdirAll(ghDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if c.gh, err = startFakeGitHub(bins.fakeGitHub, ghDir); err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		if err = c.startNodes(filepath.Join(c.dir, fmt.Sprintf("try%d", attempt))); err == nil {
			break
		}
		c.stopNodes()
		if attempt == 3 {
			t.Fatalf("starting three Vault nodes: %v", err)
		}
		t.Logf("starting three Vault nodes (attempt %d): %v; trying other ports", attempt, err)
	}
	c.initialise(t)
	c.setUp(t)
	active := c.waitHealthy(t, 90*time.Second)
	multiplier, _ := performanceMultiplier()
	t.Logf("cluster of %d nodes (Raft performance_multiplier %d) up in %s; active: %s; emulator at %s", clusterSize,
		multiplier, time.Since(start).Round(100*time.Millisecond), active.name, c.gh.url)
	return c
}

// startNodes writes each node's configuration under dir and starts the three servers (sealed, uninitialised).
func (c *cluster) startNodes(dir string) error {
	c.nodes = nil
	multiplier, err := performanceMultiplier()
	if err != nil {
		return err
	}
	ports := map[int]bool{}
	for len(ports) < 2*clusterSize {
		p, err := freePort()
		if err != nil {
			return err
		}
		ports[p] = true
	}
	var list []int
	for p := range ports {
		list = append(list, p)
	}
	apiAddrs := make([]string, clusterSize)
	for i := range clusterSize {
		apiAddrs[i] = fmt.Sprintf("127.0.0.1:%d", list[i])
	}
	for i := range clusterSize {
		name := fmt.Sprintf("node%d", i+1)
		home := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Join(home, "raft"), 0o700); err != nil {
			return err
		}
		var peers []string
		for j, a := range apiAddrs {
			if j != i {
				peers = append(peers, "http://"+a)
			}
		}
		v, err := newConfiguredServer(c.bins.vault, home, name, serverConfig{
			storage:     raftStanza(filepath.Join(home, "raft"), name, peers, multiplier),
			apiAddr:     apiAddrs[i],
			clusterAddr: fmt.Sprintf("127.0.0.1:%d", list[clusterSize+i]),
			pluginDir:   filepath.Join(home, "plugins"),
		})
		if err != nil {
			return err
		}
		// Debug logs of three nodes under load would only cost disk and CPU the two cores need.
		v.logLevel = "info"
		v.onRun = c.recordShape
		if err := copyFile(filepath.Join(v.pluginDir, pluginName), c.bins.plugin, 0o755); err != nil {
			return err
		}
		c.nodes = append(c.nodes, v)
	}
	for _, v := range c.nodes {
		if err := v.startServer(); err != nil {
			return err
		}
	}
	return nil
}

// raftStanza is integrated storage with retry_join to the other nodes.
func raftStanza(dataDir, nodeID string, peers []string, multiplier int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "storage \"raft\" {\n  path    = %q\n  node_id = %q\n", dataDir, nodeID)
	fmt.Fprintf(&b, "  performance_multiplier = %d\n", multiplier)
	for _, p := range peers {
		fmt.Fprintf(&b, "\n  retry_join {\n    leader_api_addr = %q\n  }\n", p)
	}
	b.WriteString("}")
	return b.String()
}

// initialise initialises the cluster on node1 with one key share and unseals every node: node1 becomes active, the
// others join it (the unseal key decrypts the join challenge) and become standbys.
func (c *cluster) initialise(t *testing.T) {
	t.Helper()
	var out struct {
		UnsealKeysB64 []string `json:"unseal_keys_b64"`
		RootToken     string   `json:"root_token"`
	}
	first := c.nodes[0]
	first.cliJSON(t, "", &out, "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json")
	if len(out.UnsealKeysB64) != 1 || out.RootToken == "" {
		t.Fatalf("vault operator init returned %d unseal keys and a root token of %d characters",
			len(out.UnsealKeysB64), len(out.RootToken))
	}
	c.unsealKey, c.rootToken = out.UnsealKeysB64[0], out.RootToken
	for _, v := range c.nodes {
		v.rootToken = c.rootToken
	}
	c.unsealAPI(t, first)
	if err := first.waitActive(t, 60*time.Second); err != nil {
		t.Fatalf("node1 is not active after unsealing: %v", err)
	}
	for _, v := range c.nodes[1:] {
		c.unsealAPI(t, v)
	}
}

// setUp turns the audit device on first (so that every later request is audited, the config write with the App
// key included), then registers, mounts and configures the plugin.
func (c *cluster) setUp(t *testing.T) {
	t.Helper()
	// A relative file_path is relative to each node's working directory: one audit log per node, as on separate
	// machines, where it would be /var/log/vault/audit.log on each. Only the active node writes to it.
	c.active(t).cli(t, "audit", "enable", "file", "file_path=audit.log")
	var err error
	if c.pluginSHA, err = fileSHA256(c.bins.plugin); err != nil {
		t.Fatal(err)
	}
	c.cli(t, "plugin", "register", "-sha256="+c.pluginSHA, "-version="+c.bins.pluginVersion, "secret", pluginName)
	c.active(t).cli(t, "secrets", "enable", "-path="+clusterMount, "-plugin-version="+c.bins.pluginVersion, pluginName)
	// hashed_token in clear in the audit log, so that an operator can follow a token from there to GitHub's log.
	c.cli(t, "secrets", "tune", "-audit-non-hmac-response-keys=hashed_token", clusterMount+"/")
	c.configure(t)
}

// configure writes the mount's whole config, key included (a write that changes base_url must carry the key).
func (c *cluster) configure(t *testing.T, extra ...string) {
	t.Helper()
	args := []string{"write", clusterMount + "/config", fmt.Sprintf("app_id=%d", appID),
		"private_key=@" + c.gh.keyFile, "base_url=" + c.gh.url}
	c.cli(t, append(args, extra...)...)
}

// stop stops every node at once (one by one, the last two would wait for a quorum that is gone) and the emulator,
// and shows the ends of their logs when the test failed.
func (c *cluster) stop(t *testing.T) {
	if t.Failed() {
		for _, v := range c.nodes {
			if v.proc != nil {
				t.Logf("--- last lines of %s's log:\n%s", v.name, v.proc.logTail(60))
			}
		}
	}
	if err := c.stopNodes(); err != nil {
		t.Error(err)
	}
	// HA_KEEP_LOGS=DIR keeps the nodes' server logs (they can hold tokens' hashes, never tokens) for a closer look.
	if keep := os.Getenv("HA_KEEP_LOGS"); keep != "" {
		for _, v := range c.nodes {
			if v.proc != nil {
				if err := copyFile(filepath.Join(keep, v.name+".log"), v.proc.logPath, 0o644); err != nil {
					t.Error(err)
				}
			}
		}
	}
	if c.gh != nil {
		if err := c.gh.proc.stop(5 * time.Second); err != nil {
			t.Error(err)
		}
	}
}

func (c *cluster) stopNodes() error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for i, v := range c.nodes {
		if v.proc == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = v.proc.stop(30 * time.Second)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ------------------------------------------------------------------------------------------------ talking to it

// cli runs the vault CLI as root against the active node and fails the test if it fails. It returns stdout.
//
// Like any client of a cluster, it retries what a leader change can cause (no answer, a 5xx) for up to a minute,
// on whichever node is active then: with performance_multiplier = 1 the leader's lease is half a second, and on
// two busy cores a leader sometimes loses it for a moment. Only idempotent commands may go through cli; the
// others (enabling a mount or an audit device, step-down) call the node's cli once.
func (c *cluster) cli(t *testing.T, args ...string) string {
	t.Helper()
	return c.cliOn(t, nil, args...)
}

// cliOn is cli against node v (a standby forwards the request), or against the active node when v is nil.
func (c *cluster) cliOn(t *testing.T, v *vaultServer, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		node := v
		if node == nil {
			node = c.active(t)
		}
		r := node.run(c.rootToken, "", args...)
		if r.err == nil {
			return r.stdout
		}
		if !retryableCLI(r) || time.Now().After(deadline) {
			t.Fatalf("%s", r)
		}
		t.Logf("retrying vault %s on %s after: %s", strings.Join(args, " "), node.name, strings.TrimSpace(redact(r.stderr)))
		time.Sleep(500 * time.Millisecond)
	}
}

// cliJSONOn is cliOn with -format=json (put it in args), decoded into out.
func (c *cluster) cliJSONOn(t *testing.T, v *vaultServer, out any, args ...string) {
	t.Helper()
	stdout := c.cliOn(t, v, args...)
	if err := json.Unmarshal([]byte(stdout), out); err != nil {
		t.Fatalf("vault %s: decoding the JSON output: %v", strings.Join(args, " "), err)
	}
}

// retryableCLI says whether a failed vault CLI call failed the way a leader change makes calls fail.
func retryableCLI(r cliResult) bool {
	for _, s := range []string{"Code: 500", "Code: 502", "Code: 503", "connection refused", "connection reset", "EOF"} {
		if strings.Contains(r.stderr, s) {
			return true
		}
	}
	return false
}

// cliJSON is cli with -format=json (put it in args), decoded into out.
func (c *cluster) cliJSON(t *testing.T, out any, args ...string) {
	t.Helper()
	c.cliJSONOn(t, nil, out, args...)
}

// active returns the active node, waiting up to 60 seconds for there to be one.
func (c *cluster) active(t *testing.T) *vaultServer {
	t.Helper()
	var a *vaultServer
	eventually(t, 60*time.Second, 100*time.Millisecond, "a node of the cluster is active", func() error {
		var err error
		a, err = c.findActive(nil)
		return err
	})
	return a
}

// findActive returns the node that says it is active, skipping except. Exactly one may say so.
func (c *cluster) findActive(except *vaultServer) (*vaultServer, error) {
	var found []*vaultServer
	for _, v := range c.nodes {
		if v == except || v.proc == nil || v.proc.exited() {
			continue
		}
		if h, err := v.health(); err == nil && h.Initialized && !h.Sealed && !h.Standby {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("%d nodes say they are active", len(found))
	}
	c.mu.Lock()
	c.everActive[found[0].name] = true
	c.mu.Unlock()
	return found[0], nil
}

// standbys returns the nodes other than active, in name order.
func (c *cluster) standbys(active *vaultServer) []*vaultServer {
	var out []*vaultServer
	for _, v := range c.nodes {
		if v != active {
			out = append(out, v)
		}
	}
	return out
}

// getJSON reads a Vault API path on one node as root and decodes the answer.
func (c *cluster) getJSON(v *vaultServer, path string, out any) error {
	req, err := http.NewRequest(http.MethodGet, v.addr+"/v1/"+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", c.rootToken)
	resp, err := healthClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s on %s: HTTP %d: %s", path, v.name, resp.StatusCode, redact(string(bytes.TrimSpace(body))))
	}
	return json.Unmarshal(body, out)
}

// autopilotState is the part of sys/storage/raft/autopilot/state the tests read.
type autopilotState struct {
	Healthy          bool   `json:"healthy"`
	FailureTolerance int    `json:"failure_tolerance"`
	Leader           string `json:"leader"`
	Servers          map[string]struct {
		Healthy bool   `json:"healthy"`
		Status  string `json:"status"` // leader, voter, non-voter
	} `json:"servers"`
}

// checkHealthy says why the cluster is not healthy, or returns the active node: every node runs and is unsealed,
// one is active and every standby follows it, Raft has the three nodes as voters, and autopilot says healthy.
func (c *cluster) checkHealthy() (*vaultServer, error) {
	for _, v := range c.nodes {
		if v.proc == nil || v.proc.exited() {
			return nil, fmt.Errorf("%s is not running", v.name)
		}
		h, err := v.health()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
		if !h.Initialized || h.Sealed {
			return nil, fmt.Errorf("%s is initialized=%v sealed=%v", v.name, h.Initialized, h.Sealed)
		}
	}
	active, err := c.findActive(nil)
	if err != nil {
		return nil, err
	}
	type leaderInfo struct {
		LeaderAddress string `json:"leader_address"`
		Committed     uint64 `json:"raft_committed_index"`
		Applied       uint64 `json:"raft_applied_index"`
	}
	var lead leaderInfo
	if err := c.getJSON(active, "sys/leader", &lead); err != nil {
		return nil, err
	}
	for _, v := range c.standbys(active) {
		var follower leaderInfo
		if err := c.getJSON(v, "sys/leader", &follower); err != nil {
			return nil, err
		}
		if follower.LeaderAddress != active.addr {
			return nil, fmt.Errorf("%s follows %q, not the active node %s (%s)", v.name, follower.LeaderAddress, active.name, active.addr)
		}
		// Caught up: it has applied (nearly) what the leader had committed a moment before. A follower learns
		// that an entry is committed only from the leader's next append (heartbeats do not carry the commit
		// index), so it trails by an entry or a few under writes, and by one for good on an idle cluster.
		const trail = 64
		if follower.Applied+trail < lead.Committed {
			return nil, fmt.Errorf("%s has applied Raft index %d, the leader had committed %d", v.name, follower.Applied, lead.Committed)
		}
	}
	var cfg struct {
		Data struct {
			Config struct {
				Servers []struct {
					NodeID string `json:"node_id"`
					Leader bool   `json:"leader"`
					Voter  bool   `json:"voter"`
				} `json:"servers"`
			} `json:"config"`
		} `json:"data"`
	}
	if err := c.getJSON(active, "sys/storage/raft/configuration", &cfg); err != nil {
		return nil, err
	}
	var voters []string
	for _, s := range cfg.Data.Config.Servers {
		if s.Voter {
			voters = append(voters, s.NodeID)
		}
		if s.Leader && s.NodeID != active.name {
			return nil, fmt.Errorf("Raft's leader is %s, Vault's active node %s", s.NodeID, active.name)
		}
	}
	if len(voters) != clusterSize || len(cfg.Data.Config.Servers) != clusterSize {
		return nil, fmt.Errorf("Raft has voters %v of %d servers, want %d voters", voters, len(cfg.Data.Config.Servers), clusterSize)
	}
	var ap struct {
		Data autopilotState `json:"data"`
	}
	if err := c.getJSON(active, "sys/storage/raft/autopilot/state", &ap); err != nil {
		return nil, err
	}
	if !ap.Data.Healthy || len(ap.Data.Servers) != clusterSize {
		return nil, fmt.Errorf("autopilot: healthy=%v with %d servers (failure tolerance %d)", ap.Data.Healthy,
			len(ap.Data.Servers), ap.Data.FailureTolerance)
	}
	return active, nil
}

// waitHealthy waits until checkHealthy passes, then checks the same as an operator would with the CLI
// (`vault operator raft list-peers`, `vault operator raft autopilot state`), and returns the active node.
func (c *cluster) waitHealthy(t *testing.T, timeout time.Duration) *vaultServer {
	t.Helper()
	var active *vaultServer
	eventually(t, timeout, 250*time.Millisecond, "the cluster is healthy", func() error {
		var err error
		if active, err = c.checkHealthy(); err != nil {
			return err
		}
		return c.healthyByCLI(active)
	})
	return active
}

// healthyByCLI asks what an operator asks: `vault operator raft list-peers`, `vault operator raft autopilot state`.
func (c *cluster) healthyByCLI(active *vaultServer) error {
	var peers struct {
		Data struct {
			Config struct {
				Servers []struct {
					NodeID string `json:"node_id"`
					Voter  bool   `json:"voter"`
				} `json:"servers"`
			} `json:"config"`
		} `json:"data"`
	}
	r := active.run(c.rootToken, "", "operator", "raft", "list-peers", "-format=json")
	if r.err != nil {
		return errors.New(r.String())
	}
	if err := json.Unmarshal([]byte(r.stdout), &peers); err != nil {
		return fmt.Errorf("vault operator raft list-peers: %w", err)
	}
	if n := len(peers.Data.Config.Servers); n != clusterSize {
		return fmt.Errorf("vault operator raft list-peers shows %d peers, want %d", n, clusterSize)
	}
	// The CLI prints autopilot's state with Go's field names (Healthy, Status).
	var ap struct {
		Healthy bool
		Servers map[string]struct{ Status string }
	}
	r = active.run(c.rootToken, "", "operator", "raft", "autopilot", "state", "-format=json")
	if r.err != nil {
		return errors.New(r.String())
	}
	if err := json.Unmarshal([]byte(r.stdout), &ap); err != nil {
		return fmt.Errorf("vault operator raft autopilot state: %w", err)
	}
	if !ap.Healthy || len(ap.Servers) != clusterSize {
		return fmt.Errorf("vault operator raft autopilot state: healthy=%v with %d servers", ap.Healthy, len(ap.Servers))
	}
	return nil
}

// unsealAPI unseals a node through the API and waits until it is unsealed (active or standby). A node that has
// not joined the cluster yet uses the key to answer the join challenge first, so the key may need sending again.
func (c *cluster) unsealAPI(t *testing.T, v *vaultServer) {
	t.Helper()
	eventually(t, 90*time.Second, 250*time.Millisecond, v.name+" is unsealed", func() error {
		if h, err := v.health(); err == nil && h.Initialized && !h.Sealed {
			return nil
		}
		if _, err := v.submitUnsealKey(c.unsealKey); err != nil {
			return err
		}
		return v.waitUnsealed(2 * time.Second)
	})
}

// unsealCLI unseals a node the way an operator does after restarting it: `vault operator unseal` on that node.
// The key is on the command line of a process on this machine for a moment; it never reaches the log.
func (c *cluster) unsealCLI(t *testing.T, v *vaultServer) {
	t.Helper()
	r := v.run("", "", "operator", "unseal", c.unsealKey)
	if r.err != nil {
		t.Fatalf("%s", strings.ReplaceAll(r.String(), c.unsealKey, "<unseal key>"))
	}
	if err := v.waitUnsealed(60 * time.Second); err != nil {
		t.Fatalf("%s after vault operator unseal: %v", v.name, err)
	}
}

// restart stops a node (SIGTERM: an active node steps down), starts it again and unseals it with the CLI.
func (c *cluster) restart(t *testing.T, v *vaultServer) {
	t.Helper()
	if err := v.proc.stop(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.startAgain(t, v)
	c.unsealCLI(t, v)
}

// startAgain starts a stopped or killed node again on its data; it comes up sealed.
func (c *cluster) startAgain(t *testing.T, v *vaultServer) {
	t.Helper()
	if !v.proc.exited() {
		t.Fatalf("%s still runs", v.name)
	}
	v.onRun([]string{"server", "-config=" + v.configFile})
	if err := v.startServer(); err != nil {
		t.Fatal(err)
	}
}

// revive starts and unseals any node a failed earlier subtest left stopped, so that each subtest starts from a
// full cluster.
func (c *cluster) revive(t *testing.T) {
	t.Helper()
	for _, v := range c.nodes {
		if v.proc.exited() {
			t.Logf("%s was left stopped: starting it again", v.name)
			c.startAgain(t, v)
			c.unsealAPI(t, v)
		}
	}
}

// stepDown makes the active node give up leadership and returns the new active node.
func (c *cluster) stepDown(t *testing.T) (old, now *vaultServer) {
	t.Helper()
	old = c.active(t)
	old.cli(t, "operator", "step-down")
	c.mu.Lock()
	c.steppedDown = time.Now()
	c.mu.Unlock()
	eventually(t, 60*time.Second, 100*time.Millisecond, "another node is active after vault operator step-down", func() error {
		var err error
		now, err = c.findActive(old)
		return err
	})
	return old, now
}

// leases lists the lease IDs under a prefix such as github/token/ci/, asking the active node (again, should a
// leader change get in the way).
func (c *cluster) leases(t *testing.T, prefix string) []string {
	t.Helper()
	var ids []string
	eventually(t, time.Minute, 500*time.Millisecond, "listing the leases under "+prefix, func() error {
		s, err := c.active(t).client(t, c.rootToken).Logical().List("sys/leases/lookup/" + strings.TrimSuffix(prefix, "/") + "/")
		if err != nil {
			return err
		}
		ids = nil
		if s == nil {
			return nil
		}
		keys, _ := s.Data["keys"].([]any)
		for _, k := range keys {
			ids = append(ids, strings.TrimSuffix(prefix, "/")+"/"+fmt.Sprint(k))
		}
		return nil
	})
	return ids
}

// irrevocable reads `vault read sys/leases/count type=irrevocable`: leases Vault gave up revoking.
func (c *cluster) irrevocable(t *testing.T) int {
	t.Helper()
	var out struct {
		Data struct {
			LeaseCount int `json:"lease_count"`
		} `json:"data"`
	}
	c.cliJSON(t, &out, "read", "-format=json", "sys/leases/count", "type=irrevocable")
	return out.Data.LeaseCount
}

// mint reads token/<role> with the CLI on node v (retrying as cli does) and remembers the token for the audit check.
func (c *cluster) mint(t *testing.T, v *vaultServer, role string) secretOutput {
	t.Helper()
	path := clusterMount + "/token/" + role
	deadline := time.Now().Add(time.Minute)
	for {
		r := v.run(c.rootToken, "", "read", "-format=json", path)
		if r.err == nil {
			var out secretOutput
			if err := decodeSecret(r.stdout, &out); err != nil {
				t.Fatalf("vault read %s: %v", path, err)
			}
			c.remember(out.Data.Token, out.Data.HashedToken)
			return out
		}
		if !retryableCLI(r) || time.Now().After(deadline) {
			t.Fatalf("%s", r)
		}
		t.Logf("retrying vault read %s on %s after: %s", path, v.name, strings.TrimSpace(redact(r.stderr)))
		time.Sleep(500 * time.Millisecond)
	}
}

// raftTerm is the Raft term of the current leader: it grows with every election, so two equal readings bracket a
// time without a leader change.
func (c *cluster) raftTerm(t *testing.T) uint64 {
	t.Helper()
	var term uint64
	eventually(t, time.Minute, 250*time.Millisecond, "reading the Raft term", func() error {
		a, err := c.findActive(nil)
		if err != nil {
			return err
		}
		var ap struct {
			Data struct {
				Leader  string `json:"leader"`
				Servers map[string]struct {
					LastTerm uint64 `json:"last_term"`
				} `json:"servers"`
			} `json:"data"`
		}
		if err := c.getJSON(a, "sys/storage/raft/autopilot/state", &ap); err != nil {
			return err
		}
		term = ap.Data.Servers[ap.Data.Leader].LastTerm
		if term == 0 {
			return errors.New("no term for the leader")
		}
		return nil
	})
	return term
}

func (c *cluster) remember(token, hashed string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.minted[token] = struct{}{}
	c.hashed[hashed] = struct{}{}
}

// mountInfo is a mount's line of `vault secrets list -detailed -format=json` (sys/mounts).
type mountInfo struct {
	PluginVersion        string `json:"plugin_version"`
	RunningPluginVersion string `json:"running_plugin_version"`
	RunningSHA256        string `json:"running_sha256"`
}

// mountOn reads the plugin mount's entry in sys/mounts through node v (a standby forwards the read).
func (c *cluster) mountOn(t *testing.T, v *vaultServer) mountInfo {
	t.Helper()
	var mounts map[string]mountInfo
	c.cliJSONOn(t, v, &mounts, "secrets", "list", "-detailed", "-format=json")
	m, ok := mounts[clusterMount+"/"]
	if !ok {
		t.Fatalf("vault secrets list -detailed on %s has no %s/", v.name, clusterMount)
	}
	return m
}

// installPlugin copies a plugin binary into every node's plugin directory as file, and returns its sha256.
func (c *cluster) installPlugin(t *testing.T, src, file string) string {
	t.Helper()
	for _, v := range c.nodes {
		if err := copyFile(filepath.Join(v.pluginDir, file), src, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := fileSHA256(src)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// ---------------------------------------------------------------------------------------------------- the load

// mintResult is one read of token/<role> by the load.
type mintResult struct {
	start, end time.Time
	node       string
	status     int    // HTTP status of the last answer; 0 when none came (a connection error)
	err        string // "" on success; else what went wrong, redacted
	leaseID    string
	hashed     string
	token      string // in memory only
}

func (r mintResult) ok() bool { return r.err == "" }

// retryable says whether a client that retries would retry this failure: no answer, or a 5xx.
func (r mintResult) retryable() bool { return r.status == 0 || r.status >= 500 }

// mintLoad is a set of workers reading token/<role> in a loop through every node, until stopped.
type mintLoad struct {
	c        *cluster
	path     string
	started  time.Time
	quit     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	inFlight atomic.Int64

	mu      sync.Mutex
	results []mintResult
}

// startLoad starts workers that read path, each sending its requests to the nodes in turn (worker i starts at
// node i), pausing after each success. A node that refuses a connection is skipped by that worker for a second,
// what a client-side load balancer with passive health checks does; after any failure a worker waits 50 ms. The
// load stops when the test ends, if not before: a load left running would mint into the next test's accounting.
func (c *cluster) startLoad(t *testing.T, path string, workers int, pause time.Duration) *mintLoad {
	l := &mintLoad{c: c, path: path, started: time.Now(), quit: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go l.worker(w, pause)
	}
	t.Cleanup(func() { l.stop() })
	return l
}

func (l *mintLoad) worker(w int, pause time.Duration) {
	defer l.wg.Done()
	var downUntil [clusterSize]time.Time
	next := w % clusterSize
	for {
		select {
		case <-l.quit:
			return
		default:
		}
		n := next
		for i := range clusterSize {
			if cand := (next + i) % clusterSize; time.Now().After(downUntil[cand]) {
				n = cand
				break
			}
		}
		next = (n + 1) % clusterSize
		v := l.c.nodes[n]
		r, refused := l.readOnce(v)
		if refused {
			downUntil[n] = time.Now().Add(time.Second)
		}
		l.mu.Lock()
		l.results = append(l.results, r)
		l.mu.Unlock()
		wait := pause
		if !r.ok() {
			wait = 50 * time.Millisecond
		}
		select {
		case <-l.quit:
			return
		case <-time.After(wait):
		}
	}
}

var vaultErrorsBody = regexp.MustCompile(`"errors":\[(.*)\]`)

// readOnce reads the path once on node v. refused says that v itself (not a node it redirected to) did not answer.
func (l *mintLoad) readOnce(v *vaultServer) (r mintResult, refused bool) {
	l.inFlight.Add(1)
	defer l.inFlight.Add(-1)
	r = mintResult{start: time.Now(), node: v.name}
	req, err := http.NewRequest(http.MethodGet, v.addr+"/v1/"+l.path, nil)
	if err != nil {
		r.end, r.err = time.Now(), err.Error()
		return r, false
	}
	req.Header.Set("X-Vault-Token", l.c.rootToken)
	resp, err := l.c.load.Do(req)
	if err != nil {
		r.end, r.err = time.Now(), redact(err.Error())
		var ue *url.Error
		return r, errors.As(err, &ue) && strings.HasPrefix(ue.URL, v.addr+"/")
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r.end = time.Now()
	if err != nil {
		r.err = "reading the answer: " + redact(err.Error())
		return r, false
	}
	r.status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		msg := string(bytes.TrimSpace(body))
		if m := vaultErrorsBody.FindStringSubmatch(msg); m != nil {
			msg = m[1]
		}
		r.err = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, redact(msg))
		return r, false
	}
	var out struct {
		LeaseID string `json:"lease_id"`
		Data    struct {
			Token       string `json:"token"`
			HashedToken string `json:"hashed_token"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.LeaseID == "" || out.Data.Token == "" || out.Data.HashedToken == "" {
		r.err = "HTTP 200 without a lease, a token or its hash"
		return r, false
	}
	r.leaseID, r.token, r.hashed = out.LeaseID, out.Data.Token, out.Data.HashedToken
	l.c.remember(r.token, r.hashed)
	return r, false
}

// mintN mints exactly n tokens from path with workers going round the nodes, retrying what a retrying client
// retries (for up to a minute a token), and fails the test on any other failure.
func (c *cluster) mintN(t *testing.T, path string, n, workers int) []mintResult {
	t.Helper()
	l := &mintLoad{c: c, path: path, started: time.Now()}
	var claimed atomic.Int64
	results := make([]mintResult, n)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i++ {
				k := claimed.Add(1) - 1
				if k >= int64(n) {
					return
				}
				deadline := time.Now().Add(time.Minute)
				for {
					r, _ := l.readOnce(c.nodes[i%clusterSize])
					results[k] = r
					if r.ok() || !r.retryable() || time.Now().After(deadline) {
						break
					}
					i++
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	for _, r := range results {
		if !r.ok() {
			t.Fatalf("minting on a healthy cluster failed on %s: %s", r.node, r.err)
		}
	}
	return results
}

// stop stops the workers, waits for their last requests, and returns every result in order of start.
func (l *mintLoad) stop() []mintResult {
	l.stopOnce.Do(func() { close(l.quit) })
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.SortFunc(l.results, func(a, b mintResult) int { return a.start.Compare(b.start) })
	return l.results
}

// errorKind is one kind of failure the load saw: same node, status and message.
type errorKind struct {
	Node    string  `json:"node"`
	Status  int     `json:"status"` // 0: no answer (connection refused, reset, timeout)
	Message string  `json:"message"`
	Count   int     `json:"count"`
	FirstS  float64 `json:"first_s"` // seconds after the load started
	LastS   float64 `json:"last_s"`
}

var ephemeralPort = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// errorKinds groups the failures, with node addresses replaced by node names and other ports elided, so that the
// same failure seen a hundred times is one line.
func (c *cluster) errorKinds(results []mintResult, t0 time.Time) []errorKind {
	names := map[string]string{}
	for _, v := range c.nodes {
		names[strings.TrimPrefix(v.addr, "http://")] = v.name
	}
	byKey := map[string]*errorKind{}
	var order []string
	for _, r := range results {
		if r.ok() {
			continue
		}
		msg := ephemeralPort.ReplaceAllStringFunc(r.err, func(a string) string {
			if n, ok := names[a]; ok {
				return n
			}
			return "127.0.0.1:*"
		})
		key := fmt.Sprintf("%s|%d|%s", r.node, r.status, msg)
		k, ok := byKey[key]
		if !ok {
			k = &errorKind{Node: r.node, Status: r.status, Message: msg, FirstS: secondsSince(t0, r.end)}
			byKey[key] = k
			order = append(order, key)
		}
		k.Count++
		k.LastS = secondsSince(t0, r.end)
	}
	out := make([]errorKind, 0, len(order))
	for _, key := range order {
		out = append(out, *byKey[key])
	}
	return out
}

func secondsSince(t0, t time.Time) float64 { return roundTo(t.Sub(t0).Seconds(), 2) }

func roundTo(f float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	return float64(int64(f*p+0.5)) / p
}

// gaps returns the longest time between two successive successful mints (by completion) within [from, to], and
// when it began. A window without any success counts as one gap over the whole window.
func longestGap(results []mintResult, from, to time.Time) (time.Duration, time.Time) {
	var ends []time.Time
	for _, r := range results {
		if r.ok() && !r.end.Before(from) && !r.end.After(to) {
			ends = append(ends, r.end)
		}
	}
	slices.SortFunc(ends, func(a, b time.Time) int { return a.Compare(b) })
	prev, longest, at := from, time.Duration(0), from
	for _, e := range append(ends, to) {
		if d := e.Sub(prev); d > longest {
			longest, at = d, prev
		}
		prev = e
	}
	return longest, at
}

// ------------------------------------------------------------------------------------- the emulator's records

// tokenRecord is one line of the emulator's GET /_fake/tokens: a token GitHub issued, by its hashed_token.
type tokenRecord struct {
	HashedToken string    `json:"hashed_token"`
	ExpiresAt   time.Time `json:"expires_at"`
	Revoked     bool      `json:"revoked"`
	RevokedAt   time.Time `json:"revoked_at"`
	Expired     bool      `json:"expired"`
}

// tokenRecords returns every token the emulator issued, by hashed token.
func (g *fakeGitHub) tokenRecords(t *testing.T) map[string]tokenRecord {
	t.Helper()
	resp, err := g.http.Get(g.url + "/_fake/tokens")
	if err != nil {
		t.Fatalf("GET /_fake/tokens: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /_fake/tokens: %s", resp.Status)
	}
	var out struct {
		Tokens []tokenRecord `json:"tokens"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decoding GET /_fake/tokens: %v", err)
	}
	m := make(map[string]tokenRecord, len(out.Tokens))
	for _, r := range out.Tokens {
		m[r.HashedToken] = r
	}
	return m
}

// allDead checks, the way a GitHub client would (GET /installation/repositories), that every token is refused
// with 401, a few at a time. It returns how many are not.
func (g *fakeGitHub) allDead(tokens []string) (alive int, err error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, tok := range tokens {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			status, _, e := g.reach(tok)
			mu.Lock()
			defer mu.Unlock()
			if e != nil && err == nil {
				err = e
			}
			if e == nil && status != http.StatusUnauthorized {
				alive++
			}
		}()
	}
	wg.Wait()
	return alive, err
}

// --------------------------------------------------------------------------- commands and docs/production.md

// commandShape is a vault CLI call without its values: the subcommand words, and the names of its flags (-name)
// and key=value arguments (name=). The docs/production.md check compares shapes, because the page shows github/ and
// v0.3.1 where a test has its own paths and versions, and the tests add -format=json.
type commandShape struct {
	words string
	names []string
}

var (
	subcommandWord = regexp.MustCompile(`^[a-z][a-z-]*$`)
	keyValueName   = regexp.MustCompile(`^([a-z_]+)=`)
)

func shapeOf(args []string) commandShape {
	var s commandShape
	var words []string
	inWords := true
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "-"):
			name, _, _ := strings.Cut(a, "=")
			s.names = append(s.names, name)
		case keyValueName.MatchString(a):
			s.names = append(s.names, keyValueName.FindStringSubmatch(a)[1]+"=")
		case inWords && subcommandWord.MatchString(a):
			words = append(words, a)
			continue
		}
		inWords = false
	}
	s.words = strings.Join(words, " ")
	sort.Strings(s.names)
	return s
}

// covers says whether a call of shape s ran a command shown as want: the same words, and every flag and key that
// want names.
func (s commandShape) covers(want commandShape) bool {
	if s.words != want.words {
		return false
	}
	for _, n := range want.names {
		if !slices.Contains(s.names, n) {
			return false
		}
	}
	return true
}

func (c *cluster) recordShape(args []string) {
	s := shapeOf(args)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shapes = append(c.shapes, s)
}

// docVaultCommands returns the vault commands of a documentation page's shell blocks (file is relative to the
// repository root), as argument lists (shell quoting of the simple kind the docs use, line continuations joined,
// comments dropped).
func docVaultCommands(t *testing.T, file string) [][]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(file)))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	var cmds [][]string
	inCode, pending := false, ""
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode && (line == "```sh" || line == "```shell")
			continue
		}
		if !inCode {
			continue
		}
		if k := strings.Index(line, " #"); k >= 0 {
			line = line[:k]
		}
		line = strings.TrimSpace(line)
		if strings.HasSuffix(line, `\`) {
			pending += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		line, pending = pending+line, ""
		fields := strings.Fields(strings.NewReplacer(`"`, "", `'`, "").Replace(line))
		// Commands may stand after an environment assignment (VAULT_ADDR=... vault ...).
		for len(fields) > 0 && strings.Contains(fields[0], "=") && !strings.HasPrefix(fields[0], "-") {
			fields = fields[1:]
		}
		if len(fields) > 1 && fields[0] == "vault" {
			cmds = append(cmds, fields[1:])
		}
	}
	return cmds
}
