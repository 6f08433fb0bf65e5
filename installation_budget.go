// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"sync"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// An installation's budget is what its tokens may still spend in the current rate-limit window: every token of an
// installation shares it, whoever uses it. A role with several Apps under app_selection=budget mints from the App
// whose installation has the most left. The budget is learned without spending it and without slowing a mint: in the
// background, GET /rate_limit (which GitHub does not count) with a token the engine minted for that installation and
// that has not expired, at most once per the App's rate_limit_refresh per installation.

const (
	// defaultRateLimitRefresh is how often, at most, an installation's budget is read by default.
	defaultRateLimitRefresh = time.Minute
	// budgetRefreshTimeout bounds one background read of a budget.
	budgetRefreshTimeout = 30 * time.Second
	// tokenMargin is how long before its expiry a token is no longer used to read a budget.
	tokenMargin = time.Minute
)

// budgetBook is one App's knowledge of the budgets of its installations, by owner (lower case): the role's owner is
// what a pool's Apps have in common, each App having its own installation on it.
type budgetBook struct {
	refresh time.Duration

	mu      sync.Mutex
	byOwner map[string]*budget
}

// budget is what is known of one installation's budget.
type budget struct {
	installationID int64
	rate           github.RateLimit // zero until read
	// token is the newest token minted for the installation, kept in memory only to read the budget with.
	token        string
	tokenExpires time.Time
	next         time.Time // the earliest time of the next read
	reading      bool
}

func newBudgetBook(refresh time.Duration) *budgetBook {
	return &budgetBook{refresh: refresh, byOwner: map[string]*budget{}}
}

// remaining returns the requests left to the App's installation on owner, as last seen, and its limit; false when not
// known, or when the window it was seen in has ended (a new window starts full).
func (bb *budgetBook) remaining(owner string, now time.Time) (left, limit int, ok bool) {
	bb.mu.Lock()
	defer bb.mu.Unlock()
	bg := bb.byOwner[owner]
	if bg == nil || bg.rate.Seen.IsZero() || !now.Before(bg.rate.Reset) {
		return 0, 0, false
	}
	return bg.rate.Remaining, bg.rate.Limit, true
}

// reset is when the window of the budget last seen for owner ends; zero when none was seen.
func (bb *budgetBook) reset(owner string) time.Time {
	bb.mu.Lock()
	defer bb.mu.Unlock()
	if bg := bb.byOwner[owner]; bg != nil {
		return bg.rate.Reset
	}
	return time.Time{}
}

// offer keeps a token just minted for the installation on owner as the one to read its budget with.
func (bb *budgetBook) offer(owner string, installationID int64, tok *github.Token, now time.Time) {
	if !now.Before(tok.ExpiresAt.Add(-tokenMargin)) {
		return
	}
	bb.mu.Lock()
	defer bb.mu.Unlock()
	bg := bb.byOwner[owner]
	if bg == nil || bg.installationID != installationID {
		// A new installation (the App was reinstalled) starts unknown.
		bg = &budget{installationID: installationID}
		bb.byOwner[owner] = bg
	}
	bg.token, bg.tokenExpires = tok.Token, tok.ExpiresAt
}

// due returns the token to read the budget of the installation on owner with, when a read is due, and marks the
// read as started; false when it is not due, already running, or no valid token is held.
func (bb *budgetBook) due(owner string, now time.Time) (string, *budget, bool) {
	bb.mu.Lock()
	defer bb.mu.Unlock()
	bg := bb.byOwner[owner]
	if bg == nil || bg.reading || now.Before(bg.next) || bg.token == "" || !now.Before(bg.tokenExpires.Add(-tokenMargin)) {
		return "", nil, false
	}
	bg.reading, bg.next = true, now.Add(bb.refresh)
	return bg.token, bg, true
}

// learned records in bg the outcome of a read made with token. A token that GitHub no longer accepts (its lease
// ended early) is dropped: the next mint offers another. What was read for an installation that the App's entry no
// longer holds (the App was reinstalled meanwhile) is dropped with bg.
func (bb *budgetBook) learned(bg *budget, token string, rl github.RateLimit, err error) {
	bb.mu.Lock()
	defer bb.mu.Unlock()
	bg.reading = false
	switch {
	case err == nil:
		bg.rate = rl
	case github.KindOf(err) == github.KindBadCredentials && bg.token == token:
		bg.token = ""
	}
}

// snapshot returns the budgets as last seen, by installation ID, for status.
func (bb *budgetBook) snapshot() map[int64]github.RateLimit {
	bb.mu.Lock()
	defer bb.mu.Unlock()
	out := make(map[int64]github.RateLimit, len(bb.byOwner))
	for _, bg := range bb.byOwner {
		if !bg.rate.Seen.IsZero() {
			out[bg.installationID] = bg.rate
		}
	}
	return out
}

// least returns the fewest requests left among the installations whose budget is known in its current window.
func (bb *budgetBook) least(now time.Time) (int, bool) {
	bb.mu.Lock()
	defer bb.mu.Unlock()
	least, known := 0, false
	for _, bg := range bb.byOwner {
		if !bg.rate.Seen.IsZero() && now.Before(bg.rate.Reset) && (!known || bg.rate.Remaining < least) {
			least, known = bg.rate.Remaining, true
		}
	}
	return least, known
}

// refreshBudgets reads, in the background, the budgets on owner of a pool's Apps (by name) that are due. Only Apps
// whose client is built (in clients) are read: the others have minted nothing to read with.
func (b *backend) refreshBudgets(owner string, names []string, clients map[string]*appClient) {
	now := b.now()
	for _, name := range names {
		c := clients[name]
		if c == nil {
			continue
		}
		token, bg, ok := c.budgets.due(owner, now)
		if !ok {
			continue
		}
		started := b.inBackground(func(ctx context.Context) {
			ctx, cancel := context.WithTimeout(ctx, budgetRefreshTimeout)
			defer cancel()
			rl, err := c.InstallationRateLimit(ctx, token)
			if err != nil {
				b.Logger().Debug("reading an installation's budget failed", "app", c.name, "error", err)
			}
			c.budgets.learned(bg, token, rl, err)
		})
		if !started {
			c.budgets.learned(bg, token, github.RateLimit{}, context.Canceled)
		}
	}
}

// inBackground runs fn off the request's path, under the backend's background context; false when the backend is
// being cleaned up and fn was not started.
func (b *backend) inBackground(fn func(context.Context)) bool {
	b.backgroundMu.Lock()
	defer b.backgroundMu.Unlock()
	if b.background.Err() != nil {
		return false
	}
	b.backgroundWG.Add(1)
	go func() {
		defer b.backgroundWG.Done()
		fn(b.background)
	}()
	return true
}
