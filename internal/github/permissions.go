package github

import (
	"slices"
	"sort"
)

// Permission levels in ascending order of power.
var levelRank = map[string]int{"read": 1, "write": 2, "admin": 3}

// LevelRank orders permission levels (read < write < admin); 0 for an unknown level.
func LevelRank(level string) int { return levelRank[level] }

// PermissionLevels returns the levels GitHub documents for a permission, ascending, and whether GitHub documents
// the permission at all.
func PermissionLevels(name string) ([]string, bool) {
	levels, ok := permissionLevels[name]
	return slices.Clone(levels), ok
}

// PermissionNames lists every documented permission, sorted.
func PermissionNames() []string {
	names := make([]string, 0, len(permissionLevels))
	for n := range permissionLevels {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
