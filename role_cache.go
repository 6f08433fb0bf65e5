// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"
)

// roleCache keeps decoded roles in memory so that a mint costs no storage read: from a plugin, every storage read is
// a round trip to Vault. Writes and deletes on this node drop the entry; Invalidate does the same for changes made
// on another node. Cached roles are shared and must not be modified.
type roleCache struct {
	mu    sync.Mutex
	roles map[string]*role
	// gen changes on every drop, so that a read that raced with a write does not cache what it read.
	gen uint64
}

func newRoleCache() *roleCache { return &roleCache{roles: map[string]*role{}} }

// get returns the role from the cache or from storage; nil when it does not exist.
func (c *roleCache) get(ctx context.Context, s logical.Storage, name string) (*role, error) {
	c.mu.Lock()
	r, ok := c.roles[name]
	gen := c.gen
	c.mu.Unlock()
	if ok {
		return r, nil
	}
	r, err := getRole(ctx, s, name)
	if err != nil || r == nil {
		return r, err
	}
	c.mu.Lock()
	if c.gen == gen {
		c.roles[name] = r
	}
	c.mu.Unlock()
	return r, nil
}

// drop forgets one role.
func (c *roleCache) drop(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.roles, name)
	c.gen++
}

// invalidate handles a storage key changed elsewhere.
func (c *roleCache) invalidate(key string) {
	if name, ok := strings.CutPrefix(key, roleStoragePrefix); ok {
		c.drop(name)
	}
}
