// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// botFields are the fields of a token response that name the App's bot user.
var botFields = []string{"app_slug", "bot_login", "bot_user_id", "commit_email"}

// wantBotIdentity checks the four fields of a token response against the emulator's bot user of the test App.
func (e *testEnv) wantBotIdentity(resp *logical.Response, domain string) {
	e.t.Helper()
	login, id, err := e.gh.BotUser(testAppID)
	if err != nil {
		e.t.Fatal(err)
	}
	want := map[string]any{
		"app_slug":     "vault-test",
		"bot_login":    "vault-test[bot]",
		"bot_user_id":  id,
		"commit_email": fmt.Sprintf("%d+vault-test[bot]@%s", id, domain),
	}
	if login != "vault-test[bot]" {
		e.t.Fatalf("the emulator's bot login is %q", login)
	}
	for _, f := range botFields {
		if resp.Data[f] != want[f] {
			e.t.Errorf("%s = %#v, want %#v", f, resp.Data[f], want[f])
		}
	}
	for _, w := range resp.Warnings {
		if strings.Contains(w, "bot_user_id") {
			e.t.Errorf("a warning about the bot identity with the fields present: %s", w)
		}
	}
}

// TestBotIdentityInTokenResponses: reads and writes of token/<role> name the App's bot user, with the commit email
// at GitHub's noreply domain for the base URL (github.com, GHE.com, GitHub Enterprise Server) or at noreply_domain.
func TestBotIdentityInTokenResponses(t *testing.T) {
	for _, tc := range []struct {
		name, base string // base "" is the emulator's own URL
		extra      map[string]any
		domain     string
	}{
		{"github.com", "https://api.github.com", nil, "users.noreply.github.com"},
		{"GitHub Enterprise Server", "https://ghes.example.com/api/v3", nil, "users.noreply.ghes.example.com"},
		{"GHES on another port", "https://GHES.example.com:8443/api/v3/", nil, "users.noreply.ghes.example.com"},
		{"GHE.com", "https://api.octo-corp.ghe.com", nil, "users.noreply.octo-corp.ghe.com"},
		{"override", "https://api.github.com", map[string]any{"noreply_domain": "Mail.Example.COM"}, "mail.example.com"},
		{"override on GHES", "https://ghes.example.com/api/v3", map[string]any{"noreply_domain": "noreply.corp.example"}, "noreply.corp.example"},
		{"the emulator", "", nil, "users.noreply.127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			data := map[string]any{}
			if tc.base != "" {
				e.redirectTo(e.srv.URL)
				data["base_url"] = tc.base
			}
			for k, v := range tc.extra {
				data[k] = v
			}
			e.configure(data)
			e.role("ci", map[string]any{"owner": "acme", "repositories": "api,web", "permissions": "contents=write"})

			e.wantBotIdentity(e.mint("ci"), tc.domain)
			resp, err := e.do(logical.UpdateOperation, "token/ci", map[string]any{"repositories": "api", "permissions": "contents=read"})
			mustOK(t, resp, err)
			e.wantBotIdentity(resp, tc.domain)
		})
	}
}

// redirectTo sends every call of the backend's clients to the emulator at target, whatever base URL they were built
// for (as TestGHEComBaseURL does).
func (e *testEnv) redirectTo(target string) {
	to, err := url.Parse(target)
	if err != nil {
		e.t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	e.b.clientOptions = func(o *github.Options) {
		o.WrapTransport = func(next http.RoundTripper) http.RoundTripper {
			return hostRedirect{to: to, next: next, mu: &mu, seen: &seen}
		}
	}
}

// TestBotIdentityLookedUpOncePerApp: the bot user is looked up once, with a token the engine minted, however many
// mints follow and however many arrive at once; mints after it make one GitHub call each.
func TestBotIdentityLookedUpOncePerApp(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	e.role("dotfiles", map[string]any{"installation_id": testUserInstall})
	e.restart() // nothing cached
	e.gh.ResetStats()
	before, err := e.gh.AppRateLimit(testAppID)
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	var withFields atomic.Int64
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.do(logical.ReadOperation, "token/ci", nil)
			if err != nil || resp == nil || resp.IsError() {
				t.Errorf("read: %v %v", resp, err)
				return
			}
			if resp.Data["bot_user_id"] != nil {
				withFields.Add(1)
			}
		}()
	}
	wg.Wait()
	if withFields.Load() != 20 {
		t.Fatalf("%d of 20 concurrent first mints named the bot user, want all", withFields.Load())
	}
	for range 30 {
		e.wantBotIdentity(e.mint("ci"), "users.noreply.127.0.0.1")
		e.wantBotIdentity(e.mint("dotfiles"), "users.noreply.127.0.0.1")
	}
	st := e.gh.Stats()
	if st.Calls[userRoute] != 1 || st.Calls[mintRoute] != 80 || st.TotalCalls != 82 {
		t.Fatalf("80 mints made calls %v; want 1 bot user lookup, 1 owner lookup and 80 mints", st.Calls)
	}
	// The lookup went with an installation token, never the App's JWT: the App's own budget did not pay for it.
	if after, err := e.gh.AppRateLimit(testAppID); err != nil || after.Used-before.Used != 81 {
		t.Errorf("the App's budget went from %+v to %+v (%v); want 81 calls (the owner lookup and the mints)", before, after, err)
	}
}

