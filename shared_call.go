// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// sharedCallTimeout bounds a call to GitHub that several requests share: it no longer ends with the request that
// started it.
const sharedCallTimeout = 30 * time.Second

// sharedCall runs fn once for all concurrent callers of key. fn runs under a context of its own, bounded by timeout,
// so that the caller that started it going away does not fail the others; each caller still stops waiting when its
// own context ends. Callers that may wait for GitHub and callers that may not (github.WithoutWaiting: a mint of a
// role with several Apps) share only with their own kind: each kind's calls go as its callers asked.
func sharedCall(ctx context.Context, g *singleflight.Group, key string, timeout time.Duration, fn func(context.Context) (any, error)) (any, error) {
	if !github.Waits(ctx) {
		key += "\x00without-waiting"
	}
	ch := g.DoChan(key, func() (any, error) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		return fn(sctx)
	})
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
