// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/framework"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// FuzzRoleFields: a role write, as the framework hands it to the handler (FieldData with the path's schema, after
// the framework's validation), applied by applyRoleFields to a new or an existing role. Properties: no panic; either
// problems, named at most 20 at once and briefly for a list of more than 500, or a role that is valid: exactly one
// of an owner matching ownerPattern and a positive installation_id, at most 500 repositories and IDs together,
// valid unique names, positive unique IDs, at most 500 unique repository patterns that path.Match accepts and that
// hold no '/' and no template, permissions with valid names and levels GitHub allows, and a TTL not
// below zero. A write changes only the fields it gives (a binding replaces the other), and giving a binding drops
// the account pin.
func FuzzRoleFields(f *testing.F) {
	for i, s := range []string{
		`{"owner":"acme","repositories":"api,Web","repository_ids":"3003","permissions":"contents=write,issues=read","ttl":"10m"}`,
		`{"installation_id":7,"repositories":["api"],"permissions":{"contents":"read"},"ttl":600}`,
		`{"installation_id":"7","owner":""}`,
		`{"installation_id":0,"owner":"acme"}`,
		`{"installation_id":1,"owner":"acme"}`,
		`{"installation_id":-1}`,
		`{"owner":"-acme-"}`,
		`{"owner":" acme "}`,
		`{"repositories":"acme/api,evil/x,..,we b"}`,
		`{"repository_ids":[0,-5,7,7]}`,
		`{"repository_ids":"1,2,x"}`,
		`{"permissions":{"Pull-Requests":"write","workflows":"read","contents":"owner"}}`,
		`{"permissions":["contents=read,issues=write"]}`,
		`{"ttl":"-1m"}`,
		`{"ttl":9223372036854775807}`,
		`{}`,
		"owner=acme\nrepositories=api,web\npermissions=contents=read",
		"installation_id=12\nttl=1h",
		`{"owner":"acme","repositories":"` + numbered("r", 501, ",") + `"}`,
		`{"owner":"acme","repositories":"` + numbered("r", 500, ",") + `","repository_ids":"1"}`,
		`{"owner":"acme","repositories":"` + numbered("r", 499, ",") + `","repository_ids":"1"}`,
		`{"owner":"acme","repository_patterns":"team-a-*,team-?-[a-z]*,team-a-*"}`,
		`{"repository_patterns":["[a-","acme/*","{{identity.entity.name}}-*","\\"]}`,
		`{"owner":"acme","repository_patterns":"` + numbered("p", 501, ",") + `"}`,
	} {
		f.Add(uint8(i), s, false)
		f.Add(uint8(i), s, true)
	}
	f.Fuzz(func(t *testing.T, existing uint8, write string, typed bool) {
		r := &role{}
		if n := int(existing) % (len(fuzzRoles) + 1); n < len(fuzzRoles) {
			r = cloneRole(fuzzRoles[n])
		}
		before := cloneRole(*r)
		raw := requestData(write, typed)
		raw["name"] = "fuzz"
		d := &framework.FieldData{Raw: raw, Schema: roleFields()}
		if d.Validate() != nil {
			return // the framework refuses it with 400 before the handler runs
		}
		problems := applyRoleFields(r, d).malformed
		if len(problems) > 0 {
			checkItems(t, problems, longestText(raw))
			for _, field := range []string{"repositories", "repository_ids", "repository_patterns"} {
				if v, ok := d.GetOk(field); ok && reflect.ValueOf(v).Len() > maxRepositories {
					checkTooMany(t, problems[len(problems)-1:], 0)
				}
			}
			return
		}

		ownerBound := r.Owner != "" && ownerPattern.MatchString(r.Owner)
		if ownerBound == (r.InstallationID > 0) || r.InstallationID < 0 || (r.Owner != "" && !ownerBound) {
			t.Fatalf("accepted a role bound to owner %q and installation %d", r.Owner, r.InstallationID)
		}
		if n := len(r.Repositories) + len(r.RepositoryIDs); n > maxRepositories {
			t.Fatalf("accepted %d repositories", n)
		}
		for i, name := range r.Repositories {
			if !repositoryName.MatchString(name) || name == "." || name == ".." ||
				slices.ContainsFunc(r.Repositories[:i], func(s string) bool { return strings.EqualFold(s, name) }) {
				t.Fatalf("accepted the repositories %q", r.Repositories)
			}
		}
		for i, id := range r.RepositoryIDs {
			if id <= 0 || slices.Contains(r.RepositoryIDs[:i], id) {
				t.Fatalf("accepted the repository IDs %v", r.RepositoryIDs)
			}
		}
		if len(r.RepositoryPatterns) > maxRepositories {
			t.Fatalf("accepted %d repository patterns", len(r.RepositoryPatterns))
		}
		for i, pattern := range r.RepositoryPatterns {
			if _, err := path.Match(pattern, ""); err != nil || pattern == "" || strings.ContainsAny(pattern, "/") ||
				strings.Contains(pattern, "{{") || slices.Contains(r.RepositoryPatterns[:i], pattern) {
				t.Fatalf("accepted the repository patterns %q", r.RepositoryPatterns)
			}
		}
		for name, level := range r.Permissions {
			levels, known := github.PermissionLevels(name)
			if !permissionName.MatchString(name) || rank[level] == 0 || (known && !slices.Contains(levels, level)) {
				t.Fatalf("accepted the permission %s=%s", name, level)
			}
		}
		if r.TTL < 0 {
			t.Fatalf("accepted the ttl %s", r.TTL)
		}

		_, idGiven := raw["installation_id"]
		_, ownerGiven := raw["owner"]
		if want := map[bool]int64{true: 0, false: before.AccountID}[idGiven || ownerGiven]; r.AccountID != want {
			t.Fatalf("account pin %d → %d on a write that gives owner %v, installation_id %v", before.AccountID,
				r.AccountID, ownerGiven, idGiven)
		}
		for field, same := range map[string]bool{
			"repositories":        reflect.DeepEqual(r.Repositories, before.Repositories),
			"repository_ids":      reflect.DeepEqual(r.RepositoryIDs, before.RepositoryIDs),
			"repository_patterns": reflect.DeepEqual(r.RepositoryPatterns, before.RepositoryPatterns),
			"permissions":         reflect.DeepEqual(r.Permissions, before.Permissions),
			"ttl":                 r.TTL == before.TTL,
		} {
			if _, given := raw[field]; !given && !same {
				t.Fatalf("%s changed on a write that does not give it", field)
			}
		}
		if !idGiven && !ownerGiven && (r.Owner != before.Owner || r.InstallationID != before.InstallationID) {
			t.Fatal("the binding changed on a write that gives neither owner nor installation_id")
		}
	})
}
