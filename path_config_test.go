// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestConfigLifecycle(t *testing.T) {
	e := newTestEnv(t)

	resp, err := e.do(logical.ReadOperation, "config", nil)
	if err != nil || resp != nil {
		t.Fatalf("read before write = %v, %v; want nil, nil", resp, err)
	}

	e.configure(map[string]any{"client_id": testClientID, "request_timeout": "7s"})
	resp, err = e.do(logical.ReadOperation, "config", nil)
	mustOK(t, resp, err)
	want := map[string]any{
		"app_id": int64(testAppID), "client_id": testClientID, "base_url": e.srv.URL, "allow_insecure_http": false, "ca_certificate": "",
		"proxy_url": "", "request_timeout": int64(7), "max_concurrent_requests": 32, "app_slug": "vault-test", "app_name": "Vault Test",
		"private_key_fingerprint": resp.Data["private_key_fingerprint"], "noreply_domain": "", "signer": "key",
		"repository_list_ttl": int64(300), "rate_limit_refresh": int64(60),
	}
	if !reflect.DeepEqual(resp.Data, want) {
		t.Fatalf("config read:\n got %#v\nwant %#v", resp.Data, want)
	}
	if _, ok := resp.Data["private_key"]; ok {
		t.Fatal("read returned the private key")
	}
	// In a subtest of its own: without openssl outside CI, only this check skips.
	t.Run("fingerprint as openssl computes it", func(t *testing.T) {
		if fp := resp.Data["private_key_fingerprint"].(string); fp != opensslFingerprint(t, testKeyPEM) {
			t.Fatalf("fingerprint %q differs from openssl's", fp)
		}
	})

	// An update keeps what it does not name.
	resp, err = e.do(logical.UpdateOperation, "config", map[string]any{"request_timeout": 20})
	mustOK(t, resp, err)
	resp, err = e.do(logical.ReadOperation, "config", nil)
	mustOK(t, resp, err)
	if resp.Data["request_timeout"] != int64(20) || resp.Data["client_id"] != testClientID || resp.Data["app_id"] != int64(testAppID) {
		t.Fatalf("update lost fields: %#v", resp.Data)
	}

	resp, err = e.do(logical.DeleteOperation, "config", nil)
	mustOK(t, resp, err)
	resp, err = e.do(logical.ReadOperation, "config", nil)
	if err != nil || resp != nil {
		t.Fatalf("read after delete = %v, %v; want nil, nil", resp, err)
	}
}

