// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Defaults and bounds of a Gate.
const (
	// DefaultMaxConcurrent is how many calls a mount has in flight at GitHub at most, by default: well under the
	// 100 concurrent requests GitHub allows an App, which other users of the App share.
	DefaultMaxConcurrent = 32
	// MaxGateWait is the longest a call waits inside a request for GitHub to become usable again (a rate limit
	// about to end, a probe of a failing GitHub, the next probe slot). Longer waits are refused at once with when to
	// come back: a request that waits holds a CI job, a Vault request slot and, upstream, a client's patience.
	MaxGateWait = 3 * time.Second
	// limitProbeInterval spaces the calls let through while GitHub has said "limited until T", so that an early
	// lift is seen without making the limit worse.
	limitProbeInterval = time.Second
	// outageProbeInterval spaces the calls let through while GitHub is failing: the call rate to a failing GitHub
	// stays bounded however many requests arrive, and the first request after it recovers goes through within it.
	outageProbeInterval = time.Second
	// outageThreshold is how many consecutive failed attempts (transport errors, 5xx) mark GitHub as failing.
	outageThreshold = 3
	// secondaryLimitDefault is how long a secondary rate limit lasts when GitHub does not say: its documentation
	// asks to wait at least a minute.
	secondaryLimitDefault = time.Minute
)

// RateLimit is the App's rate limit as GitHub last reported it (X-RateLimit-* headers of an App-authenticated
// answer).
type RateLimit struct {
	Limit     int
	Remaining int
	Used      int
	Reset     time.Time
	Resource  string
	// Seen is when the headers came; zero when GitHub has not answered yet.
	Seen time.Time
}

// Low reports whether less than a tenth of the limit remains.
func (r RateLimit) Low() bool { return r.Limit > 0 && r.Remaining*10 < r.Limit }

// GateStatus is a snapshot of a Gate, for operators.
type GateStatus struct {
	Rate RateLimit
	// LimitedUntil is when a rate limit GitHub announced for the App ends; zero when none is in force.
	LimitedUntil time.Time
	LimitKind    string // "primary" or "secondary"
	// FailingSince is when GitHub started failing (connection errors, 5xx); zero when it answers.
	FailingSince time.Time
	// LastCall is when the last attempt ended, and LastOutcome what it was ("ok", "HTTP 404", "unreachable: ...").
	LastCall    time.Time
	LastOutcome string
	// LastFailure is when the last attempt failed (no answer, 5xx or a rate limit), its error and GitHub's request
	// ID when GitHub sent one.
	LastFailure          time.Time
	LastError            string
	LastFailureRequestID string
	InFlight, Capacity   int
}

// Gate is one mount's view of GitHub, shared by every client the mount builds (the config's and those kept for
// revocation). Every answer updates it and every attempt asks it first, so that what one request learned (GitHub
// limited the App until T, GitHub is failing) serves all: while limited, App calls are refused at once with when to
// come back, but one probe a second; while failing, one probe a second goes through and the others fail fast; and at
// most Capacity calls are in flight, queued in arrival order, revocations and the rest taking turns.
//
// What is learned of GitHub is kept per destination: a base URL reached through a CA bundle and a proxy. A mount may
// still revoke tokens of a former GitHub (a migration, a changed proxy); that one being down must neither fail the
// calls to the current one nor probe for it. The concurrency bound is the mount's, across destinations.
type Gate struct {
	slots slots
	now   func() time.Time
	obs   Observer

	mu    sync.Mutex
	dests map[string]*destination
	// app is the destination of the App's client, which Status and RateLimit describe.
	app *destination
}

// destination is what a Gate has learned of one GitHub as one client configuration reaches it.
type destination struct {
	mu    sync.Mutex
	rate  RateLimit
	limit struct {
		until, nextProbe time.Time
		kind             string
	}
	outage struct {
		since, firstFailure, nextProbe time.Time
		failures                       int
		probe                          chan struct{} // a probe in flight, closed when it ends
	}
	last struct {
		call, failure       time.Time
		outcome, failureErr string
		requestID           string
	}
}

