// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fuzz targets for what the client reads from outside: the App's private key (from an operator) and GitHub's
// answers (status, headers, body). Each asserts properties, not only the absence of a panic. `make fuzz` runs them;
// `go test` runs their seeds (f.Add and testdata/fuzz/FuzzXxx) as ordinary tests.
//
// The rate-limit and answer targets go through errorFrom and a real HTTP round trip, not through rateLimit itself,
// so that they keep working when rate-limit handling moves elsewhere in the package.

// ---------------------------------------------------------------------------------------------- private keys

// FuzzParsePrivateKey: ParsePrivateKey never panics; its errors never quote the key material (no 16 characters of
// the PEM body, in a row); a key it accepts has at least MinKeyBits bits, is consistent and has a fingerprint.
func FuzzParsePrivateKey(f *testing.F) {
	key := sharedKey(f)
	pkcs1 := pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
	pkcs8DER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		f.Fatal(err)
	}
	pkcs8 := pemOf("PRIVATE KEY", pkcs8DER)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	ecDER, _ := x509.MarshalECPrivateKey(ec)
	ec8DER, _ := x509.MarshalPKCS8PrivateKey(ec)
	pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		f.Fatal(err)
	}
	// A 2048-bit modulus whose private exponent does not match: it parses as DER but must not sign.
	bad := *key
	bad.D = new(big.Int).Add(key.D, big.NewInt(2))
	bad.Precomputed = rsa.PrecomputedValues{}

	for _, seed := range []string{
		pkcs1,
		pkcs8,
		strings.ReplaceAll(pkcs1, "\n", "\r\n"),
		"\n\t " + pkcs8 + " \n",
		pkcs1 + pkcs1,
		pkcs1[:len(pkcs1)/2],
		pkcs1 + "trailing text",
		"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\n" +
			pemBodyOf(pkcs1) + "\n-----END RSA PRIVATE KEY-----\n",
		pemOf("ENCRYPTED PRIVATE KEY", pkcs8DER),
		pemOf("EC PRIVATE KEY", ecDER),
		pemOf("PRIVATE KEY", ec8DER),
		pemOf("PUBLIC KEY", pubDER),
		pemOf("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&key.PublicKey)),
		pemOf("CERTIFICATE", pkcs8DER),
		pemOf("OPENSSH PRIVATE KEY", pkcs8DER),
		pemOf("RSA PRIVATE KEY", pkcs8DER), // the PKCS#8 bytes under the PKCS#1 type
		pemOf("PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key)),
		pemOf("RSA PRIVATE KEY", marshalUnchecked(&bad)),
		pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small)),
		pemOf("DSA PRIVATE KEY", pkcs8DER[:40]),
		pemOf(pemBodyOf(pkcs1)[:64], pkcs8DER), // a type that looks like key material
		"",
		"not a key",
		"-----BEGIN RSA PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----\n",
		pemBodyOf(pkcs1), // the body without its armour
	} {
		f.Add(seed)
	}

	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParsePrivateKey(in)
		if err != nil {
			if got != nil {
				t.Fatal("ParsePrivateKey returned both a key and an error")
			}
			if leak := quotedBody(in, err.Error()); leak != "" {
				t.Fatalf("the error quotes %q of the key's body: %v", leak, err)
			}
			return
		}
		if bits := got.N.BitLen(); bits < 2048 { // GitHub's keys; not MinKeyBits, which could change with the code
			t.Fatalf("accepted a %d-bit key", bits)
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("accepted an inconsistent key: %v", err)
		}
		fp, err := Fingerprint(&got.PublicKey)
		if err != nil {
			t.Fatalf("Fingerprint of an accepted key: %v", err)
		}
		if !fingerprintPattern.MatchString(fp) {
			t.Fatalf("Fingerprint = %q, want SHA256: and the base64 of 32 bytes", fp)
		}
		// What was accepted is the key the PEM holds: its PKCS#1 encoding parses back to the same key.
		again, err := ParsePrivateKey(pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(got)))
		if err != nil || !again.Equal(got) {
			t.Fatalf("the accepted key does not survive a PKCS#1 round trip: %v", err)
		}
	})
}

var (
	fingerprintPattern = regexp.MustCompile(`^SHA256:[A-Za-z0-9+/]{43}=$`)
	base64Run          = regexp.MustCompile(`[A-Za-z0-9+/=]{16,}`)
)

