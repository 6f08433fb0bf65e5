// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package ghcontract

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
)

// example returns one of the description's named examples (components.examples) as a JSON object or array, for
// tests to use as a known-good body and to break on purpose.
func example(t *testing.T, edition, name string) any {
	t.Helper()
	doc, err := Load(edition)
	if err != nil {
		t.Fatal(err)
	}
	ref := doc.Components.Examples[name]
	if ref == nil || ref.Value == nil {
		t.Fatalf("%s has no example %q", edition, name)
	}
	// A JSON round trip gives a private deep copy in plain maps and slices.
	raw, err := json.Marshal(ref.Value.Value)
	if err != nil {
		t.Fatal(err)
	}
	var value any
	if err := json.Unmarshal(raw, &value); err != nil {
		t.Fatal(err)
	}
	return value
}

// edit returns a copy of a JSON object with keys set (or removed, for a nil value).
func edit(t *testing.T, value any, changes map[string]any) []byte {
	t.Helper()
	object, ok := value.(map[string]any)
	if !ok {
		t.Fatalf("example is %T, not an object", value)
	}
	out := make(map[string]any, len(object))
	for k, v := range object {
		out[k] = v
	}
	for k, v := range changes {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return mustJSON(t, out)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// jsonNull stands for an explicit JSON null in edit, where nil means "remove the key".
var jsonNull = json.RawMessage("null")

func newValidator(t *testing.T, edition string) *Validator {
	t.Helper()
	v, err := NewValidator(edition)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newRequest(method, target string, body []byte) *http.Request {
	r := httptest.NewRequest(method, target, strings.NewReader(string(body)))
	if len(body) > 0 {
		r.Header.Set("Content-Type", "application/json")
	}
	return r
}

func TestValidateRequest(t *testing.T) {
	const tokens = "/app/installations/42/access_tokens"
	tests := []struct {
		name    string
		method  string
		target  string
		body    string
		header  map[string]string
		wantErr string // "" for valid; otherwise a substring of the error
		noOp    bool   // the error must wrap ErrNoOperation
	}{
		{name: "token request with repositories and permissions", method: "POST", target: tokens,
			body: `{"repositories":["Hello-World"],"repository_ids":[1296269],"permissions":{"contents":"read","issues":"write"}}`},
		{name: "token request without body", method: "POST", target: tokens},
		{name: "token request, GHES path", method: "POST", target: "https://ghes.example.com/api/v3" + tokens,
			body: `{"permissions":{"workflows":"write"}}`},
		{name: "token request, any host", method: "POST", target: "http://127.0.0.1:9/app/installations/7/access_tokens",
			body: `{"repositories":["a"]}`},
		{name: "admin level where documented", method: "POST", target: tokens,
			body: `{"permissions":{"organization_projects":"admin"}}`},
		{name: "bad permission level", method: "POST", target: tokens,
			body: `{"permissions":{"contents":"delete"}}`, wantErr: "contents"},
		{name: "read on a write-only permission", method: "POST", target: tokens,
			body: `{"permissions":{"workflows":"read"}}`, wantErr: "workflows"},
		{name: "repository ids as strings", method: "POST", target: tokens,
			body: `{"repository_ids":["1296269"]}`, wantErr: "repository_ids"},
		{name: "repositories not a list", method: "POST", target: tokens,
			body: `{"repositories":"Hello-World"}`, wantErr: "repositories"},
		{name: "body is not JSON", method: "POST", target: tokens, body: `permissions=contents`, wantErr: "request body"},
		{name: "body without Content-Type", method: "POST", target: tokens, body: `{}`,
			header: map[string]string{"Content-Type": ""}, wantErr: "Content-Type"},
		{name: "installation id not an integer", method: "POST", target: "/app/installations/abc/access_tokens",
			wantErr: "installation_id"},
		{name: "GET /app", method: "GET", target: "/app"},
		{name: "GET /app with a body", method: "GET", target: "/app", body: `{}`, wantErr: "not allowed"},
		{name: "list installations with paging", method: "GET", target: "/app/installations?per_page=100&page=2"},
		{name: "list installations, bad per_page", method: "GET", target: "/app/installations?per_page=many",
			wantErr: "per_page"},
		{name: "owner lookup", method: "GET", target: "/orgs/octo-org/installation"},
		{name: "revoke", method: "DELETE", target: "/installation/token"},
		{name: "unknown path", method: "GET", target: "/app/hooks", wantErr: "no operation", noOp: true},
		{name: "unknown method", method: "PUT", target: "/app", wantErr: "no operation", noOp: true},
		{name: "GHES prefix only", method: "GET", target: "/api/v3", wantErr: "no operation", noOp: true},
		{name: "base URL that lost /v3", method: "GET", target: "/api/app", wantErr: "no operation", noOp: true},
	}
	for _, edition := range Editions() {
		v := newValidator(t, edition)
		for _, tt := range tests {
			t.Run(edition+"/"+tt.name, func(t *testing.T) {
				r := newRequest(tt.method, tt.target, []byte(tt.body))
				for k, val := range tt.header {
					r.Header.Set(k, val)
				}
				err := v.ValidateRequest(r, []byte(tt.body))
				if tt.wantErr == "" {
					if err != nil {
						t.Fatalf("valid request rejected: %v", err)
					}
					return
				}
				if err == nil {
					t.Fatalf("invalid request accepted, want an error mentioning %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not mention %q", err, tt.wantErr)
				}
				if got := errors.Is(err, ErrNoOperation); got != tt.noOp {
					t.Errorf("errors.Is(err, ErrNoOperation) = %v, want %v (err: %v)", got, tt.noOp, err)
				}
				if !tt.noOp {
					var reqErr *openapi3filter.RequestError
					if !errors.As(err, &reqErr) {
						t.Errorf("error %v does not wrap kin-openapi's RequestError", err)
					}
				}
			})
		}
	}
}

func TestValidateRequestLeavesRequestAlone(t *testing.T) {
	v := newValidator(t, EditionGHES)
	body := []byte(`{"repositories":["a"]}`)
	r := newRequest("POST", "/api/v3/app/installations/1/access_tokens", body)
	if err := v.ValidateRequest(r, body); err != nil {
		t.Fatal(err)
	}
	if r.URL.Path != "/api/v3/app/installations/1/access_tokens" {
		t.Errorf("request path changed to %q", r.URL.Path)
	}
	buf := make([]byte, len(body)+1)
	n, _ := r.Body.Read(buf)
	if string(buf[:n]) != string(body) {
		t.Errorf("request body changed to %q", buf[:n])
	}
}

func TestValidateResponse(t *testing.T) {
	const tokens = "/app/installations/42/access_tokens"
	jsonHeader := http.Header{"Content-Type": {"application/json; charset=utf-8"}}

	token := example(t, EditionDotcom, "installation-token")
	app := example(t, EditionDotcom, "integration")
	goodError := `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}`

	tests := []struct {
		name    string
		method  string
		target  string
		status  int
		header  http.Header
		body    []byte
		wantErr string
	}{
		{name: "installation token", method: "POST", target: tokens, status: 201, body: mustJSON(t, token)},
		{name: "installation token, minimal", method: "POST", target: tokens, status: 201,
			body: []byte(`{"token":"ghs_x","expires_at":"2026-07-11T22:14:10Z"}`)},
		{name: "installation token without token", method: "POST", target: tokens, status: 201,
			body: edit(t, token, map[string]any{"token": nil}), wantErr: `"token"`},
		{name: "installation token without expires_at", method: "POST", target: tokens, status: 201,
			body: edit(t, token, map[string]any{"expires_at": nil}), wantErr: `"expires_at"`},
		{name: "installation token, bad repository_selection", method: "POST", target: tokens, status: 201,
			body: edit(t, token, map[string]any{"repository_selection": "some"}), wantErr: "repository_selection"},
		{name: "installation token, bad permission level", method: "POST", target: tokens, status: 201,
			body: edit(t, token, map[string]any{"permissions": map[string]any{"contents": "admin"}}), wantErr: "contents"},
		{name: "installation token, not JSON", method: "POST", target: tokens, status: 201,
			body: []byte(`token=ghs_x`), wantErr: "decode"},
		{name: "installation token, no Content-Type", method: "POST", target: tokens, status: 201,
			header: http.Header{}, body: mustJSON(t, token), wantErr: "Content-Type"},
		{name: "installation token, GHES path", method: "POST", target: "/api/v3" + tokens, status: 201,
			body: mustJSON(t, token)},

		{name: "app", method: "GET", target: "/app", status: 200, body: mustJSON(t, app)},
		{name: "app with null description", method: "GET", target: "/app", status: 200,
			body: edit(t, app, map[string]any{"description": jsonNull})},
		{name: "app without id", method: "GET", target: "/app", status: 200,
			body: edit(t, app, map[string]any{"id": nil}), wantErr: `"id"`},
		{name: "app with string id", method: "GET", target: "/app", status: 200,
			body: edit(t, app, map[string]any{"id": "1"}), wantErr: "id"},
		{name: "app with bad created_at", method: "GET", target: "/app", status: 200,
			body: edit(t, app, map[string]any{"created_at": "yesterday"}), wantErr: "created_at"},
		{name: "app with null name", method: "GET", target: "/app", status: 200,
			body: edit(t, app, map[string]any{"name": jsonNull}), wantErr: "name"},
		{name: "app owner matching neither user nor enterprise", method: "GET", target: "/app", status: 200,
			body: edit(t, app, map[string]any{"owner": map[string]any{"login": "octocat"}}), wantErr: "owner"},

		{name: "revoke", method: "DELETE", target: "/installation/token", status: 204},
		{name: "undocumented 2xx", method: "DELETE", target: "/installation/token", status: 200,
			body: []byte(`{}`), wantErr: "status is not supported"},

		// Documented error statuses use the operation's own schema.
		{name: "documented 404", method: "POST", target: tokens, status: 404,
			body: []byte(`{"message":"Not Found","documentation_url":"https://docs.github.com"}`)},
		{name: "documented 422", method: "POST", target: tokens, status: 422,
			body: []byte(`{"message":"Validation Failed","documentation_url":"https://docs.github.com","errors":[{"code":"invalid"}]}`)},
		{name: "documented 422 without documentation_url", method: "POST", target: tokens, status: 422,
			body: []byte(`{"message":"Validation Failed"}`), wantErr: "documentation_url"},
		{name: "documented 403 with numeric message", method: "POST", target: tokens, status: 403,
			body: []byte(`{"message":403}`), wantErr: "message"},

		// Undocumented error statuses are held to basic-error.
		{name: "undocumented 401", method: "GET", target: "/app", status: 401, body: []byte(goodError)},
		{name: "undocumented 429", method: "POST", target: tokens, status: 429,
			body: []byte(`{"message":"You have exceeded a secondary rate limit.","documentation_url":"https://docs.github.com"}`)},
		{name: "undocumented 500 as JSON", method: "DELETE", target: "/installation/token", status: 500,
			body: []byte(`{"message":"Server Error"}`)},
		{name: "undocumented 502 as HTML", method: "GET", target: "/app", status: 502,
			header: http.Header{"Content-Type": {"text/html"}}, body: []byte(`<html>Unicorn!</html>`)},
		{name: "undocumented 503 without body", method: "GET", target: "/app", status: 503, header: http.Header{}},
		{name: "undocumented 401, status as a number", method: "GET", target: "/app", status: 401,
			body: []byte(`{"message":"Bad credentials","status":401}`), wantErr: "basic-error"},
		{name: "undocumented 401 without message", method: "GET", target: "/app", status: 401,
			body: []byte(`{"error":"bad credentials"}`), wantErr: "message"},
		{name: "undocumented 401 as text", method: "GET", target: "/app", status: 401,
			header: http.Header{"Content-Type": {"text/plain"}}, body: []byte(`Bad credentials`), wantErr: "Content-Type"},
		{name: "undocumented 500 with broken JSON", method: "GET", target: "/app", status: 500,
			body: []byte(`{"message":`), wantErr: "not JSON"},

		{name: "unknown operation", method: "GET", target: "/app/hooks", status: 200, body: []byte(`{}`),
			wantErr: "no operation"},
	}
	v := newValidator(t, EditionDotcom)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := tt.header
			if header == nil {
				header = jsonHeader
			}
			r := newRequest(tt.method, tt.target, nil)
			err := v.ValidateResponse(r, tt.status, header, tt.body)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("valid response rejected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("invalid response accepted, want an error mentioning %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "ghs_") {
				t.Errorf("error %q quotes the response body's token", err)
			}
		})
	}
}

