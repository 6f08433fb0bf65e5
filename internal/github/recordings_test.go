// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/realgh"
)

// GitHub's answers as other projects recorded them from real GitHub (../shared/realgh/recordings beside the
// repository). Every recording of an endpoint the client calls is served as recorded and read through the client's
// public methods; what the client returns is compared with what the recording's own JSON says.

// skippedRecordings are the recordings that no client call reads, each with the reason. A recording that is neither
// exercised nor listed here fails TestRecordedAnswers, so that a new one is not silently ignored.
var skippedRecordings = map[string]string{
	"pygithub-repo-installation-200.json": "GET /repos/{owner}/{repo}/installation: the client never calls it " +
		"(installations are found by account); the emulator's answer is compared with it in internal/testing/fakegithub",
}

// recording is one recorded exchange.
type recording = realgh.Recording

// The routes of the client's calls, as GitHub documents them.
const (
	routeApp           = "GET /app"
	routeInstallations = "GET /app/installations"
	routeInstallation  = "GET /app/installations/{installation_id}"
	routeOrgInst       = "GET /orgs/{org}/installation"
	routeUserInst      = "GET /users/{username}/installation"
	routeMint          = "POST /app/installations/{installation_id}/access_tokens"
	routeRevoke        = "DELETE /installation/token"
	routeTokenRepos    = "GET /installation/repositories"
)

var clientRoutes = []string{routeApp, routeInstallations, routeInstallation, routeOrgInst, routeUserInst, routeMint,
	routeRevoke, routeTokenRepos}

// routeOf matches a recording to one of the client's routes and returns the route's parameters.
func routeOf(r *recording) (string, []string) {
	parts := strings.Split(strings.TrimPrefix(r.Path, "/"), "/")
	for _, route := range clientRoutes {
		method, pattern, _ := strings.Cut(route, " ")
		pp := strings.Split(strings.TrimPrefix(pattern, "/"), "/")
		if method != r.Method || len(pp) != len(parts) {
			continue
		}
		var params []string
		ok := true
		for i, p := range pp {
			switch {
			case strings.HasPrefix(p, "{"):
				params = append(params, parts[i])
			case p != parts[i]:
				ok = false
			}
		}
		if ok {
			return route, params
		}
	}
	return "", nil
}

// replayCase is one client call against the recordings it reads.
type replayCase struct {
	name  string
	serve []*recording
	run   func(t *testing.T, c *github.Client)
}

// replayCases turns the recordings into client calls. Recordings that no case serves are left out; the coverage
// check reports them.
func replayCases(t *testing.T, recs []*recording) []replayCase {
	var cases []replayCase
	listings := map[string][]*recording{} // pages of one listing, by the recording they come from
	users := map[string]*recording{}      // GET /users/{username}/installation, by lowercase login
	for _, r := range recs {
		if route, params := routeOf(r); route == routeUserInst {
			users[strings.ToLower(params[0])] = r
		}
	}
	for _, r := range recs {
		route, params := routeOf(r)
		switch route {
		case routeApp:
			cases = append(cases, replayCase{r.File, []*recording{r}, func(t *testing.T, c *github.Client) {
				app, err := c.App(t.Context())
				checkAnswer(t, r, err, func() { checkApp(t, r, app) })
			}})
		case routeInstallations:
			key := r.Source.Repo + "/" + r.Source.Path
			listings[key] = append(listings[key], r)
		case routeInstallation:
			id := mustID(t, r, params[0])
			cases = append(cases, replayCase{r.File, []*recording{r}, func(t *testing.T, c *github.Client) {
				in, err := c.Installation(t.Context(), id)
				checkAnswer(t, r, err, func() { checkInstallation(t, r, r.JSON(t), in) })
			}})
		case routeOrgInst:
			cases = append(cases, orgInstallationCase(r, params[0], users))
		case routeMint:
			id := mustID(t, r, params[0])
			cases = append(cases, replayCase{r.File, []*recording{r}, func(t *testing.T, c *github.Client) {
				tok, err := c.CreateToken(t.Context(), id, github.TokenRequest{})
				checkAnswer(t, r, err, func() { checkToken(t, r, tok) })
			}})
		case routeRevoke:
			cases = append(cases, replayCase{r.File, []*recording{r}, func(t *testing.T, c *github.Client) {
				err := c.RevokeToken(t.Context(), "ghs_"+strings.Repeat("R", 36))
				// A token GitHub no longer accepts (401) counts as revoked: both answers end the lease.
				if r.Status != http.StatusNoContent && r.Status != http.StatusUnauthorized {
					checkAnswer(t, r, err, func() {})
				} else if err != nil {
					t.Errorf("RevokeToken on a recorded %d: %v, want nil", r.Status, err)
				}
			}})
		case routeTokenRepos:
			cases = append(cases, replayCase{r.File, []*recording{r}, func(t *testing.T, c *github.Client) {
				repos, err := c.TokenRepositories(t.Context(), "ghs_"+strings.Repeat("L", 36))
				checkAnswer(t, r, err, func() {
					checkRepositories(t, r, field(r.JSON(t), "repositories"), repos)
				})
			}})
		}
	}
	for _, pages := range listings {
		cases = append(cases, installationsCase(pages))
	}
	return cases
}

