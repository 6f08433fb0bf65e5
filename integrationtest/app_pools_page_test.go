// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

// poolsPagePath is the page whose commands TestAppPoolsPage runs.
const poolsPagePath = "docs/app-pools.md"

// TestAppPoolsPage runs every command of docs/app-pools.md, in the order the page shows them, against a real Vault
// and an emulator on which the organization acme has three Apps installed (fakegithub.PoolFixture), and checks what
// the page says each shows. The page's App IDs, client IDs and key files become the emulator's; its mount path
// github/ becomes the test's mount, whose config is the README's default App. A command the page shows and this test
// does not know fails the test: give it a check below.
func TestAppPoolsPage(t *testing.T) {
	s := requireStack(t)
	v := s.vault
	dir := t.TempDir()

	// The pool fixture, with checks=write on acme's installations for the page's ordered role "checks".
	fixture := fakegithub.PoolFixture()
	for i, in := range fixture.Installations {
		if in.Account == acmeOwner {
			perms := maps.Clone(in.Permissions)
			perms["checks"] = "write"
			fixture.Installations[i].Permissions = perms
		}
	}
	fixtureFile := filepath.Join(dir, "fixture.json")
	data, err := json.Marshal(fixture)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fixtureFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	gh, err := startFakeGitHub(s.bins.fakeGitHub, dir, "-fixture", fixtureFile)
	if err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, gh.proc, 30)
	mount := v.newMount(t, s.bins.pluginVersion)
	v.configure(t, mount, gh)

	apps := map[string]fakegithub.App{"default": fixture.Apps[0], "ci-2": fixture.Apps[1], "ci-3": fixture.Apps[2]}
	subs := []docSub{
		{"github/", mount + "/"},
		{"app_id=234567", fmt.Sprintf("app_id=%d", apps["ci-2"].ID)},
		{"client_id=Iv23liGhIjKl23456789", "client_id=" + apps["ci-2"].ClientID},
		{"private_key=@ci-2.private-key.pem", "private_key=@" + gh.keyFile + " base_url=" + gh.url},
		{"app_id=345678", fmt.Sprintf("app_id=%d", apps["ci-3"].ID)},
		{"client_id=Iv23liMnOpQr34567890", "client_id=" + apps["ci-3"].ClientID},
		{"private_key=@ci-3.private-key.pem", "private_key=@" + gh.keyFile + " base_url=" + gh.url},
	}
	p := &poolsPageRun{t: t, s: s, gh: gh, mount: mount, dir: dir, apps: apps, subs: subs, used: map[string]bool{}}

	checks := map[string]func(out string){
		"vault write github/apps/ci-2 app_id=234567 client_id=Iv23liGhIjKl23456789 private_key=@ci-2.private-key.pem": func(string) {
			p.appWritten("ci-2")
		},
		"vault write github/apps/ci-3 app_id=345678 client_id=Iv23liMnOpQr34567890 private_key=@ci-3.private-key.pem": func(string) {
			p.appWritten("ci-3")
		},
		"vault list -detailed github/apps":                   p.appsListed,
		"vault read github/installations list=true app=ci-2": p.installationsListed,
		"vault write github/roles/builds owner=acme apps=default,ci-2,ci-3 repositories=api,web permissions=contents=read,pull_requests=write ttl=15m": func(string) {
			p.roleWritten("builds", []string{"default", "ci-2", "ci-3"}, "budget")
		},
		"vault write github/roles/checks owner=acme apps=default,ci-2 app_selection=ordered repositories=api permissions=checks=write,contents=read ttl=15m": func(string) {
			p.roleWritten("checks", []string{"default", "ci-2"}, "ordered")
			p.orderedMintsFromTheFirst()
		},
		"vault read github/token/builds":                      p.tokenRead,
		"vault write github/apps/ci-2 rate_limit_refresh=15s": p.refreshWritten,
		"vault read -format=json -field=apps github/status":   p.statusApps,
	}

	ran := 0
	for _, c := range pageShellCommands(t, poolsPagePath) {
		check, ok := checks[c.text]
		if !ok {
			t.Errorf("%s shows `%s`, which TestAppPoolsPage does not run: give it a check in %s", poolsPagePath, c.text,
				"integrationtest/app_pools_page_test.go")
			continue
		}
		check(p.run(c.text))
		ran++
	}
	if ran != len(checks) {
		t.Errorf("ran %d commands of %s, and the test knows %d: a command left the page", ran, poolsPagePath, len(checks))
	}
	for _, sub := range subs {
		if !p.used[sub.doc] {
			t.Errorf("the substitution of %q is used by no command of %s", sub.doc, poolsPagePath)
		}
	}
}

