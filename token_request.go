// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// A token write asks for less than the role allows. Its parameters are read strictly (see scope.go for why): each
// must be spelled as a Vault policy would name it, and lie within the role.

// narrowingFields are the fields of a token write, which ask for less than the role.
var narrowingFields = []string{"repositories", "repository_ids", "permissions", "ttl"}

// tokenRequest is what one mint asks GitHub for, and the lease it goes under.
type tokenRequest struct {
	github.TokenRequest
	ttl time.Duration
	// patterns are the role's repository patterns, when the request is for the role's whole repository scope: the
	// mint adds the repositories that match (repository_patterns.go).
	patterns []string
	// byPattern are the asked names that only a pattern allows: the mint holds them to the installation's list.
	byPattern []string
}

// request is the role's whole scope.
func (r *role) request() tokenRequest {
	return tokenRequest{
		TokenRequest: github.TokenRequest{Repositories: r.Repositories, RepositoryIDs: r.RepositoryIDs, Permissions: r.Permissions},
		ttl:          r.TTL,
		patterns:     r.RepositoryPatterns,
	}
}

// repository finds name among the role's repositories as GitHub compares them (ignoring case). It returns the
// role's spelling, and whether name is spelled exactly so; "" when the role does not hold it.
func (r *role) repository(name string) (stored string, exact bool) {
	for _, s := range r.Repositories {
		if strings.EqualFold(s, name) {
			return s, s == name
		}
	}
	return "", false
}

// narrow builds the request of a token write: what was asked where given, the role's scope where not. defaultTTL
// gives the mount's default TTL, which is the role's when the role sets none. It returns nil problems when nothing
// was refused.
func narrow(r *role, d *framework.FieldData, defaultTTL func() time.Duration) (tokenRequest, *problems) {
	tr := r.request()
	var p problems
	rawNames, namesGiven := d.Raw["repositories"]
	rawIDs, idsGiven := d.Raw["repository_ids"]
	if namesGiven || idsGiven {
		tr.Repositories, tr.RepositoryIDs = askedRepositoryScope(r, rawNames, rawIDs, &p)
		tr.patterns, tr.byPattern = nil, nil
		if len(r.RepositoryPatterns) > 0 {
			tr.byPattern = r.byPatternOnly(tr.Repositories)
		}
	}
	if raw, ok := d.Raw["permissions"]; ok {
		perms, q := askedPermissions(r, raw)
		p.add(q)
		if len(perms) > 0 {
			tr.Permissions = perms
		}
	}
	if v, ok := d.GetOk("ttl"); ok {
		tr.ttl = askedTTL(r, time.Duration(v.(int))*time.Second, defaultTTL, &p)
	}
	if p.empty() {
		return tr, nil
	}
	return tr, &p
}

// askedRepositoryScope reads the repositories and repository IDs of a token write, which together replace the
// role's.
func askedRepositoryScope(r *role, rawNames, rawIDs any, p *problems) ([]string, []int64) {
	names, q := askedRepositories(r, rawNames)
	p.add(q)
	ids, q := askedRepositoryIDs(r, rawIDs)
	p.add(q)
	// An empty list would reach GitHub as "every repository": refuse it rather than widen the token, or fall back to
	// the role's list, which a policy that allows only some names would not expect either.
	switch n := len(names) + len(ids); {
	case n == 0 && p.empty():
		p.reject("repositories and repository_ids name no repository: leave both out to get the role's repositories")
	case n > maxRepositories:
		p.reject(fmt.Sprintf("%d repositories asked: GitHub accepts at most %d in one token", n, maxRepositories))
	}
	return names, ids
}

// askedTTL reads the ttl of a token write: at most the role's, or the mount's default when the role sets none. It
// returns the lease TTL to ask for; the role's when the write gives 0 or too much.
func askedTTL(r *role, ttl time.Duration, defaultTTL func() time.Duration, p *problems) time.Duration {
	ceiling := r.TTL
	if ceiling <= 0 {
		ceiling = defaultTTL()
	}
	switch {
	case ttl > ceiling && ceiling > 0:
		p.deny(fmt.Sprintf("ttl %s (the role allows %s)", ttl, ceiling))
	case ttl > 0:
		return ttl
	}
	return r.TTL
}

// askedRepositories reads the repositories of a token write. Each name must be spelled as the role stores it (no
// owner prefix, same case); on a role without a repository limit, any valid name is taken here, and the mint holds
// it to GitHub's spelling (spelledAsGitHub); so is a name that only one of the role's repository_patterns allows
// (resolvePatterns). It returns the names, and the problems: malformed entries (400) and
// entries outside the role (403).
func askedRepositories(r *role, raw any) (names []string, p problems) {
	entries, err := listEntries("repositories", raw)
	if err != nil {
		return nil, problems{malformed: []string{err.Error()}}
	}
	limited := r.limitsRepositories()
	for _, e := range entries {
		s, ok := e.(string)
		switch {
		case !ok:
			p.reject(fmt.Sprintf("repositories holds %s: expected repository names", typeName(e)))
			continue
		case s == "":
			continue
		case s != strings.TrimSpace(s):
			p.reject(fmt.Sprintf("repository %q has surrounding spaces: write %q", s, strings.TrimSpace(s)))
			continue
		}
		if owner, name, found := strings.Cut(s, "/"); found {
			if r.Owner != "" && !strings.EqualFold(owner, r.Owner) {
				p.deny(fmt.Sprintf("repository %q", s))
				continue
			}
			if stored, _ := r.repository(name); stored != "" {
				name = stored
			}
			p.reject(fmt.Sprintf("repository %q: write the name without its owner, as the role does: %q", s, name))
			continue
		}
		if !validRepoName(s) {
			p.reject(badRepoName(s))
			continue
		}
		if limited {
			stored, exact := r.repository(s)
			switch {
			case stored == "" && r.matchesPattern(s):
			case stored == "":
				p.deny(fmt.Sprintf("repository %q", s))
				continue
			case !exact:
				p.reject(fmt.Sprintf("repository %q is spelled %q in the role: write it as the role does", s, stored))
				continue
			}
		}
		if !slices.Contains(names, s) {
			names = append(names, s)
		}
	}
	return names, p
}

