// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fuzz targets for GitHub's answers as the client reads them (api.go): whole token answers over a real HTTP round
// trip, not through the decoding alone, and the Link header of paginated lists. Each asserts properties, not only the
// absence of a panic. `make fuzz` runs them; `go test` runs their seeds (f.Add and testdata/fuzz/FuzzXxx) as ordinary
// tests. What every error answer must give is checkError's (errors_fuzz_test.go).

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