// quotedBody returns a 16-character piece of the PEM body of in that errText contains, or "". The body is every
// line that is not PEM armour (-----BEGIN/END ...-----). The block's type is on the armour line and is quoted by
// design ("unsupported PEM block type ..."), so a piece that is also in the type does not count.
func quotedBody(in, errText string) string {
	var body, armour strings.Builder
	for _, line := range strings.Split(in, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "-----") {
			armour.WriteString(line + "\n")
		} else {
			body.WriteString(line + "\n")
		}
	}
	// The error's own text holds no 16-character run of base64 characters, so only such runs can be quoted input.
	for _, run := range base64Run.FindAllString(errText, -1) {
		for i := 0; i+16 <= len(run); i++ {
			piece := run[i : i+16]
			if strings.Contains(body.String(), piece) && !strings.Contains(armour.String(), piece) {
				return piece
			}
		}
	}
	return ""
}

// pemBodyOf is the base64 lines of a PEM text, without armour, joined by newlines.
func pemBodyOf(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[1:len(lines)-1], "\n")
}

// marshalUnchecked is PKCS#1 DER of a key that x509.MarshalPKCS1PrivateKey may refuse to check.
func marshalUnchecked(k *rsa.PrivateKey) []byte {
	defer func() { _ = recover() }()
	return x509.MarshalPKCS1PrivateKey(k)
}

// -------------------------------------------------------------------------------------- rate limits and errors

// fuzzNow is the client's clock in the rate-limit target: 2023-11-14T22:13:20Z.
const fuzzNow = 1_700_000_000

// maxErrorMessage bounds GitHub's message as an Error keeps it; maxErrorText bounds Error() for a call whose method
// and path are short. An answer can be 8 MiB; its message must not become an 8 MiB Vault error or log line.
const (
	maxErrorMessage = 1024
	maxErrorText    = 256 + maxErrorMessage
)

// minCappedWait is the least a capped rate-limit wait may be: GitHub's rate-limit windows are an hour long, so a
// cap below that would retry before GitHub allows it.
const minCappedWait = time.Hour

