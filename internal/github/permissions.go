// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import "slices"

// Permission levels in ascending order of power.
var levelRank = map[string]int{"read": 1, "write": 2, "admin": 3}

// LevelRank orders permission levels (read < write < admin); 0 for a level it does not know, which callers must treat
// as above every known one when they check a grant.
func LevelRank(level string) int { return levelRank[level] }

// PermissionLevels returns the levels GitHub documents for a permission, ascending, and whether GitHub documents
// the permission at all.
func PermissionLevels(name string) ([]string, bool) {
	levels, ok := permissionLevels[name]
	return slices.Clone(levels), ok
}
