// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package main

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

// syncBuffer is a bytes.Buffer that run's goroutine and the test can share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type running struct {
	url            string
	stdout, stderr *syncBuffer
	stop           func() error
}

// start runs the program with args plus -addr-file, and waits until it listens.
func start(t *testing.T, args ...string) *running {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), "addr")
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	done := make(chan error, 1)
	go func() { done <- run(ctx, append(args, "-addr-file", addrFile), r.stdout, r.stderr) }()

	var stopped bool
	r.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("run did not return after cancel")
			return nil
		}
	}
	t.Cleanup(func() { r.stop() })

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if data, err := os.ReadFile(addrFile); err == nil {
			r.url = strings.TrimSpace(string(data))
			return r
		}
		select {
		case err := <-done:
			t.Fatalf("run returned before listening: %v\nstderr: %s", err, r.stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("no -addr-file after 10s")
	return nil
}

func appJWT(t *testing.T, key *rsa.PrivateKey) string {
	t.Helper()
	now := time.Now().Unix()
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iat": now - 60, "exp": now + 540, "iss": "Iv23liFAKEAPP0001",
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func call(t *testing.T, client *http.Client, method, url, auth string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", "fakegithub-cmd-test")
	req.Header.Set("Authorization", auth)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func readKey(t *testing.T, path string) *rsa.PrivateKey {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	key, err := fakegithub.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func TestRun(t *testing.T) {
	keyPath := filepath.Join(t.TempDir(), "app.pem")
	r := start(t, "-listen", "127.0.0.1:0", "-generate-key", keyPath)

	if !strings.HasPrefix(r.url, "http://127.0.0.1:") {
		t.Errorf("URL %q", r.url)
	}
	if want := "fakegithub listening on " + r.url + "\n"; r.stdout.String() != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	info, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", info.Mode().Perm())
	}
	key := readKey(t, keyPath)
	auth := "Bearer " + appJWT(t, key)

	status, body := call(t, http.DefaultClient, "GET", r.url+"/app", auth)
	var app struct {
		ID   int64  `json:"id"`
		Slug string `json:"slug"`
	}
	json.Unmarshal(body, &app)
	if status != 200 || app.ID != 1001 || app.Slug != "vault-demo" {
		t.Fatalf("GET /app: %d %s", status, body)
	}
	status, body = call(t, http.DefaultClient, "POST", r.url+"/app/installations/2001/access_tokens", auth)
	var tok struct {
		Token string `json:"token"`
	}
	json.Unmarshal(body, &tok)
	if status != 201 || !strings.HasPrefix(tok.Token, "ghs_") {
		t.Fatalf("mint: %d %s", status, body)
	}
	if status, _ := call(t, http.DefaultClient, "DELETE", r.url+"/installation/token", "token "+tok.Token); status != 204 {
		t.Errorf("revoke: %d", status)
	}

	if err := r.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	logs := r.stderr.String()
	for _, want := range []string{`method=GET path=/app status=200`, `path=/app/installations/2001/access_tokens status=201`, `method=DELETE path=/installation/token status=204`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	for _, secret := range []string{tok.Token, auth[len("Bearer "):], "Bearer", "Authorization"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains a credential (%.12s…)", secret)
		}
	}

	// A second run reuses the key instead of replacing it.
	before, _ := os.ReadFile(keyPath)
	r2 := start(t, "-generate-key", keyPath)
	after, _ := os.ReadFile(keyPath)
	if !bytes.Equal(before, after) {
		t.Error("the second run replaced the key")
	}
	if status, body := call(t, http.DefaultClient, "GET", r2.url+"/app", "Bearer "+appJWT(t, key)); status != 200 {
		t.Errorf("second run, GET /app: %d %s", status, body)
	}
}

func TestRunTLS(t *testing.T) {
	dir := t.TempDir()
	keyPath, caPath := filepath.Join(dir, "app.pem"), filepath.Join(dir, "ca.pem")
	r := start(t, "-tls", "-ca-file", caPath, "-generate-key", keyPath)
	if !strings.HasPrefix(r.url, "https://127.0.0.1:") {
		t.Fatalf("URL %q", r.url)
	}
	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no certificate in the CA file")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	if status, body := call(t, client, "GET", r.url+"/api/v3/app", "Bearer "+appJWT(t, readKey(t, keyPath))); status != 200 {
		t.Errorf("GET /api/v3/app over TLS: %d %s", status, body)
	}
	if _, err := http.Get(r.url + "/_fake/health"); err == nil {
		t.Error("a client without the CA trusted the emulator")
	}
}

func TestRunFixtureAndLongTokens(t *testing.T) {
	keyPath := filepath.Join(t.TempDir(), "app.pem")
	r := start(t, "-fixture", "fixture.example.json", "-long-tokens", "-generate-key", keyPath)
	status, body := call(t, http.DefaultClient, "POST", r.url+"/app/installations/2002/access_tokens", "Bearer "+appJWT(t, readKey(t, keyPath)))
	var tok struct {
		Token string `json:"token"`
	}
	json.Unmarshal(body, &tok)
	if status != 201 || len(tok.Token) < 500 || !strings.Contains(tok.Token, ".") {
		t.Errorf("mint: %d, token of %d characters", status, len(tok.Token))
	}
}

func TestRunRefuses(t *testing.T) {
	dir := t.TempDir()
	notKey := filepath.Join(dir, "not-a-key.pem")
	os.WriteFile(notKey, []byte("hello"), 0o600)
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"all interfaces", []string{"-listen", "0.0.0.0:0"}, "only loopback"},
		{"no host", []string{"-listen", ":0"}, "only loopback"},
		{"another address", []string{"-listen", "10.1.2.3:0"}, "only loopback"},
		{"a host name", []string{"-listen", "example.com:0"}, "only loopback"},
		{"no port", []string{"-listen", "127.0.0.1"}, "missing port"},
		{"tls without ca-file", []string{"-tls"}, "-ca-file"},
		{"missing fixture", []string{"-fixture", filepath.Join(dir, "nope.json")}, "no such file"},
		{"key file that is no key", []string{"-generate-key", notKey}, "no RSA private key"},
		{"unknown flag", []string{"-verbose"}, "not defined"},
		{"stray argument", []string{"serve"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var stdout, stderr syncBuffer
			err := run(ctx, tt.args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("run: %v, want an error containing %q", err, tt.wantErr)
			}
			if stdout.String() != "" {
				t.Errorf("stdout %q: it claims to listen", stdout.String())
			}
		})
	}
}