// TestDescriptionExamplesPass checks every example GitHub ships with its responses against its own operation, in
// every edition. It guards against false rejections: formats (date-time, uri), nullable and oneOf as GitHub uses
// them must all be read the way GitHub means them.
func TestDescriptionExamplesPass(t *testing.T) {
	param := regexp.MustCompile(`\{[^}]+\}`)
	for _, edition := range Editions() {
		doc, err := Load(edition)
		if err != nil {
			t.Fatal(err)
		}
		v := newValidator(t, edition)
		checked := 0
		paths := doc.Paths.InMatchingOrder()
		sort.Strings(paths)
		for _, path := range paths {
			for method, op := range doc.Paths.Value(path).Operations() {
				for code, resp := range op.Responses.Map() {
					status, err := strconv.Atoi(code)
					if err != nil {
						t.Fatalf("%s %s: response code %q", method, path, code)
					}
					for mediaType, content := range resp.Value.Content {
						for name, ex := range content.Examples {
							t.Run(strings.Join([]string{edition, method, path, code, name}, " "), func(t *testing.T) {
								target := param.ReplaceAllString(path, "1")
								body := mustJSON(t, ex.Value.Value)
								header := http.Header{"Content-Type": {mediaType}}
								if err := v.ValidateResponse(newRequest(method, target, nil), status, header, body); err != nil {
									t.Errorf("GitHub's own example is rejected: %v", err)
								}
							})
							checked++
						}
					}
				}
			}
		}
		// The extracts carry examples for tokens, installations, the app and the rate limit.
		if checked < 6 {
			t.Errorf("%s: only %d examples checked", edition, checked)
		}
	}
}
