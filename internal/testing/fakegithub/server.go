// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// API versions GitHub serves (X-GitHub-Api-Version). A request without the header gets the oldest.
const (
	apiVersion20221128 = "2022-11-28"
	apiVersion20260310 = "2026-03-10"
)

// Server is the GitHub emulator, an http.Handler. Create it with New.
type Server struct {
	routes []*route
	epoch  time.Time // when fixture objects were "created"

	mu            sync.RWMutex
	st            state
	tokenLifetime time.Duration

	faultMu   sync.Mutex
	faults    faultState
	appFaults map[int64]*faultState // faults of one App's calls, on top of faults

	stats    *statsRecorder
	limits   rateLimits
	jwtCache jwtCache
}

// New checks a fixture and builds an emulator serving it.
func New(f Fixture) (*Server, error) {
	s := &Server{
		routes:        newRoutes(),
		epoch:         time.Now().Add(-30 * 24 * time.Hour).Truncate(time.Second),
		st:            newState(),
		tokenLifetime: defaultTokenLifetime,
		stats:         newStatsRecorder(),
	}
	for _, a := range f.Apps {
		a, err := normalizeApp(a, f.Installations)
		if err != nil {
			return nil, fmt.Errorf("fixture: %w", err)
		}
		if err := s.st.addApp(a); err != nil {
			return nil, fmt.Errorf("fixture: %w", err)
		}
	}
	for _, in := range f.Installations {
		if err := s.st.addInstallation(in, s.epoch); err != nil {
			return nil, fmt.Errorf("fixture: %w", err)
		}
	}
	now := time.Now()
	for _, a := range f.Apps {
		if a.RateLimit != nil {
			s.limits.set(appKey(a.ID), *a.RateLimit, now)
		}
	}
	for _, in := range f.Installations {
		if in.RateLimit != nil {
			s.limits.set(installationKey(in.ID), *in.RateLimit, now)
		}
	}
	return s, nil
}

// AddApp registers one more App, checked like a fixture entry; its owner is required.
// Install it with AddInstallation.
func (s *Server) AddApp(a App) error {
	a, err := normalizeApp(a, nil)
	if err != nil {
		return fmt.Errorf("fakegithub: %w", err)
	}
	s.mu.Lock()
	err = s.st.addApp(a)
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("fakegithub: %w", err)
	}
	if a.RateLimit != nil {
		s.limits.set(appKey(a.ID), *a.RateLimit, s.nowFor(a.ID))
	}
	return nil
}

// AddPublicKey registers one more key for an App. Keys already registered stay valid,
// as on GitHub, where an App may have several active keys during a rotation.
func (s *Server) AddPublicKey(appID int64, pub *rsa.PublicKey) error {
	if pub == nil {
		return errors.New("fakegithub: nil public key")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.st.apps[appID]
	if !ok {
		return fmt.Errorf("fakegithub: app %d does not exist", appID)
	}
	a.keys = append(a.keys, pub)
	return nil
}

// AddInstallation installs an App on one more account, checked like a fixture entry.
// An App may be installed on an account that other Apps are installed on, once.
func (s *Server) AddInstallation(in Installation) error {
	now := s.Now()
	s.mu.Lock()
	err := s.st.addInstallation(in, now)
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("fakegithub: %w", err)
	}
	if in.RateLimit != nil {
		s.limits.set(installationKey(in.ID), *in.RateLimit, s.nowFor(in.AppID))
	}
	return nil
}

// SetSuspended suspends an installation or lifts the suspension. While suspended, token
// creation answers 403 and its tokens stop working (they can still be revoked).
func (s *Server) SetSuspended(installationID int64, suspended bool) error {
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.st.installations[installationID]
	if !ok {
		return fmt.Errorf("fakegithub: installation %d does not exist", installationID)
	}
	if in.Suspended == suspended {
		return nil
	}
	in.Suspended = suspended
	in.updatedAt = now
	in.suspendedAt = time.Time{}
	if suspended {
		in.suspendedAt = now
	}
	return nil
}

