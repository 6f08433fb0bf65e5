// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-hclog"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/signer"
)

// Defaults for Options.
const (
	DefaultBaseURL        = "https://api.github.com"
	DefaultRequestTimeout = 10 * time.Second
	DefaultMaxRetries     = 3
	DefaultUserAgent      = "vault-plugin-secrets-github-app"

	apiVersion = "2022-11-28"

	// maxBodyBytes bounds what is read of any answer; GitHub's largest here is a page of 100 installations.
	maxBodyBytes = 8 << 20
	// maxAnswerWait caps the wait one rate-limit answer may ask for. GitHub's windows last an hour, so a day is beyond
	// any real one; the cap keeps a Retry-After or reset of centuries from wrapping around, or from overflowing the
	// sum of a call's waits (which then slept for good).
	maxAnswerWait = 24 * time.Hour
	// maxMessageBytes bounds GitHub's message as an Error keeps it: an answer of megabytes must not become an error of
	// megabytes in Vault's responses and logs.
	maxMessageBytes = 1024
)

// Options configure a Client. Only BaseURL is needed for token-authenticated calls (revocation); App calls need
// PrivateKey or Signer, and AppID or ClientID.
type Options struct {
	// BaseURL is https://api.github.com; https://api.SUBDOMAIN.ghe.com for GitHub Enterprise Cloud with data
	// residency (GHE.com), which serves the API at its root like github.com; or https://HOST/api/v3 for GitHub
	// Enterprise Server. A trailing slash is optional.
	BaseURL string
	// AppID and ClientID identify the App; the JWT issuer is ClientID when set, else AppID.
	AppID    int64
	ClientID string
	// PrivateKey signs the App JWT in the process. Give it or Signer, not both.
	PrivateKey *rsa.PrivateKey
	// Signer signs the App JWT with a key that may live elsewhere (a KMS, an HSM). The caller owns it: the client
	// does not close it.
	Signer signer.Signer
	// CACertificate is a PEM bundle; when set, only these CAs are trusted for TLS to GitHub.
	CACertificate string
	// ProxyURL is an HTTP(S) proxy; when empty, the standard proxy environment variables apply.
	ProxyURL string
	// RequestTimeout bounds each attempt (default 10s).
	RequestTimeout time.Duration
	// MaxRetries is how often a transport error or 5xx is retried (default 3; negative: never).
	MaxRetries int
	// UserAgent is sent with every request; GitHub refuses requests without one.
	UserAgent string
	// Logger receives debug lines about retries; never a secret.
	Logger hclog.Logger
	// WrapTransport, when set, wraps the HTTP transport (tests use it to check requests against GitHub's
	// OpenAPI description).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Gate is the mount's view of GitHub, shared by all its clients; nil gives the client a Gate of its own.
	Gate *Gate
}

// Client calls GitHub's REST API. It is safe for concurrent use and holds one keep-alive connection pool; build a
// new one when the configuration changes.
type Client struct {
	base       string // normalised, no trailing slash
	http       *http.Client
	jwt        *jwtSource // nil without a private key
	timeout    time.Duration
	maxRetries int
	userAgent  string
	logger     hclog.Logger
	now        func() time.Time
	gate       *Gate
	dest       *destination // what gate has learned of the GitHub this client reaches

	possibleDuplicates atomic.Int64
}