func TestConfigPKCS8AndClientIDOnly(t *testing.T) {
	e := newTestEnv(t)
	der, err := x509.MarshalPKCS8PrivateKey(testKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	resp, err := e.do(logical.CreateOperation, "config", map[string]any{
		"client_id": testClientID, "private_key": pkcs8, "base_url": e.srv.URL + "/",
	})
	mustOK(t, resp, err)
	resp, err = e.do(logical.ReadOperation, "config", nil)
	mustOK(t, resp, err)
	// The App ID is learned from GitHub; the trailing slash is dropped.
	if resp.Data["app_id"] != int64(testAppID) || resp.Data["base_url"] != e.srv.URL {
		t.Fatalf("config read: %#v", resp.Data)
	}
}

func TestConfigVerifyFailuresSaveNothing(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	before := storageSnapshot(t, e)

	down := httptest.NewServer(nil)
	downURL := down.URL
	down.Close()

	tests := []struct {
		name  string
		data  map[string]any
		wants []string
	}{
		{"wrong key", map[string]any{"private_key": otherPEM}, []string{"A JSON web token could not be decoded", "private_key"}},
		{"wrong app id", map[string]any{"app_id": 999999}, []string{"Integration not found", "app_id 999999"}},
		{"wrong client id", map[string]any{"client_id": "Iv23liNOSUCHAPP0001"}, []string{"Integration not found", "Iv23liNOSUCHAPP0001"}},
		{"unreachable", map[string]any{"base_url": downURL, "private_key": testKeyPEM, "request_timeout": 1}, []string{"unreachable", downURL, "check base_url"}},
		{"not an API", map[string]any{"base_url": e.srv.URL + "/nothing-here", "private_key": testKeyPEM}, []string{"404", "check base_url"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.do(logical.UpdateOperation, "config", tt.data)
			status, msg := mustFail(t, resp, err)
			if status != 400 {
				t.Errorf("status %d, want 400", status)
			}
			wantContains(t, msg, append(tt.wants, "nothing was saved")...)
			if after := storageSnapshot(t, e); !reflect.DeepEqual(before, after) {
				t.Fatal("storage changed after a refused write")
			}
		})
	}
}

func TestConfigVerifyFalseSkipsGitHub(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.do(logical.CreateOperation, "config", map[string]any{
		"app_id": 424242, "private_key": otherPEM, "base_url": "https://ghe.example.com/api/v3/", "verify": false,
	})
	mustOK(t, resp, err)
	if resp == nil || len(resp.Warnings) == 0 || !strings.Contains(resp.Warnings[0], "verify=false") {
		t.Fatalf("want a verify=false warning, got %#v", resp)
	}
	if calls := e.gh.Stats().TotalCalls; calls != 0 {
		t.Fatalf("verify=false made %d GitHub calls", calls)
	}
	resp, err = e.do(logical.ReadOperation, "config", nil)
	mustOK(t, resp, err)
	if resp.Data["base_url"] != "https://ghe.example.com/api/v3" || resp.Data["app_slug"] != "" {
		t.Fatalf("config read: %#v", resp.Data)
	}
}

func TestConfigValidation(t *testing.T) {
	e := newTestEnv(t)
	pubDER, _ := x509.MarshalPKIXPublicKey(&testKey.PublicKey)
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
	base := func(kv ...any) map[string]any {
		m := map[string]any{"app_id": testAppID, "private_key": testKeyPEM, "base_url": e.srv.URL, "verify": false}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name  string
		data  map[string]any
		wants []string
	}{
		{"no key", map[string]any{"app_id": testAppID}, []string{"private_key is required"}},
		{"no app", map[string]any{"private_key": testKeyPEM}, []string{"app_id or client_id is required"}},
		{"garbage key", base("private_key", "hello"), []string{"private_key", "no PEM block"}},
		{"public key", base("private_key", pub), []string{"private_key", "public key"}},
		{"two keys", base("private_key", testKeyPEM+otherPEM), []string{"more than one PEM block"}},
		{"negative app id", base("app_id", -3), []string{"app_id -3"}},
		{"bad client id", base("client_id", "not valid!"), []string{`client_id "not valid!"`}},
		{"bad scheme", base("base_url", "ftp://github.com"), []string{`base_url "ftp://github.com"`, "https://api.github.com"}},
		{"no host", base("base_url", "https://"), []string{`base_url "https://"`}},
		{"query", base("base_url", "https://ghe.example.com/api/v3?x=1"), []string{"query"}},
		{"negative timeout", base("request_timeout", "-5s"), []string{`"request_timeout"`, "negative value '-5'"}},
		{"zero timeout", base("request_timeout", "0"), []string{"request_timeout 0s", "1s to 5m0s"}},
		{"huge timeout", base("request_timeout", "1h"), []string{"request_timeout 1h0m0s"}},
		{"bad proxy", base("proxy_url", "ftp://proxy"), []string{`proxy_url "ftp://proxy"`}},
		{"no concurrency", base("max_concurrent_requests", 0), []string{"max_concurrent_requests 0", "1 to 100"}},
		{"too much concurrency", base("max_concurrent_requests", 101), []string{"max_concurrent_requests 101", "1 to 100"}},
		{"bad ca", base("ca_certificate", testKeyPEM), []string{"ca_certificate", `"RSA PRIVATE KEY"`}},
		{"garbage ca", base("ca_certificate", "nope"), []string{"ca_certificate", "CERTIFICATE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.do(logical.UpdateOperation, "config", tt.data)
			_, msg := mustFail(t, resp, err)
			wantContains(t, msg, tt.wants...)
			if strings.Contains(msg, pemBodyLine(testKeyPEM)) {
				t.Fatal("the error quotes the private key")
			}
			if cfg, _ := getConfig(t.Context(), e.storage); cfg != nil {
				t.Fatal("a refused write stored a config")
			}
		})
	}
}

func TestConfigProxyPasswordRedacted(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.do(logical.UpdateOperation, "config", map[string]any{
		"app_id": testAppID, "private_key": testKeyPEM, "verify": false, "proxy_url": "http://user:s3cret@proxy.internal:3128",
	})
	mustOK(t, resp, err)
	resp, err = e.do(logical.ReadOperation, "config", nil)
	mustOK(t, resp, err)
	if got := resp.Data["proxy_url"].(string); strings.Contains(got, "s3cret") || !strings.Contains(got, "proxy.internal:3128") {
		t.Fatalf("proxy_url read as %q", got)
	}
}

// TestRefusedProxyURLNeverShowsItsPassword: a proxy URL refused as invalid is not quoted with its password, also when
// it lacks a scheme (user:password@host:port parses as scheme "user" with no user info to redact).
func TestRefusedProxyURLNeverShowsItsPassword(t *testing.T) {
	for _, proxy := range []string{
		"corp:S3cretPw@proxy.internal:3128",
		"corp:S3cretPw@/proxy.internal:3128",
		"ftp://corp:S3cretPw@proxy.internal:3128",
		"http://corp:S3cretPw@",
	} {
		t.Run(proxy, func(t *testing.T) {
			e := newTestEnv(t)
			resp, err := e.do(logical.UpdateOperation, "config", map[string]any{
				"app_id": testAppID, "private_key": testKeyPEM, "verify": false, "proxy_url": proxy,
			})
			if err != nil || resp == nil || !resp.IsError() {
				t.Fatalf("expected an error, got %#v, %v", resp, err)
			}
			if msg := resp.Error().Error(); strings.Contains(msg, "S3cretPw") || !strings.Contains(msg, "proxy_url") {
				t.Fatalf("the refusal is %q: it must name proxy_url and never its password", msg)
			}
		})
	}
}

// storageSnapshot is every storage entry, for checking that a refused write changed nothing.
func storageSnapshot(t *testing.T, e *testEnv) map[string]string {
	t.Helper()
	keys, err := e.storage.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	snap := map[string]string{}
	for _, k := range keys {
		entry, err := e.storage.Get(t.Context(), k)
		if err != nil {
			t.Fatal(err)
		}
		if entry != nil {
			snap[k] = string(entry.Value)
		}
	}
	return snap
}

// pemBodyLine is the first base64 line of a PEM block, to look for in output that must not hold the key.
func pemBodyLine(p string) string {
	return strings.Split(p, "\n")[1]
}

func opensslFingerprint(t *testing.T, keyPEM string) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl is needed for this test under CI")
		}
		t.Skip("openssl not installed")
	}
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, []byte(keyPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c",
		"openssl rsa -in '"+path+"' -pubout -outform DER 2>/dev/null | openssl sha256 -binary | openssl base64").Output()
	if err != nil {
		t.Fatal(err)
	}
	return "SHA256:" + strings.TrimSpace(string(out))
}

