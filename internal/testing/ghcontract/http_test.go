// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package ghcontract

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// reply answers with a fixed status and body, as JSON unless contentType says otherwise ("-" sets none).
func reply(status int, contentType string, body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch contentType {
		case "":
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
		case "-":
		default:
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}
}

type exchangeCase struct {
	name         string
	method, path string
	body         string
	handler      http.Handler
	wantViolated []string // substrings of the only violation; nil for none
	wantRequests int
	wantReplies  int
}

// exchangeCases are shared by the Middleware and RoundTripper tests: both see the same traffic, from either side.
func exchangeCases(t *testing.T) []exchangeCase {
	app := example(t, EditionDotcom, "integration")
	token := example(t, EditionDotcom, "installation-token")
	goodApp := mustJSON(t, app)
	goodToken := mustJSON(t, token)
	return []exchangeCase{
		{name: "good app", method: "GET", path: "/app",
			handler: reply(200, "", goodApp), wantRequests: 1, wantReplies: 1},
		{name: "app without id", method: "GET", path: "/app",
			handler:      reply(200, "", edit(t, app, map[string]any{"id": nil})),
			wantViolated: []string{"GET /app -> 200: ", "response body", `"id"`}, wantRequests: 1, wantReplies: 1},
		{name: "GHES path", method: "GET", path: "/api/v3/app",
			handler: reply(200, "", goodApp), wantRequests: 1, wantReplies: 1},
		{name: "GHES path, bad body", method: "GET", path: "/api/v3/app",
			handler:      reply(200, "", []byte(`{"id":1}`)),
			wantViolated: []string{"GET /api/v3/app -> 200: ", "response body"}, wantRequests: 1, wantReplies: 1},
		{name: "emulator control endpoint", method: "POST", path: "/_fake/x", body: "not json",
			handler: reply(200, "text/plain", []byte("ok"))},
		{name: "emulator control endpoint, GHES form", method: "GET", path: "/api/v3/_fake/state",
			handler: reply(418, "-", []byte("anything"))},
		{name: "good token", method: "POST", path: "/app/installations/42/access_tokens",
			body:    `{"repositories":["Hello-World"],"permissions":{"contents":"read"}}`,
			handler: reply(201, "", goodToken), wantRequests: 1, wantReplies: 1},
		{name: "token request with a bad level", method: "POST", path: "/app/installations/42/access_tokens",
			body:         `{"permissions":{"contents":"delete"}}`,
			handler:      reply(201, "", goodToken),
			wantViolated: []string{"POST /app/installations/42/access_tokens -> 201: request", "contents"},
			wantRequests: 1, wantReplies: 1},
		{name: "token without expires_at", method: "POST", path: "/app/installations/42/access_tokens",
			handler:      reply(201, "", edit(t, token, map[string]any{"expires_at": nil})),
			wantViolated: []string{"-> 201: ", `"expires_at"`}, wantRequests: 1, wantReplies: 1},
		{name: "JSON without Content-Type", method: "GET", path: "/app",
			handler:      reply(200, "-", goodApp),
			wantViolated: []string{"-> 200: ", "Content-Type"}, wantRequests: 1, wantReplies: 1},
		{name: "revoke", method: "DELETE", path: "/installation/token",
			handler: reply(204, "-", nil), wantRequests: 1, wantReplies: 1},
		{name: "undocumented 401 as basic-error", method: "DELETE", path: "/installation/token",
			handler:      reply(401, "", []byte(`{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}`)),
			wantRequests: 1, wantReplies: 1},
		{name: "undocumented 401 without message", method: "DELETE", path: "/installation/token",
			handler:      reply(401, "", []byte(`{}`)),
			wantViolated: []string{"DELETE /installation/token -> 401: ", "message"}, wantRequests: 1, wantReplies: 1},
		{name: "handler that writes nothing", method: "GET", path: "/app",
			handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
			// 200 without a body: the Content-Type kin-openapi looks for is missing.
			wantViolated: []string{"GET /app -> 200: "}, wantRequests: 1, wantReplies: 1},
	}
}

