// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// Fuzz targets for the scope rules: a role write's repositories and permissions as stored, a token write's as
// accepted. fuzz_harness_test.go says how fuzz text becomes request values.

// rolePermissions reads "name=level,..." as a role write does and keeps what the role write would store.
func rolePermissions(t *testing.T, text string) map[string]string {
	t.Helper()
	d := &framework.FieldData{Raw: map[string]any{"permissions": text}, Schema: roleFields()}
	m, _, err := permissionsField(d)
	if err != nil {
		return nil
	}
	out, _ := normalizePermissions(m)
	return out
}

// ------------------------------------------------------------------------------------------------ permissions

// FuzzRolePermissions: a role write's permissions, in every form (a comma-separated string, a list, an object),
// read by permissionsField and checked by normalizePermissions. Properties: no panic; an error names one entry; every
// permission read is either stored or refused, and what is stored has a valid name and a level GitHub allows; a
// string and the list of its comma-separated parts mean the same.
func FuzzRolePermissions(f *testing.F) {
	for _, s := range []string{
		"contents=read,pull_requests=write",
		" contents = READ , , issues=write ",
		`["contents=read","issues=write"]`,
		`["contents=read,issues=write"]`,
		`{"contents":"read","Pull-Requests":"write","workflows":"read"}`,
		`{"contents":1,"issues":true,"x":null}`,
		`{"future_thing":"owner","contents":"maintain"}`,
		`{"contents":{"a":"b"}}`,
		`{"":"read"," contents ":"read"}`,
		"contents",
		"=read",
		"contents=read=write",
		"contents=read,contents=admin",
		"future_permission=admin,enterprise_custom_properties_for_organizations=admin",
		`[1,2]`, `[]`, `""`, `null`, `true`, `12`,
		"Contents=Read,pull-requests=write,a..b=read",
		strings.Repeat("contents=read,", 501),
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, text string, typed bool) {
		raw := rawValue(text, typed)
		d := &framework.FieldData{Raw: map[string]any{"permissions": raw}, Schema: roleFields()}
		if d.Validate() != nil {
			return // the framework refuses it with 400 before the handler runs
		}
		longest := longestText(raw)
		m, given, err := permissionsField(d)
		if err != nil {
			if m != nil || given {
				t.Fatalf("permissionsField returned %v, %v with the error %v", m, given, err)
			}
			checkItems(t, []string{err.Error()}, longest)
			return
		}
		if !given {
			t.Fatal("permissionsField says the permissions were not given")
		}
		entries, object := entriesOf(raw)
		if !object {
			if len(entries) > maxRepositories {
				t.Fatalf("%d entries accepted, more than %d", len(entries), maxRepositories)
			}
			_, isString := raw.(string)
			for name := range m {
				if name == "" || name != strings.TrimSpace(name) || (isString && strings.Contains(name, ",")) {
					t.Fatalf("permissionsField read the name %q from %q", name, text)
				}
			}
		}

		out, p := normalizePermissions(m)
		problems, warnings := p.malformed, p.warnings
		if len(out)+len(problems) != len(m) {
			t.Fatalf("%d permissions read, %d stored and %d refused", len(m), len(out), len(problems))
		}
		for name, level := range out {
			if !permissionName.MatchString(name) || rank[level] == 0 || level != strings.ToLower(strings.TrimSpace(m[name])) {
				t.Fatalf("stored %s=%s from %q", name, level, m[name])
			}
			if levels, known := github.PermissionLevels(name); known && !slices.Contains(levels, level) {
				t.Fatalf("stored %s=%s, which GitHub does not allow (%v)", name, level, levels)
			}
		}
		if len(warnings) > len(out) {
			t.Fatalf("%d warnings for %d stored permissions", len(warnings), len(out))
		}
		checkItems(t, problems, longest)

		// The CLI's string and the API's list of its parts are the same request.
		if s, ok := raw.(string); ok {
			parts := make([]any, 0)
			for _, p := range strings.Split(s, ",") {
				parts = append(parts, strings.TrimSpace(p))
			}
			dl := &framework.FieldData{Raw: map[string]any{"permissions": parts}, Schema: roleFields()}
			if dl.Validate() == nil {
				ml, _, errl := permissionsField(dl)
				if errl == nil && !reflect.DeepEqual(ml, m) {
					t.Fatalf("the string %q reads as %v, the list of its parts as %v", s, m, ml)
				}
			}
		}
	})
}

