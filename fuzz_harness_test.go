// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// What the root package's fuzz targets share: the targets fuzz everything a role or token write hands the engine
// (scope_fuzz_test.go, path_roles_fuzz_test.go, token_narrowing_fuzz_test.go) and the over-grant check
// (token_overgrant_fuzz_test.go). Each asserts properties of the result, not only the absence of a panic.
// `make fuzz` runs them; `go test` runs their seeds (f.Add and testdata/fuzz/FuzzXxx) as ordinary tests.
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
	r.RepositoryPatterns = slices.Clone(r.RepositoryPatterns)
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
