// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// agentPlaceholders are the values of examples/agent.hcl that the test replaces with its own: the example's
// address and file paths, written as a reader would fill them in.
var agentPlaceholders = struct {
	address, tokenFile, source, destination string
}{
	address:     "https://vault.example.com:8200",
	tokenFile:   "/etc/vault-agent/vault-token",
	source:      "/etc/vault-agent/token.ctmpl",
	destination: "/run/secrets/github-token",
}

// TestAgentTemplate runs the Vault Agent example of docs/agent.md (examples/agent.hcl and examples/token.ctmpl) with a
// role TTL of 15 s: Agent must render a new token before the first one's lease ends, and once the lease has ended the
// first token must be dead at GitHub.
func TestAgentTemplate(t *testing.T) {
	s := requireStack(t)
	v, gh := s.vault, s.gh
	mount := v.newMount(t, s.bins.pluginVersion)
	v.configure(t, mount, gh)
	const ttl = 15 * time.Second
	v.cli(t, "write", mount+"/roles/ci", "owner="+acmeOwner, "repositories=api", "permissions=contents=read",
		fmt.Sprintf("ttl=%ds", int(ttl.Seconds())))

	agent, renderedToken := startAgent(t, v, mount, v.addr)
	destination := agent.destination

	var first string
	var firstAt time.Time
	eventually(t, 30*time.Second, 100*time.Millisecond, "Agent renders the template", func() (err error) {
		first, firstAt, err = renderedToken()
		return err
	})
	if st, err := os.Stat(destination); err == nil && st.Mode().Perm() != 0o600 {
		t.Errorf("the rendered token file has mode %v, want 0600 (perms in the example)", st.Mode().Perm())
	}
	gh.mustReach(t, first, "api")
	t.Run("git credential helper", func(t *testing.T) { checkGitCredentialHelper(t, destination, first) })

	// The lease behind the first token: the only one under the role so far.
	leases := v.leasesUnder(t, mount+"/token/ci/")
	if len(leases) != 1 {
		t.Fatalf("%d leases under %s/token/ci/ after the first render, want 1", len(leases), mount)
	}
	firstExpiry, err := v.leaseExpiry(t, leases[0])
	if err != nil {
		t.Fatalf("looking up the first lease: %v", err)
	}
	// File times are kernel clock ticks, a few milliseconds coarse: hence the second of slack.
	if d := firstExpiry.Sub(firstAt); d <= 0 || d > ttl+time.Second {
		t.Fatalf("the first lease ends %s after the first render, want within the role's ttl %s", d, ttl)
	}

	// Agent fetches a non-renewable secret again at 85-95% of its lease (with jitter): wait for the change.
	var second string
	var secondAt time.Time
	eventually(t, 60*time.Second, 100*time.Millisecond, "Agent renders a new token", func() error {
		tok, at, err := renderedToken()
		if err != nil {
			return err
		}
		if tok == first {
			return errors.New("the rendered file still holds the first token")
		}
		second, secondAt = tok, at
		return nil
	})
	if !secondAt.Before(firstExpiry) {
		t.Errorf("the new token was rendered at %s, not before the first lease ended at %s",
			secondAt.Format(time.RFC3339Nano), firstExpiry.Format(time.RFC3339Nano))
	} else {
		t.Logf("Agent rendered the new token %s before the first lease ended", firstExpiry.Sub(secondAt).Round(time.Millisecond))
	}
	gh.mustReach(t, second, "api")

	// Vault revokes the first token at GitHub when its lease expires.
	wait := time.Until(firstExpiry.Add(30 * time.Second))
	gh.waitDead(t, first, wait, "the first token, after its lease ended")
	t.Logf("the first token was dead at the emulator %s after its lease ended", time.Since(firstExpiry).Round(time.Millisecond))
}

// agentRun is a running Vault Agent with docs/agent.md's example configuration.
type agentRun struct {
	*proc
	destination string
}

// startAgent runs docs/agent.md's Vault Agent example (examples/agent.hcl and examples/token.ctmpl, placeholders
// replaced) against the Vault at addr, logged in with a Vault token that has the docs' read policy. It returns
// the agent and a function that reads the rendered token and when Agent wrote it.
func startAgent(t *testing.T, v *vaultServer, mount, addr string) (*agentRun, func() (string, time.Time, error)) {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "vault-token")
	source := filepath.Join(dir, "token.ctmpl")
	destination := filepath.Join(dir, "github-token")
	configFile := filepath.Join(dir, "agent.hcl")

	// Agent logs in with a Vault token that has the docs' read policy, from a file (auto_auth token_file).
	token := tokenWithExamplePolicy(t, v, mount, "policy-ci-read.hcl")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(source, []byte(readExample(t, "token.ctmpl", mount)), 0o600); err != nil {
		t.Fatal(err)
	}
	config := readExample(t, "agent.hcl", "")
	for _, r := range []struct{ example, ours string }{
		{agentPlaceholders.address, addr},
		{agentPlaceholders.tokenFile, tokenFile},
		{agentPlaceholders.source, source},
		{agentPlaceholders.destination, destination},
	} {
		if !strings.Contains(config, `"`+r.example+`"`) {
			t.Fatalf("examples/agent.hcl no longer holds %q, which the test replaces: update agentPlaceholders", r.example)
		}
		config = strings.ReplaceAll(config, `"`+r.example+`"`, fmt.Sprintf("%q", r.ours))
	}
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}

	// The agent's environment has no VAULT_* variables: the address must come from the example's vault stanza.
	p, err := startProc(dir, "vault-agent", cleanEnv(dir), v.bin, "agent", "-config="+configFile, "-log-level=debug")
	if err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, p, 80)
	agent := &agentRun{proc: p, destination: destination}

	rendered := func() (string, time.Time, error) {
		if agent.exited() {
			return "", time.Time{}, fmt.Errorf("vault agent exited: %v", agent.waitErr)
		}
		st, err := os.Stat(destination)
		if err != nil {
			return "", time.Time{}, err
		}
		data, err := os.ReadFile(destination)
		if err != nil {
			return "", time.Time{}, err
		}
		tok := strings.TrimSpace(string(data))
		if tok == "" {
			return "", time.Time{}, errors.New("the rendered file is empty")
		}
		return tok, st.ModTime(), nil
	}
	return agent, rendered
}

