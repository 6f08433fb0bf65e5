// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/realgh"
)

// The emulator's answers hold the fields of GitHub's real answers: those that other projects recorded from real GitHub
// (../shared/realgh/recordings beside the repository), under the same names, with the same JSON types, all the way
// down. The emulator may say more than a recording (GitHub added fields over the years); it may not say less, except
// where missingFromEmulator says why.

// missingFromEmulator lists the fields that recordings carry and the emulator leaves out on purpose, as "ROUTE PATH"
// (PATH in the form .field, .list[].field, [].field for an element of a top-level list), each with the reason.
var missingFromEmulator = map[string]string{
	"GET /app/installations/{installation_id} .integration_id": "GitHub's name for app_id until 2017, in octokit.rb's " +
		"recording of that time; GitHub sends app_id (which the emulator has) instead",
}

// mapFields are objects whose keys are data, not field names (permission names): their values are compared, each
// against the emulator's, and not their keys.
var mapFields = []string{".permissions", "[].permissions"}

// recordedAnswer is a recording as the files hold it.
type recordedAnswer = realgh.Recording

// emulatorAnswer is one answer of the emulator to compare recordings with.
type emulatorAnswer struct {
	what string
	resp *response
}

// answerKey groups answers that recordings are compared with: successes by route, status and whether the token was
// asked for named repositories (GitHub lists them only then); failures by status alone, since GitHub's error shape is
// the same on every route.
func answerKey(route string, status int, body []byte) string {
	if status >= 300 {
		return fmt.Sprintf("error %d", status)
	}
	key := fmt.Sprintf("%s %d", route, status)
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) == nil && obj["repositories"] != nil && strings.HasSuffix(route, "/access_tokens") {
		key += " with repositories"
	}
	return key
}

// emulatorAnswers asks the emulator what the recordings show GitHub answering: every endpoint, with a suspended
// installation among the others so that suspended_by and suspended_at have their full shape, and each failure.
func emulatorAnswers(t *testing.T) map[string][]emulatorAnswer {
	t.Helper()
	out := map[string][]emulatorAnswer{}
	routes := newRoutes()
	add := func(what string, resp *response) {
		rt, _ := match(routes, strings.Fields(what)[0], strings.Fields(what)[1])
		route := "?"
		if rt != nil {
			route = rt.key()
		}
		key := answerKey(route, resp.status, resp.body)
		out[key] = append(out[key], emulatorAnswer{what, resp})
	}
	do := func(e *testEnv, method, path, auth string, body any) *response {
		resp := e.do(method, path, auth, body)
		add(method+" "+path, resp)
		return resp
	}

	e := newEnv(t)
	if err := e.srv.SetSuspended(octocatID, true); err != nil {
		t.Fatal(err)
	}
	do(e, "GET", "/app", e.bearer(), nil)
	do(e, "GET", "/app/installations", e.bearer(), nil)
	do(e, "GET", "/app/installations/2001", e.bearer(), nil)
	do(e, "GET", "/app/installations/2002", e.bearer(), nil)
	do(e, "GET", "/orgs/acme/installation", e.bearer(), nil)
	do(e, "GET", "/users/octocat/installation", e.bearer(), nil)
	do(e, "GET", "/repos/acme/api/installation", e.bearer(), nil)
	do(e, "GET", "/repos/octocat/dotfiles/installation", e.bearer(), nil)
	mint := "/app/installations/2001/access_tokens"
	do(e, "POST", mint, e.bearer(), nil)
	do(e, "POST", mint, e.bearer(), map[string]any{"repositories": []string{"api", "web"},
		"permissions": map[string]string{"contents": "read", "metadata": "read"}})
	do(e, "POST", mint, e.bearer(), map[string]any{"repository_ids": []int64{3001}})
	tok := e.mint(acmeID, nil)
	do(e, "GET", "/installation/repositories", "token "+tok.Token, nil)
	do(e, "DELETE", "/installation/token", "token "+tok.Token, nil)

	do(e, "POST", mint, e.bearer(), "{not json")
	do(e, "GET", "/app", "Bearer not-a-jwt", nil)
	do(e, "DELETE", "/installation/token", "token "+tok.Token, nil)
	do(e, "POST", "/app/installations/2002/access_tokens", e.bearer(), nil)
	do(e, "GET", "/app/installations/9999", e.bearer(), nil)
	do(e, "GET", "/orgs/nobody/installation", e.bearer(), nil)
	do(e, "POST", mint, e.bearer(), map[string]any{"repositories": []string{"nope"}})
	do(e, "POST", mint, e.bearer(), map[string]any{"permissions": map[string]string{"administration": "write"}})

	for _, f := range []Faults{
		{PrimaryRateLimit: true, RateLimitCalls: 1},
		{SecondaryRateLimit: http.StatusForbidden, RateLimitCalls: 1},
		{SecondaryRateLimit: http.StatusTooManyRequests, RateLimitCalls: 1},
	} {
		e := newEnv(t)
		e.srv.SetFaults(f)
		do(e, "POST", mint, e.bearer(), nil)
	}
	return out
}