// hostileServer stands for a server a config writer controls. It answers every request as GitHub's GET /app would
// (so that a verification against it succeeds), serves as a forward proxy too, and records what reaches it.
type hostileServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []string // "METHOD URL (Authorization: yes/no)"
}

func newHostileServer(t *testing.T, useTLS bool) *hostileServer {
	t.Helper()
	h := &hostileServer{}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.requests = append(h.requests, fmt.Sprintf("%s %s (Authorization: %v)", r.Method, r.URL, r.Header.Get("Authorization") != ""))
		h.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id": %d, "slug": "vault-test", "name": "Vault Test", "client_id": %q}`, testAppID, testClientID)
	})
	if useTLS {
		h.Server = httptest.NewTLSServer(handler)
	} else {
		h.Server = httptest.NewServer(handler)
	}
	t.Cleanup(h.Close)
	return h
}

func (h *hostileServer) received() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.requests)
}

// TestAppJWTNeverSentToUnsavedDestination: a config writer who does not know the App's key
// cannot make the engine use it toward a destination of their choosing, verified or not.
func TestAppJWTNeverSentToUnsavedDestination(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	hostile := newHostileServer(t, false)
	hostileTLS := newHostileServer(t, true)
	hostileCA := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hostileTLS.Certificate().Raw}))

	tests := []struct {
		name  string
		data  map[string]any
		field string
	}{
		{"base_url", map[string]any{"base_url": hostile.URL}, "base_url"},
		{"base_url unverified", map[string]any{"base_url": hostile.URL, "verify": false}, "base_url"},
		{"base_url with the app id", map[string]any{"base_url": hostile.URL, "app_id": testAppID}, "base_url"},
		{"proxy_url", map[string]any{"proxy_url": hostile.URL}, "proxy_url"},
		{"proxy_url unverified", map[string]any{"proxy_url": hostile.URL, "verify": false}, "proxy_url"},
		{"ca_certificate", map[string]any{"ca_certificate": hostileCA}, "ca_certificate"},
		{"ca_certificate unverified", map[string]any{"ca_certificate": hostileCA, "verify": false}, "ca_certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := storageSnapshot(t, e)
			resp, err := e.do(logical.UpdateOperation, "config", tt.data)
			// Whatever the answer, a mint follows, as it would in production; then the good config is restored.
			defer e.configure(nil)
			defer e.do(logical.ReadOperation, "token/ci", nil)
			status, msg := mustFail(t, resp, err)
			if status != 400 {
				t.Errorf("status %d, want 400", status)
			}
			wantContains(t, msg, tt.field, "private_key")
			if after := storageSnapshot(t, e); !reflect.DeepEqual(before, after) {
				t.Error("storage changed after a refused write")
			}
		})
	}
	if got := append(hostile.received(), hostileTLS.received()...); len(got) != 0 {
		t.Fatalf("the config writer's servers received %d requests: %v", len(got), got)
	}

	t.Run("with the key, the destination may change", func(t *testing.T) {
		resp, err := e.do(logical.UpdateOperation, "config", map[string]any{"base_url": e.srv.URL + "/api/v3", "private_key": testKeyPEM})
		mustOK(t, resp, err)
	})
	t.Run("an unchanged destination needs no key", func(t *testing.T) {
		resp, err := e.do(logical.UpdateOperation, "config", map[string]any{"base_url": e.srv.URL + "/api/v3/", "request_timeout": 5})
		mustOK(t, resp, err)
		e.mint("ci")
	})
}

