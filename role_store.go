// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// roleStore keeps the roles in storage, with a lock per role so that two changes of one role do not lose each
// other's fields, and a cache of decoded roles so that a mint costs no storage read: from a plugin, every storage
// read is a round trip to Vault. A change on this node drops the role's cache entry; invalidate does the same for
// changes made on another node. Cached roles are shared and must not be modified.
type roleStore struct {
	locks []*locksutil.LockEntry

	mu    sync.Mutex
	roles map[string]*role
	// gen changes on every drop, so that a read that raced with a write does not cache what it read.
	gen uint64
}

func newRoleStore() *roleStore {
	return &roleStore{locks: locksutil.CreateLocks(), roles: map[string]*role{}}
}

// get returns the role from the cache or from storage; nil when it does not exist.
func (c *roleStore) get(ctx context.Context, s logical.Storage, name string) (*role, error) {
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

// update changes a stored role under its lock. change gets the role as stored, freshly decoded (nil when there is
// none), and returns the role to store, or nil to leave storage as it was.
func (c *roleStore) update(ctx context.Context, s logical.Storage, name string, change func(*role) *role) error {
	lock := locksutil.LockForKey(c.locks, name)
	lock.Lock()
	defer lock.Unlock()
	r, err := getRole(ctx, s, name)
	if err != nil {
		return err
	}
	if r = change(r); r == nil {
		return nil
	}
	err = putRole(ctx, s, name, r)
	// Even a failed put may have stored the role.
	c.drop(name)
	return err
}

// delete removes a stored role under its lock.
func (c *roleStore) delete(ctx context.Context, s logical.Storage, name string) error {
	lock := locksutil.LockForKey(c.locks, name)
	lock.Lock()
	defer lock.Unlock()
	err := s.Delete(ctx, roleStoragePrefix+name)
	c.drop(name)
	if err != nil {
		return fmt.Errorf("deleting role: %w", err)
	}
	return nil
}

// putRole stores a role.
func putRole(ctx context.Context, s logical.Storage, name string, r *role) error {
	entry, err := logical.StorageEntryJSON(roleStoragePrefix+name, r)
	if err != nil {
		return fmt.Errorf("encoding role %q: %w", name, err)
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("storing role %q: %w", name, err)
	}
	return nil
}

// getRole reads a stored role; nil when there is none.
func getRole(ctx context.Context, s logical.Storage, name string) (*role, error) {
	entry, err := s.Get(ctx, roleStoragePrefix+name)
	if err != nil {
		return nil, fmt.Errorf("reading role %q: %w", name, err)
	}
	if entry == nil {
		return nil, nil
	}
	var r role
	if err := entry.DecodeJSON(&r); err != nil {
		return nil, fmt.Errorf("decoding role %q: %w", name, err)
	}
	return &r, nil
}

// drop forgets one role's cache entry.
func (c *roleStore) drop(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.roles, name)
	c.gen++
}

// invalidate handles a storage key changed elsewhere.
func (c *roleStore) invalidate(key string) {
	if name, ok := strings.CutPrefix(key, roleStoragePrefix); ok {
		c.drop(name)
	}
}
