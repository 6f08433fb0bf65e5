// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/golang-jwt/jwt/v5"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/ghcontract"
)

// Keys are slow to generate; every test shares these two.
var (
	testKey   = sync.OnceValue(func() *rsa.PrivateKey { return mustKey() })
	secondKey = sync.OnceValue(func() *rsa.PrivateKey { return mustKey() })
	otherKey  = sync.OnceValue(func() *rsa.PrivateKey { return mustKey() })
)

func mustKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

const (
	demoAppID    = 1001
	demoClientID = "Iv23liFAKEAPP0001"
	acmeID       = 2001 // installation on the acme organization: api, web, infra
	octocatID    = 2002 // installation on the octocat user: dotfiles
)

// testEnv is an emulator behind a real HTTP server, with testKey registered for every App.
type testEnv struct {
	t   *testing.T
	srv *Server
	ts  *httptest.Server
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	return newEnvWith(t, DemoFixture())
}

func newEnvWith(t *testing.T, f Fixture) *testEnv {
	t.Helper()
	srv, err := New(f)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, a := range f.Apps {
		if err := srv.AddPublicKey(a.ID, &testKey().PublicKey); err != nil {
			t.Fatalf("AddPublicKey: %v", err)
		}
	}
	return serve(t, srv)
}

// serve puts an emulator behind a test HTTP server that stops with the test.
func serve(t *testing.T, srv *Server) *testEnv {
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &testEnv{t: t, srv: srv, ts: ts}
}

// signJWT signs claims with RS256, the way a GitHub App client does.
func signJWT(t testing.TB, key *rsa.PrivateKey, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign JWT: %v", err)
	}
	return s
}

// appClaims are what a well-behaved client sends: iat 60 s back, exp 9 minutes ahead, on real time.
func appClaims(iss any) jwt.MapClaims {
	now := time.Now().Unix()
	return jwt.MapClaims{"iat": now - 60, "exp": now + 540, "iss": iss}
}

// bearer is a good App JWT for the demo App.
func (e *testEnv) bearer() string {
	return "Bearer " + signJWT(e.t, testKey(), appClaims(demoClientID))
}

type option func(*http.Request)

func withHeader(k, v string) option {
	return func(r *http.Request) {
		if v == "" {
			r.Header.Del(k)
			return
		}
		r.Header.Set(k, v)
	}
}

// withoutUserAgent sends no User-Agent at all (an empty value stops Go's default one).
func withoutUserAgent(r *http.Request) { r.Header.Set("User-Agent", "") }

