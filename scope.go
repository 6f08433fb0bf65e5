// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// A scope is what a token may reach: repositories by name and ID, and permissions. Role writes are lenient: they
// accept GitHub's spellings (any case, owner/name for the role's owner, an object of permissions) and store one
// normal form. Token writes are strict: Vault's allowed_parameters and denied_parameters compare the raw values of a
// request, so a token write accepts only the spelling a policy would name (the role's stored names, or GitHub's on a
// role without a repository limit; lower-case permission levels, name=level entries; IDs as strings) and refuses
// every other with the form to use.

const (
	// maxRepositories is GitHub's limit on repositories (names and IDs together) in one token request. It also bounds
	// every list parameter, checked before any other work on it.
	maxRepositories = 500
)

var (
	// GitHub logins: letters, digits and hyphens, at most 39 characters; Enterprise Managed Users add an
	// underscore and a short code.
	ownerPattern = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,98}[A-Za-z0-9_])?$`)
	// Repository names: letters, digits, '.', '-' and '_', at most 100 characters.
	repoNamePattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
	// Permission names as GitHub spells them: lower case words joined by underscores.
	permissionNamePattern = regexp.MustCompile(`^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$`)
	// A permission entry of a token write, exactly as GitHub writes it.
	permissionEntryPattern = regexp.MustCompile(`^([a-z][a-z0-9]*(?:_[a-z0-9]+)*)=(read|write|admin)$`)
	// A repository ID as a policy would write it: decimal, no sign, no leading zero, at most 19 digits.
	decimalIDPattern = regexp.MustCompile(`^[1-9][0-9]{0,18}$`)
)

// ------------------------------------------------------------------------------------------------- role writes

// normalizeRepositories validates repository names. "owner/name" is accepted when owner is the role's owner and
// stored as "name"; names are de-duplicated case-insensitively, as GitHub compares them.
func normalizeRepositories(in []string, roleOwner string) ([]string, problems) {
	var out []string
	var p problems
	seen := map[string]bool{}
	for _, raw := range in {
		name := strings.TrimSpace(raw)
		if name == "" {
			continue
		}
		if o, n, ok := strings.Cut(name, "/"); ok {
			switch {
			case roleOwner == "":
				p.reject(fmt.Sprintf("repository %q has an owner: give the name alone (%q); "+
					"owner/name is accepted only on roles bound by owner", name, n))
				continue
			case !strings.EqualFold(o, roleOwner):
				p.reject(fmt.Sprintf("repository %q belongs to %q, not to the role's owner %q: "+
					"a token covers repositories of one installation only", name, o, roleOwner))
				continue
			}
			name = n
		}
		if !validRepoName(name) {
			p.reject(badRepoName(raw))
			continue
		}
		if key := strings.ToLower(name); !seen[key] {
			seen[key] = true
			out = append(out, name)
		}
	}
	return out, p
}

// normalizePermissions checks names and levels against GitHub's documented table. Malformed names are errors with a
// suggestion; well-formed names GitHub does not (yet) document are accepted with a warning.
func normalizePermissions(in map[string]string) (map[string]string, problems) {
	var p problems
	out := make(map[string]string, len(in))
	for _, name := range sortedKeys(in) {
		level := strings.ToLower(strings.TrimSpace(in[name]))
		if !permissionNamePattern.MatchString(name) {
			msg := fmt.Sprintf("permission %q is not a valid name: GitHub's names are lower case words joined by underscores", name)
			if s := suggestPermission(name); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			p.reject(msg)
			continue
		}
		if github.LevelRank(level) == 0 {
			p.reject(fmt.Sprintf("permission %s has level %q: expected read, write or admin", name, in[name]))
			continue
		}
		if msg, known := levelProblem(name, level); msg != "" {
			p.reject(msg)
			continue
		} else if !known {
			p.warn(fmt.Sprintf("permission %q is not in GitHub's published list known to this plugin; it is accepted as written, and GitHub will refuse it if it does not exist", name))
		}
		out[name] = level
	}
	return out, p
}

// permissionsField reads a role write's permissions field. Besides what Vault's key-value type takes (a JSON object,
// or a list of name=level entries), it accepts one comma-separated string, the form that is easiest on the vault
// CLI: permissions=contents=read,pull_requests=write. List entries are not split, so that a policy's
// denied_parameters sees every entry as Vault splits it.
func permissionsField(d *framework.FieldData) (map[string]string, bool, error) {
	raw, ok := d.Raw["permissions"]
	if !ok {
		return nil, false, nil
	}
	if reflect.ValueOf(raw).Kind() == reflect.Map {
		m, _, err := d.GetOkErr("permissions")
		if err != nil {
			return nil, false, fmt.Errorf("permissions: expected name=level pairs or an object of levels: %w", err)
		}
		return m.(map[string]string), true, nil
	}
	entries, err := listEntries("permissions", raw)
	if err != nil {
		return nil, false, err
	}
	out := map[string]string{}
	for _, e := range entries {
		s, isString := e.(string)
		if !isString {
			return nil, false, fmt.Errorf("permissions holds %s: expected name=level strings", typeName(e))
		}
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		name, level, found := strings.Cut(s, "=")
		if !found || strings.TrimSpace(name) == "" {
			return nil, false, fmt.Errorf("permissions entry %q is not name=level, such as contents=read", s)
		}
		out[strings.TrimSpace(name)] = strings.TrimSpace(level)
	}
	return out, true, nil
}

// --------------------------------------------------------------------------------------------------- helpers

// listEntries returns the entries of a list parameter as Vault's policy checks see them: a string is split at commas
// and each part trimmed (as allowed_parameters and denied_parameters, and the SDK's comma-separated types, read
// it); a list gives its elements as they are; anything else is one entry. More than maxRepositories entries are
// refused before anything else is done with them.
func listEntries(field string, raw any) ([]any, error) {
	if raw == nil {
		return nil, nil
	}
	if s, ok := raw.(string); ok {
		if n := strings.Count(s, ",") + 1; n > maxRepositories {
			return nil, tooManyEntries(field, n)
		}
		parts := strings.Split(s, ",")
		out := make([]any, len(parts))
		for i, p := range parts {
			out[i] = strings.TrimSpace(p)
		}
		return out, nil
	}
	v := reflect.ValueOf(raw)
	if v.Kind() != reflect.Slice && v.Kind() != reflect.Array {
		return []any{raw}, nil
	}
	if v.Len() > maxRepositories {
		return nil, tooManyEntries(field, v.Len())
	}
	out := make([]any, v.Len())
	for i := range out {
		out[i] = v.Index(i).Interface()
	}
	return out, nil
}

func tooManyEntries(field string, n int) error {
	return fmt.Errorf("%s has %d entries: at most %d are accepted", field, n, maxRepositories)
}

// levelProblem checks a level against GitHub's table for the permission; known reports whether the table has the
// permission at all.
func levelProblem(name, level string) (msg string, known bool) {
	levels, known := github.PermissionLevels(name)
	if known && !slices.Contains(levels, level) {
		return fmt.Sprintf("permission %s does not accept level %q: GitHub allows %s", name, level, strings.Join(levels, ", ")), true
	}
	return "", known
}

// suggestPermission turns "pull-requests" or "Pull_Requests" into "pull_requests" when that is a known name.
func suggestPermission(name string) string {
	s := strings.ToLower(strings.TrimSpace(name))
	s = strings.NewReplacer("-", "_", " ", "_", ".", "_").Replace(s)
	if _, ok := github.PermissionLevels(s); ok {
		return s
	}
	return ""
}

func validRepoName(name string) bool {
	return repoNamePattern.MatchString(name) && name != "." && name != ".."
}

func badRepoName(name string) string {
	return fmt.Sprintf("repository %q is not a valid repository name: expected letters, digits, '.', '-' and '_', at most 100 characters", name)
}
