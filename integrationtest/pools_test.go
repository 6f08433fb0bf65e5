// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// App pools (SPEC section 3.7) through the shared Vault dev server, against an emulator of their own started from the
// pool fixture (internal/testing/cmd/fakegithub/fixture.pool.example.json): Apps 1001, 1002 and 1003, each installed
// on acme. One mount serves every subtest but the upgrade's, which mounts the previous release.

const (
	// poolFixtureFile is the emulator's pool fixture, relative to the project root.
	poolFixtureFile = "internal/testing/cmd/fakegithub/fixture.pool.example.json"

	// previousReleaseCommit is v0.3.0, the last release before App pools. The commit rather than the tag: a CI
	// clone has the whole history but not always the tags.
	previousReleaseCommit  = "3aeeb2e1b96462e67c9202a4342f918189e24c26"
	previousReleaseVersion = "v0.3.0"
)

// poolApp is an App of the pool fixture as the mount names it.
type poolApp struct {
	name         string
	id           int64
	installation int64 // its installation on acme
	slug         string
}

// poolApps are the mount's Apps, in the order roles name them.
var poolApps = []poolApp{
	{"default", 1001, 2001, "vault-demo"},
	{"second", 1002, 2102, "vault-demo-2"},
	{"third", 1003, 2103, "vault-demo-3"},
}

func poolAppNamed(name string) (poolApp, bool) {
	for _, a := range poolApps {
		if a.name == name {
			return a, true
		}
	}
	return poolApp{}, false
}

// poolEnv is the pools tests' mount on the shared server and their emulator.
type poolEnv struct {
	s     *shared
	v     *vaultServer
	gh    *fakeGitHub
	mount string
	raw   *http.Client // plain HTTP: unlike Vault's API client and CLI it never retries a 429 or a 5xx
}

// poolMint is one read of a token path through Vault's HTTP API.
type poolMint struct {
	status     int
	retryAfter string
	errText    string // the answer's body when it is not 200, redacted
	elapsed    time.Duration

	LeaseID string `json:"lease_id"`
	Data    struct {
		Token          string `json:"token"`
		App            string `json:"app"`
		AppID          int64  `json:"app_id"`
		InstallationID int64  `json:"installation_id"`
	} `json:"data"`
}

func (m poolMint) String() string {
	if m.status == http.StatusOK {
		return fmt.Sprintf("HTTP 200 from App %q (app_id %d, installation %d)", m.Data.App, m.Data.AppID, m.Data.InstallationID)
	}
	return fmt.Sprintf("HTTP %d (Retry-After %q): %s", m.status, m.retryAfter, m.errText)
}

// mint reads token/<role> once as root.
func (p *poolEnv) mint(role string) poolMint {
	return mintRaw(p.raw, p.v.addr, p.v.rootToken, p.mount+"/token/"+role)
}

func mintRaw(c *http.Client, addr, token, path string) poolMint {
	var m poolMint
	start := time.Now()
	req, _ := http.NewRequest(http.MethodGet, addr+"/v1/"+path, nil)
	req.Header.Set("X-Vault-Token", token)
	resp, err := c.Do(req)
	if err != nil {
		m.elapsed, m.errText = time.Since(start), redact(err.Error())
		return m
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m.elapsed, m.status, m.retryAfter = time.Since(start), resp.StatusCode, resp.Header.Get("Retry-After")
	if resp.StatusCode != http.StatusOK {
		m.errText = redact(string(body))
		return m
	}
	if err := json.Unmarshal(body, &m); err != nil {
		m.status, m.errText = 0, "decoding the answer: "+err.Error()
	}
	return m
}

// mustMint mints from role and fails the test unless it succeeds with a token from an App of the pool whose
// app_id and installation match the App's name.
func (p *poolEnv) mustMint(t *testing.T, role string) poolMint {
	t.Helper()
	m := p.mint(role)
	if m.status != http.StatusOK || m.LeaseID == "" || m.Data.Token == "" {
		t.Fatalf("minting from role %s: %s", role, m)
	}
	checkPoolMint(t, m)
	return m
}

// checkPoolMint fails the test unless the token response's app, app_id and installation_id belong together.
func checkPoolMint(t *testing.T, m poolMint) {
	t.Helper()
	a, ok := poolAppNamed(m.Data.App)
	if !ok {
		t.Fatalf("the token response names App %q, not an App of the mount", m.Data.App)
	}
	if m.Data.AppID != a.id || m.Data.InstallationID != a.installation {
		t.Fatalf("the token response says App %q, app_id %d, installation %d; want app_id %d, installation %d",
			a.name, m.Data.AppID, m.Data.InstallationID, a.id, a.installation)
	}
}

// readData reads path with the CLI as root and returns its data.
func (p *poolEnv) readData(t *testing.T, path string) map[string]any {
	t.Helper()
	var out struct {
		Data map[string]any `json:"data"`
	}
	p.v.cliJSON(t, p.v.rootToken, &out, "read", "-format=json", path)
	if out.Data == nil {
		t.Fatalf("vault read %s returned no data", path)
	}
	return out.Data
}

// writeApp writes App a at apps/<name> (or config for the default App) with the emulator's key, and extra fields.
func (p *poolEnv) writeApp(t *testing.T, a poolApp, extra ...string) {
	t.Helper()
	path := p.mount + "/apps/" + a.name
	if a.name == "default" {
		path = p.mount + "/config"
	}
	args := []string{"write", path, fmt.Sprintf("app_id=%d", a.id), "private_key=@" + p.gh.keyFile, "base_url=" + p.gh.url}
	p.v.cli(t, append(args, extra...)...)
}

// setAppFaults replaces an App's faults at the emulator; they go when the test ends.
func (p *poolEnv) setAppFaults(t *testing.T, appID int64, faults map[string]any) {
	t.Helper()
	path := fmt.Sprintf("/_fake/apps/%d/faults", appID)
	p.gh.admin(t, http.MethodPut, path, faults, nil)
	t.Cleanup(func() { p.gh.admin(t, http.MethodPut, path, map[string]any{}, nil) })
}

// setBudget sets what is left of an installation's hourly budget at the emulator (5,000 requests); the whole
// budget comes back when the test ends.
func (p *poolEnv) setBudget(t *testing.T, installation int64, remaining int) {
	t.Helper()
	path := fmt.Sprintf("/_fake/installations/%d/rate-limit", installation)
	p.gh.admin(t, http.MethodPut, path, map[string]any{"limit": 5000, "remaining": remaining, "reset_in": "30m"}, nil)
	t.Cleanup(func() { p.gh.admin(t, http.MethodPut, path, map[string]any{"limit": 5000, "remaining": 5000}, nil) })
}

// wantStatus fails the test unless err is Vault's answer with HTTP status code, and its text holds every one of want.
func wantStatus(t *testing.T, what string, err error, code int, want ...string) {
	t.Helper()
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) || re.StatusCode != code {
		t.Errorf("%s: want HTTP %d, got %s", what, code, redactErr(err))
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: the refusal does not name %q: %s", what, w, redactErr(err))
		}
	}
}

