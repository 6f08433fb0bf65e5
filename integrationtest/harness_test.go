// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

const (
	pluginName = "vault-plugin-secrets-github-app"

	// The emulator's built-in fixture (fakegithub.DemoFixture): App 1001 installed on the organization acme
	// (installation 2001: repositories api, web, infra) and on the user octocat (installation 2002).
	appID          = 1001
	acmeInstallID  = 2001
	acmeOwner      = "acme"
	octocatAccount = "octocat"

	// cliTimeout bounds one vault CLI call; none should come near it.
	cliTimeout = 90 * time.Second
)

var (
	// secretPattern matches what must never reach the test log: GitHub installation tokens (classic and long
	// forms) and Vault service, batch and recovery tokens.
	secretPattern = regexp.MustCompile(`ghs_[A-Za-z0-9._\-]+|hv[sbr]\.[A-Za-z0-9._\-]+`)
	// unsealKeyPattern matches the unseal key a dev server prints at start.
	unsealKeyPattern = regexp.MustCompile(`(Unseal Key[^:]*: *)\S+`)
)

// redact hides token values and unseal keys in text meant for the log.
func redact(s string) string {
	s = unsealKeyPattern.ReplaceAllString(s, "${1}<redacted>")
	return secretPattern.ReplaceAllStringFunc(s, func(m string) string { return m[:4] + "<redacted>" })
}

// freePort finds a TCP port on 127.0.0.1 that nothing listens on. Another process may take it before the caller
// binds it; starters that can fail that way retry with another port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// cleanEnv is the environment for processes the tests start: the test's own, without VAULT_* variables (a
// developer's VAULT_ADDR, VAULT_TOKEN or VAULT_NAMESPACE must not leak in) and with HOME in a scratch directory,
// so that neither the dev server nor the CLI's token helper touches ~/.vault-token.
func cleanEnv(home string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+home)
	return append(env, extra...)
}

// proc is a process the tests started, with its output in a log file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error
}

// startProc starts bin with its stdout and stderr in logDir/name.log and logDir as its working directory, so that
// whatever a process writes to a relative path (a Vault node's file audit device) stays in its own directory. The
// process leads a process group of its own, so that stop can also end the children it leaves behind (Vault's plugin
// processes); if the test binary dies, the kernel sends the process SIGTERM (Pdeathsig), so nothing outlives a
// killed test run for long.
func startProc(logDir, name string, env []string, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Dir = logDir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to end with SIGTERM and waits up to grace; then it kills what is left of its process group.
// Vault shuts its plugins down on SIGTERM, so the group kill only finds something when a shutdown hangs.
func (p *proc) stop(grace time.Duration) error {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	var err error
	select {
	case <-p.done:
	case <-time.After(grace):
		err = fmt.Errorf("%s (pid %d) did not stop within %s of SIGTERM; killed", p.name, p.pid(), grace)
	}
	// The group's ID is the leader's PID. ESRCH (nothing left) is the normal case.
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.done
	return err
}

// kill ends the process and its group (Vault and its plugins) with SIGKILL, the way a machine that loses power
// ends them, and waits until it has exited.
func (p *proc) kill() {
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.done
}

// logTail returns the last n lines of the process's log, redacted.
func (p *proc) logTail(n int) string { return tailFile(p.logPath, n) }

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines in %s)", len(lines)-n, path)}, lines[len(lines)-n:]...)
	}
	return redact(strings.Join(lines, "\n"))
}

// stopOnCleanup stops p when the test ends, and shows its log when the test failed.
func stopOnCleanup(t *testing.T, p *proc, logLines int) {
	t.Helper()
	t.Cleanup(func() {
		if err := p.stop(20 * time.Second); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("--- last lines of %s's log:\n%s", p.name, p.logTail(logLines))
		}
	})
}

// eventually calls f every interval until it returns nil, and fails the test with f's last error when timeout passes.
func eventually(t *testing.T, timeout, interval time.Duration, what string, f func() error) {
	t.Helper()
	if err := poll(timeout, interval, f); err != nil {
		t.Fatalf("%s: still not so after %s: %v", what, timeout, err)
	}
}

// poll calls f every interval until it returns nil or timeout passes; it returns f's last error.
func poll(timeout, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func copyFile(dst, src string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, mode)
}

// ---------------------------------------------------------------------------------------------------- the emulator