// failUsers answers GET /users/{username} with 404 while on, as GitHub does for a bot user it hides; it counts the
// lookups that reached it.
type failUsers struct {
	next    http.RoundTripper
	on      atomic.Bool
	lookups atomic.Int64
}

func (f *failUsers) RoundTrip(r *http.Request) (*http.Response, error) {
	if !strings.HasPrefix(r.URL.Path, "/users/") || strings.HasSuffix(r.URL.Path, "/installation") {
		return f.next.RoundTrip(r)
	}
	f.lookups.Add(1)
	if !f.on.Load() {
		return f.next.RoundTrip(r)
	}
	body := `{"message":"Not Found","documentation_url":"https://docs.github.com/rest/users/users#get-a-user","status":"404"}`
	return &http.Response{
		StatusCode: http.StatusNotFound, Status: "404 Not Found", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json; charset=utf-8"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), Request: r,
	}, nil
}

// TestBotIdentityLookupFailureDoesNotFailTheMint: while the bot user cannot be looked up, mints succeed without the
// four fields and with a warning that says why; the lookup is tried again at most once a minute.
func TestBotIdentityLookupFailureDoesNotFailTheMint(t *testing.T) {
	e := newTestEnv(t)
	f := &failUsers{}
	f.on.Store(true)
	e.b.clientOptions = func(o *github.Options) {
		o.WrapTransport = func(next http.RoundTripper) http.RoundTripper { f.next = next; return f }
	}
	now := time.Now()
	var clock atomic.Int64
	e.b.now = func() time.Time { return now.Add(time.Duration(clock.Load())) }
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})

	for i, step := range []time.Duration{0, 30 * time.Second, 29 * time.Second} {
		clock.Add(int64(step))
		resp := e.mint("ci")
		for _, field := range botFields {
			if v, ok := resp.Data[field]; ok {
				t.Errorf("mint %d: %s = %v while the bot user cannot be looked up", i, field, v)
			}
		}
		wantContains(t, strings.Join(resp.Warnings, "\n"), "app_slug, bot_login, bot_user_id and commit_email are left out",
			"vault-test[bot]", "Not Found", "a mint from "+now.Add(time.Minute).UTC().Format(time.RFC3339)+" looks it up again")
	}
	if n := f.lookups.Load(); n != 1 {
		t.Fatalf("%d lookups within a minute of the first failure, want 1", n)
	}
	if n := strings.Count(e.logs.String(), "bot identity is unknown"); n != 1 {
		t.Errorf("%d log lines about the failed lookup, want 1 (one per lookup, not one per mint)", n)
	}

	// A minute after the failure, the next mint tries again; it finds the bot user, and so do the mints after it.
	f.on.Store(false)
	clock.Add(int64(time.Second + time.Millisecond))
	e.wantBotIdentity(e.mint("ci"), "users.noreply.127.0.0.1")
	e.wantBotIdentity(e.mint("ci"), "users.noreply.127.0.0.1")
	if n := f.lookups.Load(); n != 2 {
		t.Fatalf("%d lookups, want 2", n)
	}
	for _, tok := range e.minted {
		for _, out := range e.outputs {
			if strings.Contains(out, tok) {
				t.Fatal("a token appears in a response field or warning")
			}
		}
		if strings.Contains(e.logs.String(), tok) {
			t.Fatal("a token appears in the log")
		}
	}
}

