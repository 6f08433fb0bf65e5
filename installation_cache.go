package githubapp

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// notFoundTTL is how long an owner without an installation is remembered. Short, so that an operator who installs
// the App a moment later is not kept waiting, but long enough that a burst of reads costs one lookup.
const notFoundTTL = 5 * time.Second

// installationCache maps owner logins (case-folded, as GitHub matches them) to installation IDs, so that a mint for
// an owner-bound role costs one GitHub call, not two or three.
type installationCache struct {
	mu      sync.Mutex
	entries map[string]installationEntry
	// gen changes on clear, so that a lookup made with a replaced config does not land in the new cache.
	gen uint64
}

type installationEntry struct {
	id       int64
	err      error     // a remembered "not found"
	negUntil time.Time // when err is forgotten
}

func newInstallationCache() *installationCache {
	return &installationCache{entries: map[string]installationEntry{}}
}

// resolve returns the installation ID of owner, asking GitHub when it is not cached.
func (c *installationCache) resolve(ctx context.Context, gh *github.Client, owner string, now time.Time) (int64, error) {
	key := strings.ToLower(owner)
	c.mu.Lock()
	e, ok := c.entries[key]
	gen := c.gen
	c.mu.Unlock()
	switch {
	case ok && e.err == nil:
		return e.id, nil
	case ok && now.Before(e.negUntil):
		return 0, e.err
	}

	in, err := gh.FindInstallation(ctx, owner)
	c.mu.Lock()
	defer c.mu.Unlock()
	stale := gen != c.gen
	switch {
	case err == nil:
		if !stale {
			c.entries[key] = installationEntry{id: in.ID}
		}
		return in.ID, nil
	case github.KindOf(err) == github.KindNotFound && !stale:
		c.entries[key] = installationEntry{err: err, negUntil: now.Add(notFoundTTL)}
	}
	return 0, err
}

// forget drops an owner's entry, for when GitHub says its installation is gone or refuses it.
func (c *installationCache) forget(owner string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, strings.ToLower(owner))
}

func (c *installationCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
	c.gen++
}