// FuzzRateLimitAnswer drives errorFrom with an error answer: status, GitHub's rate-limit headers, Date and a body.
// Properties: RetryAfter is never negative; a rate limit is only a 403 or 429 (and a 429 always is one); a
// Retry-After of s seconds waits exactly s seconds, or, when s is huge, at least minCappedWait (never a wrapped,
// shorter or negative wait); without Retry-After a reset in the past waits nothing and a reset in the future waits
// until then (measured on the answer's Date when it has one), capped the same way; the message is GitHub's, and
// the error's text stays bounded.
func FuzzRateLimitAnswer(f *testing.F) {
	const date = "Tue, 14 Nov 2023 22:13:20 GMT" // fuzzNow
	type seed struct {
		status                                           int
		body, retryAfter, remaining, reset, resource, dt string
		now                                              int64
	}
	for _, s := range []seed{
		{403, `{"message":"API rate limit exceeded for app ID 1001."}`, "", "0", "1700000060", "core", date, fuzzNow},
		{403, `{"message":"API rate limit exceeded"}`, "", "0", "1699999000", "core", date, fuzzNow}, // reset passed
		{403, `{"message":"API rate limit exceeded"}`, "", "0", "1700000030", "core", "", fuzzNow},   // no Date: clock
		{403, `{"message":"API rate limit exceeded"}`, "", "0", "1700000030", "", "garbage", fuzzNow},
		{403, `{"message":"API rate limit exceeded"}`, "", "0", "9223372036854775807", "core", date, fuzzNow},
		{403, `{"message":"API rate limit exceeded"}`, "", "0", "-9223372036854775808", "core", date, fuzzNow},
		{429, `{"message":"You have exceeded a secondary rate limit."}`, "60", "", "", "", date, fuzzNow},
		{429, `{"message":"You have exceeded a secondary rate limit."}`, "0", "", "", "", date, fuzzNow},
		{429, `{"message":"slow down"}`, "-1", "", "", "", date, fuzzNow},
		{429, `{"message":"slow down"}`, "Wed, 21 Oct 2015 07:28:00 GMT", "", "", "", date, fuzzNow}, // HTTP-date form
		{403, `{"message":"You have exceeded a secondary rate limit."}`, "120", "4999", "1700003600", "core", date, fuzzNow},
		{429, `{}`, "9300000000", "", "", "", date, fuzzNow},          // s·1e9 wraps below zero
		{429, `{}`, "18446744074", "", "", "", date, fuzzNow},         // s·1e9 wraps to 0.29s
		{429, `{}`, "9223372036854775807", "", "", "", date, fuzzNow}, // the largest int64
		{403, `{"message":"Resource not accessible by integration"}`, "", "5000", "1700000060", "core", date, fuzzNow},
		{403, `{"message":"This installation has been suspended"}`, "", "", "", "", date, fuzzNow},
		{401, `{"message":"Bad credentials"}`, "30", "0", "1700000060", "", date, fuzzNow},
		{404, `not json`, "", "", "", "", "", fuzzNow},
		{500, ``, "", "", "", "", "", fuzzNow},
		{422, `{"message":` + strconv.Quote(strings.Repeat("a very long message ", 500)) + `}`, "", "", "", "", "", fuzzNow},
		{599, `{"message":12}`, "", "", "", "", "", 0},
	} {
		f.Add(s.status, s.body, s.retryAfter, s.remaining, s.reset, s.resource, s.dt, s.now)
	}

	f.Fuzz(func(t *testing.T, status int, body, retryAfter, remaining, reset, resource, date string, now int64) {
		// errorFrom sees every non-2xx status a server can send.
		if status < 300 || status > 599 {
			status = 300 + int(uint(status)%300)
		}
		h := http.Header{}
		for k, v := range map[string]string{"Retry-After": retryAfter, "X-RateLimit-Remaining": remaining,
			"X-RateLimit-Reset": reset, "X-RateLimit-Resource": resource, "Date": date} {
			if v != "" {
				h.Set(k, v)
			}
		}
		clock := time.Unix(now, 0)
		c, err := NewClient(Options{Now: func() time.Time { return clock }})
		if err != nil {
			t.Fatal(err)
		}
		resp := &http.Response{StatusCode: status, Header: h, Body: http.NoBody}
		e := c.errorFrom(call{method: http.MethodGet, path: "/app"}, resp, []byte(body))

		checkError(t, e, status, []byte(body))
		// GitHub's documented signs of a rate limit on a 403: no requests remaining, a Retry-After, or a message
		// saying so.
		if status == http.StatusForbidden && e.Kind != KindRateLimited &&
			(remaining == "0" || retryAfter != "" || strings.Contains(strings.ToLower(e.Message), "rate limit")) {
			t.Fatalf("a 403 with X-RateLimit-Remaining %q, Retry-After %q and message %q is a %s error", remaining,
				retryAfter, e.Message, e.Kind)
		}
		if e.Kind != KindRateLimited {
			return
		}
		if secs, err := strconv.Atoi(retryAfter); err == nil && secs >= 0 {
			checkWait(t, "Retry-After "+retryAfter, e.RetryAfter, durationOfSeconds(secs))
			return
		}
		resetAt, err := strconv.ParseInt(reset, 10, 64)
		if err != nil {
			if e.RetryAfter != 0 {
				t.Fatalf("a rate limit without Retry-After or a reset waits %s", e.RetryAfter)
			}
			return
		}
		ref := clock
		if d, err := http.ParseTime(date); err == nil {
			ref = d
		}
		// The distance in whole seconds (both ends are whole seconds), computed without overflow: time.Unix wraps
		// for seconds near the int64 limits.
		ahead := new(big.Int).Sub(big.NewInt(resetAt), big.NewInt(ref.Unix()))
		if ahead.Sign() <= 0 {
			if e.RetryAfter != 0 {
				t.Fatalf("a reset %s s in the past (Date %q) waits %s", ahead.Neg(ahead), date, e.RetryAfter)
			}
			return
		}
		asked := maxDuration
		if ahead.IsInt64() && ahead.Int64() <= int64(maxDuration/time.Second) {
			asked = time.Duration(ahead.Int64()) * time.Second
		}
		checkWait(t, "X-RateLimit-Reset "+reset+" (Date "+strconv.Quote(date)+")", e.RetryAfter, asked)
	})
}