// NewGate returns a Gate allowing capacity calls in flight (DefaultMaxConcurrent when capacity <= 0). now is the
// clock (nil: time.Now).
func NewGate(capacity int, now func() time.Time) *Gate {
	if now == nil {
		now = time.Now
	}
	g := &Gate{now: now, obs: nopObserver{}, dests: map[string]*destination{}, app: &destination{}}
	g.SetCapacity(capacity)
	return g
}

// Observe sets who hears what the Gate and the clients going through it do. Call it before the Gate is used.
func (g *Gate) Observe(o Observer) {
	if o == nil {
		o = nopObserver{}
	}
	g.obs = o
}

// SetCapacity changes how many calls may be in flight; calls in flight above a lowered capacity finish first.
func (g *Gate) SetCapacity(capacity int) {
	if capacity <= 0 {
		capacity = DefaultMaxConcurrent
	}
	g.slots.setCapacity(capacity)
}

// destination returns the state kept for key, created on first use.
func (g *Gate) destination(key string) *destination {
	g.mu.Lock()
	defer g.mu.Unlock()
	d := g.dests[key]
	if d == nil {
		d = &destination{}
		g.dests[key] = d
	}
	return d
}

// setApp makes d the destination that Status and RateLimit describe.
func (g *Gate) setApp(d *destination) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.app = d
}

func (g *Gate) appDestination() *destination {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.app
}

// Forget drops what the Gate learned of GitHub (rate limits, outages), for when the config moves to another GitHub
// or App. Slots and calls in flight are kept.
func (g *Gate) Forget() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, d := range g.dests {
		d.forget()
	}
	g.app.forget()
}

func (d *destination) forget() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rate = RateLimit{}
	d.limit.until, d.limit.nextProbe, d.limit.kind = time.Time{}, time.Time{}, ""
	d.endOutageLocked()
}

// Status returns a snapshot of the Gate: its slots, and what it learned of the App's GitHub (the destination of
// the client built last with a private key; revocation clients hold none).
func (g *Gate) Status() GateStatus {
	return g.appDestination().status(g)
}

// status is a snapshot of the Gate's slots and of what it learned of d.
func (d *destination) status(g *Gate) GateStatus {
	inFlight, capacity := g.slots.usage()
	d.mu.Lock()
	defer d.mu.Unlock()
	st := GateStatus{
		Rate:                 d.rate,
		FailingSince:         d.outage.since,
		LastCall:             d.last.call,
		LastOutcome:          d.last.outcome,
		LastFailure:          d.last.failure,
		LastError:            d.last.failureErr,
		LastFailureRequestID: d.last.requestID,
		InFlight:             inFlight,
		Capacity:             capacity,
	}
	if g.now().Before(d.limit.until) {
		st.LimitedUntil, st.LimitKind = d.limit.until, d.limit.kind
	}
	return st
}

// RateLimit returns the App's rate limit as last seen.
func (g *Gate) RateLimit() RateLimit {
	d := g.appDestination()
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rate
}

// ticket is one admitted attempt.
type ticket struct {
	probe bool // the outage probe: its end wakes the calls waiting for it
}

// enter admits one attempt of a call to d: it passes d's rate-limit and outage checks (waiting within MaxGateWait
// and ctx's deadline where that is enough), then takes a slot. Its refusals are final for the call (gated errors).
// Every admitted attempt must be followed by leave.
func (g *Gate) enter(ctx context.Context, d *destination, cl *call) (ticket, error) {
	t, err := g.clear(ctx, d, cl)
	if err != nil {
		var gerr *Error
		if errors.As(err, &gerr) && gerr.gated {
			g.obs.Refused(cl.endpoint(), gerr.Kind)
		}
		return t, err
	}
	start := time.Now()
	waited, err := g.slots.acquire(ctx, classOf(cl))
	if waited {
		g.obs.Waited("concurrency", time.Since(start))
	}
	if err != nil {
		g.leave(t, d, cl, nil, err, false)
		return t, err
	}
	return t, nil
}