// TestAgentBacksOffOnRateLimit watches Vault Agent through a proxy in front of Vault while GitHub limits the App
// (a secondary limit with Retry-After: 5, renewed on every call). Agent's reads of the token path get 429 with
// Retry-After (the mount lets the header through), and Agent mostly waits that long before reading again; once the
// limit is lifted it renders the token. docs/limits.md documents what this shows.
func TestAgentBacksOffOnRateLimit(t *testing.T) {
	s := requireStack(t)
	v, gh := s.vault, s.gh
	mount := limitsMount(t, s)
	target, err := url.Parse(v.addr)
	if err != nil {
		t.Fatal(err)
	}

	type seen struct {
		at         time.Time
		status     int
		retryAfter string
	}
	var mu sync.Mutex
	var reads []seen
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path == "/v1/"+mount+"/token/ci" {
			mu.Lock()
			reads = append(reads, seen{time.Now(), resp.StatusCode, resp.Header.Get("Retry-After")})
			mu.Unlock()
		}
		return nil
	}
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)

	gh.setFaults(t, map[string]any{"secondary_rate_limit": 429, "retry_after": 5})
	_, rendered := startAgent(t, v, mount, front.URL)
	const watch = 13 * time.Second
	time.Sleep(watch)
	mu.Lock()
	during := slices.Clone(reads)
	mu.Unlock()
	var gaps []time.Duration
	for i, r := range during {
		if r.status != http.StatusTooManyRequests || r.retryAfter == "" {
			t.Errorf("Agent's read %d got HTTP %d, Retry-After %q; want 429 with Retry-After", i+1, r.status, r.retryAfter)
		}
		if i > 0 {
			gaps = append(gaps, r.at.Sub(during[i-1].at).Round(10*time.Millisecond))
		}
	}
	t.Logf("Agent read the token path %d times in %s while limited; gaps between reads: %v", len(during), watch, gaps)
	// Vault's API client in Agent retries twice, each time after Retry-After; then Agent's template runner retries
	// the whole read after its own backoff (250 ms, doubling up to a minute).
	honoured := 0
	for _, g := range gaps {
		if g >= 4*time.Second {
			honoured++
		}
	}
	if len(during) < 2 || len(during) > 5 || honoured < len(gaps)/2 {
		t.Errorf("Agent read %d times in %s with gaps %v: want it to wait the Retry-After of 5 s between most reads",
			len(during), watch, gaps)
	}

	// GitHub lifts the limit: the mount's next probe sees it, and Agent renders on its next retry.
	gh.admin(t, http.MethodPut, "/_fake/faults", map[string]any{}, nil)
	lifted := time.Now()
	var tok string
	eventually(t, 15*time.Second, 250*time.Millisecond, "Agent renders the token after the limit is lifted", func() (err error) {
		tok, _, err = rendered()
		return err
	})
	t.Logf("Agent rendered the token %s after the limit was lifted", time.Since(lifted).Round(100*time.Millisecond))
	gh.mustReach(t, tok, "api")
}

// checkGitCredentialHelper installs examples/git-credential-github-app.sh as docs/recipes.md says (on PATH, with the
// git config command its header shows) and asks git for github.com's credentials: git must get the token Agent
// rendered.
func checkGitCredentialHelper(t *testing.T, tokenFile, want string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is needed for the credential helper recipe: %v", err)
	}
	script, err := os.ReadFile(filepath.Join(repoRoot, "examples", "git-credential-github-app.sh"))
	if err != nil {
		t.Fatal(err)
	}
	var configure []string
	for _, line := range strings.Split(string(script), "\n") {
		if cmd, ok := strings.CutPrefix(line, "#   git config "); ok {
			configure = append([]string{"config"}, strings.Fields(cmd)...)
		}
	}
	if configure == nil {
		t.Fatal("examples/git-credential-github-app.sh no longer shows its git config command")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "git-credential-github-app"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	env := cleanEnv(dir, "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"), "GITHUB_TOKEN_FILE="+tokenFile,
		"GIT_CONFIG_NOSYSTEM=1")
	git := func(stdin string, args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Env, cmd.Dir, cmd.Stdin = env, dir, strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, redact(string(out)))
		}
		return string(out)
	}
	git("", configure...)
	out := git("protocol=https\nhost=github.com\n\n", "credential", "fill")
	if !strings.Contains(out, "username=x-access-token\n") || !strings.Contains(out, "password="+want+"\n") {
		t.Fatalf("git credential fill did not answer with the rendered token: %s", redact(out))
	}
}