// metricValue sums the samples of a metric of the mount whose labels include labels.
func (p *poolEnv) metricValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	var out struct {
		Data struct {
			Metrics map[string]struct {
				Samples []struct {
					Labels map[string]string `json:"labels"`
					Value  float64           `json:"value"`
				} `json:"samples"`
			} `json:"metrics"`
		} `json:"data"`
	}
	p.v.cliJSON(t, p.v.rootToken, &out, "read", "-format=json", p.mount+"/metrics")
	var sum float64
	for _, smp := range out.Data.Metrics[name].Samples {
		match := true
		for k, v := range labels {
			if smp.Labels[k] != v {
				match = false
			}
		}
		if match {
			sum += smp.Value
		}
	}
	return sum
}

// poolBudget is an installation's budget as status shows it.
type poolBudget struct {
	Limit     int    `json:"limit"`
	Remaining int    `json:"remaining"`
	Used      int    `json:"used"`
	Reset     string `json:"reset"`
	Seen      string `json:"seen"`
}

// poolStatus is the part of status the pools tests read.
type poolStatus struct {
	Data struct {
		AppID int64 `json:"app_id"`
		Apps  map[string]struct {
			AppID         int64  `json:"app_id"`
			AppSlug       string `json:"app_slug"`
			Configured    bool   `json:"configured"`
			Installations []struct {
				InstallationID int64       `json:"installation_id"`
				Owner          string      `json:"owner"`
				Budget         *poolBudget `json:"budget"`
			} `json:"installations"`
		} `json:"apps"`
	} `json:"data"`
}

func (p *poolEnv) status(t *testing.T) poolStatus {
	t.Helper()
	var st poolStatus
	p.v.cliJSON(t, p.v.rootToken, &st, "read", "-format=json", p.mount+"/status")
	return st
}

// budgetOf returns the budget status shows for an App's installation, nil when it shows none.
func (st poolStatus) budgetOf(app string, installation int64) *poolBudget {
	for _, in := range st.Data.Apps[app].Installations {
		if in.InstallationID == installation {
			return in.Budget
		}
	}
	return nil
}

// startPoolGitHub starts an emulator with the pool fixture, its one generated key registered with all three Apps;
// it stops when the test ends.
func startPoolGitHub(t *testing.T, s *shared) *fakeGitHub {
	t.Helper()
	dir := t.TempDir()
	gh, err := startFakeGitHub(s.bins.fakeGitHub, dir, "-fixture", filepath.Join(repoRoot, poolFixtureFile))
	if err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, gh.proc, 40)
	return gh
}