// TestCleartextBaseURLRefused: the App JWT and every token would travel in clear over http://,
// so only https:// is accepted, except on a loopback host or with an explicit allow_insecure_http=true.
func TestCleartextBaseURLRefused(t *testing.T) {
	e := newTestEnv(t)
	_, port, _ := strings.Cut(strings.TrimPrefix(e.srv.URL, "http://"), ":")
	write := func(data map[string]any) (*logical.Response, error) {
		full := map[string]any{"app_id": testAppID, "private_key": testKeyPEM}
		maps.Copy(full, data)
		return e.do(logical.UpdateOperation, "config", full)
	}

	for _, u := range []string{"http://ghe.example.com/api/v3", "http://10.1.2.3:8080", "http://127.0.0.1.example.com"} {
		t.Run("refused "+u, func(t *testing.T) {
			resp, err := write(map[string]any{"base_url": u, "verify": false})
			status, msg := mustFail(t, resp, err)
			if status != 400 {
				t.Errorf("status %d, want 400", status)
			}
			wantContains(t, msg, fmt.Sprintf("base_url %q", u), "https://", "allow_insecure_http")
			if cfg, _ := getConfig(t.Context(), e.storage); cfg != nil {
				t.Fatal("a refused write stored a config")
			}
		})
	}
	// An address with a zone, whose normalised form no longer parses: what cannot be read is not trusted.
	t.Run("refused unparsable", func(t *testing.T) {
		resp, err := write(map[string]any{"base_url": "http://[fe80::1%25lo]/", "verify": false})
		status, msg := mustFail(t, resp, err)
		if status != 400 {
			t.Errorf("status %d, want 400", status)
		}
		wantContains(t, msg, "base_url", "allow_insecure_http")
		if cfg, _ := getConfig(t.Context(), e.storage); cfg != nil {
			t.Fatal("a refused write stored a config")
		}
	})
	for _, tt := range []struct {
		url    string
		verify bool
	}{
		{"http://localhost:" + port, true},
		{"http://127.0.0.2:1", false},
		{"http://[::1]:1/api/v3", false},
		{"https://ghe.example.com/api/v3", false},
	} {
		t.Run("accepted "+tt.url, func(t *testing.T) {
			resp, err := write(map[string]any{"base_url": tt.url, "verify": tt.verify})
			mustOK(t, resp, err)
			if resp != nil && strings.Contains(strings.Join(resp.Warnings, " "), "cleartext") {
				t.Errorf("warnings %v", resp.Warnings)
			}
		})
	}
	t.Run("allow_insecure_http", func(t *testing.T) {
		resp, err := write(map[string]any{"base_url": "http://ghe.example.com/api/v3", "allow_insecure_http": true, "verify": false})
		mustOK(t, resp, err)
		if resp == nil {
			t.Fatal("no warning")
		}
		wantContains(t, strings.Join(resp.Warnings, "\n"), "allow_insecure_http", "cleartext")
		resp, err = e.do(logical.ReadOperation, "config", nil)
		mustOK(t, resp, err)
		if resp.Data["allow_insecure_http"] != true || resp.Data["base_url"] != "http://ghe.example.com/api/v3" {
			t.Fatalf("config read: %#v", resp.Data)
		}
	})
}