// ServeHTTP serves the REST API under / and under /api/v3, and the admin API under /_fake/.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	prefix, path := splitPrefix(r.URL.EscapedPath())
	if path == "/_fake" || strings.HasPrefix(path, "/_fake/") {
		s.serveAdmin(w, r, path)
		return
	}
	s.serveAPI(w, r, prefix, path)
}

// call is one API request on its way through the emulator.
type call struct {
	s         *Server
	w         http.ResponseWriter
	r         *http.Request
	route     *route // nil when the path is no route
	params    map[string]string
	path      string // escaped, without the /api/v3 prefix
	links     links
	version   string
	requestID string
	rate      rateView
	appID     int64 // the App the call comes from, by its credentials (unverified); 0 when none

	app   *appState   // set on authApp routes
	token *tokenState // set on authInstallation routes
}

// serveAPI answers one REST call. The order of checks matters to what clients see:
// injected latency and outage first (the network), then GitHub's edge (User-Agent, injected
// 5xx, rate limits, API version), then routing, authentication and the endpoint itself.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, prefix, path string) {
	rt, params := match(s.routes, r.Method, path)
	key := r.Method + " (no route)"
	if rt != nil {
		key = rt.key()
	}
	s.stats.begin(key)
	defer s.stats.end()

	c := &call{
		s: s, w: w, r: r, route: rt, params: params, path: path,
		links:     linksFor(r, prefix),
		version:   apiVersion20221128,
		requestID: newRequestID(),
	}

	subject := s.subjectOf(r)
	c.appID = subject.appID
	s.stats.appCall(c.appID, key)
	if !wait(r.Context(), s.latency(c.appID)) {
		return // the client gave up; there is nobody to answer
	}
	if s.inOutage(c.appID) {
		dropConnection(w)
		return
	}

	isRateLimitRoute := rt != nil && rt.pattern == "/rate_limit"
	rate, exhausted := s.limits.use(subject, s.nowFor(c.appID), !isRateLimitRoute)
	c.rate = rate
	if resetAt, on := s.primaryRateLimit(c.appID); on {
		c.rate.used, c.rate.reset = c.rate.limit, resetAt
	}

	if r.Header.Get("User-Agent") == "" {
		c.fail(generalError(http.StatusForbidden, msgUserAgentRequired))
		return
	}
	if e := s.takeServerError(c.appID); e != nil {
		c.fail(e)
		return
	}
	if !isRateLimitRoute {
		if f := s.takeRateLimit(c.appID); f != nil {
			c.fail(c.rateLimitError(f, subject))
			return
		}
		if exhausted {
			f := &rateLimitFault{primary: true, resetAt: c.rate.reset, status: http.StatusForbidden}
			c.fail(c.rateLimitError(f, subject))
			return
		}
	}
	if e := c.negotiateVersion(); e != nil {
		c.fail(e)
		return
	}
	if rt == nil {
		c.fail(generalError(http.StatusNotFound, msgNotFound))
		return
	}
	if e := c.authenticate(); e != nil {
		c.fail(e)
		return
	}
	if e := rt.handle(s, c); e != nil {
		c.fail(e)
	}
}

func (c *call) authenticate() *apiError {
	var e *apiError
	switch c.route.auth {
	case authApp:
		c.app, e = c.s.authenticateApp(c.r)
	case authInstallation:
		// Revoking must keep working for a suspended installation's tokens,
		// or a client could never clean up after a suspension.
		allowSuspended := c.route.pattern == "/installation/token"
		c.token, e = c.s.authenticateToken(c.r, allowSuspended)
	case authOptional:
		scheme, cred := splitAuthorization(c.r.Header.Get("Authorization"))
		switch {
		case cred == "":
		case isInstallationToken(scheme, cred):
			c.token, e = c.s.authenticateToken(c.r, c.route.pattern == "/rate_limit")
		default:
			c.app, e = c.s.authenticateApp(c.r)
		}
	}
	return e
}

