// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// Fuzz targets for everything a role or token write hands the engine, and for the over-grant check. Each asserts
// properties of the result, not only the absence of a panic. `make fuzz` runs them; `go test` runs their seeds
// (f.Add and testdata/fuzz/FuzzXxx) as ordinary tests.
//
// Values reach the engine as Vault hands them to an external plugin: JSON whose numbers are float64 (Vault's HTTP
// layer reads numbers as json.Number, but the plugin's gRPC boundary encodes the request data as JSON again and
// decodes it without UseNumber: sdk/plugin/pb.ProtoRequestToLogicalRequest), or plain strings (the CLI's key=value).
// rawValue turns fuzz text into either; typed turns JSON lists into the []string and []int that Go callers and the
// SDK produce. Where a handler runs behind the framework, inputs the framework's own validation
// refuses (400 before the handler) are skipped, as Vault would never pass them on.

// The forms a request must have, written here independently of the code under test.
var (
	canonicalPermission = regexp.MustCompile(`^[a-z][a-z0-9]*(?:_[a-z0-9]+)*=(read|write|admin)$`)
	permissionName      = regexp.MustCompile(`^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$`)
	repositoryName      = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
	decimalID           = regexp.MustCompile(`^[1-9][0-9]{0,18}$`)
	rank                = map[string]int{"read": 1, "write": 2, "admin": 3}
)

// fuzzRoles are stored roles of every shape: unlimited, limited by names (in mixed case), by IDs, by both, with and
// without permissions and a TTL.
var fuzzRoles = []role{
	{Owner: "acme"},
	{Owner: "acme", AccountID: 77, Repositories: []string{"api", "Web"}, Permissions: map[string]string{"contents": "write", "issues": "read"}},
	{InstallationID: 7, RepositoryIDs: []int64{3003, 42}, Permissions: map[string]string{"metadata": "read"}, TTL: 10 * time.Minute},
	{InstallationID: 7, Repositories: []string{"Web.UI", "a_b-c", "..."}, RepositoryIDs: []int64{1}, TTL: time.Hour},
	{Owner: "octo-cat", Permissions: map[string]string{"administration": "write", "enterprise_custom_properties_for_organizations": "admin", "future_thing": "admin"}},
}

func cloneRole(r role) *role {
	r.Repositories = slices.Clone(r.Repositories)
	r.RepositoryIDs = slices.Clone(r.RepositoryIDs)
	r.Permissions = maps.Clone(r.Permissions)
	return &r
}

// rawValue is fuzz text as Vault hands it to the engine: JSON decoded as the plugin boundary does (numbers as
// float64) when the text is one JSON value, else the text itself. typed gives a JSON list of strings as []string, and one of integers as []int.
func rawValue(text string, typed bool) any {
	v, ok := decodeJSON(text)
	if !ok {
		return text
	}
	list, isList := v.([]any)
	if !typed || !isList || len(list) == 0 {
		return v
	}
	strs, ints := make([]string, 0, len(list)), make([]int, 0, len(list))
	for _, e := range list {
		switch e := e.(type) {
		case string:
			strs = append(strs, e)
		case float64:
			if n := int(e); float64(n) == e {
				ints = append(ints, n)
			}
		}
	}
	switch len(list) {
	case len(strs):
		return strs
	case len(ints):
		return ints
	}
	return v
}

// decodeJSON decodes exactly one JSON value as the plugin receives it: numbers as float64.
func decodeJSON(text string) (any, bool) {
	dec := json.NewDecoder(strings.NewReader(text))
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, false
	}
	return v, true
}

// requestData is a write's data: a JSON object (the HTTP API), or key=value lines (the CLI, which sends strings).
func requestData(text string, typed bool) map[string]any {
	if v, ok := decodeJSON(text); ok {
		if m, ok := v.(map[string]any); ok {
			if typed {
				for k, e := range m {
					if b, err := json.Marshal(e); err == nil {
						m[k] = rawValue(string(b), true)
					}
				}
			}
			return m
		}
	}
	m := map[string]any{}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// entriesOf is a list parameter's entries as a policy sees them: a string split at commas and trimmed, a list's
// elements, any other value as one entry; object reports a JSON object.
func entriesOf(raw any) (entries []any, object bool) {
	switch v := raw.(type) {
	case nil:
		return nil, false
	case string:
		for _, p := range strings.Split(v, ",") {
			entries = append(entries, strings.TrimSpace(p))
		}
		return entries, false
	}
	rv := reflect.ValueOf(raw)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		for i := range rv.Len() {
			entries = append(entries, rv.Index(i).Interface())
		}
		return entries, false
	case reflect.Map:
		return []any{raw}, true
	}
	return []any{raw}, false
}

