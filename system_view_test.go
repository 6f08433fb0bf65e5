// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import "time"

// forget drops the cached answers, so that a test sees a tune at once rather than after systemViewLifetime.
func (c *cachedSystemView) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.read = time.Time{}
}