// TestSecretFieldTypeErrorsNeverEchoValue: a secret sent with the wrong JSON type (a PEM split
// into a list of lines, an object) is refused with a message that names the field and the type, never the value:
// on the existence check Vault runs first (whose error it logs), on the write itself, and in the plugin's log.
func TestSecretFieldTypeErrorsNeverEchoValue(t *testing.T) {
	e := newTestEnv(t)
	keyLines := strings.Split(strings.TrimSpace(testKeyPEM), "\n")
	keyList := make([]any, len(keyLines))
	for i, l := range keyLines {
		keyList[i] = l
	}
	const password = "s3cretPassw0rd"
	proxy := "http://user:" + password + "@proxy.internal:3128"
	tests := []struct {
		name, field, typ string
		value            any
		secrets          []string
	}{
		{"key as a list of lines", "private_key", "a list", keyList, keyLines[1 : len(keyLines)-1]},
		{"key in an object", "private_key", "an object", map[string]any{"pem": testKeyPEM}, keyLines[1 : len(keyLines)-1]},
		{"proxy as a list", "proxy_url", "a list", []any{proxy}, []string{password}},
		{"proxy in an object", "proxy_url", "an object", map[string]any{"url": proxy}, []string{password}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := map[string]any{"app_id": testAppID, "private_key": testKeyPEM, "verify": false}
			data[tt.field] = tt.value
			var seen []string
			for _, op := range []logical.Operation{logical.CreateOperation, logical.UpdateOperation} {
				req := &logical.Request{Operation: op, Path: "config", Data: data, Storage: e.storage}
				if _, _, err := e.b.HandleExistenceCheck(t.Context(), req); err != nil {
					seen = append(seen, err.Error())
				}
				resp, err := e.b.HandleRequest(t.Context(), req)
				_, msg := mustFail(t, resp, err)
				wantContains(t, msg, tt.field, tt.typ)
				seen = append(seen, msg)
			}
			seen = append(seen, e.logs.String())
			for _, s := range tt.secrets {
				for _, out := range seen {
					if strings.Contains(out, s) {
						t.Fatalf("the secret of %s appears in %q", tt.field, out)
					}
				}
			}
			if cfg, _ := getConfig(t.Context(), e.storage); cfg != nil {
				t.Fatal("a refused write stored a config")
			}
		})
	}
}

