// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// systemViewLifetime is how long the answers of cachedSystemView are kept: a tune of the mount's TTLs shows in mints
// within it.
const systemViewLifetime = 10 * time.Second

// cachedSystemView answers from a cache the questions that would otherwise cost a gRPC round trip to Vault on every
// mint: the mount's default and max lease TTLs (for the lease and its warnings; Vault caps every lease to the max
// itself), and the SDK's own questions before a request it may forward (is this a performance standby or secondary,
// is the mount local). A mount's backend is set up again when its node's role changes; the short lifetime covers the
// rest.
type cachedSystemView struct {
	logical.SystemView
	now func() time.Time

	mu      sync.Mutex
	read    time.Time
	answers systemAnswers
}

type systemAnswers struct {
	defaultTTL, maxTTL time.Duration
	local              bool
	state              consts.ReplicationState
}

func newCachedSystemView(sys logical.SystemView, now func() time.Time) *cachedSystemView {
	return &cachedSystemView{SystemView: sys, now: now}
}

// fresh returns the cached answers, asking Vault again when they are older than systemViewLifetime.
func (c *cachedSystemView) fresh() systemAnswers {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); c.read.IsZero() || now.Sub(c.read) > systemViewLifetime {
		c.answers = systemAnswers{
			defaultTTL: c.SystemView.DefaultLeaseTTL(),
			maxTTL:     c.SystemView.MaxLeaseTTL(),
			local:      c.SystemView.LocalMount(),
			state:      c.SystemView.ReplicationState(),
		}
		c.read = now
	}
	return c.answers
}

func (c *cachedSystemView) DefaultLeaseTTL() time.Duration { return c.fresh().defaultTTL }

func (c *cachedSystemView) MaxLeaseTTL() time.Duration { return c.fresh().maxTTL }

func (c *cachedSystemView) LocalMount() bool { return c.fresh().local }

func (c *cachedSystemView) ReplicationState() consts.ReplicationState { return c.fresh().state }