// negotiateVersion applies X-GitHub-Api-Version: absent means 2022-11-28, unknown is a 400.
func (c *call) negotiateVersion() *apiError {
	v := c.r.Header.Get("X-GitHub-Api-Version")
	switch v {
	case "":
		return nil
	case apiVersion20221128, apiVersion20260310:
		c.version = v
		return nil
	}
	return generalError(http.StatusBadRequest, fmt.Sprintf(
		"The version you specified in the \"X-GitHub-Api-Version\" request header, %q, is not a supported version. "+
			"The following versions are currently supported: %q (most recent), %q.",
		v, apiVersion20260310, apiVersion20221128))
}

func (c *call) rateLimitError(f *rateLimitFault, subject rateSubject) *apiError {
	support := fmt.Sprintf("If you reach out to GitHub Support for help, please include the request ID %s and timestamp %s.",
		c.requestID, c.s.nowFor(c.appID).UTC().Format("2006-01-02 15:04:05 MST"))
	if f.primary {
		c.rate.used, c.rate.reset = c.rate.limit, f.resetAt
		return &apiError{
			status:  f.status,
			message: fmt.Sprintf("API rate limit exceeded for %s %s", subject.exceeded, support),
			docURL:  "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
		}
	}
	return &apiError{
		status:  f.status,
		message: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. " + support,
		docURL:  "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
		header:  http.Header{"Retry-After": {strconv.Itoa(f.retryAfter)}},
	}
}

// writeHeaders sets the headers GitHub puts on every API answer.
func (c *call) writeHeaders() {
	h := c.w.Header()
	h.Set("Date", c.s.nowFor(c.appID).UTC().Format(http.TimeFormat))
	h.Set("X-GitHub-Request-Id", c.requestID)
	h.Set("X-GitHub-Media-Type", "github.v3; format=json")
	h.Set("X-GitHub-Api-Version-Selected", c.version)
	setRateLimitHeaders(h, c.rate)
}

// writeJSON answers with a JSON body.
func (c *call) writeJSON(status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Every body is one of this package's own types; failing to encode one is a bug here.
		panic(fmt.Sprintf("fakegithub: encode %T: %v", v, err))
	}
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	c.writeHeaders()
	h := c.w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	c.w.WriteHeader(status)
	c.w.Write(body)
}

func (c *call) noContent() {
	c.writeHeaders()
	c.w.WriteHeader(http.StatusNoContent)
}

// fail answers with GitHub's error shape.
func (c *call) fail(e *apiError) {
	c.s.stats.appError(c.appID)
	doc := e.docURL
	if doc == "" {
		doc = docsREST
		if c.route != nil {
			doc = c.route.doc
		}
	}
	for k, v := range e.header {
		c.w.Header()[k] = v
	}
	c.writeJSON(e.status, errorBody{
		Message:          e.message,
		Errors:           e.details,
		DocumentationURL: doc,
		Status:           strconv.Itoa(e.status),
	})
}

// dropConnection closes the connection without an answer: to the client, GitHub is unreachable.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2 cannot hijack; aborting the handler resets the stream instead.
		panic(http.ErrAbortHandler)
	}
	conn.Close()
}

// newRequestID makes an ID shaped like GitHub's X-GitHub-Request-Id, e.g. "C0DE:1A2B:3C4D5E:6F7A8B:65A1B2C3".
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	return fmt.Sprintf("%04X:%04X:%06X:%06X:%08X",
		binary.BigEndian.Uint16(b[0:]),
		binary.BigEndian.Uint16(b[2:]),
		binary.BigEndian.Uint32(b[4:])&0xFFFFFF,
		binary.BigEndian.Uint32(b[8:])&0xFFFFFF,
		binary.BigEndian.Uint32(b[12:]))
}