// pageShellCommands returns the commands of a page's shell blocks, in order, each once, the way TestDocsCommands
// reads them.
func pageShellCommands(t *testing.T, page string) []shellLine {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(page)))
	if err != nil {
		t.Fatal(err)
	}
	var out []shellLine
	seen := map[string]bool{}
	for _, b := range markdownShellBlocks(string(data)) {
		for _, c := range shellCommands(b.lines) {
			if !seen[c.text] {
				seen[c.text] = true
				out = append(out, c)
			}
		}
	}
	if len(out) < 5 {
		t.Fatalf("%s shows %d shell commands; the parser must have missed some", page, len(out))
	}
	return out
}

// poolsPageRun is the state of one run of the page's commands.
type poolsPageRun struct {
	t     *testing.T
	s     *shared
	gh    *fakeGitHub
	mount string
	dir   string
	apps  map[string]fakegithub.App // by the page's App names
	subs  []docSub
	used  map[string]bool
}

// run runs one command of the page with the substitutions, as root in bash, and returns what it printed.
func (p *poolsPageRun) run(text string) string {
	t := p.t
	t.Helper()
	shown := text
	for _, sub := range p.subs {
		if strings.Contains(text, sub.doc) {
			text = strings.ReplaceAll(text, sub.doc, sub.test)
			p.used[sub.doc] = true
		}
	}
	binDir := filepath.Join(p.dir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(binDir, "vault")); err != nil {
		if err := os.Symlink(p.s.vault.bin, filepath.Join(binDir, "vault")); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", text)
	cmd.Dir = p.dir
	cmd.Env = cleanEnv(p.dir, "VAULT_ADDR="+p.s.vault.addr, "VAULT_TOKEN="+p.s.vault.rootToken,
		"PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("%s: %s\n  ran as: %s\n%s%s", poolsPagePath, shown, text, redact(stdout.String()), redact(stderr.String()))
	if err != nil {
		t.Fatalf("the command of %s failed (%v): %s\n%s", poolsPagePath, err, shown, redact(stderr.String()))
	}
	return stdout.String()
}

// read reads a path of the mount as root.
func (p *poolsPageRun) read(path string) map[string]any {
	p.t.Helper()
	secret, err := p.s.vault.client(p.t, p.s.vault.rootToken).Logical().Read(p.mount + "/" + path)
	if err != nil || secret == nil {
		p.t.Fatalf("reading %s/%s: %v", p.mount, path, err)
	}
	return secret.Data
}

// mint reads a token of a role as root, its fields as the CLI prints them.
func (p *poolsPageRun) mint(role string) map[string]string {
	p.t.Helper()
	m := map[string]string{}
	for k, v := range p.read("token/" + role) {
		m[k] = fmt.Sprint(v)
	}
	return m
}

func (p *poolsPageRun) appWritten(name string) {
	got := p.read("apps/" + name)
	want := p.apps[name]
	if fmt.Sprint(got["app_id"]) != fmt.Sprint(want.ID) || got["app_slug"] != want.Slug || got["name"] != name {
		p.t.Errorf("apps/%s reads app_id %v, app_slug %v, name %v; want %d, %s, %s", name, got["app_id"], got["app_slug"],
			got["name"], want.ID, want.Slug, name)
	}
}

// appsListed: the names, sorted, default among them, with each App's app_id.
func (p *poolsPageRun) appsListed(out string) {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if app, ok := p.apps[f[0]]; ok {
			names = append(names, f[0])
			if !slices.Contains(f, fmt.Sprint(app.ID)) {
				p.t.Errorf("vault list -detailed github/apps shows %s without its app_id %d:\n%s", f[0], app.ID, out)
			}
		}
	}
	if want := []string{"ci-2", "ci-3", "default"}; !slices.Equal(names, want) {
		p.t.Errorf("vault list -detailed github/apps lists %v, want %v, sorted:\n%s", names, want, out)
	}
}

// installationsListed: ci-2's installation on acme, not default's.
func (p *poolsPageRun) installationsListed(out string) {
	var want int64
	for _, in := range fakegithub.PoolFixture().Installations {
		if in.AppID == p.apps["ci-2"].ID && in.Account == acmeOwner {
			want = in.ID
		}
	}
	kv := vaultTable(out)
	if kv["keys"] != "["+acmeOwner+"]" || !strings.Contains(kv["key_info"], fmt.Sprintf("installation_id:%d", want)) {
		p.t.Errorf("vault read github/installations list=true app=ci-2 shows keys %s and key_info %s; want %s with "+
			"installation %d", kv["keys"], kv["key_info"], acmeOwner, want)
	}
}

func (p *poolsPageRun) roleWritten(role string, apps []string, selection string) {
	got := p.read("roles/" + role)
	if fmt.Sprint(got["apps"]) != fmt.Sprint(apps) || got["app_selection"] != selection {
		p.t.Errorf("roles/%s reads apps %v, app_selection %v; want %v, %s", role, got["apps"], got["app_selection"], apps, selection)
	}
}

// orderedMintsFromTheFirst: "Each mint goes to the first App of apps that can serve."
func (p *poolsPageRun) orderedMintsFromTheFirst() {
	for range 3 {
		kv := p.mint("checks")
		p.gh.mustReach(p.t, kv["token"], "api")
		if kv["app"] != "default" {
			p.t.Errorf("the ordered role checks minted from %s, want default, its first App", kv["app"])
		}
	}
}

// tokenRead: the keys the page shows, app and app_id of the App that minted; reads of the budget role come from
// every App in turn while no budget is known.
func (p *poolsPageRun) tokenRead(out string) {
	kv := vaultTable(out)
	doc := poolsPageTokenOutput(p.t)
	if got, want := slices.Sorted(maps.Keys(kv)), slices.Sorted(maps.Keys(doc)); !slices.Equal(got, want) {
		p.t.Errorf("vault read github/token/builds prints the keys %v; %s shows %v", got, poolsPagePath, want)
	}
	p.checkMinted(kv)
	served := map[string]bool{kv["app"]: true}
	for range 6 {
		m := p.mint("builds")
		p.checkMinted(m)
		served[m["app"]] = true
	}
	if len(served) != 3 {
		p.t.Errorf("seven reads of the budget role came from %v, want each of its three Apps", slices.Sorted(maps.Keys(served)))
	}
}

func (p *poolsPageRun) checkMinted(kv map[string]string) {
	p.t.Helper()
	app, ok := p.apps[kv["app"]]
	if !ok {
		p.t.Fatalf("a token of builds names the App %q, not one of the role's", kv["app"])
	}
	if kv["app_id"] != fmt.Sprint(app.ID) || kv["app_slug"] != app.Slug || kv["bot_login"] != app.Slug+"[bot]" {
		p.t.Errorf("a token of App %s says app_id %s, app_slug %s, bot_login %s; want %d, %s, %s[bot]", kv["app"],
			kv["app_id"], kv["app_slug"], kv["bot_login"], app.ID, app.Slug, app.Slug)
	}
	var inst int64
	for _, in := range fakegithub.PoolFixture().Installations {
		if in.AppID == app.ID && in.Account == acmeOwner {
			inst = in.ID
		}
	}
	if kv["installation_id"] != fmt.Sprint(inst) {
		p.t.Errorf("a token of App %s comes from installation %s, want %d (that App's on acme)", kv["app"], kv["installation_id"], inst)
	}
	p.gh.mustReach(p.t, kv["token"], "api", "web")
}

func (p *poolsPageRun) refreshWritten(string) {
	if got := fmt.Sprint(p.read("apps/ci-2")["rate_limit_refresh"]); got != "15" {
		p.t.Errorf("apps/ci-2 reads rate_limit_refresh %s after the write of 15s, want 15 (seconds)", got)
	}
}

// statusApps: every App by name, and once the background refresh has run, the budget of each installation that
// minted. Every field that the page's example shows is in the answer.
func (p *poolsPageRun) statusApps(out string) {
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		p.t.Fatalf("vault read -format=json -field=apps github/status printed no JSON object: %v\n%s", err, out)
	}
	if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, []string{"ci-2", "ci-3", "default"}) {
		p.t.Errorf("status lists the Apps %v, want ci-2, ci-3, default", names)
	}
	// The budget is read in the background after a mint. The write of rate_limit_refresh started ci-2's client
	// afresh, so ci-2's budget is unknown again: it ranks first, and the next mint of builds teaches it. Wait for
	// every budget, through the same command.
	p.checkMinted(p.mint("builds"))
	text := "vault read -format=json -field=apps github/status"
	eventually(p.t, 30*time.Second, 250*time.Millisecond, "every App's budget on acme in status", func() error {
		got = nil
		if err := json.Unmarshal([]byte(p.run(text)), &got); err != nil {
			return err
		}
		for name := range p.apps {
			if !hasBudget(got[name], acmeOwner) {
				return fmt.Errorf("no budget of %s on %s yet", name, acmeOwner)
			}
		}
		return nil
	})
	doc := poolsPageStatusExample(p.t)
	for name, example := range doc {
		if name == "…" {
			continue
		}
		app, ok := got[name]
		if !ok {
			p.t.Errorf("%s shows the App %s in status; status has none", poolsPagePath, name)
			continue
		}
		for _, missing := range missingFields(name, example, app) {
			p.t.Errorf("%s shows apps.%s in status; status has no such field", poolsPagePath, missing)
		}
	}
}

