// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// These tests need no emulator: they pin down the pure helpers the client's behaviour rests on.

func TestNormalizeBaseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		raw     string
		want    string
		wantErr string // substring of the error; empty means success
	}{
		{name: "empty gives github.com", raw: "", want: DefaultBaseURL},
		{name: "blank gives github.com", raw: "   ", want: DefaultBaseURL},
		{name: "github.com as is", raw: "https://api.github.com", want: "https://api.github.com"},
		{name: "trailing slash dropped", raw: "https://api.github.com/", want: "https://api.github.com"},
		{name: "surrounding space trimmed", raw: " https://api.github.com/ ", want: "https://api.github.com"},
		{name: "GHES path kept", raw: "https://ghe.example.com/api/v3", want: "https://ghe.example.com/api/v3"},
		{name: "GHES path with slash", raw: "https://ghe.example.com/api/v3/", want: "https://ghe.example.com/api/v3"},
		{name: "several trailing slashes", raw: "https://ghe.example.com/api/v3//", want: "https://ghe.example.com/api/v3"},
		{name: "port kept", raw: "http://127.0.0.1:8080/api/v3", want: "http://127.0.0.1:8080/api/v3"},
		{name: "bad scheme", raw: "ftp://api.github.com", wantErr: "is not an http(s) URL"},
		{name: "no scheme", raw: "api.github.com", wantErr: "is not an http(s) URL"},
		{name: "no host", raw: "https://", wantErr: "is not an http(s) URL"},
		{name: "no host with path", raw: "https:///api/v3", wantErr: "is not an http(s) URL"},
		{name: "unparsable", raw: "https://[::1", wantErr: "is not an http(s) URL"},
		{name: "query", raw: "https://api.github.com/?per_page=1", wantErr: "must not hold credentials, a query"},
		{name: "fragment", raw: "https://api.github.com/#x", wantErr: "must not hold credentials, a query"},
		{name: "userinfo", raw: "https://user:s3cr3t@ghe.example.com/api/v3", wantErr: "must not hold credentials"},
		{name: "userinfo with a bad scheme", raw: "ftp://user:s3cr3t@ghe.example.com", wantErr: "is not an http(s) URL"},
		{name: "userinfo unparsable", raw: "https://user:s3cr3t@ghe.example.com%zz/", wantErr: "is not an http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := NormalizeBaseURL(tt.raw)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("NormalizeBaseURL(%q) = %q, want an error containing %q", tt.raw, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NormalizeBaseURL(%q) error = %q, want it to contain %q", tt.raw, err, tt.wantErr)
				}
				// A password in a base URL must never be echoed back into logs or Vault responses.
				if strings.Contains(err.Error(), "s3cr3t") {
					t.Fatalf("NormalizeBaseURL(%q) error quotes the password: %q", tt.raw, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("NormalizeBaseURL(%q) error: %v", tt.raw, err)
			}
			if got != tt.want {
				t.Fatalf("NormalizeBaseURL(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}

func TestParseProxyURL(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{"http://proxy:3128", "https://proxy:443", "socks5://127.0.0.1:1080"} {
		if _, err := ParseProxyURL(raw); err != nil {
			t.Errorf("ParseProxyURL(%q): %v", raw, err)
		}
	}
	for _, raw := range []string{"", "proxy:3128", "ftp://proxy", "http://", "://x"} {
		if _, err := ParseProxyURL(raw); err == nil {
			t.Errorf("ParseProxyURL(%q) accepted an invalid proxy URL", raw)
		}
	}
}

func TestNewClientOptions(t *testing.T) {
	t.Parallel()
	if _, err := NewClient(Options{PrivateKey: sharedKey(t)}); err == nil {
		t.Fatal("NewClient accepted a private key without an app ID or client ID")
	}
	if _, err := NewClient(Options{CACertificate: "not a PEM"}); err == nil {
		t.Fatal("NewClient accepted a CA certificate without a PEM block")
	}
	if _, err := NewClient(Options{ProxyURL: "ftp://proxy"}); err == nil {
		t.Fatal("NewClient accepted an ftp proxy")
	}
	if _, err := NewClient(Options{BaseURL: "ftp://x"}); err == nil {
		t.Fatal("NewClient accepted an ftp base URL")
	}
	c, err := NewClient(Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Defaults matter: without a User-Agent GitHub refuses every request.
	if c.BaseURL() != DefaultBaseURL || c.userAgent != DefaultUserAgent || c.timeout != DefaultRequestTimeout ||
		c.maxRetries != DefaultMaxRetries {
		t.Fatalf("defaults: base %q, user agent %q, timeout %s, retries %d", c.BaseURL(), c.userAgent, c.timeout,
			c.maxRetries)
	}
	if c.JWTSignatures() != 0 {
		t.Fatalf("a client without a key reports %d signatures", c.JWTSignatures())
	}
	// Token-authenticated calls (revocation) work without a key; App calls must say what is missing.
	if _, err := c.App(t.Context()); err == nil || !strings.Contains(err.Error(), "no App private key") {
		t.Fatalf("App without a key: %v", err)
	}
	if c, _ := NewClient(Options{MaxRetries: -1}); c.maxRetries != 0 {
		t.Fatalf("MaxRetries -1 gives %d retries, want 0", c.maxRetries)
	}
}

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	const floor, base, limit = 50 * time.Millisecond, 250 * time.Millisecond, 5 * time.Second
	for attempt := range 12 {
		ceiling := min(base<<attempt, limit)
		lo, hi := time.Duration(1<<62), time.Duration(0)
		for range 2000 {
			d := backoff(attempt)
			if d < floor || d >= floor+ceiling {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s)", attempt, d, floor, floor+ceiling)
			}
			lo, hi = min(lo, d), max(hi, d)
		}
		// Full jitter: 2000 draws must spread over most of the range, or concurrent clients retry in lockstep.
		if spread := hi - lo; spread < ceiling/2 {
			t.Errorf("backoff(%d) spread %s over 2000 draws, want at least %s", attempt, spread, ceiling/2)
		}
	}
	// A huge attempt number must not overflow into a negative or zero wait.
	for _, attempt := range []int{40, 62, 63, 64, 1000} {
		if d := backoff(attempt); d < floor || d >= floor+limit {
			t.Errorf("backoff(%d) = %s, want within [%s, %s)", attempt, d, floor, floor+limit)
		}
	}
}

func TestHasNextPage(t *testing.T) {
	t.Parallel()
	const api = "https://api.github.com/app/installations"
	tests := []struct {
		name  string
		links []string
		want  bool
	}{
		{name: "no header", want: false},
		{name: "empty header", links: []string{""}, want: false},
		{name: "first page", links: []string{`<` + api + `?page=2>; rel="next", <` + api + `?page=3>; rel="last"`}, want: true},
		{name: "middle page", links: []string{`<` + api + `?page=1>; rel="prev", <` + api + `?page=3>; rel="next", <` + api + `?page=3>; rel="last", <` + api + `?page=1>; rel="first"`}, want: true},
		{name: "last page", links: []string{`<` + api + `?page=2>; rel="prev", <` + api + `?page=1>; rel="first"`}, want: false},
		{name: "next in a second header line", links: []string{`<` + api + `?page=1>; rel="prev"`, `<` + api + `?page=3>; rel="next"`}, want: true},
		{name: "last only", links: []string{`<` + api + `?page=3>; rel="last"`}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, l := range tt.links {
				h.Add("Link", l)
			}
			if got := hasNextPage(h); got != tt.want {
				t.Fatalf("hasNextPage(%q) = %v, want %v", tt.links, got, tt.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status      int
		message     string
		rateLimited bool
		want        Kind
	}{
		{401, "A JSON web token could not be decoded", false, KindBadCredentials},
		{401, "Bad credentials", false, KindBadCredentials},
		{401, "'Expiration time' claim ('exp') is too far in the future", false, KindBadCredentials},
		{404, "Integration not found", false, KindBadCredentials},
		{404, "Not Found", false, KindNotFound},
		{403, "This installation has been suspended", false, KindSuspended},
		{403, "Resource not accessible by integration", false, KindForbidden},
		{403, "API rate limit exceeded for app ID 1001.", true, KindRateLimited},
		{429, "You have exceeded a secondary rate limit", true, KindRateLimited},
		{422, "There is at least one repository that does not exist or is not accessible to the parent installation.", false, KindValidation},
		{422, "The permissions requested are not granted to this installation.", false, KindValidation},
		{500, "Server Error", false, KindUnavailable},
		{502, "Bad Gateway", false, KindUnavailable},
		{503, "Service Unavailable", false, KindUnavailable},
		{400, "Problems parsing JSON", false, KindOther},
		{409, "Conflict", false, KindOther},
	}
	for _, tt := range tests {
		if got := classify(tt.status, tt.message, tt.rateLimited); got != tt.want {
			t.Errorf("classify(%d, %q, %v) = %s, want %s", tt.status, tt.message, tt.rateLimited, got, tt.want)
		}
	}
}

func TestIsClockSkew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status  int
		message string
		want    bool
	}{
		{401, "'Expiration time' claim ('exp') is too far in the future", true},
		{401, "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued", true},
		{401, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires", true},
		{401, "A JSON web token could not be decoded", false},
		{401, "Bad credentials", false},
		// The same words on another status are not GitHub's JWT check speaking.
		{403, "'Expiration time' claim ('exp') is too far in the future", false},
	}
	for _, tt := range tests {
		if got := isClockSkew(tt.status, tt.message); got != tt.want {
			t.Errorf("isClockSkew(%d, %q) = %v, want %v", tt.status, tt.message, got, tt.want)
		}
	}
}

func TestErrorString(t *testing.T) {
	t.Parallel()
	cause := errors.New("connection refused")
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Kind: KindNotFound, Method: "GET", Path: "/app/installations/1", StatusCode: 404, Message: "Not Found"},
			"github: GET /app/installations/1: 404 Not Found"},
		{&Error{Kind: KindRateLimited, Method: "POST", Path: "/x", StatusCode: 429, Message: "slow down",
			RetryAfter: 1500 * time.Millisecond}, "github: POST /x: 429 slow down (retry after 2s)"},
		{&Error{Kind: KindUnavailable, Method: "GET", Path: "/app", Err: cause}, "github: GET /app: connection refused"},
		{&Error{Kind: KindUnavailable, Method: "GET", Path: "/app"}, "github: GET /app: unavailable"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	wrapped := fmt.Errorf("minting: %w", tests[2].err)
	if KindOf(wrapped) != KindUnavailable || !errors.Is(wrapped, cause) {
		t.Fatalf("KindOf/errors.Is through wrapping: kind %s, is %v", KindOf(wrapped), errors.Is(wrapped, cause))
	}
	if KindOf(nil) != KindOther || KindOf(cause) != KindOther {
		t.Fatal("KindOf of a nil or foreign error must be KindOther")
	}
	for k := KindOther; k <= KindUnavailable; k++ {
		if k.String() == "" {
			t.Errorf("Kind %d has no name", int(k))
		}
	}
}

func TestTokenStringHidesValue(t *testing.T) {
	t.Parallel()
	const value = "ghs_16C7e42F292c6912E7710c838347Ae178B4a"
	tok := Token{
		Token:       value,
		ExpiresAt:   time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
		Permissions: map[string]string{"contents": "read", "metadata": "read"},
		Repositories: []Repository{
			{ID: 1, Name: "api", FullName: "acme/api"},
		},
	}
	for _, format := range []string{"%s", "%v", "%+v", "%#v", "%q"} {
		out := fmt.Sprintf(format, tok)
		if strings.Contains(out, value) || strings.Contains(out, "ghs_") {
			t.Errorf("fmt %s of a Token shows its value: %s", format, out)
		}
		// A pointer is what CreateToken returns, so that is what ends up in log lines.
		if out := fmt.Sprintf(format, &tok); strings.Contains(out, value) {
			t.Errorf("fmt %s of a *Token shows its value: %s", format, out)
		}
	}
	want := "installation token (expires 2030-01-02T03:04:05Z, 2 permissions, 1 repositories)"
	if got := tok.String(); got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

// TestIsCertificateError: TLS verification failures are told from passing faults, however they are wrapped
// (TestCertificateErrorsAreNotRetried checks that the client acts on it).
func TestIsCertificateError(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{x509.UnknownAuthorityError{}, true},
		{fmt.Errorf("dial: %w", x509.HostnameError{Host: "ghe.example.com"}), true},
		{&tls.CertificateVerificationError{Err: errors.New("expired")}, true},
		{errors.New("connection refused"), false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := isCertificateError(tt.err); got != tt.want {
			t.Errorf("isCertificateError(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