// longestText is the length of the longest text in a value: what one message item may quote.
func longestText(v any) int {
	n := 0
	switch v := v.(type) {
	case string:
		return len(v)
	case float64:
		return len(strconv.FormatFloat(v, 'g', -1, 64))
	case []any:
		for _, e := range v {
			n = max(n, longestText(e))
		}
	case []string:
		for _, e := range v {
			n = max(n, len(e))
		}
	case map[string]any:
		for k, e := range v {
			n = max(n, len(k), longestText(e))
		}
	case map[string]string:
		for k, e := range v {
			n = max(n, len(k), len(e))
		}
	}
	return max(n, 20) // a number or boolean prints in about 20 characters
}

// checkItems asserts the bounds of a refusal: each item quotes at most a few entries, each entry at most a few times
// its length (%q escapes a byte in at most four), and the message names at most maxNamedItems of them.
func checkItems(t *testing.T, items []string, longest int) {
	t.Helper()
	for _, it := range items {
		if len(it) > 400+24*longest {
			t.Fatalf("a message item is %d bytes for entries of at most %d: %.200q", len(it), longest, it)
		}
	}
	named, rest := items, ""
	if len(items) > maxNamedItems {
		named, rest = items[:maxNamedItems], fmt.Sprintf("; and %d more", len(items)-maxNamedItems)
	}
	if got, want := joinItems(items), strings.Join(named, "; ")+rest; got != want {
		t.Fatalf("joinItems names %d items as %.200q, want the first %d as %.200q", len(items), got, len(named), want)
	}
}

// checkTooMany asserts that a list of more than maxRepositories entries was refused with one short message.
func checkTooMany(t *testing.T, problems []string, accepted int) {
	t.Helper()
	if len(problems) != 1 || len(problems[0]) > 200 || accepted != 0 {
		t.Fatalf("a list of more than %d entries gave %d accepted and problems %.300q", maxRepositories, accepted, problems)
	}
}

// numbered is n entries prefix0, prefix1, ... joined by sep: lists around the bounds of 20 named items and 500
// entries.
func numbered(prefix string, n int, sep string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = prefix + strconv.Itoa(i)
	}
	return strings.Join(parts, sep)
}

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

// ------------------------------------------------------------------------------------------------ role writes