// fakeGitHub is a running internal/testing/cmd/fakegithub.
type fakeGitHub struct {
	proc    *proc
	url     string // http://127.0.0.1:PORT
	keyFile string // the App's private key, generated by the emulator
	http    *http.Client
}

// startFakeGitHub starts the emulator with its built-in fixture (or what extraArgs such as -fixture give) and a
// generated App key on a free loopback port.
func startFakeGitHub(bin, dir string, extraArgs ...string) (*fakeGitHub, error) {
	keyFile := filepath.Join(dir, "app.private-key.pem")
	addrFile := filepath.Join(dir, "github.addr")
	p, err := startProc(dir, "fakegithub", cleanEnv(dir), bin,
		append([]string{"-listen", "127.0.0.1:0", "-generate-key", keyFile, "-addr-file", addrFile}, extraArgs...)...)
	if err != nil {
		return nil, err
	}
	g := &fakeGitHub{proc: p, keyFile: keyFile, http: &http.Client{Timeout: 10 * time.Second}}
	err = poll(30*time.Second, 50*time.Millisecond, func() error {
		if p.exited() {
			return fmt.Errorf("fakegithub exited: %v", p.waitErr)
		}
		data, err := os.ReadFile(addrFile)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			return errors.New("no address written yet")
		}
		addr := strings.TrimSpace(string(data))
		if !strings.Contains(addr, "://") {
			addr = "http://" + addr
		}
		g.url = strings.TrimRight(addr, "/")
		resp, err := g.http.Get(g.url + "/_fake/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /_fake/health: %s", resp.Status)
		}
		if _, err := os.Stat(keyFile); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		p.stop(5 * time.Second)
		return nil, fmt.Errorf("fakegithub did not come up: %w\n%s", err, p.logTail(30))
	}
	return g, nil
}