// FuzzTokenPermissions: a token write's permissions, read by askedPermissions against a role whose permissions are
// fuzzed too. Properties: no panic; an object is refused; what is accepted was written exactly as canonical
// name=level entries, lies within the role's permissions (when it has any) at the same or a lower level, and at a
// level GitHub allows; every other non-empty entry is refused; more than 500 entries are refused at once, briefly;
// the refusal names at most 20 items.
func FuzzTokenPermissions(f *testing.F) {
	for _, s := range []struct{ role, asked string }{
		{"contents=write,issues=read", "contents=read"},
		{"contents=write,issues=read", "contents=write,issues=read"},
		{"contents=write,issues=read", "issues=write"},
		{"contents=write,issues=read", "pull_requests=read"},
		{"contents=write", "contents=READ"},
		{"contents=write", "Contents=read"},
		{"contents=write", "contents = read"},
		{"contents=write", `["contents=read "]`},
		{"contents=write", `{"contents":"read"}`},
		{"contents=write", `["contents=read",7,null,["x"],{"a":1}]`},
		{"contents=write", "contents=read,contents=write"},
		{"contents=write", "contents=read,contents=read"},
		{"", "administration=admin,workflows=read,future_thing=admin"},
		{"", "metadata=write"},
		{"enterprise_custom_properties_for_organizations=admin", "enterprise_custom_properties_for_organizations=admin"},
		{"future_thing=write", "future_thing=admin,future_thing=read"},
		{"contents=read", strings.Repeat("contents=read,", 500) + "contents=read"},
		{"contents=read", strings.Repeat("x,", 499) + "x"},
		{"contents=read", numbered("bad", 21, ",")},
		{"contents=read", "[" + numbered(`"bad`, 22, `",`) + `"]`},
		{"contents=read", ""},
		{"contents=read", ",,,"},
		{"contents=read", "null"},
	} {
		f.Add(s.role, s.asked, false)
		f.Add(s.role, s.asked, true)
	}
	f.Fuzz(func(t *testing.T, rolePerms, asked string, typed bool) {
		r := &role{Owner: "acme", Permissions: rolePermissions(t, rolePerms)}
		raw := rawValue(asked, typed)
		perms, p := askedPermissions(r, raw)
		problems, denied := p.malformed, p.denied
		entries, object := entriesOf(raw)
		items := append(slices.Clone(problems), denied...)
		checkItems(t, items, longestText(raw))

		if object {
			if perms != nil || len(problems) == 0 {
				t.Fatalf("an object gave %v, problems %q", perms, problems)
			}
			return
		}
		if len(entries) > maxRepositories {
			checkTooMany(t, problems, len(perms))
			return
		}
		for name, level := range perms {
			entry := name + "=" + level
			if !canonicalPermission.MatchString(entry) {
				t.Fatalf("accepted %q, which is not canonical", entry)
			}
			if !slices.Contains(entries, any(entry)) {
				t.Fatalf("accepted %q, which the write does not hold as written: %q", entry, asked)
			}
			if levels, known := github.PermissionLevels(name); known && !slices.Contains(levels, level) {
				t.Fatalf("accepted %q, a level GitHub does not allow (%v)", entry, levels)
			}
			if len(r.Permissions) > 0 {
				if allowed, ok := r.Permissions[name]; !ok || rank[level] > rank[allowed] {
					t.Fatalf("accepted %q beyond the role's %v", entry, r.Permissions)
				}
			}
		}
		for _, e := range entries {
			s, isString := e.(string)
			if isString && s == "" {
				continue
			}
			name, level, _ := strings.Cut(s, "=")
			if (!isString || perms[name] != level || !canonicalPermission.MatchString(s)) && len(items) == 0 {
				t.Fatalf("the entry %#v was neither accepted nor refused", e)
			}
		}
	})
}

