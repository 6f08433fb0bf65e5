// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"slices"
	"strings"
)

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

// accountWidePermissions are the permissions GitHub grants on the installation's account (its organization, its
// members, its enterprise, or the user) rather than on repositories, besides those named organization_* and
// enterprise_*. A token's repository list does not narrow them.
var accountWidePermissions = []string{
	"members", "custom_properties_for_organizations",
	"email_addresses", "followers", "git_ssh_keys", "gpg_keys", "profile", "starring",
}

// AccountWide reports whether a permission applies to the installation's account as a whole, so that limiting a
// token to some repositories does not limit it.
func AccountWide(name string) bool {
	return strings.HasPrefix(name, "organization_") || strings.HasPrefix(name, "enterprise_") ||
		slices.Contains(accountWidePermissions, name)
}