// FuzzRoleFields: a role write, as the framework hands it to the handler (FieldData with the path's schema, after
// the framework's validation), applied by applyRoleFields to a new or an existing role. Properties: no panic; either
// problems, named at most 20 at once and briefly for a list of more than 500, or a role that is valid: exactly one
// of an owner matching ownerPattern and a positive installation_id, at most 500 repositories and IDs together,
// valid unique names, positive unique IDs, permissions with valid names and levels GitHub allows, and a TTL not
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
			for _, field := range []string{"repositories", "repository_ids"} {
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
			"repositories":   reflect.DeepEqual(r.Repositories, before.Repositories),
			"repository_ids": reflect.DeepEqual(r.RepositoryIDs, before.RepositoryIDs),
			"permissions":    reflect.DeepEqual(r.Permissions, before.Permissions),
			"ttl":            r.TTL == before.TTL,
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

// ---------------------------------------------------------------------------------------------- token writes

// FuzzNarrow: a token write (repositories, repository_ids, permissions and ttl in any form), as the framework hands
// it over, narrowed by narrow against a role from a fuzzed role write (or a fixed one when that write is invalid).
// Properties: either a refusal with something in it, named at most 20 items at once, or a request within the role:
// repositories a subset of the role's in its exact spelling and IDs a subset of its IDs when it is limited, never an
// empty repository list when repositories were asked or the role is limited, permissions within the role's at the
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
		case (namesGiven || idsGiven || r.limitsRepositories()) && n == 0:
			t.Fatalf("an empty repository list (asked %v/%v, role limited %v) would reach every repository",
				namesGiven, idsGiven, r.limitsRepositories())
		case !namesGiven && !idsGiven && (!slices.Equal(tr.Repositories, r.Repositories) || !slices.Equal(tr.RepositoryIDs, r.RepositoryIDs)):
			t.Fatalf("repositories not asked, yet the request has %q %v, the role %q %v", tr.Repositories,
				tr.RepositoryIDs, r.Repositories, r.RepositoryIDs)
		}
		askedNames, _ := entriesOf(raw["repositories"])
		askedIDs, _ := entriesOf(raw["repository_ids"])
		for _, name := range tr.Repositories {
			if !repositoryName.MatchString(name) || (r.limitsRepositories() && !slices.Contains(r.Repositories, name)) {
				t.Fatalf("the request holds the repository %q; the role has %q", name, r.Repositories)
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

// ------------------------------------------------------------------------------------------- over-grant check

// FuzzExcessGrant: excessGrant against requests as narrow builds them (levels read, write or admin) and tokens as
// GitHub could answer. Properties: a token equal to the request (plus metadata=read, with GitHub's spelling of the
// names) or narrower is never reported; a token broader in one way is always reported: a permission not asked
// (other than metadata=read), a level above the asked one or unknown, a repository not asked, one asked by name but
// of another account, a repository_selection other than "selected" when repositories were asked. What an answer
// leaves out (permissions, repository_selection, repositories) is not broader: such a token is returned with a
// warning (unstatedScope), never refused for it. For any token, it reports something exactly when the token is
// broader by those rules, and never names the token's value.
func FuzzExcessGrant(f *testing.F) {
	type seed struct {
		reqRepos, reqIDs, reqPerms string
		account                    int64
		tokRepos, tokPerms, sel    string
		mutation                   uint8
	}
	for _, s := range []seed{
		{"api,web", "3003", "contents=read,issues=write", 1, "1:3001:api,1:3002:web,9:3003:infra", "contents=read,issues=write,metadata=read", "selected", 0},
		{"api", "", "contents=read", 1, "1:3001:API", "contents=read,metadata=read", "selected", 1},
		{"api", "", "contents=read", 1, "2:3001:api", "contents=read", "selected", 2},
		{"api", "", "contents=read", 1, "1:3001:api", "contents=maintain", "selected", 3},
		{"api", "", "contents=read", 1, "1:3001:api", "contents=read", "all", 4},
		{"", "42", "", 0, "5:42:x", "administration=admin", "selected", 5},
		{"", "42", "", 0, "5:43:x", "", "selected", 6},
		{"", "", "metadata=write", 0, "", "metadata=read", "all", 7},
		{"", "", "contents=read", 0, "", "metadata=write", "all", 8},
		{"", "", "", 0, "1:1:a", "administration=admin", "all", 9},
		{"x", "", "", -1, "-1:0:X", "", "selected", 10},
		{"a", "1", "contents=admin", 9223372036854775807, "", "", "", 11},
	} {
		f.Add(s.reqRepos, s.reqIDs, s.reqPerms, s.account, s.tokRepos, s.tokPerms, s.sel, s.mutation)
	}
	f.Fuzz(func(t *testing.T, reqRepos, reqIDs, reqPerms string, account int64, tokRepos, tokPerms, sel string, mutation uint8) {
		req := github.TokenRequest{Repositories: listOf(reqRepos), Permissions: map[string]string{}}
		for _, s := range listOf(reqIDs) {
			if id, err := strconv.ParseInt(s, 10, 64); err == nil && id > 0 && !slices.Contains(req.RepositoryIDs, id) {
				req.RepositoryIDs = append(req.RepositoryIDs, id)
			}
		}
		for name, level := range pairsOf(reqPerms) {
			if rank[level] > 0 { // narrow passes on only read, write and admin
				req.Permissions[name] = level
			}
		}

		// The token GitHub should answer, and narrower ones: never reported.
		exact := exactToken(req, account, sel)
		if excess := excessGrant(req, exact, account); len(excess) > 0 {
			t.Fatalf("a token equal to the request is reported: %q", excess)
		}
		narrower := exactToken(req, account, sel)
		for _, name := range slices.Sorted(maps.Keys(narrower.Permissions)) {
			if mutation&1 != 0 {
				delete(narrower.Permissions, name)
			} else if narrower.Permissions[name] == "write" || narrower.Permissions[name] == "admin" {
				narrower.Permissions[name] = "read"
			}
		}
		if len(narrower.Repositories) > 1 {
			narrower.Repositories = narrower.Repositories[:len(narrower.Repositories)/2]
		}
		if excess := excessGrant(req, narrower, account); len(excess) > 0 {
			t.Fatalf("a token narrower than the request is reported: %q", excess)
		}
		// The exact token with fields left out, as some GitHub Enterprise Server answers: never reported.
		unstated := exactToken(req, account, sel)
		if mutation&2 != 0 {
			unstated.Permissions = nil
		}
		if mutation&4 != 0 {
			unstated.RepositorySelection = ""
		}
		if mutation&8 != 0 {
			unstated.Repositories = nil
		}
		if excess := excessGrant(req, unstated, account); len(excess) > 0 {
			t.Fatalf("a token whose answer leaves out fields is reported: %q", excess)
		}

		// One way broader: always reported.
		broader, what := broaden(req, account, sel, tokPerms, tokRepos, mutation)
		if broader != nil && len(excessGrant(req, broader, account)) == 0 {
			t.Fatalf("a token with %s is not reported", what)
		}

		// Any token: reported exactly when it is broader.
		tok := &github.Token{Token: "ghs_fuzzTokenValueNeverNamed", Permissions: pairsOf(tokPerms), RepositorySelection: sel}
		for _, e := range listOf(tokRepos) {
			tok.Repositories = append(tok.Repositories, repositoryOf(e))
		}
		excess := excessGrant(req, tok, account)
		if want := isBroader(req, tok, account); (len(excess) > 0) != want {
			t.Fatalf("excessGrant = %q for a token that is broader: %v\nrequest %+v\ntoken %+v", excess, want, req, *tok)
		}
		if len(excess) > len(tok.Permissions)+len(tok.Repositories)+1 {
			t.Fatalf("%d excess items for %d permissions and %d repositories", len(excess), len(tok.Permissions), len(tok.Repositories))
		}
		for _, e := range excess {
			if e == "" || strings.Contains(e, tok.Token) {
				t.Fatalf("an excess item %q", e)
			}
		}
	})
}

// exactToken is what GitHub answers to req: the permissions asked plus metadata=read, the repositories asked (by
// name, in another case, of the account; by ID, of any account), selection "selected". Without repositories asked
// the selection is whatever sel says.
func exactToken(req github.TokenRequest, account int64, sel string) *github.Token {
	tok := &github.Token{Token: "ghs_exact", Permissions: maps.Clone(req.Permissions), RepositorySelection: sel}
	if len(req.Permissions) > 0 {
		if _, asked := req.Permissions["metadata"]; !asked {
			tok.Permissions["metadata"] = "read"
		}
	}
	if len(req.Repositories)+len(req.RepositoryIDs) > 0 {
		tok.RepositorySelection = "selected"
	}
	id := int64(0)
	for _, name := range req.Repositories {
		id = freshID(req.RepositoryIDs, id)
		tok.Repositories = append(tok.Repositories, github.Repository{ID: id, Name: flipCase(name),
			Owner: github.Account{ID: account}})
	}
	for _, rid := range req.RepositoryIDs {
		tok.Repositories = append(tok.Repositories, github.Repository{ID: rid, Name: "by-id", Owner: github.Account{ID: account ^ 1}})
	}
	return tok
}

// broaden returns the exact token made broader in the way mutation picks, or nil when that way does not apply.
func broaden(req github.TokenRequest, account int64, sel, tokPerms, tokRepos string, mutation uint8) (*github.Token, string) {
	tok := exactToken(req, account, sel)
	asksRepos := len(req.Repositories)+len(req.RepositoryIDs) > 0
	switch mutation % 5 {
	case 0: // a permission not asked
		if len(req.Permissions) == 0 {
			return nil, ""
		}
		name, level := "administration", "read"
		for n, l := range pairsOf(tokPerms) {
			name, level = n, l
			break
		}
		if _, asked := req.Permissions[name]; asked || (name == "metadata" && level == "read") {
			return nil, ""
		}
		tok.Permissions[name] = level
		return tok, "the permission " + name + "=" + level + " not asked"
	case 1: // a level above the asked one, or unknown
		for _, name := range slices.Sorted(maps.Keys(req.Permissions)) {
			switch asked := req.Permissions[name]; {
			case rank[sel] == 0:
				tok.Permissions[name] = sel
			case asked != "admin":
				tok.Permissions[name] = map[string]string{"read": "write", "write": "admin"}[asked]
			default:
				continue
			}
			return tok, "the permission " + name + "=" + tok.Permissions[name] + " above " + req.Permissions[name]
		}
		return nil, ""
	case 2: // a repository not asked
		if !asksRepos {
			return nil, ""
		}
		name := "not-asked-" + strings.Join(listOf(tokRepos), "-")
		if slices.ContainsFunc(req.Repositories, func(s string) bool { return strings.EqualFold(s, name) }) {
			return nil, ""
		}
		id := freshID(req.RepositoryIDs, int64(len(tok.Repositories))+1000)
		tok.Repositories = append(tok.Repositories, github.Repository{ID: id, Name: name, Owner: github.Account{ID: account}})
		return tok, "the repository " + name + " not asked"
	case 3: // a repository asked by name, of another account
		if len(req.Repositories) == 0 {
			return nil, ""
		}
		tok.Repositories[0].Owner.ID = account ^ 1
		return tok, "the repository " + tok.Repositories[0].Name + " of another account"
	default: // every repository
		if !asksRepos {
			return nil, ""
		}
		tok.RepositorySelection = sel
		if sel == "selected" || sel == "" {
			tok.RepositorySelection = "all"
		}
		return tok, "repository_selection " + tok.RepositorySelection
	}
}

// isBroader is the over-grant rule, written from its description.
func isBroader(req github.TokenRequest, tok *github.Token, account int64) bool {
	if len(req.Permissions) > 0 {
		for name, granted := range tok.Permissions {
			asked, ok := req.Permissions[name]
			switch {
			case !ok && name == "metadata" && granted == "read":
			case !ok || rank[granted] == 0 || rank[granted] > rank[asked]:
				return true
			}
		}
	}
	if len(req.Repositories)+len(req.RepositoryIDs) == 0 {
		return false
	}
	if tok.RepositorySelection != "selected" && tok.RepositorySelection != "" {
		return true
	}
	for _, repo := range tok.Repositories {
		byName := repo.Owner.ID == account && slices.ContainsFunc(req.Repositories, func(s string) bool { return strings.EqualFold(s, repo.Name) })
		if !byName && !slices.Contains(req.RepositoryIDs, repo.ID) {
			return true
		}
	}
	return false
}

// freshID is an ID above after that the request does not ask for.
func freshID(asked []int64, after int64) int64 {
	id := after + 1
	for slices.Contains(asked, id) {
		id++
	}
	return id
}

func flipCase(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z':
			return r - 'A' + 'a'
		}
		return r
	}, s)
}

// listOf is the non-empty trimmed parts of a comma-separated text.
func listOf(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// pairsOf reads "name=level,..." with any names and levels; the last of a name wins.
func pairsOf(s string) map[string]string {
	m := map[string]string{}
	for _, p := range listOf(s) {
		if name, level, ok := strings.Cut(p, "="); ok && name != "" {
			m[name] = level
		}
	}
	return m
}

// repositoryOf reads "ownerID:id:name" (missing parts are zero or empty).
func repositoryOf(s string) github.Repository {
	parts := strings.SplitN(s, ":", 3)
	var repo github.Repository
	repo.Owner.ID, _ = strconv.ParseInt(parts[0], 10, 64)
	if len(parts) > 1 {
		repo.ID, _ = strconv.ParseInt(parts[1], 10, 64)
	}
	if len(parts) > 2 {
		repo.Name = parts[2]
		repo.FullName = "owner/" + parts[2]
	}
	return repo
}