// durationOfSeconds is s seconds, saturating at the largest Duration instead of wrapping.
func durationOfSeconds(s int) time.Duration {
	if int64(s) > int64(maxDuration/time.Second) {
		return maxDuration
	}
	return time.Duration(s) * time.Second
}

const maxDuration = time.Duration(1<<63 - 1)

// checkWait asserts that a wait is what was asked, or a cap of at least minCappedWait when more was asked.
func checkWait(t *testing.T, what string, got, asked time.Duration) {
	t.Helper()
	switch {
	case got < 0:
		t.Fatalf("%s gives a negative wait %s", what, got)
	case asked <= minCappedWait && got != asked:
		t.Fatalf("%s gives a wait of %s, want %s", what, got, asked)
	case asked > minCappedWait && (got < minCappedWait || got > asked):
		t.Fatalf("%s (%s) gives a wait of %s, want between %s and what was asked", what, asked, got, minCappedWait)
	}
}

// checkError asserts what holds for every error answer: the status and GitHub's message are kept, RetryAfter is
// never negative and set only on rate limits, a rate limit is a 403 or 429, and Error() is bounded.
func checkError(t *testing.T, e *Error, status int, body []byte) {
	t.Helper()
	if e == nil {
		t.Fatal("no error for an error answer")
	}
	if e.StatusCode != status {
		t.Fatalf("StatusCode = %d, want %d", e.StatusCode, status)
	}
	if e.RetryAfter < 0 {
		t.Fatalf("RetryAfter = %s: a negative wait", e.RetryAfter)
	}
	if e.RetryAfter > 0 && e.Kind != KindRateLimited {
		t.Fatalf("RetryAfter %s on a %s error", e.RetryAfter, e.Kind)
	}
	if e.Kind == KindRateLimited && status != http.StatusForbidden && status != http.StatusTooManyRequests {
		t.Fatalf("status %d counted as a rate limit", status)
	}
	if status == http.StatusTooManyRequests && e.Kind != KindRateLimited {
		t.Fatalf("a 429 is a %s error, not a rate limit", e.Kind)
	}
	var eb struct {
		Message string `json:"message"`
	}
	want := http.StatusText(status)
	if json.Unmarshal(body, &eb) == nil && eb.Message != "" {
		want = eb.Message
	}
	if len(e.Message) > maxErrorMessage {
		t.Fatalf("the error keeps a message of %d bytes, more than %d", len(e.Message), maxErrorMessage)
	}
	if !strings.HasPrefix(want, strings.TrimSuffix(e.Message, "…")) || (e.Message == "" && want != "") {
		t.Fatalf("Message = %q, want GitHub's %q (or its beginning)", e.Message, want)
	}
	if n := len(e.Error()); n > maxErrorText {
		t.Fatalf("Error() is %d bytes long, more than %d", n, maxErrorText)
	}
}

// ------------------------------------------------------------------------------------------- whole answers

// fuzzAnswer is what the fuzz server sends next; the target runs one input at a time per process.
type fuzzAnswer struct {
	status int
	header http.Header
	body   []byte
}