// askedRepositoryIDs reads the repository IDs of a token write: decimal strings without sign, leading zeros or spaces
// (Vault's own conversion would also read 0x0BBB or 03003, which no policy names). A JSON number is refused whatever
// its value: Vault compares a policy's values with a request's strings only, so no policy entry ever matches a number,
// and a policy that denies an ID would let it through as one.
func askedRepositoryIDs(r *role, raw any) (ids []int64, p problems) {
	entries, err := listEntries("repository_ids", raw)
	if err != nil {
		return nil, problems{malformed: []string{err.Error()}}
	}
	limited := r.limitsRepositories()
	for _, e := range entries {
		var text string
		switch v := e.(type) {
		case string:
			if v == "" {
				continue
			}
			text = v
		case float64, json.Number, int, int64:
			p.reject(numericID(v))
			continue
		default:
			p.reject(fmt.Sprintf("repository_ids holds %s: expected repository IDs", typeName(e)))
			continue
		}
		id, err := strconv.ParseInt(text, 10, 64)
		if !decimalIDPattern.MatchString(text) || err != nil {
			p.reject(fmt.Sprintf("repository_id %q is not a decimal repository ID: write it in digits "+
				"without sign, leading zeros or spaces, such as 123456789", text))
			continue
		}
		if limited && !slices.Contains(r.RepositoryIDs, id) {
			p.deny(fmt.Sprintf("repository_id %d", id))
			continue
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, p
}

// numericID explains the refusal of a repository ID given as a number. Through Vault an external plugin sees JSON
// numbers as float64 (the request crosses the plugin's gRPC boundary as JSON, decoded without json.Number); Go
// callers in the same process may pass json.Number or integers.
func numericID(v any) string {
	text := fmt.Sprint(v)
	if f, ok := v.(float64); ok {
		text = strconv.FormatFloat(f, 'g', -1, 64)
	}
	if decimalIDPattern.MatchString(text) {
		return fmt.Sprintf("repository_id %s is a JSON number, which no Vault policy matches: write it as a string, %q", text, text)
	}
	return fmt.Sprintf("repository_id %s is a JSON number, which no Vault policy matches, and not a repository ID: write "+
		"repository IDs as strings of digits, such as \"123456789\"", shorten(text, 40))
}

// askedPermissions reads the permissions of a token write: name=level entries exactly as GitHub writes them, in a
// comma-separated string or a list, never an object (which denied_parameters cannot match). Each must lie within
// the role's permissions, at the same or a lower level.
func askedPermissions(r *role, raw any) (perms map[string]string, p problems) {
	if reflect.ValueOf(raw).Kind() == reflect.Map {
		return nil, problems{malformed: []string{"permissions as an object is not accepted when asking for a token: write name=level " +
			"entries, such as permissions=contents=read,issues=write (a string or a list), the form Vault policies compare"}}
	}
	entries, err := listEntries("permissions", raw)
	if err != nil {
		return nil, problems{malformed: []string{err.Error()}}
	}
	perms = map[string]string{}
	for _, e := range entries {
		s, ok := e.(string)
		if !ok {
			p.reject(fmt.Sprintf("permissions holds %s: expected name=level entries", typeName(e)))
			continue
		}
		if s == "" {
			continue
		}
		m := permissionEntryPattern.FindStringSubmatch(s)
		if m == nil {
			p.reject(badPermissionEntry(s))
			continue
		}
		name, level := m[1], m[2]
		if prev, dup := perms[name]; dup && prev != level {
			p.reject(fmt.Sprintf("permission %s is given twice, as %s and %s: give it once", name, prev, level))
			continue
		}
		if msg, _ := levelProblem(name, level); msg != "" {
			p.reject(msg)
			continue
		}
		if len(r.Permissions) > 0 {
			allowed, ok := r.Permissions[name]
			switch {
			case !ok:
				p.deny("permission " + name)
				continue
			case github.LevelRank(level) > github.LevelRank(allowed):
				p.deny(fmt.Sprintf("permission %s=%s (the role allows %s)", name, level, allowed))
				continue
			}
		}
		perms[name] = level
	}
	return perms, p
}

// badPermissionEntry explains a permission entry that is not in canonical form, with the canonical form when there
// is one.
func badPermissionEntry(s string) string {
	name, level, found := strings.Cut(s, "=")
	name = strings.NewReplacer("-", "_", " ", "_", ".", "_").Replace(strings.ToLower(strings.TrimSpace(name)))
	canonical := name + "=" + strings.ToLower(strings.TrimSpace(level))
	if found && permissionEntryPattern.MatchString(canonical) {
		return fmt.Sprintf("permission %q is not written as GitHub writes it: write %q", s, canonical)
	}
	return fmt.Sprintf("permission %q is not a name=level entry such as contents=read (names in lower case joined by "+
		"underscores, levels read, write or admin)", s)
}