// TestEmulatorAnswersHaveRecordedShapes compares every recorded answer with the emulator's answers of the same kind.
func TestEmulatorAnswersHaveRecordedShapes(t *testing.T) {
	recs := realgh.Load(t)
	answers := emulatorAnswers(t)
	routes := newRoutes()
	missing := map[string][]string{} // "ROUTE PATH" -> recordings that carry it

	for _, r := range recs {
		rt, _ := match(routes, r.Method, r.Path)
		if rt == nil {
			t.Errorf("%s: the emulator has no route for %s %s", r.File, r.Method, r.Path)
			continue
		}
		key := answerKey(rt.key(), r.Status, []byte(r.Body))
		emu := answers[key]
		if len(emu) == 0 {
			t.Errorf("%s: no answer of the emulator to compare with (%s); make emulatorAnswers ask for one", r.File, key)
			continue
		}
		var rec any
		if r.Body != "" {
			if err := json.Unmarshal([]byte(r.Body), &rec); err != nil {
				t.Errorf("%s: body is not JSON: %v", r.File, err)
				continue
			}
		}
		for _, a := range emu {
			if r.Header().Get("X-GitHub-Request-Id") != "" && a.resp.header.Get("X-GitHub-Request-Id") == "" {
				t.Errorf("%s: the emulator's %s answer has no X-GitHub-Request-Id", r.File, a.what)
			}
			if r.Body == "" {
				if len(a.resp.body) != 0 {
					t.Errorf("%s: GitHub answered %d with no body, the emulator's %s answer has %q", r.File,
						r.Status, a.what, a.resp.body)
				}
				continue
			}
			var got any
			if err := json.Unmarshal(a.resp.body, &got); err != nil {
				t.Errorf("%s: the emulator's %s answer is not JSON: %v", r.File, a.what, err)
				continue
			}
			compareShape("", rec, got, func(path, problem string) {
				if problem == "" {
					k := rt.key() + " " + path
					if !slices.Contains(missing[k], r.File) {
						missing[k] = append(missing[k], r.File)
					}
					return
				}
				t.Errorf("%s: %s: %s (the emulator's %s answer)", r.File, path, problem, a.what)
			})
		}
	}

	var keys []string
	for k := range missing {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := missingFromEmulator[k]; !ok {
			t.Errorf("the emulator lacks %s, which %s carry", k, strings.Join(missing[k], ", "))
		}
	}
	for k := range missingFromEmulator {
		if _, ok := missing[k]; !ok {
			t.Errorf("missingFromEmulator lists %s, which the emulator has or no recording carries: remove it", k)
		}
	}
}

// jsonType names a decoded JSON value's type.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// compareShape reports where got (the emulator's) lacks a field of want (GitHub's), with problem "", or has another
// JSON type. A null on either side goes with any type: GitHub sends null for what is not set.
func compareShape(path string, want, got any, report func(path, problem string)) {
	if want == nil || got == nil {
		return
	}
	if wt, gt := jsonType(want), jsonType(got); wt != gt {
		report(path, fmt.Sprintf("GitHub sends %s, the emulator %s", wt, gt))
		return
	}
	switch w := want.(type) {
	case map[string]any:
		g := got.(map[string]any)
		if slices.Contains(mapFields, path) {
			for _, wv := range w {
				for _, gv := range g {
					compareShape(path+"{}", wv, gv, report)
				}
			}
			return
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				report(path+"."+k, "")
				continue
			}
			compareShape(path+"."+k, wv, gv, report)
		}
	case []any:
		for _, wv := range w {
			for _, gv := range got.([]any) {
				compareShape(path+"[]", wv, gv, report)
			}
		}
	}
}

// TestCompareShapeCanFail makes sure the shape check notices a missing field, a changed type and a nested difference,
// and lets nulls and extra fields pass.
func TestCompareShapeCanFail(t *testing.T) {
	recorded := `{"id": 1, "account": {"login": "a", "type": "User"}, "permissions": {"contents": "read"},
		"repositories": [{"id": 2, "owner": {"login": "a"}}], "suspended_at": "2024-01-01T00:00:00Z"}`
	for _, tt := range []struct {
		emulator string
		want     []string
	}{
		{`{"id": 1, "account": {"login": "a", "type": "User"}, "permissions": {"issues": "write"},
			"repositories": [{"id": 3, "owner": {"login": "b", "x": 1}}], "suspended_at": null, "extra": true}`, nil},
		{`{"id": "1", "account": {"login": "a"}, "permissions": {"contents": 1},
			"repositories": [{"id": 3, "owner": {}}], "suspended_at": 5}`,
			[]string{".id: GitHub sends number, the emulator string", ".account.type missing",
				".permissions{}: GitHub sends string, the emulator number", ".repositories[].owner.login missing",
				".suspended_at: GitHub sends string, the emulator number"}},
	} {
		var want, got any
		if err := json.Unmarshal([]byte(recorded), &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(tt.emulator), &got); err != nil {
			t.Fatal(err)
		}
		var seen []string
		compareShape("", want, got, func(path, problem string) {
			if problem == "" {
				problem = "missing"
				seen = append(seen, path+" "+problem)
				return
			}
			seen = append(seen, path+": "+problem)
		})
		sort.Strings(seen)
		sort.Strings(tt.want)
		if !slices.Equal(seen, tt.want) {
			t.Errorf("compareShape reported %q, want %q", seen, tt.want)
		}
	}
}