func withContext(ctx context.Context) option {
	return func(r *http.Request) { *r = *r.WithContext(ctx) }
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request like the plugin's client would (User-Agent, Accept, API version)
// and checks the answer against GitHub's OpenAPI description.
func (e *testEnv) do(method, path, auth string, body any, opts ...option) *response {
	e.t.Helper()
	resp, err := e.send(method, path, auth, body, opts...)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

func (e *testEnv) send(method, path, auth string, body any, opts ...option) (*response, error) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatalf("marshal body: %v", err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatalf("new request: %v", err)
	}
	req.Header.Set("User-Agent", "fakegithub-test/1.0")
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for _, o := range opts {
		o(req)
	}
	httpResp, err := e.ts.Client().Do(req)
	if err != nil {
		return nil, err
	}
	defer httpResp.Body.Close()
	data, err := io.ReadAll(httpResp.Body)
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	checkContract(e.t, req, httpResp, data)
	return &response{status: httpResp.StatusCode, header: httpResp.Header, body: data}, nil
}

func (r *response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// errorBody decodes GitHub's error shape.
func (r *response) errorBody(t testing.TB) errorBody {
	t.Helper()
	var b errorBody
	r.decode(t, &b)
	return b
}

// wantError checks status, message and GitHub's "status" string.
func (r *response) wantError(t testing.TB, status int, message string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	b := r.errorBody(t)
	if b.Message != message {
		t.Errorf("message = %q, want %q", b.Message, message)
	}
	if b.Status != fmt.Sprint(status) {
		t.Errorf(`"status" = %q, want %q`, b.Status, fmt.Sprint(status))
	}
	if !strings.HasPrefix(b.DocumentationURL, "https://docs.github.com/") {
		t.Errorf("documentation_url = %q", b.DocumentationURL)
	}
}

// mint creates a token for the demo App and returns the answer, failing unless it is 201.
func (e *testEnv) mint(installationID int64, body any, opts ...option) installationTokenBody {
	e.t.Helper()
	resp := e.do(http.MethodPost, fmt.Sprintf("/app/installations/%d/access_tokens", installationID), e.bearer(), body, opts...)
	if resp.status != http.StatusCreated {
		e.t.Fatalf("mint: status %d, body %s", resp.status, resp.body)
	}
	var tok installationTokenBody
	resp.decode(e.t, &tok)
	return tok
}

// contract holds GitHub's OpenAPI description per API version, loaded once for all tests.
// The file describes 2022-11-28; x-github-breaking-changes patches turn it into 2026-03-10.
var contract = sync.OnceValues(func() (map[string]routers.Router, error) {
	data, err := ghcontract.Document(ghcontract.EditionDotcom)
	if err != nil {
		return nil, err
	}
	out := make(map[string]routers.Router)
	for _, version := range []string{apiVersion20221128, apiVersion20260310} {
		var raw any
		if err := json.Unmarshal(data, &raw); err != nil {
			return nil, err
		}
		patched, err := json.Marshal(applyBreakingChanges(raw, version))
		if err != nil {
			return nil, err
		}
		doc, err := openapi3.NewLoader().LoadFromData(patched)
		if err != nil {
			return nil, fmt.Errorf("load description for %s: %w", version, err)
		}
		// Match on paths only: the emulator runs on random ports, with or without /api/v3.
		doc.Servers = nil
		if out[version], err = legacy.NewRouter(doc); err != nil {
			return nil, err
		}
	}
	return out, nil
})

// applyBreakingChanges applies, as JSON merge patches, the schema changes GitHub lists under
// x-github-breaking-changes for API versions up to version.
func applyBreakingChanges(v any, version string) any {
	switch v := v.(type) {
	case map[string]any:
		changes, _ := v["x-github-breaking-changes"].([]any)
		delete(v, "x-github-breaking-changes")
		for k, child := range v {
			v[k] = applyBreakingChanges(child, version)
		}
		for _, c := range changes {
			change, _ := c.(map[string]any)
			patch, isMerge := change["patch"].(map[string]any)
			if since, _ := change["version"].(string); isMerge && since <= version {
				mergePatch(v, patch)
			}
		}
		return v
	case []any:
		for i, child := range v {
			v[i] = applyBreakingChanges(child, version)
		}
	}
	return v
}

// mergePatch applies an RFC 7396 JSON merge patch to target.
func mergePatch(target, patch map[string]any) {
	for k, p := range patch {
		switch p := p.(type) {
		case nil:
			delete(target, k)
		case map[string]any:
			sub, ok := target[k].(map[string]any)
			if !ok {
				sub = map[string]any{}
			}
			mergePatch(sub, p)
			target[k] = sub
		default:
			target[k] = p
		}
	}
}

// checkContract validates an answer against GitHub's OpenAPI description:
// required fields, types, enums and formats. Paths the description lacks are skipped.
func checkContract(t testing.TB, req *http.Request, resp *http.Response, body []byte) {
	t.Helper()
	if err := contractError(req, resp.StatusCode, resp.Header, body); err != nil {
		t.Errorf("%s %s → %d does not match GitHub's OpenAPI description: %v\nbody: %s",
			req.Method, req.URL.Path, resp.StatusCode, err, body)
	}
}

func contractError(req *http.Request, status int, header http.Header, body []byte) error {
	byVersion, err := contract()
	if err != nil {
		return fmt.Errorf("load OpenAPI description: %w", err)
	}
	version := req.Header.Get("X-GitHub-Api-Version")
	if version == "" {
		version = apiVersion20221128
	}
	router := byVersion[version]
	if router == nil {
		return nil // refused with 400 before any schema applies
	}
	routed := req.Clone(context.Background())
	routed.URL.Path = strings.TrimPrefix(routed.URL.Path, ghesPrefix)
	route, params, err := router.FindRoute(routed)
	if err != nil {
		var re *routers.RouteError
		if errors.As(err, &re) {
			return nil
		}
		return fmt.Errorf("find route: %w", err)
	}
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request:    routed,
			PathParams: params,
			Route:      route,
		},
		Status: status,
		Header: header,
		Body:   io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{
			MultiError: true,
			SchemaValidationOptions: []openapi3.SchemaValidationOption{
				openapi3.EnableFormatValidation(),
				openapi3.WithStringFormatValidator("uri", openapi3.NewCallbackValidator(func(s string) error {
					u, err := url.Parse(s)
					if err != nil || !u.IsAbs() || u.Host == "" {
						return fmt.Errorf("%q is not an absolute URI", s)
					}
					return nil
				})),
			},
		},
	}
	return openapi3filter.ValidateResponse(context.Background(), input)
}