// TestConfigSwitchToAnotherAppByClientID: an App ID learned from GitHub is not held against a
// new identity; one the operator wrote is still checked.
func TestConfigSwitchToAnotherAppByClientID(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.do(logical.CreateOperation, "config", map[string]any{
		"client_id": testClientID, "private_key": testKeyPEM, "base_url": e.srv.URL,
	})
	mustOK(t, resp, err)
	readApp := func() (any, any) {
		t.Helper()
		resp, err := e.do(logical.ReadOperation, "config", nil)
		mustOK(t, resp, err)
		return resp.Data["app_id"], resp.Data["app_slug"]
	}
	if id, slug := readApp(); id != int64(testAppID) || slug != "vault-test" {
		t.Fatalf("learned app %v %v", id, slug)
	}

	resp, err = e.do(logical.UpdateOperation, "config", map[string]any{"client_id": otherClientID, "private_key": otherPEM})
	mustOK(t, resp, err)
	if id, slug := readApp(); id != int64(otherAppID) || slug != "other-app" {
		t.Fatalf("after switching Apps by client_id, app %v %v; want %d other-app", id, slug, otherAppID)
	}

	resp, err = e.do(logical.UpdateOperation, "config", map[string]any{"app_id": testAppID, "client_id": otherClientID})
	_, msg := mustFail(t, resp, err)
	wantContains(t, msg, fmt.Sprintf("app_id %d does not match", testAppID))
}

// TestConfigFieldGivenAKeyNeverEchoesIt: a key pasted into any other config field (app_id=@key.pem,
// request_timeout=@key.pem, ...), as it is, on one line or as a list of lines, is refused without any part of it in
// the answer, the existence check's error (which Vault logs) or the plugin's log. The SDK's conversion would quote
// it, and Vault writes that unhashed to audit devices.
func TestConfigFieldGivenAKeyNeverEchoesIt(t *testing.T) {
	testKeys(t)
	wantType := map[string]string{
		"app_id": "integer", "allow_insecure_http": "boolean", "request_timeout": "duration",
		"max_concurrent_requests": "integer", "verify": "boolean",
	}
	lines := strings.Split(strings.TrimSpace(otherPEM), "\n")
	values := []struct {
		name  string
		value any
	}{
		{"PEM", otherPEM},
		{"one line", strings.Join(lines, "")},
		{"list of lines", lines},
	}
	fields := slices.Sorted(maps.Keys(pathConfig(&backend{}).Fields))
	for _, field := range fields {
		if field == "private_key" {
			continue // where a key belongs
		}
		for _, v := range values {
			t.Run(field+" "+v.name, func(t *testing.T) {
				e := newTestEnv(t)
				data := map[string]any{"app_id": testAppID, "private_key": testKeyPEM, "base_url": e.srv.URL, "verify": false}
				data[field] = v.value
				var seen []string
				for _, op := range []logical.Operation{logical.CreateOperation, logical.UpdateOperation} {
					req := &logical.Request{Operation: op, Path: "config", Data: data, Storage: e.storage}
					if _, _, err := e.b.HandleExistenceCheck(t.Context(), req); err != nil {
						seen = append(seen, err.Error())
					}
					resp, err := e.b.HandleRequest(t.Context(), req)
					_, msg := mustFail(t, resp, err)
					seen = append(seen, msg)
				}
				seen = append(seen, e.logs.String())
				for _, part := range keyParts(otherPEM) {
					for _, out := range seen {
						if i := strings.Index(out, part); i >= 0 {
							t.Fatalf("part of the key given as %s appears at byte %d of %q...", field, i, out[:min(i, 120)])
						}
					}
				}
				// Only now that it is known to hold no key: the refusal names the field and what it accepts.
				refusal := seen[len(seen)-2]
				wantContains(t, refusal, field)
				if typ, ok := wantType[field]; ok {
					wantContains(t, refusal, typ)
				}
				if cfg, _ := getConfig(t.Context(), e.storage); cfg != nil {
					t.Fatal("a refused write stored a config")
				}
			})
		}
	}
}

// keyParts are pieces of a PEM key's base64 body, each line and each 16 characters of it, to look for in output that
// must hold no part of the key (a shortened quote still holds some).
func keyParts(keyPEM string) []string {
	lines := strings.Split(strings.TrimSpace(keyPEM), "\n")
	var parts []string
	for _, l := range lines[1 : len(lines)-1] {
		parts = append(parts, l)
		for i := 0; i+16 <= len(l); i += 16 {
			parts = append(parts, l[i:i+16])
		}
	}
	return parts
}