// TestBotIdentityForgottenOnConfigChange: the bot identity belongs to the config's client: a config write forgets
// it, and the next mint looks it up again, with the new config's noreply domain.
func TestBotIdentityForgottenOnConfigChange(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	e.gh.ResetStats()
	e.wantBotIdentity(e.mint("ci"), "users.noreply.127.0.0.1")

	resp, err := e.do(logical.UpdateOperation, "config", map[string]any{"noreply_domain": "noreply.example.com"})
	mustOK(t, resp, err)
	resp, err = e.do(logical.ReadOperation, "config", nil)
	mustOK(t, resp, err)
	if resp.Data["noreply_domain"] != "noreply.example.com" {
		t.Fatalf("config noreply_domain = %v", resp.Data["noreply_domain"])
	}
	e.wantBotIdentity(e.mint("ci"), "noreply.example.com")
	e.wantBotIdentity(e.mint("ci"), "noreply.example.com")
	if n := e.gh.Stats().Calls[userRoute]; n != 2 {
		t.Fatalf("%d bot user lookups, want 2: one per config", n)
	}

	// Set back to GitHub's domain with "".
	resp, err = e.do(logical.UpdateOperation, "config", map[string]any{"noreply_domain": ""})
	mustOK(t, resp, err)
	e.wantBotIdentity(e.mint("ci"), "users.noreply.127.0.0.1")
}

// TestBotIdentitySlugLearnedWithoutVerification: a config saved with verify=false has no app_slug; the engine learns
// it from GET /app, once, with the bot user.
func TestBotIdentitySlugLearnedWithoutVerification(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"verify": false})
	resp, err := e.do(logical.ReadOperation, "config", nil)
	mustOK(t, resp, err)
	if resp.Data["app_slug"] != "" {
		t.Fatalf("app_slug %v stored without verification", resp.Data["app_slug"])
	}
	e.role("ci", map[string]any{"installation_id": testOrgInstall})
	e.gh.ResetStats()
	for range 5 {
		e.wantBotIdentity(e.mint("ci"), "users.noreply.127.0.0.1")
	}
	if st := e.gh.Stats(); st.Calls["GET /app"] != 1 || st.Calls[userRoute] != 1 || st.TotalCalls != 7 {
		t.Fatalf("calls %v: want GET /app and the bot user once, and 5 mints", st.Calls)
	}
}

// TestNoreplyDomainRefused: a noreply_domain that is no DNS name is refused with a message that names the field and
// the value, and nothing is saved.
func TestNoreplyDomainRefused(t *testing.T) {
	e := newTestEnv(t)
	e.configure(map[string]any{"noreply_domain": "noreply.example.com"})
	long := strings.Repeat("a", 64) + ".example.com"
	for _, bad := range []string{"https://noreply.example.com", "noreply.example.com:25", "localhost", "noreply.example.com.",
		"no reply.example.com", "-bad.example.com", "bad-.example.com", "a..example.com", "user@example.com", long} {
		resp, err := e.do(logical.UpdateOperation, "config", map[string]any{"noreply_domain": bad})
		_, msg := mustFail(t, resp, err)
		wantContains(t, msg, quoted("noreply_domain", bad), "not a DNS name", "users.noreply.github.example.com")
	}
	resp, err := e.do(logical.ReadOperation, "config", nil)
	mustOK(t, resp, err)
	if resp.Data["noreply_domain"] != "noreply.example.com" {
		t.Fatalf("noreply_domain after refused writes: %v", resp.Data["noreply_domain"])
	}
}

func TestDefaultNoreplyDomain(t *testing.T) {
	for base, want := range map[string]string{
		"https://api.github.com":               "users.noreply.github.com",
		"https://API.GitHub.com":               "users.noreply.github.com",
		"https://api.octo-corp.ghe.com":        "users.noreply.octo-corp.ghe.com",
		"https://ghes.example.com/api/v3":      "users.noreply.ghes.example.com",
		"https://ghes.example.com:8443/api/v3": "users.noreply.ghes.example.com",
		"https://api.ghes.example.com/api/v3":  "users.noreply.api.ghes.example.com",
		"http://127.0.0.1:8080":                "users.noreply.127.0.0.1",
	} {
		if got := defaultNoreplyDomain(base); got != want {
			t.Errorf("defaultNoreplyDomain(%q) = %q, want %q", base, got, want)
		}
	}
}
