// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// FuzzNarrow: a token write (repositories, repository_ids, permissions and ttl in any form), as the framework hands
// it over, narrowed by narrow against a role from a fuzzed role write (or a fixed one when that write is invalid).
// Properties: either a refusal with something in it, named at most 20 items at once, or a request within the role:
// repositories a subset of the role's in its exact spelling, or names that match its repository patterns and are
// left for the mint to check, and IDs a subset of its IDs when it is limited; never an empty repository list when
// repositories were asked or the role is limited, unless the role's patterns are left for the mint to resolve; permissions within the role's at the
// same or lower level (and GitHub's levels), a ttl at most the role's (or the mount's default), and the role's own
// scope for every field not given. The mount's default TTL is asked for only when needed.
func FuzzNarrow(f *testing.F) {
	type seed struct {
		role, write string
		defaultTTL  int64
	}
	for _, s := range []seed{
		{`{"owner":"acme","repositories":"api,Web","repository_ids":"3003","permissions":"contents=write,issues=read","ttl":"10m"}`,
			`{"repositories":"Web","permissions":"contents=read","ttl":"5m"}`, 3600},
		{`{"owner":"acme","repositories":"api,Web"}`, `{"repositories":"web"}`, 3600},
		{`{"owner":"acme","repository_patterns":"team-*"}`, `{"permissions":"contents=read"}`, 3600},
		{`{"owner":"acme","repository_patterns":"team-*","repositories":"api"}`, `{"repositories":"team-a,api,web"}`, 3600},
		{`{"owner":"acme","repository_patterns":"team-*","repositories":"api"}`, `{"repositories":"Team-B,api"}`, 3600},
		{`{"owner":"acme","repositories":"api,Web"}`, `{"repositories":""}`, 3600},
		{`{"owner":"acme","repositories":"api,Web"}`, `{"repository_ids":[]}`, 3600},
		{`{"owner":"acme","repositories":"api,Web"}`, `{"repository_ids":"3003"}`, 3600},
		{`{"owner":"acme"}`, `{"repositories":"anything","repository_ids":"9"}`, 0},
		{`{"owner":"acme"}`, `{"repositories":null}`, 0},
		{`{"owner":"acme","ttl":"10m"}`, `{"ttl":"11m"}`, 3600},
		{`{"owner":"acme"}`, `{"ttl":"2h"}`, 3600},
		{`{"owner":"acme"}`, `{"ttl":"2h"}`, 0},
		{`{"owner":"acme"}`, `{"ttl":0}`, 60},
		{`{"installation_id":7,"permissions":"contents=read"}`, `{"permissions":"contents=write"}`, 60},
		{`{"installation_id":7,"permissions":"contents=read"}`, `{"permissions":{"contents":"read"}}`, 60},
		{`{"installation_id":7,"permissions":"contents=read"}`, `{"permissions":""}`, 60},
		{`{"installation_id":7}`, `{"permissions":["administration=write","workflows=write"]}`, 60},
		{`{"installation_id":7}`, "repositories=a,b\npermissions=contents=read\nttl=30", 60},
		{`not a role`, `{"repositories":"api","repository_ids":"1,42"}`, 60},
		{`{"owner":"acme","repositories":"r"}`, `{"repositories":"` + numbered("r", 501, ",") + `"}`, 60},
		{`{"owner":"acme"}`, `{"repositories":"` + numbered("a", 250, ",") + `","repository_ids":"` + numbered("1", 250, ",") + `"}`, 60},
		{`{"owner":"acme"}`, `{"repositories":"` + numbered("a", 250, ",") + `","repository_ids":"` + numbered("1", 251, ",") + `"}`, 60},
	} {
		f.Add(s.role, s.write, s.defaultTTL, false)
		f.Add(s.role, s.write, s.defaultTTL, true)
	}
	tokenFields := pathToken(nil).Fields
	f.Fuzz(func(t *testing.T, roleWrite, tokenWrite string, defaultTTL int64, typed bool) {
		r := roleFor(roleWrite)
		raw := requestData(tokenWrite, typed)
		raw["role"] = "fuzz"
		d := &framework.FieldData{Raw: raw, Schema: tokenFields}
		if d.Validate() != nil {
			return // the framework refuses it with 400 before the handler runs
		}
		def := time.Duration(uint64(defaultTTL)%(48*3600)) * time.Second
		defaultAsked := 0
		tr, refused := narrow(r, d, func() time.Duration { defaultAsked++; return def })

		ttlRaw, ttlGiven := d.GetOk("ttl")
		if defaultAsked > 1 || (defaultAsked == 1 && (!ttlGiven || r.TTL > 0)) {
			t.Fatalf("the mount's default TTL was asked for %d times (ttl given %v, role ttl %s)", defaultAsked, ttlGiven, r.TTL)
		}
		if refused != nil {
			if refused.empty() {
				t.Fatal("a refusal without a reason")
			}
			checkItems(t, refused.malformed, longestText(raw))
			checkItems(t, refused.denied, longestText(raw))
			resp, err := refused.response("fuzz")
			var coded logical.HTTPCodedError
			switch {
			case len(refused.malformed) > 0 && (err != nil || resp == nil || !resp.IsError()):
				t.Fatalf("malformed input answered %v, %v; want a 400 error response", resp, err)
			case len(refused.malformed) == 0 && (!errors.As(err, &coded) || coded.Code() != http.StatusForbidden):
				t.Fatalf("input outside the role answered %v, %v; want 403", resp, err)
			}
			return
		}

		_, namesGiven := raw["repositories"]
		_, idsGiven := raw["repository_ids"]
		n := len(tr.Repositories) + len(tr.RepositoryIDs)
		switch {
		case n > maxRepositories:
			t.Fatalf("a request for %d repositories", n)
		case (namesGiven || idsGiven) && len(tr.patterns) > 0:
			t.Fatalf("repositories asked, yet the role's patterns %q are left to resolve", tr.patterns)
		case !namesGiven && !idsGiven && !slices.Equal(tr.patterns, r.RepositoryPatterns):
			t.Fatalf("repositories not asked, yet the patterns to resolve are %q, the role's %q", tr.patterns, r.RepositoryPatterns)
		case (namesGiven || idsGiven || r.limitsRepositories()) && n == 0 && len(tr.patterns) == 0:
			t.Fatalf("an empty repository list (asked %v/%v, role limited %v) would reach every repository",
				namesGiven, idsGiven, r.limitsRepositories())
		case !namesGiven && !idsGiven && (!slices.Equal(tr.Repositories, r.Repositories) || !slices.Equal(tr.RepositoryIDs, r.RepositoryIDs)):
			t.Fatalf("repositories not asked, yet the request has %q %v, the role %q %v", tr.Repositories,
				tr.RepositoryIDs, r.Repositories, r.RepositoryIDs)
		}
		askedNames, _ := entriesOf(raw["repositories"])
		askedIDs, _ := entriesOf(raw["repository_ids"])
		for _, name := range tr.Repositories {
			byPattern := r.matchesPattern(name) && slices.Contains(tr.byPattern, name)
			if !repositoryName.MatchString(name) || (r.limitsRepositories() && !slices.Contains(r.Repositories, name) && !byPattern) {
				t.Fatalf("the request holds the repository %q; the role has %q and patterns %q", name, r.Repositories, r.RepositoryPatterns)
			}
			if namesGiven || idsGiven {
				if !slices.Contains(askedNames, any(name)) {
					t.Fatalf("the request holds the repository %q, which was not asked: %v", name, askedNames)
				}
			}
		}
		for _, id := range tr.RepositoryIDs {
			if id <= 0 || (r.limitsRepositories() && !slices.Contains(r.RepositoryIDs, id)) {
				t.Fatalf("the request holds the repository ID %d; the role has %v", id, r.RepositoryIDs)
			}
			if text := strconv.FormatInt(id, 10); (namesGiven || idsGiven) && !slices.ContainsFunc(askedIDs, func(e any) bool {
				return fmt.Sprint(e) == text
			}) {
				t.Fatalf("the request holds the repository ID %d, which was not asked: %v", id, askedIDs)
			}
		}

		// Permissions asked replace the role's; none asked (or only empty entries) leave the role's.
		askedPerms, _ := entriesOf(raw["permissions"])
		permsAsked := slices.ContainsFunc(askedPerms, func(e any) bool { return e != "" })
		if !permsAsked && !maps.Equal(tr.Permissions, r.Permissions) {
			t.Fatalf("no permissions asked, yet the request has %v, the role %v", tr.Permissions, r.Permissions)
		}
		for name, level := range tr.Permissions {
			if levels, known := github.PermissionLevels(name); rank[level] == 0 || (known && !slices.Contains(levels, level)) {
				t.Fatalf("the request holds the permission %s=%s", name, level)
			}
			if allowed, ok := r.Permissions[name]; len(r.Permissions) > 0 && (!ok || rank[level] > rank[allowed]) {
				t.Fatalf("the request holds %s=%s beyond the role's %v", name, level, r.Permissions)
			}
			if permsAsked && !slices.Contains(askedPerms, any(name+"="+level)) {
				t.Fatalf("the request holds %s=%s, which was not asked: %v", name, level, askedPerms)
			}
		}

		ceiling := r.TTL
		if ceiling <= 0 {
			ceiling = def
		}
		switch {
		case tr.ttl < 0:
			t.Fatalf("a negative ttl %s", tr.ttl)
		case !ttlGiven && tr.ttl != r.TTL:
			t.Fatalf("ttl not asked, yet the request has %s, the role %s", tr.ttl, r.TTL)
		case ttlGiven && ceiling > 0 && tr.ttl > ceiling:
			t.Fatalf("ttl %s (asked %v) beyond the role's %s (default %s)", tr.ttl, ttlRaw, r.TTL, def)
		case ttlGiven && ttlRaw.(int) > 0 && tr.ttl != time.Duration(ttlRaw.(int))*time.Second:
			t.Fatalf("ttl %v asked and accepted, yet the request has %s", ttlRaw, tr.ttl)
		}
	})
}

// roleFor is the role a fuzzed role write stores on a new role, or a fixed role when the write is refused.
func roleFor(write string) *role {
	raw := requestData(write, false)
	raw["name"] = "fuzz"
	d := &framework.FieldData{Raw: raw, Schema: roleFields()}
	if d.Validate() == nil {
		r := &role{}
		if len(applyRoleFields(r, d).malformed) == 0 {
			return r
		}
	}
	return cloneRole(fuzzRoles[len(write)%len(fuzzRoles)])
}