// FuzzTokenAnswer: a server answers with fuzzed status, headers and body, over a real HTTP round trip; a 2xx
// answers CreateToken, any other status a token-authenticated call (TokenRepositories). Properties: a 2xx answer
// gives either exactly the token its JSON decodes to, or an error, never a half-decoded token; a Token never shows
// its value when formatted; any other answer gives an *Error that keeps the status, waits no negative time and has
// a bounded text; a hostile Link header does no harm.
func FuzzTokenAnswer(f *testing.F) {
	const tokenJSON = `{"token":"ghs_16C7e42F292c6912E7710c838347Ae178B4a","expires_at":"2030-01-02T03:04:05Z",` +
		`"permissions":{"contents":"read","metadata":"read"},"repository_selection":"selected",` +
		`"repositories":[{"id":3001,"name":"api","full_name":"acme/api","owner":{"id":1,"login":"acme","type":"Organization"}}]}`
	type seed struct {
		status                                             int
		body, retryAfter, remaining, reset, date, link, rq string
	}
	for _, s := range []seed{
		{201, tokenJSON, "", "", "", "", "", ""},
		{201, `{"token":"ghs_x","expires_at":"not a time"}`, "", "", "", "", "", ""},
		{201, `{"token":"ghs_abcdefghijklmnopqrstuvwxyz","expires_at":"ghs_abcdefghijklmnopqrstuvwxyz"}`, "", "", "", "", "", ""},
		{201, `{"token":12}`, "", "", "", "", "", ""},
		{201, `{"token":"ghs_x","repositories":{}}`, "", "", "", "", "", ""},
		{201, `{"token":"ghs_x"} trailing`, "", "", "", "", "", ""},
		{201, ``, "", "", "", "", "", ""},
		{200, `null`, "", "", "", "", "", ""},
		{204, tokenJSON, "", "", "", "", "", ""},
		{201, tokenJSON, "", "", "", "", `<https://evil.example/?page=2>; rel="next", <x>; rel="last"`, "req-1"},
		{403, `{"message":"API rate limit exceeded"}`, "", "0", "1700000060", "Tue, 14 Nov 2023 22:13:20 GMT", "", "ABCD:1234"},
		{429, `{"message":"secondary rate limit"}`, "18446744074", "", "", "", "", ""},
		{429, `{"message":"secondary rate limit"}`, "3", "", "", "", "", ""},
		{401, `{"message":"'Expiration time' claim ('exp') is too far in the future"}`, "", "", "", "garbage", "", ""},
		{404, `{"message":"Integration not found"}`, "", "", "", "", "", ""},
		{422, `{"message":"There is at least one repository that does not exist"}`, "", "", "", "", "", ""},
		{302, `moved`, "", "", "", "", "", ""},
		{503, `<html>down</html>`, "1", "", "", "", "", ""},
	} {
		f.Add(s.status, []byte(s.body), s.retryAfter, s.remaining, s.reset, s.date, s.link, s.rq)
	}

	var (
		mu   sync.Mutex
		next fuzzAnswer
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		a := next
		mu.Unlock()
		for k, vs := range a.header {
			w.Header()[k] = vs
		}
		w.WriteHeader(a.status)
		_, _ = w.Write(a.body)
	}))
	f.Cleanup(srv.Close)
	// Successful answers go to one App client: a success leaves nothing behind that could refuse the next call,
	// and the JWT is signed once. Error answers go to a new token-authenticated client each (no JWT to sign), so
	// that what one error answer does never depends on those before it (a remembered rate limit or outage).
	app, err := NewClient(Options{BaseURL: srv.URL, AppID: 1, PrivateKey: sharedKey(f), MaxRetries: -1})
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, status int, body []byte, retryAfter, remaining, reset, date, link, requestID string) {
		// A server can send any final status; 1xx are informational and not an answer.
		if status < 200 || status > 599 {
			status = 200 + int(uint(status)%400)
		}
		h := http.Header{}
		for k, v := range map[string]string{"Retry-After": retryAfter, "X-RateLimit-Remaining": remaining,
			"X-RateLimit-Reset": reset, "Date": date, "Link": link, "X-GitHub-Request-Id": requestID} {
			if v = headerSafe(v); v != "" {
				h.Set(k, v)
			}
		}
		mu.Lock()
		next = fuzzAnswer{status: status, header: h, body: body}
		mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()

		if status >= 200 && status < 300 {
			tok, err := app.CreateToken(ctx, 1, TokenRequest{})
			if status == http.StatusNoContent {
				body = nil // a server sends no body with a 204
			}
			var want Token
			if derr := json.Unmarshal(body, &want); derr != nil {
				var e *Error
				if tok != nil || !errors.As(err, &e) || e.Kind != KindOther || e.StatusCode != status {
					t.Fatalf("an undecodable %d answer gave token %v, error %v; want a KindOther error", status, tok, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("a decodable %d answer gave the error %v", status, err)
			}
			// Times compare with Equal: each decoding of an offset makes its own Location.
			got := *tok
			if !got.ExpiresAt.Equal(want.ExpiresAt) {
				t.Fatalf("expires_at %s, the answer says %s", got.ExpiresAt, want.ExpiresAt)
			}
			got.ExpiresAt, want.ExpiresAt = time.Time{}, time.Time{}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("the token differs from the answer's JSON: %+v", got)
			}
			checkTokenHidden(t, tok)
			return
		}

		c, err := NewClient(Options{BaseURL: srv.URL, MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseIdleConnections()
		repos, err := c.TokenRepositories(ctx, "ghs_fuzz")
		if repos != nil {
			t.Fatalf("a %d answer gave repositories", status)
		}
		if status == http.StatusNotModified {
			body = nil // nor with a 304
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("a %d answer gave %T %v, want *Error", status, err, err)
		}
		if e.StatusCode == 0 {
			// The transport refused the answer (a malformed header): GitHub could not be read.
			if e.Kind != KindUnavailable || len(e.Error()) > maxErrorText {
				t.Fatalf("transport failure as %s: %v", e.Kind, e)
			}
			return
		}
		checkError(t, e, status, body)
	})
}

// headerSafe keeps what an HTTP/1.1 header value can carry, so that answers stay well-formed.
func headerSafe(v string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || (r >= ' ' && r != 0x7f) {
			return r
		}
		return -1
	}, v)
}