// hasBudget tells whether an App of status has a budget for its installation on owner.
func hasBudget(app any, owner string) bool {
	m, _ := app.(map[string]any)
	ins, _ := m["installations"].([]any)
	for _, in := range ins {
		if e, _ := in.(map[string]any); e["owner"] == owner && e["budget"] != nil {
			return true
		}
	}
	return false
}

// missingFields lists the fields of the page's example (ignoring "…") that the answer lacks; arrays are compared by
// their first element.
func missingFields(path string, example, got any) []string {
	var out []string
	switch e := example.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{path}
		}
		for k, v := range e {
			if k == "…" {
				continue
			}
			if _, ok := g[k]; !ok {
				out = append(out, path+"."+k)
				continue
			}
			out = append(out, missingFields(path+"."+k, v, g[k])...)
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) == 0 {
			return []string{path + "[]"}
		}
		if len(e) > 0 {
			out = append(out, missingFields(path+"[]", e[0], g[0])...)
		}
	}
	return out
}

// poolsPageBlock returns the first fenced block of the page whose fence line is fence and that follows the line
// after.
func poolsPageBlock(t *testing.T, after, fence string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(poolsPagePath)))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), after)
	if !ok {
		t.Fatalf("%s no longer holds %q", poolsPagePath, after)
	}
	_, block, ok := strings.Cut(rest, "\n"+fence+"\n")
	if !ok {
		t.Fatalf("%s shows no %s block after %q", poolsPagePath, fence, after)
	}
	block, _, _ = strings.Cut(block, "\n```")
	return block
}

// poolsPageTokenOutput is the output the page shows for vault read github/token/builds.
func poolsPageTokenOutput(t *testing.T) map[string]string {
	t.Helper()
	kv := vaultTable(poolsPageBlock(t, "vault read github/token/builds\n```\n", "```"))
	if len(kv) < 10 || kv["app"] == "" || kv["app_id"] == "" {
		t.Fatalf("%s's output of vault read github/token/builds has %d keys, app %q, app_id %q", poolsPagePath, len(kv),
			kv["app"], kv["app_id"])
	}
	return kv
}

// poolsPageStatusExample is the JSON the page shows for vault read -format=json -field=apps github/status.
func poolsPageStatusExample(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	block := poolsPageBlock(t, "vault read -format=json -field=apps github/status\n```\n", "```json")
	if err := json.Unmarshal([]byte(block), &doc); err != nil {
		t.Fatalf("%s's example of the apps in status is no JSON object: %v", poolsPagePath, err)
	}
	return doc
}