// orgInstallationCase looks an installation up by account. When the /orgs/ answer is a 404, the client asks /users/
// next: the recording of that answer for the same login is served with it.
func orgInstallationCase(r *recording, login string, users map[string]*recording) replayCase {
	serve := []*recording{r}
	final := r
	if r.Status == http.StatusNotFound {
		if u := users[strings.ToLower(login)]; u != nil {
			serve, final = append(serve, u), u
		}
	}
	return replayCase{r.File, serve, func(t *testing.T, c *github.Client) {
		if final == r && r.Status == http.StatusNotFound {
			t.Fatalf("%s: a 404 from /orgs/ makes the client ask /users/%s/installation, of which no answer "+
				"was recorded", r.File, login)
		}
		in, err := c.FindInstallation(t.Context(), login)
		checkAnswer(t, final, err, func() { checkInstallation(t, final, final.JSON(t), in) })
	}}
}

// installationsCase lists the App's installations over every recorded page of one listing. GitHub may list an
// installation on two pages (the list moved between requests): the client returns it once.
func installationsCase(pages []*recording) replayCase {
	sort.Slice(pages, func(i, j int) bool { return pages[i].Query["page"] < pages[j].Query["page"] })
	return replayCase{pages[0].File, pages, func(t *testing.T, c *github.Client) {
		list, complete, err := c.Installations(t.Context())
		for _, p := range pages {
			if p.Status >= 300 {
				checkAnswer(t, p, err, func() {})
				return
			}
		}
		if err != nil || !complete {
			t.Fatalf("Installations: complete %v, error %v", complete, err)
		}
		var want []any
		from := map[int64]*recording{}
		for _, p := range pages {
			items, ok := p.JSON(t).([]any)
			if !ok {
				t.Fatalf("%s: body is not a list", p.File)
			}
			for _, item := range items {
				id := num(field(item, "id"))
				if _, dup := from[id]; !dup {
					from[id] = p
					want = append(want, item)
				}
			}
		}
		if len(list) != len(want) {
			var ids []int64
			for _, in := range list {
				ids = append(ids, in.ID)
			}
			t.Fatalf("Installations returned %d installations %v, want %d (each installation once)",
				len(list), ids, len(want))
		}
		for i, item := range want {
			checkInstallation(t, from[num(field(item, "id"))], item, &list[i])
		}
	}}
}

func mustID(t *testing.T, r *recording, s string) int64 {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%s: installation ID %q in the path: %v", r.File, s, err)
	}
	return id
}

// TestRecordedAnswers serves each of GitHub's recorded answers to the client's real call and checks that the client
// returns what the answer says, and that every recording is exercised or knowingly skipped.
func TestRecordedAnswers(t *testing.T) {
	t.Parallel()
	recs := realgh.Load(t)
	cases := replayCases(t, recs)

	exercised := map[string]bool{}
	for _, tc := range cases {
		for _, r := range tc.serve {
			exercised[r.File] = true
		}
	}
	for _, r := range recs {
		_, skipped := skippedRecordings[r.File]
		switch {
		case exercised[r.File] && skipped:
			t.Errorf("%s is exercised and also listed in skippedRecordings: remove it from the list", r.File)
		case !exercised[r.File] && !skipped:
			t.Errorf("%s (%s %s) is neither exercised nor listed in skippedRecordings with a reason",
				r.File, r.Method, r.Path)
		}
	}
	for file := range skippedRecordings {
		if !slices.ContainsFunc(recs, func(r *recording) bool { return r.File == file }) {
			t.Errorf("skippedRecordings lists %s, which is not among the recordings", file)
		}
	}

	for _, tc := range cases {
		t.Run(strings.TrimSuffix(tc.name, ".json"), func(t *testing.T) {
			t.Parallel()
			c := replayClient(t, tc.serve)
			tc.run(t, c)
		})
	}
}

