// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// botUserRoute is the emulator's stats key of GET /users/{username}.
const botUserRoute = "GET /users/{username}"

// botIdentity is the part of a token response that names the App's bot user.
type botIdentity struct {
	AppSlug     string `json:"app_slug"`
	BotLogin    string `json:"bot_login"`
	BotUserID   int64  `json:"bot_user_id"`
	CommitEmail string `json:"commit_email"`
}

// emulatorBot asks the emulator, as any client of GitHub would, for the demo App's bot user and returns the identity
// a token response should show with the given noreply domain.
func emulatorBot(t *testing.T, gh *fakeGitHub, domain string) botIdentity {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, gh.url+"/users/vault-demo%5Bbot%5D", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", "vault-plugin-secrets-github-app-integrationtest")
	resp, err := gh.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var u struct {
		ID    int64  `json:"id"`
		Login string `json:"login"`
		Type  string `json:"type"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&u); err != nil || resp.StatusCode != http.StatusOK || u.Type != "Bot" || u.ID <= 0 {
		t.Fatalf("the emulator's bot user: HTTP %d, %+v, %v", resp.StatusCode, u, err)
	}
	return botIdentity{AppSlug: "vault-demo", BotLogin: u.Login, BotUserID: u.ID,
		CommitEmail: fmt.Sprintf("%d+%s@%s", u.ID, u.Login, domain)}
}

// TestTokenNamesTheAppsBotUser: token reads (vault CLI) and writes (HTTP API) give the App's slug, bot login, bot
// user ID and commit email; the bot user is looked up once for the mount, and again after a config change, which
// may set noreply_domain.
func TestTokenNamesTheAppsBotUser(t *testing.T) {
	s := requireStack(t)
	v, gh := s.vault, s.gh
	mount := v.newMount(t, s.bins.pluginVersion)
	v.configure(t, mount, gh)
	v.cli(t, "write", mount+"/roles/ci", "owner="+acmeOwner, "repositories=api,web", "permissions=contents=write", "ttl=5m")
	want := emulatorBot(t, gh, "users.noreply.127.0.0.1")
	before := gh.stats(t).Calls[botUserRoute]

	read := func(what string, want botIdentity) {
		t.Helper()
		var out struct {
			Warnings []string    `json:"warnings"`
			Data     botIdentity `json:"data"`
		}
		v.cliJSON(t, v.rootToken, &out, "read", "-format=json", mount+"/token/ci")
		if out.Data != want || len(out.Warnings) != 0 {
			t.Errorf("%s: vault read gave %+v (warnings %q), want %+v", what, out.Data, out.Warnings, want)
		}
	}
	read("first read", want)
	secret, err := v.client(t, v.rootToken).Logical().Write(mount+"/token/ci", map[string]any{
		"repositories": "api", "permissions": "contents=read"})
	if err != nil {
		t.Fatalf("narrowed write: %s", redactErr(err))
	}
	id, _ := secret.Data["bot_user_id"].(json.Number)
	if got := fmt.Sprint(secret.Data["app_slug"], " ", secret.Data["bot_login"], " ", id, " ", secret.Data["commit_email"]); got !=
		fmt.Sprint(want.AppSlug, " ", want.BotLogin, " ", want.BotUserID, " ", want.CommitEmail) {
		t.Errorf("narrowed write through the API: %s, want %+v", got, want)
	}
	for i := range 3 {
		read(fmt.Sprintf("read %d", i+2), want)
	}
	if n := gh.stats(t).Calls[botUserRoute] - before; n != 1 {
		t.Fatalf("5 mints looked the bot user up %d times, want once", n)
	}

	// A config change forgets the identity; the next mint looks it up again, with the new noreply domain.
	v.cli(t, "write", mount+"/config", "noreply_domain=noreply.example.com")
	var cfg struct {
		Data struct {
			NoreplyDomain string `json:"noreply_domain"`
		} `json:"data"`
	}
	v.cliJSON(t, v.rootToken, &cfg, "read", "-format=json", mount+"/config")
	if cfg.Data.NoreplyDomain != "noreply.example.com" {
		t.Errorf("config read shows noreply_domain %q", cfg.Data.NoreplyDomain)
	}
	overridden := want
	overridden.CommitEmail = fmt.Sprintf("%d+%s@noreply.example.com", want.BotUserID, want.BotLogin)
	read("after noreply_domain was set", overridden)
	read("again", overridden)
	if n := gh.stats(t).Calls[botUserRoute] - before; n != 2 {
		t.Fatalf("the bot user was looked up %d times, want twice: once per config", n)
	}

	r := v.run(v.rootToken, "", "write", mount+"/config", "noreply_domain=https://noreply.example.com")
	if r.err == nil || !strings.Contains(r.stderr, "noreply_domain") || !strings.Contains(r.stderr, "not a DNS name") {
		t.Errorf("a noreply_domain with a scheme: %s", r)
	}
}

// TestAgentCommitsAsTheApp runs the recipe of docs/recipes.md "Commit as the App": Vault Agent with
// examples/agent-commit.hcl renders the token and the App's git identity from one token, and
// examples/git-commit-as-app.sh commits and pushes as the App's bot user.
func TestAgentCommitsAsTheApp(t *testing.T) {
	s := requireStack(t)
	v, gh := s.vault, s.gh
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is needed for the commit recipe: %v", err)
	}
	mount := v.newMount(t, s.bins.pluginVersion)
	v.configure(t, mount, gh)
	v.cli(t, "write", mount+"/roles/ci", "owner="+acmeOwner, "repositories=api", "permissions=contents=write", "ttl=10m")
	want := emulatorBot(t, gh, "users.noreply.127.0.0.1")

	dir := t.TempDir()
	tokenDest, identityDest, agent := startCommitAgent(t, v, mount, dir)
	var token, identity string
	eventually(t, 30*time.Second, 100*time.Millisecond, "Agent renders both templates", func() error {
		if agent.exited() {
			return fmt.Errorf("vault agent exited: %v", agent.waitErr)
		}
		tok, err1 := os.ReadFile(tokenDest)
		id, err2 := os.ReadFile(identityDest)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		if len(strings.TrimSpace(string(tok))) == 0 || len(strings.TrimSpace(string(id))) == 0 {
			return errors.New("a rendered file is empty")
		}
		token, identity = strings.TrimSpace(string(tok)), string(id)
		return nil
	})
	gh.mustReach(t, token, "api")
	if leases := v.leasesUnder(t, mount+"/token/ci/"); len(leases) != 1 {
		t.Errorf("%d leases under %s/token/ci/ after both templates rendered, want 1: one token for both", len(leases), mount)
	}

	// A clone of a repository (a local bare one stands in for GitHub) and a change to commit.
	home := filepath.Join(dir, "home")
	origin := filepath.Join(dir, "origin.git")
	clone := filepath.Join(dir, "clone")
	env := cleanEnv(home, "GIT_CONFIG_NOSYSTEM=1", "GIT_IDENTITY_FILE="+identityDest)
	git := func(workdir string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Env, cmd.Dir = env, workdir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, redact(string(out)))
		}
		return strings.TrimSpace(string(out))
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	git(dir, "init", "--quiet", "--bare", origin)
	git(dir, "clone", "--quiet", origin, clone)
	if name, email := git(dir, "config", "--file", identityDest, "user.name"), git(dir, "config", "--file", identityDest, "user.email"); name != want.BotLogin || email != want.CommitEmail {
		t.Fatalf("the rendered identity names %q <%s>, want %q <%s>:\n%s", name, email, want.BotLogin, want.CommitEmail, identity)
	}
	if err := os.WriteFile(filepath.Join(clone, "generated.txt"), []byte("regenerated\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	script := filepath.Join(repoRoot, "examples", "git-commit-as-app.sh")
	const commitMessage = "Regenerate the API client"
	cmd := exec.Command("sh", script, commitMessage)
	cmd.Env, cmd.Dir = env, clone
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("examples/git-commit-as-app.sh: %v: %s", err, redact(string(out)))
	}
	got := git(dir, "--git-dir", origin, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%s")
	author := fmt.Sprintf("%s <%s>", want.BotLogin, want.CommitEmail)
	if got != author+"|"+author+"|"+commitMessage {
		t.Fatalf("the pushed commit: %s; want author and committer %s", got, author)
	}
	t.Logf("pushed as %s", author)
}

// startCommitAgent runs Vault Agent with examples/agent-commit.hcl (placeholders replaced, as startAgent does for
// examples/agent.hcl) and returns where it renders the token and the git identity.
func startCommitAgent(t *testing.T, v *vaultServer, mount, dir string) (tokenDest, identityDest string, agent *proc) {
	t.Helper()
	tokenFile := filepath.Join(dir, "vault-token")
	if err := os.WriteFile(tokenFile, []byte(tokenWithExamplePolicy(t, v, mount, "policy-ci-read.hcl")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenSource, identitySource := filepath.Join(dir, "token.ctmpl"), filepath.Join(dir, "git-identity.ctmpl")
	tokenDest, identityDest = filepath.Join(dir, "github-token"), filepath.Join(dir, "git-identity")
	for src, example := range map[string]string{tokenSource: "token.ctmpl", identitySource: "git-identity.ctmpl"} {
		if err := os.WriteFile(src, []byte(readExample(t, example, mount)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	config := readExample(t, "agent-commit.hcl", "")
	for example, ours := range map[string]string{
		agentPlaceholders.address:             v.addr,
		agentPlaceholders.tokenFile:           tokenFile,
		agentPlaceholders.source:              tokenSource,
		agentPlaceholders.destination:         tokenDest,
		"/etc/vault-agent/git-identity.ctmpl": identitySource,
		"/run/secrets/git-identity":           identityDest,
	} {
		if !strings.Contains(config, `"`+example+`"`) {
			t.Fatalf("examples/agent-commit.hcl no longer holds %q, which the test replaces", example)
		}
		config = strings.ReplaceAll(config, `"`+example+`"`, fmt.Sprintf("%q", ours))
	}
	configFile := filepath.Join(dir, "agent-commit.hcl")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := startProc(dir, "vault-agent", cleanEnv(dir), v.bin, "agent", "-config="+configFile, "-log-level=debug")
	if err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, p, 80)
	return tokenDest, identityDest, p
}
