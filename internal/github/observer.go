// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import "time"

// Observer hears what the clients and the Gate of a mount do, for metrics. Routes are GitHub's endpoint templates
// ("POST /app/installations/{installation_id}/access_tokens"), never a concrete path. Methods must be cheap and safe
// for concurrent use.
type Observer interface {
	// Attempt is one attempt of a call: GitHub's status (0 when no answer came) and how long it took.
	Attempt(route string, status int, d time.Duration)
	// Retry is a call about to try again after an attempt failed with kind.
	Retry(route string, kind Kind)
	// Refused is a call the Gate refused without calling GitHub (a rate limit in force, GitHub failing).
	Refused(route string, kind Kind)
	// Waited is time a call spent in the Gate: "rate_limit" (a limit about to end), "outage" (a probe's outcome or
	// the next probe slot) or "concurrency" (a free slot).
	Waited(reason string, d time.Duration)
	// Signed is a new App JWT signature.
	Signed()
	// PossibleDuplicate is a token request retried after GitHub may have handled it.
	PossibleDuplicate()
}

// nopObserver is the Observer of a Gate nobody watches.
type nopObserver struct{}

func (nopObserver) Attempt(string, int, time.Duration) {}
func (nopObserver) Retry(string, Kind)                 {}
func (nopObserver) Refused(string, Kind)               {}
func (nopObserver) Waited(string, time.Duration)       {}
func (nopObserver) Signed()                            {}
func (nopObserver) PossibleDuplicate()                 {}