// replayClient is a client of a server that answers each request with the recording of its method and path (and
// page, for recordings of one page of a listing).
func replayClient(t *testing.T, serve []*recording) *github.Client {
	t.Helper()
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		for _, rec := range serve {
			if rec.Method != r.Method || rec.Path != r.URL.Path {
				continue
			}
			if p, ok := rec.Query["page"]; ok && p != r.URL.Query().Get("page") {
				continue
			}
			replay(w, rec)
			return
		}
		t.Errorf("unexpected request %s %s", r.Method, r.URL.RequestURI())
		http.Error(w, `{"message":"no recording"}`, http.StatusTeapot)
	}))
	t.Cleanup(srv.Close)
	c, err := github.NewClient(github.Options{
		BaseURL: srv.URL, AppID: testAppID, PrivateKey: github.SharedKey(t), UserAgent: testUserAgent,
		// One answer per call: the recording is checked as GitHub gave it, not after a retry.
		MaxRetries: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// framingHeaders are not resent: the server writes its own, and some recorders stored wrong ones.
var framingHeaders = []string{"Content-Length", "Content-Encoding", "Transfer-Encoding", "Connection", "Status"}

// replay writes a recorded answer. Date is now, and X-RateLimit-Reset moves by as much, so that a rate limit keeps
// the wait it had when it was recorded.
func replay(w http.ResponseWriter, rec *recording) {
	h := rec.Header()
	for _, k := range framingHeaders {
		h.Del(k)
	}
	now := time.Now().UTC().Truncate(time.Second)
	if was, err := http.ParseTime(h.Get("Date")); err == nil {
		if reset, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			h.Set("X-RateLimit-Reset", strconv.FormatInt(reset+now.Unix()-was.Unix(), 10))
		}
	}
	h.Set("Date", now.Format(http.TimeFormat))
	maps.Copy(w.Header(), h)
	w.WriteHeader(rec.Status)
	_, _ = w.Write([]byte(rec.Body))
}

// checkAnswer checks a call's error against the recorded status: none for a 2xx (then ok runs), else GitHub's status,
// message, request ID and the kind of failure the answer means.
func checkAnswer(t *testing.T, r *recording, err error, ok func()) {
	t.Helper()
	if r.Status < 300 {
		if err != nil {
			t.Fatalf("%s: recorded %d, the client failed: %v", r.File, r.Status, err)
		}
		ok()
		return
	}
	var ge *github.Error
	if !errors.As(err, &ge) {
		t.Fatalf("%s: recorded %d, the client returned %v, want a *github.Error", r.File, r.Status, err)
	}
	h := r.Header()
	msg, _ := field(r.JSON(t), "message").(string)
	if ge.StatusCode != r.Status || ge.Message != msg {
		t.Errorf("%s: error status %d message %q, want %d %q", r.File, ge.StatusCode, ge.Message, r.Status, msg)
	}
	if id := h.Get("X-GitHub-Request-Id"); ge.RequestID != id || (id != "" && !strings.Contains(err.Error(), id)) {
		t.Errorf("%s: error %q has request ID %q, want %q", r.File, err, ge.RequestID, id)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("%s: error %q does not quote GitHub's message %q", r.File, err, msg)
	}
	kind, limit, wait := meaning(r.Status, msg, h)
	if ge.Kind != kind || ge.Limit != limit || ge.RetryAfter != wait {
		t.Errorf("%s: error kind %q limit %q retry after %s, want %q %q %s", r.File, ge.Kind, ge.Limit,
			ge.RetryAfter, kind, limit, wait)
	}
}

// meaning is what a GitHub error answer tells a client, as GitHub documents it: a 429, or a 403 with the quota spent
// or a Retry-After, is a rate limit (primary when the quota is spent) whose end Retry-After or X-RateLimit-Reset
// gives; a 401, or a 404 naming no App, refuses the credentials; and so on.
func meaning(status int, msg string, h http.Header) (kind github.Kind, limit string, wait time.Duration) {
	spent := h.Get("X-RateLimit-Remaining") == "0"
	if status == http.StatusTooManyRequests || (status == http.StatusForbidden && (spent || h.Get("Retry-After") != "" ||
		strings.Contains(strings.ToLower(msg), "rate limit"))) {
		limit = "secondary"
		if spent {
			limit = "primary"
		}
		if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil {
			wait = time.Duration(s) * time.Second
		} else if reset, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			if date, err := http.ParseTime(h.Get("Date")); err == nil && reset > date.Unix() {
				wait = time.Duration(reset-date.Unix()) * time.Second
			}
		}
		return github.KindRateLimited, limit, wait
	}
	switch {
	case status == http.StatusUnauthorized, status == http.StatusNotFound && msg == "Integration not found":
		return github.KindBadCredentials, "", 0
	case status == http.StatusNotFound:
		return github.KindNotFound, "", 0
	case status == http.StatusForbidden && strings.Contains(msg, "suspended"):
		return github.KindSuspended, "", 0
	case status == http.StatusForbidden:
		return github.KindForbidden, "", 0
	case status == http.StatusUnprocessableEntity:
		return github.KindValidation, "", 0
	case status >= 500:
		return github.KindUnavailable, "", 0
	}
	return github.KindOther, "", 0
}