func checkOutcome(t *testing.T, v *Validator, tc exchangeCase) {
	t.Helper()
	violations := v.Violations()
	if tc.wantViolated == nil && len(violations) != 0 {
		t.Errorf("unexpected violations:\n%s", strings.Join(violations, "\n"))
	}
	if tc.wantViolated != nil {
		if len(violations) != 1 {
			t.Fatalf("got %d violations, want 1:\n%s", len(violations), strings.Join(violations, "\n"))
		}
		for _, want := range tc.wantViolated {
			if !strings.Contains(violations[0], want) {
				t.Errorf("violation %q does not contain %q", violations[0], want)
			}
		}
	}
	if requests, replies := v.Checked(); requests != tc.wantRequests || replies != tc.wantReplies {
		t.Errorf("Checked() = %d, %d; want %d, %d", requests, replies, tc.wantRequests, tc.wantReplies)
	}
}

func TestMiddleware(t *testing.T) {
	cases := append(exchangeCases(t),
		exchangeCase{name: "unknown route answered 404", method: "GET", path: "/app/hooks",
			handler: reply(404, "", []byte(`{"message":"Not Found"}`))},
		exchangeCase{name: "unknown route answered 200", method: "GET", path: "/app/hooks",
			handler:      reply(200, "", []byte(`[]`)),
			wantViolated: []string{"GET /app/hooks -> 200: ", "no operation"}},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newValidator(t, EditionDotcom)
			var received []byte
			srv := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				received, _ = io.ReadAll(r.Body)
				tc.handler.ServeHTTP(w, r)
			})))
			defer srv.Close()

			want := httptest.NewRecorder()
			tc.handler.ServeHTTP(want, httptest.NewRequest(tc.method, tc.path, nil))

			resp := do(t, srv.Client(), tc.method, srv.URL+tc.path, tc.body)
			if string(received) != tc.body {
				t.Errorf("handler received body %q, want %q", received, tc.body)
			}
			// The middleware only watches: the client gets what the handler wrote.
			if resp.status != want.Code || !bytes.Equal(resp.body, want.Body.Bytes()) {
				t.Errorf("client got %d %q, handler wrote %d %q", resp.status, resp.body, want.Code, want.Body.Bytes())
			}
			checkOutcome(t, v, tc)
		})
	}
}

func TestRoundTripper(t *testing.T) {
	cases := append(exchangeCases(t),
		// The client chose the URL, so a 404 does not excuse it.
		exchangeCase{name: "unknown route answered 404", method: "GET", path: "/app/hooks",
			handler:      reply(404, "", []byte(`{"message":"Not Found"}`)),
			wantViolated: []string{"GET /app/hooks -> 404: ", "no operation"}},
		exchangeCase{name: "base URL that lost /v3", method: "GET", path: "/api/app",
			handler:      reply(404, "", []byte(`{"message":"Not Found"}`)),
			wantViolated: []string{"GET /api/app -> 404: ", "no operation"}},
	)
	for _, tc := range cases {
		for _, rewindable := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/GetBody=%v", tc.name, rewindable), func(t *testing.T) {
				var received []byte
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					received, _ = io.ReadAll(r.Body)
					tc.handler.ServeHTTP(w, r)
				}))
				defer srv.Close()
				v := newValidator(t, EditionDotcom)
				client := &http.Client{Transport: v.RoundTripper(srv.Client().Transport)}

				want := httptest.NewRecorder()
				tc.handler.ServeHTTP(want, httptest.NewRequest(tc.method, tc.path, nil))

				var body io.Reader
				if tc.body != "" {
					body = strings.NewReader(tc.body)
					if !rewindable {
						// Hides the type, so http.NewRequest sets no GetBody.
						body = io.MultiReader(body)
					}
				}
				req, err := http.NewRequest(tc.method, srv.URL+tc.path, body)
				if err != nil {
					t.Fatal(err)
				}
				if tc.body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				if string(received) != tc.body {
					t.Errorf("server received body %q, want %q", received, tc.body)
				}
				if resp.StatusCode != want.Code || !bytes.Equal(got, want.Body.Bytes()) {
					t.Errorf("client got %d %q, server wrote %d %q", resp.StatusCode, got, want.Code, want.Body.Bytes())
				}
				checkOutcome(t, v, tc)
			})
		}
	}
}

