// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

const (
	// defaultRepositoryListTTL is how long an installation's repository list is used before it is read again.
	defaultRepositoryListTTL = 5 * time.Minute
	// relistInterval is the least time between two listings of one installation. A name the list lacks makes the
	// engine list again, but no more often than this: a caller naming repositories that do not exist cannot make
	// every request cost a listing.
	relistInterval = 5 * time.Second
)

// repositoryList is an installation's repositories as GitHub listed them, by name folded to lower case (GitHub
// compares repository names ignoring case, and keeps them unique so within an account).
type repositoryList struct {
	spelling map[string]string // folded name → GitHub's spelling
	complete bool              // false when the installation has more repositories than one listing reads
	listedAt time.Time
}

func newRepositoryList(repos []github.Repository, complete bool, listedAt time.Time) *repositoryList {
	l := &repositoryList{spelling: make(map[string]string, len(repos)), complete: complete, listedAt: listedAt}
	for _, repo := range repos {
		l.spelling[strings.ToLower(repo.Name)] = repo.Name
	}
	return l
}

// check holds names to GitHub's spelling. misspelled explains each name that GitHub spells otherwise, with GitHub's
// spelling; missing are the names the list lacks in any spelling.
func (l *repositoryList) check(names []string) (misspelled, missing []string) {
	for _, name := range names {
		switch canonical, ok := l.spelling[strings.ToLower(name)]; {
		case !ok:
			missing = append(missing, name)
		case canonical != name:
			misspelled = append(misspelled, fmt.Sprintf("repository %q is spelled %q at GitHub: write it as GitHub does", name, canonical))
		}
	}
	return misspelled, missing
}

// notListed explains why a name the list lacks is refused.
func (l *repositoryList) notListed(name string, installationID int64, now time.Time) string {
	if !l.complete {
		return fmt.Sprintf("repository %q is not among the first %d repositories GitHub lists for installation %d, and the "+
			"engine reads no more: ask for it by repository_ids, or use a role that lists its repositories", name, len(l.spelling), installationID)
	}
	return fmt.Sprintf("repository %q is not among the repositories installation %d can reach (GitHub listed them %s ago): "+
		"check the name; a repository just added to the installation can be asked for again after a few seconds",
		name, installationID, now.Sub(l.listedAt).Truncate(time.Second))
}

// repositoryCache remembers the repository list of each installation that one config's client listed, for a role
// without a repository limit to hold token writes to GitHub's spelling. It belongs to one appClient and is dropped
// with it.
type repositoryCache struct {
	ttl time.Duration

	mu    sync.Mutex
	lists map[int64]*repositoryList
	// listings makes concurrent callers share one listing of an installation.
	listings singleflight.Group
}

func newRepositoryCache(ttl time.Duration) *repositoryCache {
	return &repositoryCache{ttl: ttl, lists: map[int64]*repositoryList{}}
}

// list returns the installation's repositories, listing them when no list is cached or it is older than the TTL.
func (c *repositoryCache) list(ctx context.Context, gh *github.Client, installationID int64, now time.Time) (*repositoryList, error) {
	return c.get(ctx, gh, installationID, now, c.ttl)
}

// relist lists the installation's repositories again, unless the cached list is younger than relistInterval.
func (c *repositoryCache) relist(ctx context.Context, gh *github.Client, installationID int64, now time.Time) (*repositoryList, error) {
	return c.get(ctx, gh, installationID, now, relistInterval)
}

// get returns the cached list when it is younger than maxAge, and lists the installation's repositories otherwise.
func (c *repositoryCache) get(ctx context.Context, gh *github.Client, installationID int64, now time.Time, maxAge time.Duration) (*repositoryList, error) {
	if l := c.fresh(installationID, now, maxAge); l != nil {
		return l, nil
	}
	v, err := sharedCall(ctx, &c.listings, strconv.FormatInt(installationID, 10), sharedCallTimeout, func(ctx context.Context) (any, error) {
		// Another caller may have listed it since this one looked.
		if l := c.fresh(installationID, now, maxAge); l != nil {
			return l, nil
		}
		repos, complete, err := gh.InstallationRepositories(ctx, installationID)
		if err != nil {
			return nil, err
		}
		l := newRepositoryList(repos, complete, now)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.lists[installationID] = l
		return l, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*repositoryList), nil
}

// fresh returns the cached list of an installation when it is younger than maxAge.
func (c *repositoryCache) fresh(installationID int64, now time.Time, maxAge time.Duration) *repositoryList {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.lists[installationID]; l != nil && now.Sub(l.listedAt) < maxAge {
		return l
	}
	return nil
}