// field returns obj[name] for a JSON object, else nil.
func field(obj any, name string) any {
	m, _ := obj.(map[string]any)
	return m[name]
}

// str returns a JSON string, or "" for anything else (absent, null).
func str(v any) string {
	s, _ := v.(string)
	return s
}

// num returns a JSON integer, or 0 for anything else.
func num(v any) int64 {
	n, _ := v.(json.Number)
	i, _ := n.Int64()
	return i
}

// stringMap returns a JSON object of strings (permissions), nil when absent or null.
func stringMap(t *testing.T, r *recording, v any) map[string]string {
	if v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: %v is not an object", r.File, v)
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		out[k] = str(x)
	}
	return out
}

// timeOf parses a JSON timestamp; a null or absent one is nil.
func timeOf(t *testing.T, r *recording, v any) *time.Time {
	if v == nil {
		return nil
	}
	ts, err := time.Parse(time.RFC3339, str(v))
	if err != nil {
		t.Fatalf("%s: timestamp %v: %v", r.File, v, err)
	}
	return &ts
}

// sameMap compares permissions; an absent map and an empty one are both "none stated", but only a nil map may stand
// for an absent one.
func sameMap(got, want map[string]string) bool {
	return maps.Equal(got, want) && (want != nil || got == nil)
}

func checkAccount(t *testing.T, r *recording, what string, obj any, got github.Account) {
	t.Helper()
	want := github.Account{ID: num(field(obj, "id")), Login: str(field(obj, "login")), Type: str(field(obj, "type"))}
	if got != want {
		t.Errorf("%s: %s = %+v, want %+v", r.File, what, got, want)
	}
}

func checkApp(t *testing.T, r *recording, app *github.App) {
	t.Helper()
	body := r.JSON(t)
	want := github.App{ID: num(field(body, "id")), Slug: str(field(body, "slug")), Name: str(field(body, "name")),
		ClientID: str(field(body, "client_id"))}
	got := *app
	got.Owner = github.Account{}
	if got != want {
		t.Errorf("%s: App = %+v, want %+v", r.File, got, want)
	}
	checkAccount(t, r, "owner", field(body, "owner"), app.Owner)
}

