// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// notFoundTTL is how long an owner without an installation is remembered. Short, so that an operator who installs
// the App a moment later is not kept waiting, but long enough that a burst of reads costs one lookup.
const notFoundTTL = 5 * time.Second

// maxOwnersNotFound caps the owners remembered as not found. With templated owners the callers choose the logins
// looked up; past the cap, the oldest such entry is dropped.
const maxOwnersNotFound = 1000

// installation is what a mint needs to know of an installation: its ID and the GitHub account it is on (0 until
// known).
type installation struct {
	id        int64
	accountID int64
}

// installationCache remembers what one config's client learned of installations: owner logins (case-folded, as
// GitHub matches them) to installations, so that a mint for an owner-bound role costs one GitHub call, not two or
// three; and installation IDs to accounts, for the over-grant check of installation-bound roles. It belongs to one
// appClient and is dropped with it.
type installationCache struct {
	mu       sync.Mutex
	owners   map[string]ownerEntry
	accounts map[int64]int64
	// notFound counts the entries of owners that remember a "not found"; swept is when expired ones were last
	// dropped.
	notFound int
	swept    time.Time
	// lookups makes concurrent misses for one owner or installation share one call to GitHub: a burst of first
	// reads after a restart costs one lookup, not one per read.
	lookups singleflight.Group
}

type ownerEntry struct {
	in       installation
	err      error     // a remembered "not found"
	negUntil time.Time // when err is forgotten
}

func newInstallationCache() *installationCache {
	return &installationCache{owners: map[string]ownerEntry{}, accounts: map[int64]int64{}}
}

// byOwner returns the installation on owner's account, asking GitHub when it is not cached; cached reports whether
// it was.
func (c *installationCache) byOwner(ctx context.Context, gh *github.Client, owner string, now time.Time) (in installation, cached bool, err error) {
	key := strings.ToLower(owner)
	c.mu.Lock()
	c.sweepLocked(now)
	e, ok := c.owners[key]
	c.mu.Unlock()
	switch {
	case ok && e.err == nil:
		return e.in, true, nil
	case ok && now.Before(e.negUntil):
		return installation{}, true, e.err
	}

	v, err := sharedCall(ctx, &c.lookups, "owner:"+key, sharedCallTimeout, func(ctx context.Context) (any, error) {
		// A read that missed just before another's lookup ended finds its answer here rather than asking again.
		c.mu.Lock()
		e, ok := c.owners[key]
		c.mu.Unlock()
		if ok && e.err == nil {
			return e.in, nil
		}
		found, err := gh.FindInstallation(ctx, owner)
		c.mu.Lock()
		defer c.mu.Unlock()
		switch {
		case err == nil:
			in := installation{id: found.ID, accountID: found.Account.ID}
			c.setLocked(key, ownerEntry{in: in})
			c.accounts[in.id] = in.accountID
			return in, nil
		case github.KindOf(err) == github.KindNotFound:
			c.setLocked(key, ownerEntry{err: err, negUntil: now.Add(notFoundTTL)})
			c.capLocked()
		}
		return installation{}, err
	})
	in, _ = v.(installation)
	return in, false, err
}

// account returns the ID of the account an installation is on, asking GitHub when it is not cached.
func (c *installationCache) account(ctx context.Context, gh *github.Client, installationID int64) (int64, error) {
	c.mu.Lock()
	id, ok := c.accounts[installationID]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	v, err := sharedCall(ctx, &c.lookups, "installation:"+strconv.FormatInt(installationID, 10), sharedCallTimeout, func(ctx context.Context) (any, error) {
		in, err := gh.Installation(ctx, installationID)
		if err != nil {
			return int64(0), err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.accounts[installationID] = in.Account.ID
		return in.Account.ID, nil
	})
	id, _ = v.(int64)
	return id, err
}

// forget drops an owner's entry, for when GitHub says its installation is gone or refuses it.
func (c *installationCache) forget(owner string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleteLocked(strings.ToLower(owner))
}

// setLocked stores an owner's entry, keeping the count of "not found" entries.
func (c *installationCache) setLocked(key string, e ownerEntry) {
	c.deleteLocked(key)
	if e.err != nil {
		c.notFound++
	}
	c.owners[key] = e
}

// deleteLocked drops an owner's entry, keeping the count of "not found" entries.
func (c *installationCache) deleteLocked(key string) {
	if old, ok := c.owners[key]; ok && old.err != nil {
		c.notFound--
	}
	delete(c.owners, key)
}

// sweepLocked drops the "not found" entries that expired, at most once per notFoundTTL: a scan of at most
// maxOwnersNotFound entries that lookups share.
func (c *installationCache) sweepLocked(now time.Time) {
	if c.notFound == 0 || now.Sub(c.swept) < notFoundTTL {
		return
	}
	c.swept = now
	for key, e := range c.owners {
		if e.err != nil && !now.Before(e.negUntil) {
			c.deleteLocked(key)
		}
	}
}

// capLocked drops the oldest "not found" entries beyond maxOwnersNotFound. All are remembered for the same time, so
// the oldest is the one that expires first.
func (c *installationCache) capLocked() {
	for c.notFound > maxOwnersNotFound {
		var oldest string
		var first time.Time
		found := false
		for key, e := range c.owners {
			if e.err != nil && (!found || e.negUntil.Before(first)) {
				oldest, first, found = key, e.negUntil, true
			}
		}
		if !found {
			return
		}
		c.deleteLocked(oldest)
	}
}

// snapshot lists the owners whose installation is cached, for the status path.
func (c *installationCache) snapshot() []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]map[string]any, 0, len(c.owners))
	for _, owner := range sortedKeys(c.owners) {
		if e := c.owners[owner]; e.err == nil {
			out = append(out, map[string]any{"owner": owner, "installation_id": e.in.id, "account_id": e.in.accountID})
		}
	}
	return out
}