// TestExampleFixture keeps the example fixtures and the built-in ones the same.
func TestExampleFixture(t *testing.T) {
	tests := []struct {
		file string
		want fakegithub.Fixture
	}{
		{"fixture.example.json", fakegithub.DemoFixture()},
		{"fixture.pool.example.json", fakegithub.PoolFixture()},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := fakegithub.LoadFixture(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(f, tt.want) {
				t.Errorf("%s = %+v\nbuilt-in = %+v", tt.file, f, tt.want)
			}
		})
	}
}

// TestRunPoolFixture serves three Apps on acme from the pool fixture: the generated key signs for each of them,
// and each finds its own installation.
func TestRunPoolFixture(t *testing.T) {
	keyPath := filepath.Join(t.TempDir(), "app.pem")
	r := start(t, "-fixture", "fixture.pool.example.json", "-generate-key", keyPath)
	key := readKey(t, keyPath)
	for app, want := range map[string]int64{"Iv23liFAKEAPP0001": 2001, "Iv23liFAKEAPP0002": 2102, "Iv23liFAKEAPP0003": 2103} {
		now := time.Now().Unix()
		signed, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iat": now - 60, "exp": now + 540, "iss": app}).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		status, body := call(t, http.DefaultClient, "GET", r.url+"/orgs/acme/installation", "Bearer "+signed)
		var in struct {
			ID int64 `json:"id"`
		}
		json.Unmarshal(body, &in)
		if status != 200 || in.ID != want {
			t.Errorf("App %s on acme: %d %s, want installation %d", app, status, body, want)
		}
	}
}