// clear waits until d is usable for cl, or says why it is not.
func (g *Gate) clear(ctx context.Context, d *destination, cl *call) (ticket, error) {
	waitedForProbe := false
	for {
		d.mu.Lock()
		now := g.now()
		var wait time.Duration
		var probe chan struct{}
		switch {
		case cl.token == "" && now.Before(d.limit.until):
			// Only App calls: revocation authenticates with installation tokens, which GitHub counts elsewhere.
			left := d.limit.until.Sub(now)
			switch {
			case !now.Before(d.limit.nextProbe):
				d.limit.nextProbe = now.Add(limitProbeInterval)
				d.mu.Unlock()
				return ticket{}, nil
			case left <= MaxGateWait && fits(ctx, left) && Waits(ctx):
				wait = left
			default:
				err := d.limitedErrorLocked(cl, now)
				d.mu.Unlock()
				return ticket{}, err
			}
		case !d.outage.since.IsZero() && d.outage.probe != nil && !waitedForProbe && Waits(ctx):
			probe = d.outage.probe
		case !d.outage.since.IsZero() && d.outage.probe != nil && !Waits(ctx):
			// A probe is in flight: one that does not wait for its outcome must not start another.
			err := d.unavailableErrorLocked(cl, now)
			d.mu.Unlock()
			return ticket{}, err
		case !d.outage.since.IsZero() && !waitedForProbe && !now.Before(d.outage.nextProbe):
			d.outage.probe = make(chan struct{})
			d.outage.nextProbe = now.Add(outageProbeInterval)
			d.mu.Unlock()
			return ticket{probe: true}, nil
		case !d.outage.since.IsZero():
			if left := d.outage.nextProbe.Sub(now); !waitedForProbe && left <= MaxGateWait && fits(ctx, left) && Waits(ctx) {
				wait = left
				break
			}
			err := d.unavailableErrorLocked(cl, now)
			d.mu.Unlock()
			return ticket{}, err
		default:
			d.mu.Unlock()
			return ticket{}, nil
		}
		d.mu.Unlock()

		start := time.Now()
		if probe != nil {
			// Wait for the probe's outcome (bounded), then decide again: healthy, or fail fast.
			waitedForProbe = true
			timer := time.NewTimer(MaxGateWait)
			select {
			case <-probe:
				timer.Stop()
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				return ticket{}, ctx.Err()
			}
			g.obs.Waited("outage", time.Since(start))
			continue
		}
		slept := sleep(ctx, wait)
		reason := "rate_limit"
		if cl.token != "" || !d.limitedAt(start) {
			reason = "outage"
		}
		g.obs.Waited(reason, time.Since(start))
		if !slept {
			return ticket{}, ctx.Err()
		}
	}
}

// leave records an attempt's outcome at d (ans is the answer when GitHub sent one, also with err) and frees its
// slot.
func (g *Gate) leave(t ticket, d *destination, cl *call, ans *answer, err error, admitted bool) {
	if admitted {
		defer g.slots.release()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := g.now()
	var gerr *Error
	errors.As(err, &gerr)
	answered := ans != nil && (gerr == nil || gerr.Kind != KindUnavailable)
	failed := gerr != nil && gerr.Kind == KindUnavailable && !isCertificateError(gerr.Err)

	if t.probe || answered {
		// A probe ends whatever its outcome; its waiters decide again.
		if d.outage.probe != nil {
			close(d.outage.probe)
			d.outage.probe = nil
		}
	}
	switch {
	case answered:
		d.endOutageLocked()
	case failed:
		if d.outage.failures == 0 {
			d.outage.firstFailure = now
		}
		d.outage.failures++
		if d.outage.failures >= outageThreshold && d.outage.since.IsZero() {
			d.outage.since = d.outage.firstFailure
			d.outage.nextProbe = now.Add(outageProbeInterval)
		}
	}

	if ans != nil && cl.token == "" {
		if rl, ok := parseRateLimit(ans.header); ok {
			d.rate = rl
		}
		switch {
		case gerr != nil && gerr.Kind == KindRateLimited:
			wait := gerr.RetryAfter
			if wait <= 0 {
				wait = secondaryLimitDefault
			}
			d.limit.until, d.limit.kind = now.Add(wait), gerr.Limit
			d.limit.nextProbe = now.Add(limitProbeInterval)
		case gerr == nil:
			// GitHub served an App call: any limit has been lifted.
			d.limit.until = time.Time{}
		}
	}

	switch {
	case err == nil:
		d.last.call, d.last.outcome = now, "ok"
	case gerr != nil && (failed || gerr.Kind == KindRateLimited):
		d.last.call, d.last.outcome = now, gerr.outcome()
		d.last.failure, d.last.failureErr, d.last.requestID = now, gerr.Error(), gerr.RequestID
	case gerr != nil:
		d.last.call, d.last.outcome = now, gerr.outcome()
	}
}

// limitedAt reports whether a rate limit was in force at t.
func (d *destination) limitedAt(t time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return t.Before(d.limit.until)
}

// failingSince is when d started failing; zero when it answers.
func (d *destination) failingSince() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.outage.since
}

