// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Kind tells apart the failures a caller reacts to differently.
type Kind int

const (
	// KindOther is any failure not listed below (a 400, an unexpected status, an unreadable body).
	KindOther Kind = iota
	// KindBadCredentials: GitHub did not accept the App JWT (wrong key, wrong app ID or client ID) or the
	// installation token (expired or revoked).
	KindBadCredentials
	// KindNotFound: the installation, organisation, user or repository does not exist or the App cannot see it.
	KindNotFound
	// KindSuspended: the installation is suspended.
	KindSuspended
	// KindForbidden: GitHub refused the call for a reason other than suspension or rate limiting.
	KindForbidden
	// KindValidation: GitHub refused the request's content (422), for example repositories or permissions the
	// installation lacks.
	KindValidation
	// KindRateLimited: a primary or secondary rate limit; Error.RetryAfter says when to try again.
	KindRateLimited
	// KindUnavailable: GitHub could not be reached or answered 5xx, after retries.
	KindUnavailable
)

func (k Kind) String() string {
	switch k {
	case KindBadCredentials:
		return "bad credentials"
	case KindNotFound:
		return "not found"
	case KindSuspended:
		return "installation suspended"
	case KindForbidden:
		return "forbidden"
	case KindValidation:
		return "validation failed"
	case KindRateLimited:
		return "rate limited"
	case KindUnavailable:
		return "unavailable"
	default:
		return "error"
	}
}

// Error is a failed call to GitHub.
type Error struct {
	Kind Kind
	// Method and Path name the call (the path never holds a secret).
	Method, Path string
	// StatusCode is GitHub's HTTP status, or 0 when no answer came.
	StatusCode int
	// Message is GitHub's own message, verbatim up to 1 KiB; a longer one is cut and ends with "…".
	Message string
	// RequestID is GitHub's X-GitHub-Request-Id, useful when talking to GitHub support.
	RequestID string
	// RetryAfter is how long GitHub asked to wait, for KindRateLimited, at most a day.
	RetryAfter time.Duration
	// Limit is "primary" or "secondary" for KindRateLimited: GitHub's hourly quota, or its limits on concurrency
	// and bursts.
	Limit string
	// Since is when GitHub started failing, for KindUnavailable once the mount's Gate saw several failures.
	Since time.Time
	// Err is the transport failure behind a KindUnavailable error without a status.
	Err error

	// clockSkew marks a 401 about the JWT's times, retried once after correcting the clock.
	clockSkew bool
	// gated marks a refusal by the Gate, before any call: final, never retried.
	gated bool
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "github: %s %s: ", e.Method, e.Path)
	switch {
	case e.StatusCode != 0:
		fmt.Fprintf(&b, "%d", e.StatusCode)
		if e.Message != "" {
			fmt.Fprintf(&b, " %s", e.Message)
		}
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	case e.Message != "":
		b.WriteString(e.Message)
	default:
		b.WriteString(e.Kind.String())
	}
	if e.Kind == KindRateLimited && e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter.Round(time.Second))
	}
	if !e.Since.IsZero() && !e.gated {
		fmt.Fprintf(&b, " (GitHub failing since %s)", e.Since.UTC().Format(time.RFC3339))
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " (GitHub request ID %s)", e.RequestID)
	}
	return b.String()
}

// outcome says in a few words how the call ended, for a status page.
func (e *Error) outcome() string {
	switch {
	case e.StatusCode != 0:
		return "HTTP " + strconv.Itoa(e.StatusCode)
	case e.Err != nil:
		return "unreachable: " + e.Err.Error()
	}
	return e.Kind.String()
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of a GitHub error anywhere in err's chain, or KindOther.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindOther
}

// GitHub's messages that decide a Kind or a retry. They are part of GitHub's observable behaviour.
const (
	msgJWTUndecodable      = "A JSON web token could not be decoded"
	msgIntegrationNotFound = "Integration not found"
	msgSuspended           = "This installation has been suspended"
)

// clockSkewMessages are the 401 messages GitHub gives when the JWT's times disagree with its clock.
var clockSkewMessages = []string{
	"'Expiration time' claim ('exp') is too far in the future",
	"'Issued at' claim ('iat') must be an Integer",
	"'Expiration time' claim ('exp') must be a numeric value",
}

func isClockSkew(status int, message string) bool {
	if status != 401 {
		return false
	}
	for _, m := range clockSkewMessages {
		if strings.Contains(message, m) {
			return true
		}
	}
	return false
}

// classify maps an HTTP answer to a Kind.
func classify(status int, message string, rateLimited bool) Kind {
	switch {
	case rateLimited:
		return KindRateLimited
	case status == 401:
		return KindBadCredentials
	case status == 404 && strings.Contains(message, msgIntegrationNotFound):
		// GitHub answers 404 when the JWT's issuer names no App: a wrong app ID or client ID.
		return KindBadCredentials
	case status == 404:
		return KindNotFound
	case status == 403 && strings.Contains(message, msgSuspended):
		return KindSuspended
	case status == 403:
		return KindForbidden
	case status == 422:
		return KindValidation
	case status >= 500:
		return KindUnavailable
	default:
		return KindOther
	}
}