// ---------------------------------------------------------------------------------------------- repositories

// FuzzRepositories: repository names of a role write (normalizeRepositories) and names and IDs of a token write
// (askedRepositories, askedRepositoryIDs, through listEntries), against a role built from fuzzed names and IDs (the
// IDs through applyRoleFields, whose results FuzzRoleFields checks). Properties: no panic; stored names are valid,
// unique ignoring case and come from the input; a token write accepts only valid names written exactly as the role
// stores them (when the role is limited) or exactly as GitHub spells them in the installation's list (when not:
// installedFor, then the repositoryList check), and IDs written in decimal in a string that the role holds (when
// limited); every other non-empty entry is refused, a number always (no policy matches one); more than 500 entries
// are refused at once, briefly; refusals name at most 20 items.
func FuzzRepositories(f *testing.F) {
	type seed struct{ owner, roleRepos, roleIDs, names, ids string }
	for _, s := range []seed{
		{"acme", "api,Web", "3003", "Web", "3003"},
		{"acme", "api,Web", "3003", "web", ""},
		{"acme", "api,Web", "3003", "Web,Web,api", "3003,3003"},
		{"", "", "", `["x","x"]`, `["7",7]`},
		{"acme", "api,Web", "3003", "acme/Web", ""},
		{"acme", "api,Web", "3003", "ACME/web,evil/api", "42"},
		{"acme", "acme/api, ACME/Api ,evil/x,we b,..,.", "0,-1,7,7", `[" api","api "]`, `["3003", 3003, "03003", "0x0BBB", "+3003", 3.0, true, null]`},
		{"", "api,Web", "3003", "api", "3003,3003"},
		{"", "acme/api", "", "acme/api", ""},
		{"", "", "", "anything.at-all_1", "123456789"},
		{"", "", "", "API,web,Infra,a_b-c", ""},
		{"acme", "", "", `["api","Web","x","y","Web.UI","WEB.ui"]`, `[3003, "3003"]`},
		{"", "", "", "..", "9223372036854775807"},
		{"", "", "", strings.Repeat("a", 101), "9223372036854775808"},
		{"acme", "api", "", `[["api"]]`, `[{"id":1}]`},
		{"acme", "api", "", `{"api":true}`, `""`},
		{"acme", "api", "", strings.Repeat("api,", 500) + "api", strings.Repeat("1,", 500) + "1"},
		{"acme", "api", "", numbered("x", 21, ","), numbered("0", 21, ",")},
		{"-bad-", "api", "1", "api", "1"},
	} {
		f.Add(s.owner, s.roleRepos, s.roleIDs, s.names, s.ids, false)
		f.Add(s.owner, s.roleRepos, s.roleIDs, s.names, s.ids, true)
	}
	f.Fuzz(func(t *testing.T, owner, roleRepos, roleIDs, names, ids string, typed bool) {
		// The role, as a role write stores it.
		r := &role{Owner: strings.TrimSpace(owner)}
		if !ownerPattern.MatchString(r.Owner) {
			r.Owner, r.InstallationID = "", 1
		}
		var in []string
		if roleRepos != "" {
			in = strings.Split(roleRepos, ",")
		}
		stored, p := normalizeRepositories(in, r.Owner)
		checkStoredNames(t, in, r.Owner, stored, p.malformed)
		r.Repositories = stored
		// The IDs as a role write stores them (FuzzRoleFields checks that write); invalid IDs leave none.
		if roleIDs != "" {
			d := &framework.FieldData{Raw: map[string]any{"name": "fuzz", "repository_ids": roleIDs}, Schema: roleFields()}
			if idRole := cloneRole(*r); d.Validate() == nil && len(applyRoleFields(idRole, d).malformed) == 0 {
				r.RepositoryIDs = idRole.RepositoryIDs
			}
		}

		// The token write.
		rawNames, rawIDs := rawValue(names, typed), rawValue(ids, typed)
		checkListEntries(t, rawNames)
		checkListEntries(t, rawIDs)
		checkAskedNames(t, r, rawNames, installedFor(rawNames))
		checkAskedIDs(t, r, rawIDs)
	})
}