func (d *destination) endOutageLocked() {
	d.outage.failures = 0
	d.outage.since, d.outage.firstFailure, d.outage.nextProbe = time.Time{}, time.Time{}, time.Time{}
}

// limitedErrorLocked is the refusal of an App call while a rate limit is in force.
func (d *destination) limitedErrorLocked(cl *call, now time.Time) *Error {
	left := d.limit.until.Sub(now)
	return &Error{
		Kind: KindRateLimited, Method: cl.method, Path: cl.path, Limit: d.limit.kind,
		Message: fmt.Sprintf("GitHub's %s rate limit for the App is in force until %s; the engine does not call "+
			"GitHub for the App until then", d.limit.kind, d.limit.until.UTC().Format(time.RFC3339)),
		RetryAfter: left, gated: true,
	}
}

// unavailableErrorLocked is the fast refusal of a call while GitHub is failing.
func (d *destination) unavailableErrorLocked(cl *call, now time.Time) *Error {
	return &Error{
		Kind: KindUnavailable, Method: cl.method, Path: cl.path, Since: d.outage.since,
		Message: fmt.Sprintf("GitHub unreachable since %s (%s); last error: %s",
			d.outage.since.UTC().Format(time.RFC3339), now.Sub(d.outage.since).Round(time.Second), d.last.failureErr),
		gated: true,
	}
}

// parseRateLimit reads GitHub's X-RateLimit-* headers.
func parseRateLimit(h http.Header) (RateLimit, bool) {
	limit, err1 := strconv.Atoi(h.Get("X-RateLimit-Limit"))
	remaining, err2 := strconv.Atoi(h.Get("X-RateLimit-Remaining"))
	reset, err3 := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || limit < 0 || remaining < 0 {
		return RateLimit{}, false
	}
	used, _ := strconv.Atoi(h.Get("X-RateLimit-Used"))
	seen, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		seen = time.Now()
	}
	return RateLimit{
		Limit: limit, Remaining: remaining, Used: used, Reset: time.Unix(reset, 0),
		Resource: h.Get("X-RateLimit-Resource"), Seen: seen,
	}, true
}

// noWaitKey marks a context whose calls must not wait for GitHub (WithoutWaiting).
type noWaitKey struct{}

// WithoutWaiting returns a context whose calls are refused at once where they would wait for a rate limit to end or
// for an outage probe: for a caller that has somewhere else to go (another App of a pool). The probes themselves
// still go through, one a second, so that a recovery is seen.
func WithoutWaiting(ctx context.Context) context.Context {
	return context.WithValue(ctx, noWaitKey{}, true)
}

// Waits reports whether calls under ctx may wait for GitHub: false under WithoutWaiting.
func Waits(ctx context.Context) bool {
	return ctx.Value(noWaitKey{}) == nil
}

// fits reports whether d passes before ctx's deadline (always, without one).
func fits(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) > d
}

// sleep waits for d unless ctx ends first; it reports whether the full time passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