// NewClient checks the options and builds a Client.
func NewClient(o Options) (*Client, error) {
	base, err := NormalizeBaseURL(o.BaseURL)
	if err != nil {
		return nil, err
	}
	transport := cleanhttp.DefaultPooledTransport()
	// Many mints run at once under load; keep their connections instead of opening new ones.
	transport.MaxIdleConnsPerHost = 64
	if o.CACertificate != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(o.CACertificate)) {
			return nil, errors.New("ca_certificate holds no PEM certificate")
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if o.ProxyURL != "" {
		u, err := ParseProxyURL(o.ProxyURL)
		if err != nil {
			return nil, err
		}
		transport.Proxy = http.ProxyURL(u)
	}
	var rt http.RoundTripper = transport
	if o.WrapTransport != nil {
		rt = o.WrapTransport(rt)
	}

	c := &Client{
		base:       base,
		http:       &http.Client{Transport: rt, CheckRedirect: noRedirects},
		timeout:    o.RequestTimeout,
		maxRetries: o.MaxRetries,
		userAgent:  o.UserAgent,
		logger:     o.Logger,
		now:        o.Now,
	}
	if c.timeout <= 0 {
		c.timeout = DefaultRequestTimeout
	}
	if c.maxRetries == 0 {
		c.maxRetries = DefaultMaxRetries
	} else if c.maxRetries < 0 {
		c.maxRetries = 0
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	if c.logger == nil {
		c.logger = hclog.NewNullLogger()
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.gate = o.Gate; c.gate == nil {
		c.gate = NewGate(0, c.now)
	}
	sg := o.Signer
	if o.PrivateKey != nil {
		if sg != nil {
			return nil, errors.New("give a private key or a signer, not both")
		}
		k, err := signer.NewKey(o.PrivateKey)
		if err != nil {
			return nil, err
		}
		sg = k
	}
	if sg != nil {
		if o.AppID <= 0 && o.ClientID == "" {
			return nil, errors.New("an app ID or a client ID is required with a private key or signer")
		}
		c.jwt = newJWTSource(sg, o.AppID, o.ClientID, c.now, c.gate.obs.Signed)
	}
	c.dest = c.gate.destination(destinationKey(base, o.CACertificate, o.ProxyURL))
	if c.jwt != nil {
		c.gate.setApp(c.dest)
	}
	return c, nil
}

// destinationKey names, within a Gate, the GitHub that a base URL, CA bundle and proxy reach. It stays in memory.
func destinationKey(base, caCertificate, proxyURL string) string {
	h := sha256.New()
	for _, part := range []string{base, caCertificate, proxyURL} {
		// Length-prefixed, so that no two different triples give the same input.
		fmt.Fprintf(h, "%d:%s", len(part), part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Gate returns the mount's view of GitHub this client goes through.
func (c *Client) Gate() *Gate { return c.gate }

// BaseURL returns the normalised base URL (no trailing slash).
func (c *Client) BaseURL() string { return c.base }

// Signer returns what signs the App JWT, or nil when the client makes token-authenticated calls only.
func (c *Client) Signer() signer.Signer {
	if c.jwt == nil {
		return nil
	}
	return c.jwt.signer
}

// JWTSignatures counts the App JWTs this client has signed (benchmarks and tests).
func (c *Client) JWTSignatures() int64 {
	if c.jwt == nil {
		return 0
	}
	return c.jwt.signatures.Load()
}

// JWTExpiry returns when the cached App JWT expires (on GitHub's clock, as the client estimates it); zero when there
// is none.
func (c *Client) JWTExpiry() time.Time {
	if c.jwt == nil {
		return time.Time{}
	}
	return c.jwt.expiry()
}

// PossibleDuplicateTokens counts token requests retried after GitHub may have handled them: each may have left a
// token that nobody holds, which expires within the hour.
func (c *Client) PossibleDuplicateTokens() int64 { return c.possibleDuplicates.Load() }

// CloseIdleConnections releases pooled connections of a client that is being replaced.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// NormalizeBaseURL checks a GitHub API base URL and returns it without a trailing slash. An empty string gives
// DefaultBaseURL.
func NormalizeBaseURL(raw string) (string, error) {
	if strings.TrimSpace(raw) == "" {
		return DefaultBaseURL, nil
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		// Quote the URL without its password (ftp://user:secret@host); an unparsable one is not quoted at all.
		shown := "base_url"
		switch {
		case err == nil && u.User != nil:
			shown = fmt.Sprintf("base_url %q", u.Redacted())
		case err == nil:
			shown = fmt.Sprintf("base_url %q", raw)
		}
		return "", fmt.Errorf("%s is not an http(s) URL: expected %s, https://api.SUBDOMAIN.ghe.com for GHE.com, "+
			"or https://HOST/api/v3 for GitHub Enterprise Server", shown, DefaultBaseURL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("base_url %q must not hold credentials, a query or a fragment", u.Redacted())
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"), nil
}

// ParseProxyURL checks a proxy URL.
func ParseProxyURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5") || u.Host == "" {
		return nil, errors.New("proxy_url is not a valid proxy URL: expected http://HOST:PORT, " +
			"https://HOST:PORT or socks5://HOST:PORT")
	}
	return u, nil
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// call is one API operation.
type call struct {
	method string
	route  string // the path's template, as GitHub documents it ("/app/installations/{installation_id}")
	path   string // below the base URL, starting with "/"
	query  url.Values
	body   any    // JSON-encoded when not nil
	token  string // installation token; empty means the App JWT
	out    any    // decoded from a 2xx JSON answer when not nil
}

// endpoint names the call for metrics: its method and route template.
func (cl *call) endpoint() string { return cl.method + " " + cl.route }

// answer is what do hands back on success.
type answer struct {
	status int
	header http.Header
}

// do runs a call with authentication, retries and error mapping, through the mount's Gate.
//
// Retried: transport errors and 5xx with exponential backoff and jitter, one 401 about the JWT's clock after
// correcting the skew, and a rate-limited App call when the Gate lets it wait (a limit ending within MaxGateWait).
// Never retried: other 4xx, certificate errors and the Gate's refusals. No wait runs past the context's deadline:
// when it would, do fails at once with the error in hand. Under WithoutWaiting only the skew retry is made.
//
// A token request (the only POST) is retried like any other call, even when GitHub may have handled it and only its
// answer was lost: a token nobody received is known to no one and expires within the hour, while a failed mint fails
// a CI job. Such retries are counted (PossibleDuplicateTokens) and logged.
func (c *Client) do(ctx context.Context, cl call) (*answer, error) {
	var body []byte
	if cl.body != nil {
		var err error
		if body, err = json.Marshal(cl.body); err != nil {
			return nil, fmt.Errorf("encoding %s %s: %w", cl.method, cl.path, err)
		}
	}
	skewRetried := false
	for attempt := 0; ; attempt++ {
		t, err := c.gate.enter(ctx, c.dest, &cl)
		if err != nil {
			return nil, err
		}
		auth, err := c.authorization(ctx, cl)
		if err != nil {
			// Nothing reached GitHub: the Gate learns nothing, and no retry here mends a signer (which retries
			// what it can itself).
			c.gate.leave(t, c.dest, &cl, nil, err, true)
			return nil, err
		}
		started := time.Now()
		ans, err := c.attempt(ctx, cl, auth, body)
		c.gate.leave(t, c.dest, &cl, ans, err, true)
		status := 0
		if ans != nil {
			status = ans.status
		}
		c.gate.obs.Attempt(cl.endpoint(), status, time.Since(started))
		if err == nil {
			return ans, nil
		}
		var gerr *Error
		if !errors.As(err, &gerr) || ctx.Err() != nil {
			return nil, err
		}

		var wait time.Duration
		switch {
		case gerr.clockSkew && !skewRetried && c.jwt != nil:
			skewRetried = true
			attempt-- // the skew retry is not one of the MaxRetries
			c.logger.Debug("github: correcting clock skew from Date header", "method", cl.method, "path", cl.path)
			continue
		case gerr.Kind == KindUnavailable && attempt < c.maxRetries && !isCertificateError(gerr.Err) && !t.probe &&
			Waits(ctx):
			// A caller that does not wait has another App to ask: that is its retry.
			// A failed probe confirms that GitHub is still failing: its caller fails fast like the others.
			wait = backoff(attempt)
			if cl.method == http.MethodPost && !isDialError(gerr.Err) {
				c.possibleDuplicates.Add(1)
				c.gate.obs.PossibleDuplicate()
				c.logger.Warn("github: retrying a token request whose answer was lost; GitHub may have issued a "+
					"possible duplicate token that no lease holds (it expires within the hour)",
					"path", cl.path, "status", gerr.StatusCode)
			}
		case gerr.Kind == KindRateLimited && cl.token == "" && attempt < c.maxRetries && Waits(ctx) &&
			gerr.RetryAfter > 0 && gerr.RetryAfter <= MaxGateWait && fits(ctx, gerr.RetryAfter):
			// The limit ends soon: the Gate, which has learned it, holds the retry until then. A longer limit is
			// GitHub's own refusal, returned as it is.
			c.gate.obs.Retry(cl.endpoint(), gerr.Kind)
			continue
		default:
			if gerr.Kind == KindUnavailable {
				gerr.Since = c.dest.failingSince()
			}
			return nil, err
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return nil, err
		}
		c.logger.Debug("github: retrying", "method", cl.method, "path", cl.path, "status", gerr.StatusCode,
			"kind", gerr.Kind.String(), "attempt", attempt+1, "wait", wait)
		c.gate.obs.Retry(cl.endpoint(), gerr.Kind)
		if !sleep(ctx, wait) {
			return nil, err
		}
	}
}

// authorization returns the call's Authorization header: its installation token, or the App JWT (signed when the
// cached one is near its end).
func (c *Client) authorization(ctx context.Context, cl call) (string, error) {
	if cl.token != "" {
		return "Bearer " + cl.token, nil
	}
	if c.jwt == nil {
		return "", errors.New("github: no App private key or signer configured")
	}
	j, err := c.jwt.get(ctx)
	if err != nil {
		return "", fmt.Errorf("github: %s %s: %w", cl.method, cl.path, err)
	}
	return "Bearer " + j, nil
}

// attempt sends one request and reads its answer. The answer comes back whenever GitHub sent one, also with an
// error, so that the Gate sees its headers.
func (c *Client) attempt(ctx context.Context, cl call, auth string, body []byte) (*answer, error) {

	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	target := c.base + cl.path
	if len(cl.query) > 0 {
		target += "?" + cl.query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, cl.method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("github: building %s %s: %w", cl.method, cl.path, err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", apiVersion)
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Authorization", auth)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("github: %s %s: %w", cl.method, cl.path, ctx.Err())
		}
		// Per-attempt timeouts and connection failures: GitHub is unreachable for now.
		return nil, &Error{Kind: KindUnavailable, Method: cl.method, Path: cl.path, Err: stripURL(err)}
	}
	defer resp.Body.Close()
	data, err := readBody(resp)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("github: %s %s: %w", cl.method, cl.path, ctx.Err())
		}
		return nil, &Error{Kind: KindUnavailable, Method: cl.method, Path: cl.path, StatusCode: resp.StatusCode,
			Err: fmt.Errorf("reading the answer: %w", err)}
	}

	ans := &answer{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if cl.out != nil {
			if err := json.Unmarshal(data, cl.out); err != nil {
				return ans, &Error{Kind: KindOther, Method: cl.method, Path: cl.path, StatusCode: resp.StatusCode,
					Message: "unreadable answer", Err: err}
			}
		}
		return ans, nil
	}
	return ans, c.errorFrom(cl, resp, data)
}

// readBody reads an answer of at most maxBodyBytes. GitHub sends Content-Length, and a buffer of that size is one
// allocation, where io.ReadAll grows its buffer step by step: for a token answer (about 9 KB for two repositories,
// GitHub's full repository objects) that halves what a mint allocates and the GC work that goes with it.
func readBody(resp *http.Response) ([]byte, error) {
	n := resp.ContentLength
	if n < 0 || n > maxBodyBytes {
		return io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// errorFrom builds the typed error for a non-2xx answer.
func (c *Client) errorFrom(cl call, resp *http.Response, data []byte) *Error {
	var eb struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(data, &eb)
	msg := eb.Message
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	rateLimited, retryAfter := c.rateLimit(resp, msg)
	e := &Error{
		Kind:       classify(resp.StatusCode, msg, rateLimited),
		Limit:      limitKind(rateLimited, resp.Header),
		Method:     cl.method,
		Path:       cl.path,
		StatusCode: resp.StatusCode,
		Message:    ellipsize(msg, maxMessageBytes),
		RequestID:  resp.Header.Get("X-GitHub-Request-Id"),
		RetryAfter: retryAfter,
		clockSkew:  cl.token == "" && isClockSkew(resp.StatusCode, msg),
	}
	if e.clockSkew && c.jwt != nil {
		if t, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
			c.jwt.correct(t)
		} else {
			c.jwt.drop()
		}
	}
	return e
}

// rateLimit tells whether an answer is a rate limit and how long GitHub asks to wait: Retry-After first, then
// X-RateLimit-Reset measured against GitHub's own Date.
func (c *Client) rateLimit(resp *http.Response, msg string) (bool, time.Duration) {
	if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusTooManyRequests {
		return false, 0
	}
	h := resp.Header
	limited := resp.StatusCode == http.StatusTooManyRequests ||
		h.Get("X-RateLimit-Remaining") == "0" ||
		h.Get("Retry-After") != "" ||
		strings.Contains(strings.ToLower(msg), "rate limit")
	if !limited {
		return false, 0
	}
	if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil && s >= 0 {
		return true, time.Duration(min(int64(s), int64(maxAnswerWait/time.Second))) * time.Second
	}
	if reset, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
		now := c.now()
		if d, err := http.ParseTime(h.Get("Date")); err == nil {
			now = d
		}
		// In whole seconds, never through time.Unix, which wraps near the int64 limits; reset-n is negative when it
		// overflowed.
		if n := now.Unix(); reset > n {
			ahead := reset - n
			if ahead < 0 || ahead > int64(maxAnswerWait/time.Second) {
				return true, maxAnswerWait
			}
			return true, time.Duration(ahead)*time.Second - time.Duration(now.Nanosecond())
		}
	}
	return true, 0
}

// limitKind tells a primary rate limit (the hourly quota is spent) from a secondary one.
func limitKind(rateLimited bool, h http.Header) string {
	switch {
	case !rateLimited:
		return ""
	case h.Get("X-RateLimit-Remaining") == "0":
		return "primary"
	default:
		return "secondary"
	}
}

// ellipsize cuts s to at most n bytes at a character boundary, ending it with "…" when it was cut (the root
// package's shorten also gives the size; GitHub's messages need not).
func ellipsize(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// backoff is exponential with full jitter: a random wait in [0, min(cap, base·2^attempt)], at least 50ms.
func backoff(attempt int) time.Duration {
	const base, limit = 250 * time.Millisecond, 5 * time.Second
	d := base << attempt
	if d > limit || d <= 0 {
		d = limit
	}
	return 50*time.Millisecond + rand.N(d)
}

// isDialError reports a failure to connect, before anything was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && (op.Op == "dial" || op.Op == "proxyconnect")
}

// isCertificateError reports a TLS verification failure: a configuration problem that no retry mends.
func isCertificateError(err error) bool {
	var verr *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	return errors.As(err, &verr) || errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &host)
}

// stripURL keeps a transport error's cause but not its URL, which is long and adds nothing the caller lacks.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
