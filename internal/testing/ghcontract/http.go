// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package ghcontract

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
)

// fakePrefix is where the GitHub emulator keeps its own control endpoints, which GitHub's description knows nothing
// about.
const fakePrefix = "/_fake/"

func isFake(path string) bool {
	path = stripPrefix(path)
	return path == strings.TrimSuffix(fakePrefix, "/") || strings.HasPrefix(path, fakePrefix)
}

// Middleware wraps a GitHub emulator: it checks every request and the response the emulator gives it, and records
// what does not match the description (see Violations). Requests under /_fake/ pass unchecked. A request that
// matches no operation is a violation unless the emulator answers 404, as GitHub does for routes it does not have.
// Responses pass through unchanged.
func (v *Validator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isFake(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		var body []byte
		if r.Body != nil {
			var err error
			body, err = io.ReadAll(r.Body)
			_ = r.Body.Close()
			if err != nil {
				v.addViolation(fmt.Sprintf("%s %s: reading the request body: %v", r.Method, r.URL.Path, err))
				http.Error(w, "ghcontract: reading the request body failed", http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		// Validate against what the client sent, whatever the handler does to the request.
		sent := r.Clone(r.Context())

		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.hijacked || (rec.header == nil && r.Context().Err() != nil) {
			// The handler took the connection over (to drop it, say) or the client went away (a timeout, a
			// cancellation) and the handler, seeing that, wrote nothing: no response reached anyone, so there is
			// none to judge; the request still is.
			v.record(sent, body, 0, nil, nil, false)
			return
		}
		status, header := rec.result()
		v.record(sent, body, status, header, rec.body.Bytes(), false)
	})
}

// recorder passes a response through and keeps a copy of its status, header and body.
type recorder struct {
	http.ResponseWriter
	status int
	header http.Header // as sent: a snapshot taken when the status was written
	body   bytes.Buffer
	// hijacked is set when the handler took over the connection; what it sends then is not HTTP we can judge.
	hijacked bool
}

// Hijack lets a handler take over the connection (the emulator does, to simulate an outage).
func (rec *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := rec.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, http.ErrNotSupported
	}
	conn, rw, err := h.Hijack()
	if err == nil {
		rec.hijacked = true
	}
	return conn, rw, err
}

func (rec *recorder) WriteHeader(status int) {
	// 1xx responses are informational and may precede the real one.
	if rec.header == nil && (status < 100 || status >= 200) {
		rec.status = status
		rec.header = rec.ResponseWriter.Header().Clone()
	}
	rec.ResponseWriter.WriteHeader(status)
}

func (rec *recorder) Write(p []byte) (int, error) {
	if rec.header == nil {
		rec.WriteHeader(http.StatusOK)
	}
	if rec.body.Len() == 0 && len(p) > 0 {
		// net/http sniffs a Content-Type when the handler set none (not even an empty one) and the client sees
		// that; so must the check.
		if _, ok := rec.header["Content-Type"]; !ok {
			rec.header.Set("Content-Type", http.DetectContentType(p))
		}
	}
	rec.body.Write(p)
	return rec.ResponseWriter.Write(p)
}

// Flush lets streaming handlers work through the middleware.
func (rec *recorder) Flush() {
	if rec.header == nil {
		rec.WriteHeader(http.StatusOK)
	}
	if f, ok := rec.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// result returns the status and header the client received; a handler that wrote nothing sent 200.
func (rec *recorder) result() (int, http.Header) {
	if rec.header == nil {
		return http.StatusOK, rec.ResponseWriter.Header().Clone()
	}
	return rec.status, rec.header
}

// RoundTripper wraps a client transport (nil means http.DefaultTransport): it checks every request the client sends
// and every response it gets, and records what does not match the description (see Violations). Requests under
// /_fake/ pass unchecked. Unlike Middleware, a request that matches no operation is a violation whatever the answer:
// the client chose that URL, and a 404 is just what a wrong one (say, a base URL that lost its /v3) gets back.
// The caller receives the response unchanged, with its body buffered.
func (v *Validator) RoundTripper(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &roundTripper{v: v, next: next}
}

type roundTripper struct {
	v    *Validator
	next http.RoundTripper
}

func (t *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if isFake(req.URL.Path) {
		return t.next.RoundTrip(req)
	}
	body, send, err := requestBody(req)
	if err != nil {
		return nil, err
	}

	resp, err := t.next.RoundTrip(send)
	if err != nil {
		t.v.record(req, body, 0, nil, nil, true)
		return nil, err
	}
	respBody, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.v.record(req, body, 0, nil, nil, true)
		return nil, fmt.Errorf("ghcontract: reading the response body: %w", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	t.v.record(req, body, resp.StatusCode, resp.Header, respBody, true)
	return resp, nil
}

// requestBody returns the body of req and the request to send in its place. A RoundTripper must not change the
// request, so the body is taken from GetBody when the client provides it (http.NewRequest does for byte and string
// readers) and otherwise read once and sent on a copy of the request.
func requestBody(req *http.Request) ([]byte, *http.Request, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, req, nil
	}
	if req.GetBody != nil {
		rc, err := req.GetBody()
		if err != nil {
			_ = req.Body.Close()
			return nil, nil, fmt.Errorf("ghcontract: copying the request body: %w", err)
		}
		body, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			_ = req.Body.Close()
			return nil, nil, fmt.Errorf("ghcontract: reading the request body: %w", err)
		}
		return body, req, nil
	}
	body, err := io.ReadAll(req.Body)
	_ = req.Body.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("ghcontract: reading the request body: %w", err)
	}
	send := req.Clone(req.Context())
	send.Body = io.NopCloser(bytes.NewReader(body))
	send.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return body, send, nil
}

func (v *Validator) addViolation(s string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.violations = append(v.violations, s)
}