// reach asks the emulator what an installation token reaches (GET /installation/repositories, the way a client
// of GitHub would). It returns the HTTP status and, on 200, the repository names.
func (g *fakeGitHub) reach(token string) (int, []string, error) {
	req, err := http.NewRequest(http.MethodGet, g.url+"/installation/repositories?per_page=100", nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "token "+token)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("User-Agent", "vault-plugin-secrets-github-app-integrationtest")
	resp, err := g.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil, nil
	}
	var body struct {
		Repositories []struct {
			Name string `json:"name"`
		} `json:"repositories"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("decoding GET /installation/repositories: %w", err)
	}
	var names []string
	for _, r := range body.Repositories {
		names = append(names, r.Name)
	}
	return resp.StatusCode, names, nil
}

// mustReach fails the test unless the token is live at the emulator and reaches exactly the repositories want.
func (g *fakeGitHub) mustReach(t *testing.T, token string, want ...string) {
	t.Helper()
	status, repos, err := g.reach(token)
	if err != nil {
		t.Fatalf("asking the emulator about a token: %v", err)
	}
	if status != http.StatusOK {
		t.Fatalf("GET /installation/repositories with the token: HTTP %d, want 200 (the token should be live)", status)
	}
	if !sameSet(repos, want) {
		t.Fatalf("the token reaches repositories %v, want %v", repos, want)
	}
}

// waitDead polls the emulator until the token is refused with 401 (revoked or expired), failing the test after
// timeout.
func (g *fakeGitHub) waitDead(t *testing.T, token string, timeout time.Duration, what string) {
	t.Helper()
	eventually(t, timeout, 250*time.Millisecond, what, func() error {
		status, _, err := g.reach(token)
		if err != nil {
			return err
		}
		if status != http.StatusUnauthorized {
			return fmt.Errorf("the emulator answers HTTP %d to the token, want 401", status)
		}
		return nil
	})
}

// tokenStatus is the emulator's own record of a token (POST /_fake/token-status).
type tokenStatus struct {
	InstallationID      int64             `json:"installation_id"`
	ExpiresAt           time.Time         `json:"expires_at"`
	Permissions         map[string]string `json:"permissions"`
	Repositories        []string          `json:"repositories"`
	RepositorySelection string            `json:"repository_selection"`
	Revoked             bool              `json:"revoked"`
	Expired             bool              `json:"expired"`
	HashedToken         string            `json:"hashed_token"`
}

// status asks the emulator's admin API about a token it issued. The token travels in the body, not the URL.
func (g *fakeGitHub) status(t *testing.T, token string) tokenStatus {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"token": token})
	resp, err := g.http.Post(g.url+"/_fake/token-status", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /_fake/token-status: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST /_fake/token-status: HTTP %d: %s", resp.StatusCode, redact(string(msg)))
	}
	var st tokenStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("decoding /_fake/token-status: %v", err)
	}
	return st
}

// issued is how many tokens the emulator has issued since it started.
func (g *fakeGitHub) issued(t *testing.T) int {
	t.Helper()
	st := g.stats(t)
	return st.TokensLive + st.TokensRevoked + st.TokensExpired
}

// emulatorStats is the emulator's GET /_fake/stats.
type emulatorStats struct {
	Calls         map[string]int `json:"calls"`
	TotalCalls    int            `json:"total_calls"`
	MaxInFlight   int            `json:"max_in_flight"`
	DistinctJWTs  int            `json:"distinct_jwts"`
	TokensIssued  int            `json:"tokens_issued"` // since the last reset
	TokensLive    int            `json:"tokens_live"`   // the next three: since the emulator started
	TokensRevoked int            `json:"tokens_revoked"`
	TokensExpired int            `json:"tokens_expired"`
}

// appCalls counts the calls made with the App's JWT (everything but revocations, which GitHub counts per token).
func (s emulatorStats) appCalls() int {
	return s.TotalCalls - s.Calls["DELETE /installation/token"]
}

func (g *fakeGitHub) stats(t *testing.T) emulatorStats {
	t.Helper()
	var st emulatorStats
	g.admin(t, http.MethodGet, "/_fake/stats", nil, &st)
	return st
}

func (g *fakeGitHub) resetStats(t *testing.T) {
	g.admin(t, http.MethodPost, "/_fake/stats/reset", nil, nil)
}

// setFaults replaces the emulator's faults (PUT /_fake/faults); the test clears them when it ends.
func (g *fakeGitHub) setFaults(t *testing.T, faults map[string]any) {
	t.Helper()
	g.admin(t, http.MethodPut, "/_fake/faults", faults, nil)
	t.Cleanup(func() { g.admin(t, http.MethodPut, "/_fake/faults", map[string]any{}, nil) })
}

func (g *fakeGitHub) admin(t *testing.T, method, path string, in, out any) {
	t.Helper()
	var body io.Reader
	if in != nil {
		data, _ := json.Marshal(in)
		body = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, g.url+path, body)
	resp, err := g.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, msg)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// ----------------------------------------------------------------------------------------------------------- Vault

// vaultServer is a running Vault server and how to talk to it.
type vaultServer struct {
	proc      *proc
	bin       string
	addr      string // http://127.0.0.1:PORT
	rootToken string
	home      string // HOME and working directory of the server and the CLI
	pluginDir string

	// Servers started from a configuration file (not dev mode): see startServer.
	name       string // the log file's name, and the node ID in a cluster
	configFile string
	logLevel   string

	// onRun, when set, sees the arguments of every vault CLI call made against this server (a cluster records
	// their shapes, to check that the README shows only commands the tests ran).
	onRun func(args []string)
}

// serverConfig is what a `vault server` configuration file for these tests says: loopback, no TLS on the API, no
// mlock (integrated storage recommends it off, and test machines rarely allow it).
type serverConfig struct {
	storage     string // the storage stanza
	apiAddr     string // 127.0.0.1:PORT
	clusterAddr string // 127.0.0.1:PORT of the cluster listener (request forwarding, Raft); "" for none
	pluginDir   string
}

func (c serverConfig) hcl() string {
	var b strings.Builder
	b.WriteString(c.storage)
	b.WriteString("\n\nlistener \"tcp\" {\n")
	fmt.Fprintf(&b, "  address         = %q\n", c.apiAddr)
	if c.clusterAddr != "" {
		fmt.Fprintf(&b, "  cluster_address = %q\n", c.clusterAddr)
	}
	b.WriteString("  tls_disable     = true\n}\n\n")
	fmt.Fprintf(&b, "api_addr         = %q\n", "http://"+c.apiAddr)
	if c.clusterAddr != "" {
		// Vault always speaks TLS on the cluster port, with certificates it makes itself.
		fmt.Fprintf(&b, "cluster_addr     = %q\n", "https://"+c.clusterAddr)
	}
	fmt.Fprintf(&b, "plugin_directory = %q\n", c.pluginDir)
	b.WriteString("disable_mlock    = true\nui               = false\n")
	return b.String()
}

// newConfiguredServer writes cfg to home/vault.hcl and returns the server it describes, not yet started.
func newConfiguredServer(bin, home, name string, cfg serverConfig) (*vaultServer, error) {
	if err := os.MkdirAll(cfg.pluginDir, 0o755); err != nil {
		return nil, err
	}
	configFile := filepath.Join(home, "vault.hcl")
	if err := os.WriteFile(configFile, []byte(cfg.hcl()), 0o600); err != nil {
		return nil, err
	}
	return &vaultServer{
		bin: bin, addr: "http://" + cfg.apiAddr, home: home, pluginDir: cfg.pluginDir,
		name: name, configFile: configFile, logLevel: "debug",
	}, nil
}

// startServer starts (or starts again) `vault server` with the server's configuration file and waits until its
// listener answers. A server that is started again appends to the same log file. A restarted server is sealed.
func (v *vaultServer) startServer() error {
	p, err := startProc(v.home, v.name, cleanEnv(v.home), v.bin, "server", "-config="+v.configFile,
		"-log-level="+v.logLevel)
	if err != nil {
		return err
	}
	v.proc = p
	if err := v.waitUp(60 * time.Second); err != nil {
		p.stop(10 * time.Second)
		return fmt.Errorf("%s did not start: %w\n%s", v.name, err, p.logTail(40))
	}
	return nil
}

// client returns an API client for the server that uses token.
func (v *vaultServer) client(t testing.TB, token string) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = v.addr
	cfg.Timeout = cliTimeout
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatalf("vault API client: %v", err)
	}
	c.SetToken(token)
	c.ClearNamespace()
	return c
}

// cliResult is what one vault CLI call printed.
type cliResult struct {
	args           []string
	stdout, stderr string
	err            error
}

func (r cliResult) String() string {
	return redact(fmt.Sprintf("vault %s: %v\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.err, r.stdout, r.stderr))
}

// run runs the vault CLI against the server as token, optionally with stdin.
func (v *vaultServer) run(token, stdin string, args ...string) cliResult {
	if v.onRun != nil {
		v.onRun(args)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, v.bin, args...)
	cmd.Env = cleanEnv(v.home, "VAULT_ADDR="+v.addr, "VAULT_TOKEN="+token)
	cmd.Dir = v.home
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return cliResult{args: args, stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// cli runs the vault CLI as root and fails the test if it fails. It returns stdout.
func (v *vaultServer) cli(t *testing.T, args ...string) string {
	t.Helper()
	return v.cliAs(t, v.rootToken, args...)
}

// cliAs runs the vault CLI as token and fails the test if it fails. It returns stdout.
func (v *vaultServer) cliAs(t *testing.T, token string, args ...string) string {
	t.Helper()
	r := v.run(token, "", args...)
	if r.err != nil {
		t.Fatalf("%s", r)
	}
	return r.stdout
}

// cliJSON runs the vault CLI as token with -format=json (put it in args) and decodes stdout into out.
func (v *vaultServer) cliJSON(t *testing.T, token string, out any, args ...string) {
	t.Helper()
	stdout := v.cliAs(t, token, args...)
	if err := json.Unmarshal([]byte(stdout), out); err != nil {
		t.Fatalf("vault %s: decoding the JSON output: %v", strings.Join(args, " "), err)
	}
}

// cliDenied runs the vault CLI as token and fails the test unless Vault refused the request with HTTP 403.
func (v *vaultServer) cliDenied(t *testing.T, token string, args ...string) cliResult {
	t.Helper()
	r := v.run(token, "", args...)
	if r.err == nil {
		t.Fatalf("vault %s succeeded, want HTTP 403", strings.Join(args, " "))
	}
	if !strings.Contains(r.stderr, "Code: 403") {
		t.Fatalf("want HTTP 403 from %s", r)
	}
	return r
}

// secretOutput is the JSON the vault CLI prints for a read or write that returns a secret.
type secretOutput struct {
	LeaseID       string   `json:"lease_id"`
	LeaseDuration int      `json:"lease_duration"`
	Renewable     bool     `json:"renewable"`
	Warnings      []string `json:"warnings"`
	Data          struct {
		Token               string            `json:"token"`
		ExpiresAt           string            `json:"expires_at"`
		InstallationID      int64             `json:"installation_id"`
		Permissions         map[string]string `json:"permissions"`
		RepositorySelection string            `json:"repository_selection"`
		Repositories        []string          `json:"repositories"`
		Role                string            `json:"role"`
		HashedToken         string            `json:"hashed_token"`
	} `json:"data"`
}

// mintCLI mints a token with the vault CLI: `vault read` without params, `vault write` (narrowing) with them.
func (v *vaultServer) mintCLI(t *testing.T, token, path string, params ...string) secretOutput {
	t.Helper()
	args := []string{"read", "-format=json", path}
	if len(params) > 0 {
		args = append([]string{"write", "-format=json", path}, params...)
	}
	var out secretOutput
	if err := decodeSecret(v.cliAs(t, token, args...), &out); err != nil {
		t.Fatalf("vault %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// decodeSecret decodes the CLI's JSON for a minted token and checks that it holds a lease and a token.
func decodeSecret(stdout string, out *secretOutput) error {
	if err := json.Unmarshal([]byte(stdout), out); err != nil {
		return fmt.Errorf("decoding the JSON output: %w", err)
	}
	if out.LeaseID == "" || out.Data.Token == "" {
		return errors.New("no lease or no token in the answer")
	}
	return nil
}

// waitUp waits until the server answers sys/health (in any state), or the process dies.
func (v *vaultServer) waitUp(timeout time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	return poll(timeout, 100*time.Millisecond, func() error {
		if v.proc.exited() {
			return fmt.Errorf("vault exited: %v", v.proc.waitErr)
		}
		// Every state answers 200 with these parameters; we only want to know that the listener serves.
		resp, err := hc.Get(v.addr + "/v1/sys/health?standbyok=true&sealedcode=200&uninitcode=200")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("sys/health: %s", resp.Status)
		}
		return nil
	})
}

// health is the part of sys/health the tests read.
type health struct {
	Initialized bool   `json:"initialized"`
	Sealed      bool   `json:"sealed"`
	Standby     bool   `json:"standby"`
	Version     string `json:"version"`
}

// healthClient is for probes that must fail fast when a server does not answer.
var healthClient = &http.Client{Timeout: 3 * time.Second}

// health reads sys/health in any state (the parameters make every state answer 200).
func (v *vaultServer) health() (health, error) {
	var h health
	resp, err := healthClient.Get(v.addr + "/v1/sys/health?standbyok=true&perfstandbyok=true&sealedcode=200&uninitcode=200")
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return h, fmt.Errorf("sys/health: %s", resp.Status)
	}
	return h, json.NewDecoder(resp.Body).Decode(&h)
}

// submitUnsealKey sends an unseal key through the API (never a command line), and returns the seal status.
func (v *vaultServer) submitUnsealKey(key string) (sealed bool, err error) {
	body, _ := json.Marshal(map[string]string{"key": key})
	req, err := http.NewRequest(http.MethodPut, v.addr+"/v1/sys/unseal", bytes.NewReader(body))
	if err != nil {
		return true, err
	}
	resp, err := healthClient.Do(req)
	if err != nil {
		return true, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return true, fmt.Errorf("sys/unseal: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	var st struct {
		Sealed bool `json:"sealed"`
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st.Sealed, err
}

// waitUnsealed waits until the server is initialised and unsealed, as the active node or a standby.
func (v *vaultServer) waitUnsealed(timeout time.Duration) error {
	return poll(timeout, 100*time.Millisecond, func() error {
		if v.proc.exited() {
			return fmt.Errorf("vault exited: %v", v.proc.waitErr)
		}
		h, err := v.health()
		if err != nil {
			return err
		}
		if !h.Initialized || h.Sealed {
			return fmt.Errorf("%s is initialized=%v sealed=%v", v.name, h.Initialized, h.Sealed)
		}
		return nil
	})
}

// waitActive waits until the server is initialised, unsealed and active.
func (v *vaultServer) waitActive(t testing.TB, timeout time.Duration) error {
	c := v.client(t, "")
	return poll(timeout, 100*time.Millisecond, func() error {
		if v.proc.exited() {
			return fmt.Errorf("vault exited: %v", v.proc.waitErr)
		}
		h, err := c.Sys().Health()
		if err != nil {
			return err
		}
		if !h.Initialized || h.Sealed || h.Standby {
			return fmt.Errorf("vault is initialized=%v sealed=%v standby=%v", h.Initialized, h.Sealed, h.Standby)
		}
		return nil
	})
}

// startVaultDev starts a Vault dev server on a free loopback port with dir/plugins as its plugin directory. The
// dev server's cluster listener takes the next port up, which may be taken: then it retries with other ports.
func startVaultDev(bin, dir string) (*vaultServer, error) {
	pluginDir := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(pluginDir, 0o755); err != nil {
		return nil, err
	}
	configFile := filepath.Join(dir, "vault.hcl")
	if err := os.WriteFile(configFile, []byte(fmt.Sprintf("plugin_directory = %q\n", pluginDir)), 0o600); err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		v := &vaultServer{
			bin:       bin,
			addr:      fmt.Sprintf("http://127.0.0.1:%d", port),
			rootToken: "root",
			home:      dir,
			pluginDir: pluginDir,
		}
		v.proc, err = startProc(dir, fmt.Sprintf("vault-dev-%d", attempt), cleanEnv(dir), bin, "server", "-dev",
			"-dev-root-token-id=root", "-dev-no-store-token", fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port),
			"-config="+configFile, "-log-level=debug")
		if err != nil {
			return nil, err
		}
		if err := v.waitUp(60 * time.Second); err != nil {
			lastErr = fmt.Errorf("vault dev server did not start: %w\n%s", err, v.proc.logTail(40))
			v.proc.stop(10 * time.Second)
			continue
		}
		return v, nil
	}
	return nil, lastErr
}

// registerPlugin copies the plugin into the server's plugin directory and registers it by sha256 and version.
func (v *vaultServer) registerPlugin(pluginBin, version string) (string, error) {
	dst := filepath.Join(v.pluginDir, pluginName)
	if err := copyFile(dst, pluginBin, 0o755); err != nil {
		return "", err
	}
	sum, err := fileSHA256(dst)
	if err != nil {
		return "", err
	}
	r := v.run(v.rootToken, "", "plugin", "register", "-sha256="+sum, "-version="+version, "secret", pluginName)
	if r.err != nil {
		return "", fmt.Errorf("registering the plugin: %s", r)
	}
	return sum, nil
}

// tokenWithExamplePolicy writes an example policy of examples/ (mount path substituted) and returns a Vault token
// that has it; both go when the test ends.
func tokenWithExamplePolicy(t *testing.T, v *vaultServer, mount, example string) string {
	t.Helper()
	return tokenWithPolicyText(t, v, mount+"-"+example, readExample(t, example, mount))
}

func tokenWithPolicyText(t *testing.T, v *vaultServer, name, policy string) string {
	t.Helper()
	if r := v.run(v.rootToken, policy, "policy", "write", name, "-"); r.err != nil {
		t.Fatalf("%s", r)
	}
	t.Cleanup(func() { v.run(v.rootToken, "", "policy", "delete", name) })
	var out struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	v.cliJSON(t, v.rootToken, &out, "token", "create", "-format=json", "-policy="+name, "-ttl=15m")
	if out.Auth.ClientToken == "" {
		t.Fatal("vault token create returned no token")
	}
	// Revoked on the way out, so that its leases go with it.
	t.Cleanup(func() { v.run(v.rootToken, "", "token", "revoke", out.Auth.ClientToken) })
	return out.Auth.ClientToken
}

// mountCounter numbers mounts, so that every test's mount path is fresh.
var mountCounter struct {
	sync.Mutex
	n int
}

var nonPathChars = regexp.MustCompile(`[^a-z0-9]+`)

// newMount enables the plugin (by version) at a fresh path named after the test, and disables it when the test
// ends, which revokes the mount's leases and so its tokens at the emulator.
func (v *vaultServer) newMount(t *testing.T, version string) string {
	t.Helper()
	mountCounter.Lock()
	mountCounter.n++
	n := mountCounter.n
	mountCounter.Unlock()
	name := strings.Trim(nonPathChars.ReplaceAllString(strings.ToLower(strings.TrimPrefix(t.Name(), "Test")), "-"), "-")
	if len(name) > 40 {
		name = name[:40]
	}
	mount := fmt.Sprintf("gh-%s-%d", name, n)
	v.cli(t, "secrets", "enable", "-path="+mount, "-plugin-version="+version, pluginName)
	t.Cleanup(func() {
		if r := v.run(v.rootToken, "", "secrets", "disable", mount); r.err != nil && !v.proc.exited() {
			t.Errorf("disabling %s: %s", mount, r)
		}
	})
	return mount
}

// configure writes the mount's config the way an operator does: the key from a file with @.
func (v *vaultServer) configure(t *testing.T, mount string, gh *fakeGitHub) {
	t.Helper()
	v.cli(t, "write", mount+"/config", fmt.Sprintf("app_id=%d", appID), "private_key=@"+gh.keyFile, "base_url="+gh.url)
}

// leaseExpiry looks a lease up and returns when it expires.
func (v *vaultServer) leaseExpiry(t *testing.T, leaseID string) (time.Time, error) {
	t.Helper()
	s, err := v.client(t, v.rootToken).Logical().Write("sys/leases/lookup", map[string]any{"lease_id": leaseID})
	if err != nil {
		return time.Time{}, err
	}
	raw, _ := s.Data["expire_time"].(string)
	return time.Parse(time.RFC3339Nano, raw)
}

// leasesUnder lists the lease IDs under a prefix such as "<mount>/token/ci/".
func (v *vaultServer) leasesUnder(t *testing.T, prefix string) []string {
	t.Helper()
	s, err := v.client(t, v.rootToken).Logical().List("sys/leases/lookup/" + strings.TrimSuffix(prefix, "/") + "/")
	if err != nil {
		t.Fatalf("listing leases under %s: %v", prefix, err)
	}
	if s == nil {
		return nil
	}
	keys, _ := s.Data["keys"].([]any)
	var ids []string
	for _, k := range keys {
		ids = append(ids, strings.TrimSuffix(prefix, "/")+"/"+fmt.Sprint(k))
	}
	return ids
}

// ------------------------------------------------------------------------------------------------------- utilities

func sameSet(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	seen := map[string]int{}
	for _, g := range got {
		seen[g]++
	}
	for _, w := range want {
		if seen[w] == 0 {
			return false
		}
		seen[w]--
	}
	return true
}

// normalizeSpace collapses runs of white space, so that text can be compared however Vault wrapped it.
func normalizeSpace(s string) string { return strings.Join(strings.Fields(s), " ") }

// readExample reads a file of examples/ and replaces the docs' mount path "github/" by mount + "/".
func readExample(t *testing.T, name, mount string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "examples", name))
	if err != nil {
		t.Fatalf("reading the example: %v", err)
	}
	text := string(data)
	if mount != "" {
		if !strings.Contains(text, "github/") {
			t.Fatalf("examples/%s no longer names the mount path github/: the test substitutes it", name)
		}
		text = strings.ReplaceAll(text, "github/", mount+"/")
	}
	return text
}

// mustRefuseEmpty writes to a token path as token and fails the test unless the plugin refused the write with 400
// because it names no repository. It guards the requests that Vault's ACL lets through because they name nothing
// (an empty repositories): the plugin must neither read "no repositories" as "every repository of the installation"
// nor fall back to the role's list, which a policy allowing only some names does not expect either.
func (v *vaultServer) mustRefuseEmpty(t *testing.T, gh *fakeGitHub, token, path string, data map[string]any) {
	t.Helper()
	before := gh.issued(t)
	secret, err := v.client(t, token).Logical().Write(path, data)
	if err == nil {
		tok, _ := secret.Data["token"].(string)
		_, repos, _ := gh.reach(tok)
		t.Fatalf("writing %v to %s gave a token reaching %v; want the plugin's 400", data, path, repos)
	}
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest || !strings.Contains(err.Error(), "name no repository") {
		t.Fatalf("writing %v to %s: want the plugin's 400 (names no repository), got %s", data, path, redactErr(err))
	}
	if after := gh.issued(t); after != before {
		t.Fatalf("a refused write made the emulator issue %d tokens", after-before)
	}
}

// keyFingerprint computes, independently of the plugin, the fingerprint GitHub shows beside an App's key: SHA256:
// and the base64 of the SHA-256 of the public key in PKIX DER.
func keyFingerprint(t *testing.T, pemFile string) string {
	t.Helper()
	data, err := os.ReadFile(pemFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s holds no PEM block", pemFile)
	}
	var pub any
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		pub = &k.PublicKey
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		pub = k.(*rsa.PrivateKey).Public()
	default:
		t.Fatalf("%s holds a %s, not an RSA private key", pemFile, block.Type)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return "SHA256:" + base64.StdEncoding.EncodeToString(sum[:])
}