func checkStoredNames(t *testing.T, in []string, owner string, stored, problems []string) {
	t.Helper()
	longest := 0
	for _, s := range in {
		longest = max(longest, len(s))
	}
	checkItems(t, problems, max(longest, len(owner)))
	for i, name := range stored {
		if !repositoryName.MatchString(name) || name == "." || name == ".." {
			t.Fatalf("stored the invalid name %q", name)
		}
		if slices.ContainsFunc(stored[:i], func(s string) bool { return strings.EqualFold(s, name) }) {
			t.Fatalf("stored %q twice: %q", name, stored)
		}
	}
	for _, raw := range in {
		s := strings.TrimSpace(raw)
		if o, n, found := strings.Cut(s, "/"); found && owner != "" && strings.EqualFold(o, owner) {
			s = n
		}
		if s != "" && !slices.ContainsFunc(stored, func(x string) bool { return strings.EqualFold(x, s) }) && len(problems) == 0 {
			t.Fatalf("the name %q was neither stored nor refused", raw)
		}
	}
	for _, name := range stored {
		if !slices.ContainsFunc(in, func(raw string) bool {
			s := strings.TrimSpace(raw)
			o, n, found := strings.Cut(s, "/")
			return s == name || (found && owner != "" && strings.EqualFold(o, owner) && n == name)
		}) {
			t.Fatalf("stored %q, which the write does not hold: %q", name, in)
		}
	}
}

// checkListEntries: listEntries refuses more than maxRepositories entries briefly, and otherwise gives every entry.
func checkListEntries(t *testing.T, raw any) {
	t.Helper()
	want, _ := entriesOf(raw)
	got, err := listEntries("repositories", raw)
	if len(want) > maxRepositories {
		if err == nil || got != nil || len(err.Error()) > 200 {
			t.Fatalf("listEntries of %d entries: %d, %v", len(want), len(got), err)
		}
		return
	}
	if err != nil || len(got) != len(want) || (len(got) > 0 && !reflect.DeepEqual(got, want)) {
		t.Fatalf("listEntries gives %#v, %v; want %#v", got, err, want)
	}
}

// installedFor is the repository list of the installation a fuzzed token write goes to, as GitHub spells it: a few
// fixed names, and every second entry of the write with its case flipped, so that writes name repositories both in
// GitHub's spelling and in others. Names are unique ignoring case, as GitHub keeps them within an account.
func installedFor(raw any) []github.Repository {
	names := []string{"api", "Web", "infra", "Web.UI", "a_b-c"}
	entries, _ := entriesOf(raw)
	for i, e := range entries {
		if s, ok := e.(string); ok && i%2 == 1 && repositoryName.MatchString(s) &&
			!slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, s) }) {
			names = append(names, flipCase(s))
		}
	}
	repos := make([]github.Repository, len(names))
	for i, n := range names {
		repos[i] = github.Repository{ID: int64(i + 1), Name: n}
	}
	return repos
}

func checkAskedNames(t *testing.T, r *role, raw any, installed []github.Repository) {
	t.Helper()
	names, p := askedRepositories(r, raw)
	problems, denied := p.malformed, p.denied
	items := append(slices.Clone(problems), denied...)
	checkItems(t, items, max(longestText(raw), len(r.Owner)))
	entries, _ := entriesOf(raw)
	if len(entries) > maxRepositories {
		checkTooMany(t, problems, len(names))
		return
	}
	for i, name := range names {
		if !repositoryName.MatchString(name) || name == "." || name == ".." {
			t.Fatalf("accepted the invalid name %q", name)
		}
		if slices.Contains(names[:i], name) {
			t.Fatalf("accepted %q twice", name)
		}
		if !slices.Contains(entries, any(name)) {
			t.Fatalf("accepted %q, which the write does not hold as written", name)
		}
		if r.limitsRepositories() && !slices.Contains(r.Repositories, name) {
			t.Fatalf("accepted %q on a role limited to %q", name, r.Repositories)
		}
	}
	for _, e := range entries {
		if s, ok := e.(string); (!ok || (s != "" && !slices.Contains(names, s))) && len(items) == 0 {
			t.Fatalf("the entry %#v was neither accepted nor refused", e)
		}
	}
	if !r.limitsRepositories() {
		checkGitHubSpelling(t, names, installed)
	}
}