// checkTokenHidden asserts that no formatting of a Token shows its value.
func checkTokenHidden(t *testing.T, tok *Token) {
	t.Helper()
	// A short or digit-only value can occur in the description by chance (its counts and date).
	if len(tok.Token) < 8 || !strings.ContainsAny(tok.Token, "_") {
		return
	}
	for _, format := range []string{"%s", "%v", "%+v", "%#v", "%q"} {
		for _, v := range []any{tok, *tok} {
			if out := fmt.Sprintf(format, v); strings.Contains(out, tok.Token) {
				t.Fatalf("fmt %s of a %T shows the token: %s", format, v, out)
			}
		}
	}
}

// ------------------------------------------------------------------------------------------------ pagination

// FuzzHasNextPage: hasNextPage never panics, whatever the Link header; and for a header of well-formed entries
// <URI>; rel="R" (any URI, as RFC 3986 allows it, so never a double quote; one rel each, as GitHub sends them), it
// reports a next page exactly when one entry's rel is next.
func FuzzHasNextPage(f *testing.F) {
	const api = "https://api.github.com/app/installations"
	for _, s := range []struct{ raw, uris, rels string }{
		{`<` + api + `?page=2>; rel="next", <` + api + `?page=3>; rel="last"`, api + "?page=2 " + api + "?page=3", "next last"},
		{`<` + api + `?page=1>; rel="prev", <` + api + `?page=1>; rel="first"`, api + "?a=1,2;b=rel=next", "prev first"},
		{"<a>; rel=\"prev\"\n<b>; rel=\"next\"", "a b", "prev next"},
		{`rel="next"`, "", ""},
		{`<,,,>;;;,rel=,"next",`, "https://x/?q=%22next%22", "nextpage"},
		{",,,,", "", "next"},
	} {
		f.Add(s.raw, s.uris, s.rels)
	}
	f.Fuzz(func(t *testing.T, raw, uris, rels string) {
		h := http.Header{}
		for _, v := range strings.Split(raw, "\n") {
			h.Add("Link", v)
		}
		_ = hasNextPage(h) // any header: no panic

		// Well-formed: pair URIs with rels; each header line holds up to three entries.
		us, rs := strings.Fields(uris), strings.Fields(rels)
		n := min(len(us), len(rs))
		var entries []string
		want := false
		for i := range n {
			u, r := uriSafe(us[i]), relSafe(rs[i])
			if r == "" {
				continue
			}
			entries = append(entries, "<"+u+`>; rel="`+r+`"`)
			want = want || r == "next"
		}
		h = http.Header{}
		for len(entries) > 0 {
			k := min(3, len(entries))
			h.Add("Link", strings.Join(entries[:k], ", "))
			entries = entries[k:]
		}
		if got := hasNextPage(h); got != want {
			t.Fatalf("hasNextPage(%q) = %v, want %v", h.Values("Link"), got, want)
		}
	})
}

// uriSafe keeps the characters RFC 3986 allows in a URI reference (which excludes '"', '<', '>' and spaces).
func uriSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			strings.ContainsRune("-._~:/?#[]@!$&'()*+,;=%", r)) {
			return r
		}
		return -1
	}, s)
}

// relSafe keeps a relation type's characters (RFC 8288 registered names: lower-case letters, digits, '.', '-').
func relSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return -1
	}, strings.ToLower(s))
}
