package githubapp

import (
	"crypto/x509"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
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
		"app_id": int64(testAppID), "client_id": testClientID, "base_url": e.srv.URL, "ca_certificate": "",
		"proxy_url": "", "request_timeout": int64(7), "app_slug": "vault-test", "app_name": "Vault Test",
		"private_key_fingerprint": resp.Data["private_key_fingerprint"],
	}
	if !reflect.DeepEqual(resp.Data, want) {
		t.Fatalf("config read:\n got %#v\nwant %#v", resp.Data, want)
	}
	if _, ok := resp.Data["private_key"]; ok {
		t.Fatal("read returned the private key")
	}
	if fp := resp.Data["private_key_fingerprint"].(string); fp != opensslFingerprint(t, testKeyPEM) {
		t.Fatalf("fingerprint %q differs from openssl's", fp)
	}

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
		{"unreachable", map[string]any{"base_url": downURL, "request_timeout": 1}, []string{"unreachable", downURL, "check base_url"}},
		{"not an API", map[string]any{"base_url": e.srv.URL + "/nothing-here"}, []string{"404", "check base_url"}},
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
