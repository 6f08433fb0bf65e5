// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import "testing"

// TestAccountWide: the organization's, enterprise's and user's permissions apply to the whole account; repository
// permissions do not; every name it knows is in GitHub's table.
func TestAccountWide(t *testing.T) {
	for name, want := range map[string]bool{
		"members": true, "organization_secrets": true, "organization_administration": true,
		"enterprise_administration": true, "custom_properties_for_organizations": true, "email_addresses": true,
		"contents": false, "metadata": false, "pull_requests": false, "repository_hooks": false, "secrets": false,
	} {
		if got := AccountWide(name); got != want {
			t.Errorf("AccountWide(%q) = %v, want %v", name, got, want)
		}
	}
	for _, name := range accountWidePermissions {
		if _, ok := PermissionLevels(name); !ok {
			t.Errorf("%q is not in GitHub's permission table", name)
		}
	}
}