// checkGitHubSpelling: on a role without a repository limit, the installation's list takes a name only in GitHub's
// spelling. A name GitHub spells otherwise is refused with GitHub's spelling; one the list lacks is reported missing.
func checkGitHubSpelling(t *testing.T, names []string, installed []github.Repository) {
	t.Helper()
	misspelled, missing := newRepositoryList(installed, true, time.Time{}).check(names)
	checkItems(t, misspelled, 100)
	if len(misspelled)+len(missing) > len(names) {
		t.Fatalf("%d names gave %d refusals and %d missing", len(names), len(misspelled), len(missing))
	}
	for _, name := range names {
		i := slices.IndexFunc(installed, func(repo github.Repository) bool { return strings.EqualFold(repo.Name, name) })
		about := func(m string) bool { return strings.HasPrefix(m, "repository "+strconv.Quote(name)+" ") }
		refused := slices.ContainsFunc(misspelled, about)
		switch {
		case i < 0 && !slices.Contains(missing, name):
			t.Fatalf("%q, which the installation lacks, was not reported missing (installed %v)", name, installed)
		case i < 0:
		case installed[i].Name == name && (refused || slices.Contains(missing, name)):
			t.Fatalf("%q, spelled as GitHub does, was not taken", name)
		case installed[i].Name != name && !slices.ContainsFunc(misspelled, func(m string) bool {
			return about(m) && strings.Contains(m, strconv.Quote(installed[i].Name))
		}):
			t.Fatalf("%q was taken, or refused without naming GitHub's spelling %q: %q", name, installed[i].Name, misspelled)
		}
	}
}

func checkAskedIDs(t *testing.T, r *role, raw any) {
	t.Helper()
	ids, p := askedRepositoryIDs(r, raw)
	problems, denied := p.malformed, p.denied
	items := append(slices.Clone(problems), denied...)
	checkItems(t, items, longestText(raw))
	entries, _ := entriesOf(raw)
	if len(entries) > maxRepositories {
		checkTooMany(t, problems, len(ids))
		return
	}
	texts := map[string]bool{} // the string entries, as written
	for _, e := range entries {
		// A number is refused, naming it: no policy entry ever matches a number (Vault compares a policy's strings
		// with strings only), so a policy that denies an ID would not see it.
		var number string
		switch e := e.(type) {
		case float64:
			number = strconv.FormatFloat(e, 'g', -1, 64)
		case int:
			number = strconv.Itoa(e)
		}
		if number != "" && !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, number) }) {
			t.Fatalf("the number %s was not refused by name: %q", number, problems)
		}
		text, isString := e.(string)
		if !isString || text == "" {
			if !isString && len(problems) == 0 {
				t.Fatalf("the entry %#v, not a string, was not refused", e)
			}
			continue
		}
		texts[text] = true
		// Accepted means: a string, written in decimal exactly as the ID prints.
		id, err := strconv.ParseInt(text, 10, 64)
		if (err != nil || strconv.FormatInt(id, 10) != text || !slices.Contains(ids, id)) && len(items) == 0 {
			t.Fatalf("the entry %#v was neither accepted nor refused", e)
		}
	}
	for i, id := range ids {
		text := strconv.FormatInt(id, 10)
		if id <= 0 || !decimalID.MatchString(text) || !texts[text] {
			t.Fatalf("accepted the ID %d, which the write does not hold in decimal", id)
		}
		if slices.Contains(ids[:i], id) {
			t.Fatalf("accepted %d twice", id)
		}
		if r.limitsRepositories() && !slices.Contains(r.RepositoryIDs, id) {
			t.Fatalf("accepted %d on a role limited to %v", id, r.RepositoryIDs)
		}
	}
}