// TestPools runs the App pools of SPEC section 3.7 through a real Vault: Apps and roles written with the CLI, which
// App mints (ordered failover and its return, budgets), the errors when none can, revocation after an App is deleted,
// mints while an App's config changes, Vault Agent and policies, and an upgrade from and a downgrade to v0.3.0.
func TestPools(t *testing.T) {
	s := requireStack(t)
	v := s.vault
	// The previous release builds while the other subtests run; the upgrade subtest waits for it.
	previous := startPreviousBuild(t, s.bins.pluginVersion)

	gh := startPoolGitHub(t, s)
	mount := v.newMount(t, s.bins.pluginVersion)
	v.cli(t, "secrets", "tune", "-allowed-response-headers=Retry-After", mount)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	p := &poolEnv{s: s, v: v, gh: gh, mount: mount, raw: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
	for _, a := range poolApps {
		p.writeApp(t, a)
	}
	roleArgs := func(name string, extra ...string) []string {
		return append([]string{"write", mount + "/roles/" + name, "owner=" + acmeOwner, "repositories=api",
			"permissions=contents=read", "ttl=10m"}, extra...)
	}

	t.Run("apps CRUD and list", func(t *testing.T) {
		var names []string
		v.cliJSON(t, v.rootToken, &names, "list", "-format=json", mount+"/apps")
		if !slices.Equal(names, []string{"default", "second", "third"}) {
			t.Errorf("vault list %s/apps = %v, want [default second third] (sorted, default included)", mount, names)
		}
		list, err := v.client(t, v.rootToken).Logical().List(mount + "/apps")
		if err != nil || list == nil {
			t.Fatalf("LIST %s/apps: %v", mount, redactErr(err))
		}
		info, _ := list.Data["key_info"].(map[string]any)
		for _, a := range poolApps {
			ki, _ := info[a.name].(map[string]any)
			if fmt.Sprint(ki["app_id"]) != fmt.Sprint(a.id) || ki["app_slug"] != a.slug || ki["base_url"] != gh.url {
				t.Errorf("key_info of %s = %v, want app_id %d, app_slug %s, base_url %s", a.name, ki, a.id, a.slug, gh.url)
			}
		}

		// config and apps/default are one entry: the same read (but the name), and a write to one shows in the other.
		cfg := p.readData(t, mount+"/config")
		def := p.readData(t, mount+"/apps/default")
		if def["name"] != "default" {
			t.Errorf("apps/default reads name %v, want default", def["name"])
		}
		delete(def, "name")
		if !reflect.DeepEqual(cfg, def) {
			t.Errorf("config and apps/default read differently:\nconfig:       %v\napps/default: %v", cfg, def)
		}
		if fmt.Sprint(cfg["rate_limit_refresh"]) != "60" {
			t.Errorf("config rate_limit_refresh = %v, want the default 60 (seconds)", cfg["rate_limit_refresh"])
		}
		v.cli(t, "write", mount+"/config", "request_timeout=17")
		if got := p.readData(t, mount+"/apps/default")["request_timeout"]; fmt.Sprint(got) != "17" {
			t.Errorf("after writing config request_timeout=17, apps/default reads %v", got)
		}
		v.cli(t, "write", mount+"/apps/default", "request_timeout=23", "rate_limit_refresh=90s")
		got := p.readData(t, mount+"/config")
		if fmt.Sprint(got["request_timeout"]) != "23" || fmt.Sprint(got["rate_limit_refresh"]) != "90" {
			t.Errorf("after writing apps/default, config reads request_timeout %v, rate_limit_refresh %v; want 23, 90",
				got["request_timeout"], got["rate_limit_refresh"])
		}
		second := p.readData(t, mount+"/apps/second")
		if second["name"] != "second" || fmt.Sprint(second["app_id"]) != "1002" || second["app_slug"] != "vault-demo-2" {
			t.Errorf("apps/second reads name %v, app_id %v, app_slug %v", second["name"], second["app_id"], second["app_slug"])
		}
		if _, ok := second["private_key"]; ok {
			t.Error("apps/second returns private_key: it must be write-only")
		}
		if fp, want := second["private_key_fingerprint"], keyFingerprint(t, gh.keyFile); fp != want {
			t.Errorf("apps/second private_key_fingerprint = %v, want %s", fp, want)
		}

		// An App of its own: created, read, listed, deleted.
		const name = "tmp_app-1"
		v.cli(t, "write", mount+"/apps/"+name, "app_id=1003", "private_key=@"+gh.keyFile, "base_url="+gh.url)
		if d := p.readData(t, mount+"/apps/"+name); d["name"] != name || fmt.Sprint(d["app_id"]) != "1003" {
			t.Errorf("apps/%s reads name %v, app_id %v", name, d["name"], d["app_id"])
		}
		v.cliJSON(t, v.rootToken, &names, "list", "-format=json", mount+"/apps")
		if !slices.Equal(names, []string{"default", "second", "third", name}) {
			t.Errorf("vault list %s/apps = %v after creating %s", mount, names, name)
		}
		v.cli(t, "delete", mount+"/apps/"+name)
		if r := v.run(v.rootToken, "", "read", mount+"/apps/"+name); r.err == nil {
			t.Errorf("apps/%s still reads after delete: %s", name, r)
		}
		v.cliJSON(t, v.rootToken, &names, "list", "-format=json", mount+"/apps")
		if !slices.Equal(names, []string{"default", "second", "third"}) {
			t.Errorf("vault list %s/apps = %v after deleting %s", mount, names, name)
		}

		c := v.client(t, v.rootToken)
		for _, bad := range []string{"Upper", "dot.ted", strings.Repeat("a", 64)} {
			_, err := c.Logical().Write(mount+"/apps/"+bad, map[string]any{"app_id": 1003, "base_url": gh.url})
			wantStatus(t, "writing apps/"+bad, err, http.StatusBadRequest)
		}
		_, err = c.Logical().Write(mount+"/apps/second", map[string]any{"rate_limit_refresh": "-1s"})
		wantStatus(t, "rate_limit_refresh=-1s", err, http.StatusBadRequest, "rate_limit_refresh")
	})

	t.Run("roles and tokens name their App", func(t *testing.T) {
		v.cli(t, roleArgs("pool", "apps=default,second,third")...)
		v.cli(t, roleArgs("ordered", "apps=default,second,third", "app_selection=ordered")...)
		v.cli(t, roleArgs("single")...)
		for _, tt := range []struct {
			role, selection string
			apps            []string
		}{
			{"pool", "budget", []string{"default", "second", "third"}},
			{"ordered", "ordered", []string{"default", "second", "third"}},
			{"single", "", []string{"default"}},
		} {
			d := p.readData(t, mount+"/roles/"+tt.role)
			var apps []string
			list, _ := d["apps"].([]any)
			for _, a := range list {
				apps = append(apps, fmt.Sprint(a))
			}
			if !slices.Equal(apps, tt.apps) {
				t.Errorf("role %s reads apps %v, want %v", tt.role, apps, tt.apps)
			}
			if tt.selection != "" && d["app_selection"] != tt.selection {
				t.Errorf("role %s reads app_selection %v, want %s", tt.role, d["app_selection"], tt.selection)
			}
		}

		c := v.client(t, v.rootToken)
		for _, tt := range []struct {
			name string
			data map[string]any
			want []string
		}{
			{"an App that does not exist", map[string]any{"owner": acmeOwner, "apps": "default,nosuch"}, []string{"nosuch"}},
			{"installation_id with several Apps", map[string]any{"installation_id": acmeInstallID, "apps": "default,second"}, []string{"installation_id"}},
			{"several Apps without owner", map[string]any{"apps": "default,second", "repositories": "api"}, []string{"owner"}},
			{"an App twice", map[string]any{"owner": acmeOwner, "apps": "default,second,default"}, []string{"default"}},
			{"an unknown app_selection", map[string]any{"owner": acmeOwner, "apps": "default,second", "app_selection": "random"}, []string{"app_selection"}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				_, err := c.Logical().Write(mount+"/roles/refused", tt.data)
				wantStatus(t, "writing role refused", err, http.StatusBadRequest, tt.want...)
				if sec, err := c.Logical().Read(mount + "/roles/refused"); err != nil || sec != nil {
					t.Errorf("a refused role write left role refused behind (%v)", redactErr(err))
				}
			})
		}

		// Several mints from the pool: every App takes its turn while budgets are unknown (they rank as full), and
		// each token is the named App's at GitHub.
		seen := map[string]int{}
		for range 6 {
			m := p.mustMint(t, "pool")
			seen[m.Data.App]++
			if st := gh.status(t, m.Data.Token); st.InstallationID != m.Data.InstallationID {
				t.Errorf("App %s's token belongs to installation %d at GitHub, the response says %d", m.Data.App,
					st.InstallationID, m.Data.InstallationID)
			}
			gh.mustReach(t, m.Data.Token, "api")
		}
		if len(seen) != 3 {
			t.Errorf("six mints from role pool came from Apps %v, want all three", seen)
		}
		if m := p.mustMint(t, "single"); m.Data.App != "default" {
			t.Errorf("a role without apps minted from App %q, want default", m.Data.App)
		}
		if m := p.mustMint(t, "ordered"); m.Data.App != "default" {
			t.Errorf("role ordered minted from App %q while every App serves, want default (the first)", m.Data.App)
		}
	})

	t.Run("installations of an App", func(t *testing.T) {
		list := func(query string) (int, []string) {
			req, _ := http.NewRequest(http.MethodGet, v.addr+"/v1/"+mount+"/installations?list=true"+query, nil)
			req.Header.Set("X-Vault-Token", v.rootToken)
			resp, err := p.raw.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out struct {
				Data struct {
					Keys []string `json:"keys"`
				} `json:"data"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&out)
			return resp.StatusCode, out.Data.Keys
		}
		if code, keys := list(""); code != http.StatusOK || !sameSet(keys, []string{acmeOwner, octocatAccount}) {
			t.Errorf("installations (App default): HTTP %d, %v; want [acme octocat]", code, keys)
		}
		if code, keys := list("&app=second"); code != http.StatusOK || !slices.Equal(keys, []string{acmeOwner}) {
			t.Errorf("installations app=second: HTTP %d, %v; want [acme]", code, keys)
		}
		if code, _ := list("&app=nosuch"); code != http.StatusBadRequest {
			t.Errorf("installations app=nosuch: HTTP %d, want 400", code)
		}
	})

	t.Run("policy", func(t *testing.T) {
		token := tokenWithPolicyText(t, v, mount+"-pool", fmt.Sprintf(`path "%s/token/pool" { capabilities = ["read", "update"] }`, mount))
		m := mintRaw(p.raw, v.addr, token, mount+"/token/pool")
		if m.status != http.StatusOK {
			t.Fatalf("a token whose policy allows token/pool cannot mint: %s", m)
		}
		checkPoolMint(t, m)
		gh.mustReach(t, m.Data.Token, "api")
		for _, args := range [][]string{
			{"write", mount + "/apps/x", "app_id=1003", "base_url=" + gh.url},
			{"write", mount + "/apps/second", "request_timeout=5"},
			{"delete", mount + "/apps/second"},
			{"read", mount + "/apps/default"},
			{"list", mount + "/apps"},
			{"write", mount + "/config", "request_timeout=5"},
			{"write", mount + "/roles/pool", "apps=default"},
			{"read", mount + "/token/ordered"},
		} {
			v.cliDenied(t, token, args...)
		}
		if r := v.run(v.rootToken, "", "read", mount+"/apps/x"); r.err == nil {
			t.Errorf("apps/x exists after a denied write: %s", r)
		}
	})

	t.Run("agent template", func(t *testing.T) {
		// The docs' Agent example reads token/ci: here a pool whose first App is third.
		v.cli(t, roleArgs("ci", "apps=third,default", "app_selection=ordered")...)
		_, rendered := startAgent(t, v, mount, v.addr)
		var tok string
		eventually(t, 30*time.Second, 100*time.Millisecond, "Agent renders the template", func() (err error) {
			tok, _, err = rendered()
			return err
		})
		gh.mustReach(t, tok, "api")
		if st := gh.status(t, tok); st.InstallationID != 2103 {
			t.Errorf("Agent rendered a token of installation %d, want 2103 (App third, the first of role ci)", st.InstallationID)
		}
		if n := len(v.leasesUnder(t, mount+"/token/ci/")); n != 1 {
			t.Errorf("%d leases under %s/token/ci/ after one render, want 1", n, mount)
		}
	})

	t.Run("mints go on while an App's config is rewritten", func(t *testing.T) {
		v.cli(t, roleArgs("rewrite", "apps=second,default", "app_selection=ordered")...)
		const workers, pause, length = 8, 50 * time.Millisecond, 3 * time.Second
		var mu sync.Mutex
		var results []poolMint
		var wg sync.WaitGroup
		stop := time.Now().Add(length)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					m := p.mint("rewrite")
					mu.Lock()
					results = append(results, m)
					mu.Unlock()
					time.Sleep(pause)
				}
			}()
		}
		c := v.client(t, v.rootToken)
		writes := 0
		var lastTimeout, lastSlots int
		for time.Now().Before(stop) {
			lastTimeout, lastSlots = 11+writes%2*2, 8+writes%2*8
			_, err := c.Logical().Write(mount+"/apps/second", map[string]any{
				"request_timeout": lastTimeout, "max_concurrent_requests": lastSlots})
			if err != nil {
				t.Errorf("rewriting apps/second: %v", redactErr(err))
				break
			}
			writes++
			time.Sleep(150 * time.Millisecond)
		}
		wg.Wait()
		byApp := map[string]int{}
		failed := 0
		for _, m := range results {
			if m.status != http.StatusOK {
				if failed++; failed <= 5 {
					t.Errorf("a mint failed while apps/second was rewritten: %s", m)
				}
				continue
			}
			checkPoolMint(t, m)
			byApp[m.Data.App]++
		}
		t.Logf("%d mints from %d goroutines during %d rewrites of apps/second: %d failed, by App %v", len(results),
			workers, writes, failed, byApp)
		if failed > 0 || len(results) < 20 || writes < 5 {
			t.Errorf("%d of %d mints failed during %d rewrites; want none failed, at least 20 mints and 5 rewrites",
				failed, len(results), writes)
		}
		if byApp["second"] < len(results)*9/10 {
			t.Errorf("mints by App %v: want App second (the first of the role, always healthy) to serve at least 90%%", byApp)
		}
		d := p.readData(t, mount+"/apps/second")
		if fmt.Sprint(d["request_timeout"]) != fmt.Sprint(lastTimeout) || fmt.Sprint(d["max_concurrent_requests"]) != fmt.Sprint(lastSlots) {
			t.Errorf("apps/second reads request_timeout %v, max_concurrent_requests %v; the last write set %d, %d",
				d["request_timeout"], d["max_concurrent_requests"], lastTimeout, lastSlots)
		}
		v.cli(t, "lease", "revoke", "-sync", "-prefix", mount+"/token/rewrite")
	})

	t.Run("ordered failover and return", func(t *testing.T) {
		// App default goes through a proxy that counts what reaches GitHub for it; its leases are revoked (through
		// the proxy) and the proxy taken out before the subtest ends.
		proxy := newForwardingProxy(t)
		p.writeApp(t, poolApps[0], "proxy_url="+proxy.srv.URL)
		// Cleanups run last first: this one after the App's faults are lifted, before the proxy closes.
		t.Cleanup(func() {
			for _, args := range [][]string{
				{"lease", "revoke", "-sync", "-prefix", mount + "/token/ordered"},
				{"write", mount + "/config", "app_id=1001", "private_key=@" + gh.keyFile, "base_url=" + gh.url, "proxy_url="},
			} {
				if r := v.run(v.rootToken, "", args...); r.err != nil {
					t.Errorf("%s", r)
				}
			}
		})
		if m := p.mustMint(t, "ordered"); m.Data.App != "default" {
			t.Fatalf("role ordered mints from %q before any limit, want default", m.Data.App)
		}
		skipsBefore := p.metricValue(t, "github_app_app_skips_total", map[string]string{"app": "default", "reason": "rate_limited"})
		// GitHub limits App default (primary limit for a minute): the mints go on from App second, no error seen.
		p.setAppFaults(t, 1001, map[string]any{"primary_rate_limit": true, "rate_limit_reset": "60s"})
		proxy.requests()
		limited := time.Now()
		byApp := map[string]int{}
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			m := p.mint("ordered")
			if m.status != http.StatusOK {
				t.Fatalf("a mint failed while App default was limited and second could serve: %s", m)
			}
			checkPoolMint(t, m)
			byApp[m.Data.App]++
		}
		window := time.Since(limited)
		if byApp["second"] == 0 || len(byApp) != 1 {
			t.Errorf("while App default was limited, role ordered minted from %v; want App second only", byApp)
		}
		// The first mint meets the limit; after it, a probe a second.
		probes := proxy.requests()
		if most := int(window/time.Second) + 2; len(probes) == 0 || len(probes) > most {
			t.Errorf("%d calls reached GitHub for the limited App default in %s (%v): want 1 to %d (a probe a second)",
				len(probes), window.Round(time.Millisecond), probes, most)
		}
		t.Logf("%d mints in %s while App default was limited; %d calls reached GitHub for it", byApp["second"],
			window.Round(time.Millisecond), len(probes))
		if skips := p.metricValue(t, "github_app_app_skips_total", map[string]string{"app": "default", "reason": "rate_limited"}); skips <= skipsBefore {
			t.Errorf("github_app_app_skips_total{app=default,reason=rate_limited} = %v (before: %v): want it counted", skips, skipsBefore)
		}

		// The limit lifts: the first App's probe (one a second) finds it so, and mints go back to it.
		p.gh.admin(t, http.MethodPut, "/_fake/apps/1001/faults", map[string]any{}, nil)
		lifted := time.Now()
		eventually(t, 8*time.Second, 100*time.Millisecond, "role ordered mints from App default again", func() error {
			m := p.mint("ordered")
			if m.status != http.StatusOK {
				t.Fatalf("a mint failed after the limit lifted: %s", m)
			}
			if m.Data.App != "default" {
				return fmt.Errorf("minted from %q", m.Data.App)
			}
			return nil
		})
		t.Logf("role ordered was back on App default %s after the limit lifted (served by second meanwhile: %v)",
			time.Since(lifted).Round(10*time.Millisecond), byApp)
		for range 3 {
			if m := p.mustMint(t, "ordered"); m.Data.App != "default" {
				t.Errorf("after the return, role ordered minted from %q, want default", m.Data.App)
			}
		}
	})

	t.Run("budget", func(t *testing.T) {
		budgets := map[string]int{"default": 500, "second": 2500, "third": 4500} // 10%, 50%, 90% of 5,000
		for _, a := range poolApps {
			v.cli(t, "write", mount+"/apps/"+a.name, "rate_limit_refresh=1s")
			p.setBudget(t, a.installation, budgets[a.name])
		}
		t.Cleanup(func() {
			for _, a := range poolApps {
				v.run(v.rootToken, "", "write", mount+"/apps/"+a.name, "rate_limit_refresh=60s")
			}
		})
		// Mints make the engine look at each installation's budget in the background (GET /rate_limit, at most once
		// a second here); status shows what it saw.
		var st poolStatus
		learnt := func() error {
			for _, a := range poolApps {
				b := st.budgetOf(a.name, a.installation)
				if b == nil {
					return fmt.Errorf("status shows no budget for App %s's installation %d", a.name, a.installation)
				}
				if b.Limit != 5000 || b.Remaining > budgets[a.name] || b.Remaining < budgets[a.name]-20 {
					return fmt.Errorf("status shows App %s's budget as %+v, want limit 5000 and remaining %d",
						a.name, *b, budgets[a.name])
				}
			}
			return nil
		}
		learning := 0
		eventually(t, 20*time.Second, 300*time.Millisecond, "status shows the budgets set at GitHub", func() error {
			p.mustMint(t, "pool")
			learning++
			st = p.status(t)
			return learnt()
		})
		t.Logf("status showed the three budgets after %d mints", learning)
		b := st.budgetOf("default", 2001)
		if reset, err := time.Parse(time.RFC3339, b.Reset); err != nil || time.Until(reset) < 25*time.Minute || time.Until(reset) > 31*time.Minute {
			t.Errorf("status shows App default's budget reset at %q, want about 30 minutes from now (%v)", b.Reset, err)
		}
		if seen, err := time.Parse(time.RFC3339, b.Seen); err != nil || time.Since(seen) > time.Minute {
			t.Errorf("status shows App default's budget seen at %q, want within the last minute (%v)", b.Seen, err)
		}
		for _, a := range poolApps {
			if app := st.Data.Apps[a.name]; app.AppID != a.id || !app.Configured || app.AppSlug != a.slug {
				t.Errorf("status apps.%s: app_id %d, configured %v, app_slug %q; want %d, true, %s", a.name, app.AppID,
					app.Configured, app.AppSlug, a.id, a.slug)
			}
		}

		count := func(n int) map[string]int {
			byApp := map[string]int{}
			for range n {
				byApp[p.mustMint(t, "pool").Data.App]++
			}
			return byApp
		}
		byApp := count(12)
		t.Logf("12 mints with budgets 10%%/50%%/90%% known: by App %v", byApp)
		if byApp["third"] < 10 || byApp["default"] > 0 {
			t.Errorf("12 mints with budgets 10%%/50%%/90%% by App %v: want at least 10 from third (90%%), none from default (10%%)", byApp)
		}
		if g := p.metricValue(t, "github_app_installation_budget_remaining", map[string]string{"app": "default"}); g > 500 || g < 480 {
			t.Errorf("github_app_installation_budget_remaining{app=default} = %v, want 500", g)
		}

		// GitHub's accounting changes: third drops to 5%. Its next refresh sees it, and the mints move to second.
		p.setBudget(t, 2103, 250)
		changed := time.Now()
		eventually(t, 15*time.Second, 200*time.Millisecond, "mints move to App second", func() error {
			if m := p.mustMint(t, "pool"); m.Data.App != "second" {
				return fmt.Errorf("minted from %s", m.Data.App)
			}
			return nil
		})
		t.Logf("mints moved to App second %s after third's budget dropped", time.Since(changed).Round(10*time.Millisecond))
		if byApp := count(5); byApp["second"] != 5 {
			t.Errorf("5 mints with budgets 10%%/50%%/5%% known, by App %v: want all from second", byApp)
		}
	})

	t.Run("an App deleted while its leases are outstanding", func(t *testing.T) {
		// App third goes through a proxy of its own: the revocations must take that way after the App is gone.
		proxy := newForwardingProxy(t)
		p.writeApp(t, poolApps[2], "proxy_url="+proxy.srv.URL)
		if seen := proxy.requests(); !slices.Contains(seen, "GET /app") {
			t.Fatalf("writing apps/third with proxy_url did not verify through the proxy (it saw %v)", seen)
		}
		v.cli(t, roleArgs("doomed", "apps=third")...)
		var tokens []string
		for range 3 {
			m := p.mustMint(t, "doomed")
			if m.Data.App != "third" {
				t.Fatalf("role doomed minted from App %q, want third", m.Data.App)
			}
			tokens = append(tokens, m.Data.Token)
		}
		if seen := proxy.requests(); len(seen) == 0 {
			t.Fatal("App third's mints did not go through its proxy")
		}

		sec, err := v.client(t, v.rootToken).Logical().Delete(mount + "/apps/third")
		if err != nil {
			t.Fatalf("deleting apps/third: %v", redactErr(err))
		}
		if sec == nil || !slices.ContainsFunc(sec.Warnings, func(w string) bool { return strings.Contains(w, "doomed") }) {
			var warnings []string
			if sec != nil {
				warnings = sec.Warnings
			}
			t.Errorf("deleting an App that roles name: warnings %q, want one naming role doomed", warnings)
		}
		var names []string
		v.cliJSON(t, v.rootToken, &names, "list", "-format=json", mount+"/apps")
		if !slices.Equal(names, []string{"default", "second"}) {
			t.Errorf("vault list %s/apps = %v after deleting third", mount, names)
		}
		// Roles that name it skip it.
		for range 3 {
			if m := p.mustMint(t, "pool"); m.Data.App == "third" {
				t.Errorf("role pool minted from the deleted App third")
			}
		}

		v.cli(t, "lease", "revoke", "-sync", "-prefix", mount+"/token/doomed")
		for i, tok := range tokens {
			if st := gh.status(t, tok); !st.Revoked {
				t.Errorf("token %d of 3 of the deleted App: not revoked at GitHub (expired %v)", i+1, st.Expired)
			}
			if code, _, err := gh.reach(tok); err != nil || code != http.StatusUnauthorized {
				t.Errorf("token %d of 3 of the deleted App: GET /installation/repositories answers %d (%v), want 401", i+1, code, err)
			}
		}
		if seen := proxy.requests(); len(seen) != 3 || !slices.Equal(slices.Compact(slices.Clone(seen)), []string{"DELETE /installation/token"}) {
			t.Errorf("App third's proxy saw %v during the revocations, want 3 × DELETE /installation/token", seen)
		}
		if left := v.leasesUnder(t, mount+"/token/doomed/"); len(left) != 0 {
			t.Errorf("%d leases left under %s/token/doomed/", len(left), mount)
		}
		// App third comes back, without the proxy, for what follows.
		p.writeApp(t, poolApps[2])
	})

	t.Run("all Apps limited", func(t *testing.T) {
		ends := map[int64]int{1001: 40, 1002: 25, 1003: 50} // seconds of Retry-After; the earliest end is second's
		for id, after := range ends {
			p.setAppFaults(t, id, map[string]any{"secondary_rate_limit": 429, "retry_after": after})
		}
		for _, role := range []string{"pool", "ordered"} {
			m := p.mint(role)
			t.Logf("role %s with every App limited: %s after %s", role, m, m.elapsed.Round(time.Millisecond))
			if m.status != http.StatusTooManyRequests {
				t.Errorf("role %s with every App limited: HTTP %d, want 429", role, m.status)
				continue
			}
			if ra, err := strconv.Atoi(m.retryAfter); err != nil || ra < 20 || ra > 26 {
				t.Errorf("role %s: Retry-After %q, want about 25 (the earliest end, App second's)", role, m.retryAfter)
			}
			for _, a := range poolApps {
				if !strings.Contains(m.errText, a.name) {
					t.Errorf("role %s: the error does not name App %s: %s", role, a.name, m.errText)
				}
			}
			if m.elapsed > 15*time.Second {
				t.Errorf("role %s answered after %s: an App pool skips limited Apps without waiting", role, m.elapsed)
			}
		}
	})

	t.Run("upgrade from and downgrade to v0.3.0", func(t *testing.T) {
		testPoolsUpgrade(t, p, previous)
	})
}

// forwardingProxy is an HTTP proxy that forwards what it gets (plain-http requests in absolute form) and records
// each request's method and path.
type forwardingProxy struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []string
}

func newForwardingProxy(t *testing.T) *forwardingProxy {
	t.Helper()
	p := &forwardingProxy{}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.Out.Host = pr.In.URL.Host }}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Scheme != "http" || r.URL.Host == "" {
			http.Error(w, "not a proxy request", http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.seen = append(p.seen, r.Method+" "+r.URL.Path)
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// requests returns what the proxy has seen and forgets it.
func (p *forwardingProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := p.seen
	p.seen = nil
	return seen
}

// previousBuild is the previous release's plugin, built in the background.
type previousBuild struct {
	done    chan struct{}
	version string
	bin     string
	err     error
}

// startPreviousBuild builds v0.3.0 from git history (git archive of previousReleaseCommit) into a temporary
// directory, in the background; the test waits for it before it ends. The version it reports is v0.3.0, unless the
// build under test reports that too (VERSION not bumped yet): Vault's catalog holds one binary per version.
func startPreviousBuild(t *testing.T, current string) *previousBuild {
	t.Helper()
	dir := t.TempDir()
	b := &previousBuild{done: make(chan struct{}), version: previousReleaseVersion}
	if current == b.version {
		b.version += "-previous"
	}
	go func() {
		defer close(b.done)
		b.bin, b.err = buildPrevious(dir, b.version)
	}()
	t.Cleanup(func() { <-b.done })
	return b
}

func buildPrevious(dir, version string) (string, error) {
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	archive := filepath.Join(dir, "src.tar")
	run := func(name, dir string, env []string, args ...string) error {
		cmd := exec.Command(name, args...)
		cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return nil
	}
	err := run("git", repoRoot, nil, "archive", "--format=tar", "-o", archive, previousReleaseCommit)
	if err != nil {
		// A shallow clone lacks the commit: fetch it alone from where the clone came from.
		if ferr := run("git", repoRoot, nil, "fetch", "--quiet", "--depth=1", "origin", previousReleaseCommit); ferr == nil {
			err = run("git", repoRoot, nil, "archive", "--format=tar", "-o", archive, previousReleaseCommit)
		}
	}
	if err != nil {
		return "", fmt.Errorf("the previous release (commit %s, %s) is not in this clone's history (a shallow clone? "+
			"git fetch --unshallow): %w", previousReleaseCommit, previousReleaseVersion, err)
	}
	if err := run("tar", src, nil, "-xf", archive); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, pluginName+"_"+version)
	err = run("go", src, []string{"CGO_ENABLED=0"}, "build", "-trimpath", "-o", bin,
		"-ldflags", "-X "+modulePath+".Version="+version, "./cmd/"+pluginName)
	return bin, err
}

// runningVersion is the plugin version the mount runs, from sys/mounts.
func runningVersion(t *testing.T, v *vaultServer, mount string) mountInfo {
	t.Helper()
	var mounts map[string]mountInfo
	v.cliJSON(t, v.rootToken, &mounts, "secrets", "list", "-detailed", "-format=json")
	m, ok := mounts[mount+"/"]
	if !ok {
		t.Fatalf("vault secrets list -detailed has no %s/", mount)
	}
	return m
}

// switchVersion pins the mount to version and reloads it, and waits until it runs that version.
func switchVersion(t *testing.T, v *vaultServer, mount, version string) {
	t.Helper()
	v.cli(t, "secrets", "tune", "-plugin-version="+version, mount+"/")
	// `vault plugin reload -mounts` of Vault 1.21's CLI does not reach the root namespace (see ha_test.go).
	v.cli(t, "write", "sys/plugins/reload/backend", "mounts="+mount+"/")
	eventually(t, 30*time.Second, 200*time.Millisecond, "the mount runs "+version, func() error {
		if m := runningVersion(t, v, mount); m.PluginVersion != version || m.RunningPluginVersion != version {
			return fmt.Errorf("sys/mounts: %+v", m)
		}
		return nil
	})
}

// testPoolsUpgrade: a mount made and used by v0.3.0 (one App, config) keeps working when the mount moves to the
// build under test in place, which sees its config as App default and revokes its leases; a second App and a pool
// role are added; then back to v0.3.0, which still reads the config, mints and revokes.
func testPoolsUpgrade(t *testing.T, p *poolEnv, previous *previousBuild) {
	v, gh := p.v, p.gh
	newVersion := p.s.bins.pluginVersion
	<-previous.done
	if previous.err != nil {
		t.Fatalf("building the previous release: %v", previous.err)
	}
	oldVersion := previous.version
	file := filepath.Base(previous.bin)
	dst := filepath.Join(v.pluginDir, file)
	if err := copyFile(dst, previous.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dst) })
	sum, err := fileSHA256(dst)
	if err != nil {
		t.Fatal(err)
	}
	v.cli(t, "plugin", "register", "-sha256="+sum, "-version="+oldVersion, "-command="+file, "secret", pluginName)
	t.Cleanup(func() {
		if r := v.run(v.rootToken, "", "plugin", "deregister", "-version="+oldVersion, "secret", pluginName); r.err != nil {
			t.Errorf("deregistering %s: %s", oldVersion, r)
		}
	})

	// The previous release: a mount, its config, a role, tokens.
	mount := v.newMount(t, oldVersion)
	if m := runningVersion(t, v, mount); m.RunningPluginVersion != oldVersion || m.RunningSHA256 != sum {
		t.Fatalf("the new mount runs %+v, want %s with sha256 %s", m, oldVersion, sum)
	}
	q := &poolEnv{s: p.s, v: v, gh: gh, mount: mount, raw: p.raw}
	q.writeApp(t, poolApps[0])
	v.cli(t, "write", mount+"/roles/old", "owner="+acmeOwner, "repositories=api", "permissions=contents=read", "ttl=10m")
	fingerprint := q.readData(t, mount+"/config")["private_key_fingerprint"]
	var oldTokens []poolMint
	for range 2 {
		m := q.mint("old")
		if m.status != http.StatusOK {
			t.Fatalf("%s mints: %s", oldVersion, m)
		}
		gh.mustReach(t, m.Data.Token, "api")
		oldTokens = append(oldTokens, m)
	}

	// Up to the build under test, in place.
	switchVersion(t, v, mount, newVersion)
	cfg := q.readData(t, mount+"/config")
	def := q.readData(t, mount+"/apps/default")
	if fmt.Sprint(cfg["app_id"]) != "1001" || cfg["private_key_fingerprint"] != fingerprint || cfg["base_url"] != gh.url {
		t.Errorf("after the upgrade config reads app_id %v, base_url %v, fingerprint %v; want %s's config",
			cfg["app_id"], cfg["base_url"], cfg["private_key_fingerprint"], oldVersion)
	}
	if def["private_key_fingerprint"] != fingerprint || fmt.Sprint(def["app_id"]) != "1001" {
		t.Errorf("after the upgrade apps/default reads app_id %v, fingerprint %v", def["app_id"], def["private_key_fingerprint"])
	}
	var names []string
	v.cliJSON(t, v.rootToken, &names, "list", "-format=json", mount+"/apps")
	if !slices.Equal(names, []string{"default"}) {
		t.Errorf("after the upgrade vault list %s/apps = %v, want [default]", mount, names)
	}
	if apps := fmt.Sprint(q.readData(t, mount+"/roles/old")["apps"]); apps != "[default]" {
		t.Errorf("after the upgrade role old reads apps %s, want [default]", apps)
	}
	if m := q.mustMint(t, "old"); m.Data.App != "default" {
		t.Errorf("after the upgrade role old mints from App %q, want default", m.Data.App)
	}
	// A lease of the previous release is revoked by the new one.
	v.cli(t, "lease", "revoke", "-sync", oldTokens[0].LeaseID)
	if st := gh.status(t, oldTokens[0].Data.Token); !st.Revoked {
		t.Errorf("the new version did not revoke a token of %s's lease at GitHub", oldVersion)
	}
	// A second App, a pool role, and a field the previous release does not know in the default App's entry.
	q.writeApp(t, poolApps[1])
	v.cli(t, "write", mount+"/config", "rate_limit_refresh=5s")
	v.cli(t, "write", mount+"/roles/pool", "owner="+acmeOwner, "repositories=api", "permissions=contents=read",
		"apps=second,default", "app_selection=ordered", "ttl=10m")
	newTokens := []poolMint{q.mustMint(t, "old"), q.mustMint(t, "pool")}
	if newTokens[1].Data.App != "second" {
		t.Errorf("after the upgrade role pool mints from App %q, want second", newTokens[1].Data.App)
	}

	// And back down to the previous release, in place.
	switchVersion(t, v, mount, oldVersion)
	cfg = q.readData(t, mount+"/config")
	if fmt.Sprint(cfg["app_id"]) != "1001" || cfg["private_key_fingerprint"] != fingerprint || cfg["base_url"] != gh.url {
		t.Errorf("after the downgrade %s reads config app_id %v, base_url %v, fingerprint %v", oldVersion,
			cfg["app_id"], cfg["base_url"], cfg["private_key_fingerprint"])
	}
	m := q.mint("old")
	if m.status != http.StatusOK {
		t.Fatalf("after the downgrade %s cannot mint: %s", oldVersion, m)
	}
	gh.mustReach(t, m.Data.Token, "api")
	if st := gh.status(t, m.Data.Token); st.InstallationID != acmeInstallID {
		t.Errorf("after the downgrade the token belongs to installation %d, want %d", st.InstallationID, acmeInstallID)
	}
	// It revokes every lease: its own, the one left from before the upgrade, and those the new version made
	// (App second's among them).
	v.cli(t, "lease", "revoke", "-sync", "-prefix", mount+"/token/")
	all := append([]poolMint{oldTokens[1], m}, newTokens...)
	for i, tok := range all {
		if st := gh.status(t, tok.Data.Token); !st.Revoked {
			t.Errorf("lease %d of %d (App %q): %s did not revoke its token at GitHub", i+1, len(all), tok.Data.App, oldVersion)
		}
	}
	if left := v.leasesUnder(t, mount+"/token/"); len(left) != 0 {
		t.Errorf("%d leases left under %s/token/ after %s revoked them", len(left), mount, oldVersion)
	}
}