func checkInstallation(t *testing.T, r *recording, obj any, in *github.Installation) {
	t.Helper()
	if id := num(field(obj, "id")); in.ID != id || id == 0 {
		t.Errorf("%s: installation ID %d, want %d", r.File, in.ID, id)
	}
	if id := num(field(obj, "app_id")); in.AppID != id {
		t.Errorf("%s: installation %d: app ID %d, want %d", r.File, in.ID, in.AppID, id)
	}
	checkAccount(t, r, fmt.Sprintf("installation %d account", in.ID), field(obj, "account"), in.Account)
	if sel := str(field(obj, "repository_selection")); in.RepositorySelection != sel {
		t.Errorf("%s: installation %d: repository_selection %q, want %q", r.File, in.ID, in.RepositorySelection, sel)
	}
	if perms := stringMap(t, r, field(obj, "permissions")); !sameMap(in.Permissions, perms) {
		t.Errorf("%s: installation %d: permissions %v, want %v", r.File, in.ID, in.Permissions, perms)
	}
	want := timeOf(t, r, field(obj, "suspended_at"))
	if in.Suspended() != (want != nil) || (want != nil && !in.SuspendedAt.Equal(*want)) {
		t.Errorf("%s: installation %d: suspended %v at %v, want suspended_at %v", r.File, in.ID, in.Suspended(),
			in.SuspendedAt, want)
	}
}

func checkToken(t *testing.T, r *recording, tok *github.Token) {
	t.Helper()
	body := r.JSON(t)
	if want := str(field(body, "token")); tok.Token != want || want == "" {
		t.Errorf("%s: the token differs from the recorded one", r.File)
	}
	if want := timeOf(t, r, field(body, "expires_at")); want == nil || !tok.ExpiresAt.Equal(*want) {
		t.Errorf("%s: expires_at %v, want %v", r.File, tok.ExpiresAt, want)
	}
	if perms := stringMap(t, r, field(body, "permissions")); !sameMap(tok.Permissions, perms) {
		t.Errorf("%s: permissions %v, want %v", r.File, tok.Permissions, perms)
	}
	if sel := str(field(body, "repository_selection")); tok.RepositorySelection != sel {
		t.Errorf("%s: repository_selection %q, want %q", r.File, tok.RepositorySelection, sel)
	}
	checkRepositories(t, r, field(body, "repositories"), tok.Repositories)
	// The formatted token never shows its value.
	if s := fmt.Sprint(tok) + fmt.Sprintf("%v %+v %#v", *tok, *tok, *tok); strings.Contains(s, tok.Token) {
		t.Errorf("%s: formatting a Token shows its value", r.File)
	}
}

func checkRepositories(t *testing.T, r *recording, list any, got []github.Repository) {
	t.Helper()
	items, _ := list.([]any)
	if len(got) != len(items) {
		t.Fatalf("%s: %d repositories, want %d", r.File, len(got), len(items))
	}
	for i, item := range items {
		want := github.Repository{ID: num(field(item, "id")), Name: str(field(item, "name")),
			FullName: str(field(item, "full_name"))}
		g := got[i]
		g.Owner = github.Account{}
		if g != want {
			t.Errorf("%s: repository %d = %+v, want %+v", r.File, i, g, want)
		}
		checkAccount(t, r, fmt.Sprintf("repository %d owner", i), field(item, "owner"), got[i].Owner)
	}
}

// TestInstallationsListedOnce: GitHub reads each page of a listing afresh, so an installation that moved while the
// client paged (another one was added before it) comes on two pages. The client lists it once, in its first place,
// and still reads every page.
func TestInstallationsListedOnce(t *testing.T) {
	t.Parallel()
	pages := map[string]string{
		"1": `[{"id": 11, "account": {"login": "a"}}, {"id": 12, "account": {"login": "b"}}]`,
		"2": `[{"id": 12, "account": {"login": "b"}}, {"id": 13, "account": {"login": "c"}}]`,
		"3": `[{"id": 13, "account": {"login": "c"}}]`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page := r.URL.Query().Get("page")
		if page != "3" {
			w.Header().Set("Link", fmt.Sprintf(`<http://%s/app/installations?page=9>; rel="next"`, r.Host))
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, pages[page])
	}))
	t.Cleanup(srv.Close)
	c, err := github.NewClient(github.Options{BaseURL: srv.URL, AppID: testAppID, PrivateKey: github.SharedKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	list, complete, err := c.Installations(t.Context())
	if err != nil || !complete {
		t.Fatalf("Installations: complete %v, %v", complete, err)
	}
	var got []string
	for _, in := range list {
		got = append(got, fmt.Sprintf("%d:%s", in.ID, in.Account.Login))
	}
	if want := []string{"11:a", "12:b", "13:c"}; !slices.Equal(got, want) {
		t.Fatalf("Installations = %v, want %v", got, want)
	}
}