// TestMiddlewareClientGone: when the client gives up and the emulator, seeing its context end, writes nothing, no
// response was delivered, so only the request is judged.
func TestMiddlewareClientGone(t *testing.T) {
	for _, tc := range []struct {
		name         string
		body         string
		wantViolated bool
	}{
		{"good request", `{"permissions":{"contents":"read"}}`, false},
		{"bad request", `{"permissions":{"contents":"delete"}}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newValidator(t, EditionDotcom)
			served := make(chan struct{})
			inner := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
			}))
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer close(served)
				inner.ServeHTTP(w, r)
			}))
			defer srv.Close()
			client := srv.Client()
			client.Timeout = 50 * time.Millisecond
			req, err := http.NewRequest("POST", srv.URL+"/app/installations/1/access_tokens", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if resp, err := client.Do(req); err == nil {
				_ = resp.Body.Close()
				t.Fatal("the request did not time out")
			}
			<-served
			violations := v.Violations()
			if tc.wantViolated != (len(violations) == 1) || len(violations) > 1 {
				t.Fatalf("violations = %q, want one: %v", violations, tc.wantViolated)
			}
			if tc.wantViolated && !strings.Contains(violations[0], "-> no response: request") {
				t.Errorf("violation %q does not say the request was bad and no response came", violations[0])
			}
			if requests, replies := v.Checked(); requests != 1 || replies != 0 {
				t.Errorf("Checked() = %d, %d; want 1, 0", requests, replies)
			}
		})
	}
}

func TestRoundTripperTransportError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens any more

	v := newValidator(t, EditionDotcom)
	client := &http.Client{Transport: v.RoundTripper(nil)}
	req, err := http.NewRequest("POST", url+"/app/installations/1/access_tokens",
		strings.NewReader(`{"permissions":{"contents":"delete"}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if _, err := client.Do(req); err == nil {
		t.Fatal("request to a closed server succeeded")
	}
	violations := v.Violations()
	if len(violations) != 1 || !strings.Contains(violations[0], "-> no response: request") {
		t.Errorf("violations = %q, want the bad request reported without a response", violations)
	}
	if requests, replies := v.Checked(); requests != 1 || replies != 0 {
		t.Errorf("Checked() = %d, %d; want 1, 0", requests, replies)
	}
}

// TestConcurrentUse runs parallel traffic through one Validator; with -race it proves the shared state is guarded.
func TestConcurrentUse(t *testing.T) {
	v := newValidator(t, EditionGHES)
	app := mustJSON(t, example(t, EditionGHES, "integration"))
	srv := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("bad") != "" {
			reply(200, "", []byte(`{}`)).ServeHTTP(w, r)
			return
		}
		reply(200, "", app).ServeHTTP(w, r)
	})))
	defer srv.Close()
	client := &http.Client{Transport: v.RoundTripper(srv.Client().Transport)}

	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			target := srv.URL + "/api/v3/app"
			if i%4 == 0 {
				target += "?bad=1"
			}
			resp, err := client.Get(target)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}()
	}
	wg.Wait()
	// Each exchange is seen twice, by the RoundTripper and by the Middleware.
	if requests, replies := v.Checked(); requests != 2*n || replies != 2*n {
		t.Errorf("Checked() = %d, %d; want %d, %d", requests, replies, 2*n, 2*n)
	}
	if got, want := len(v.Violations()), 2*(n/4); got != want {
		t.Errorf("%d violations, want %d", got, want)
	}
}

type response struct {
	status int
	body   []byte
}

func do(t *testing.T, client *http.Client, method, url, body string) response {
	t.Helper()
	var reader io.Reader
	if body != "" {
		reader = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, reader)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, body: got}
}
