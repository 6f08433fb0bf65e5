// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"unicode/utf8"
)

// What an error message may say of a request, and how much of it: a message must name the field and the value it
// refuses, but its size must not grow with the input, and it must never repeat a value that may be a secret.

const (
	// maxNamedItems bounds how many items one error message names, and maxItemBytes how much of each it quotes.
	maxNamedItems = 20
	maxItemBytes  = 300
)

// maxQuotedBytes bounds a value a message may quote. A key pasted into the wrong field (app_id=@key.pem) is longer,
// or spans lines; so does any value worth hiding that a message might otherwise repeat into Vault's log and, unhashed,
// its audit devices.
const maxQuotedBytes = 64

// quotable reports whether a message may quote v: a boolean, a number, or a short string on one line.
func quotable(v any) bool {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint,
		reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64, reflect.Invalid:
		return true
	case reflect.String:
		return rv.Len() <= maxQuotedBytes && !strings.ContainsAny(rv.String(), "\r\n")
	default:
		return false
	}
}

// quoted is a field and its value as a message shows them: the value quoted when quotable, otherwise only its size.
func quoted(field, value string) string {
	if quotable(value) {
		return fmt.Sprintf("%s %q", field, value)
	}
	return fmt.Sprintf("%s (%s)", field, describeValue(value))
}

// shown is a value as a message shows it unquoted: itself when quotable, otherwise only its size.
func shown(value string) string {
	if quotable(value) {
		return value
	}
	return "(" + describeValue(value) + ")"
}

// describeValue says what a value is without quoting any of it.
func describeValue(v any) string {
	s, ok := v.(string)
	if !ok {
		return typeName(v)
	}
	if lines := strings.Count(strings.TrimRight(s, "\r\n"), "\n") + 1; lines > 1 {
		return fmt.Sprintf("a string of %d bytes on %d lines", len(s), lines)
	}
	return fmt.Sprintf("a string of %d bytes", len(s))
}

// typeName names the JSON type of a value, for messages that must not quote it.
func typeName(v any) string {
	if _, ok := v.(json.Number); ok {
		return "a number"
	}
	switch reflect.ValueOf(v).Kind() {
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map:
		return "an object"
	case reflect.Bool:
		return "a boolean"
	case reflect.String:
		return "a string"
	case reflect.Invalid:
		return "null"
	default:
		return "a number"
	}
}

// joinItems joins problems or refused items for one message, naming at most maxNamedItems of them, each cut to
// maxItemBytes: an error's size must not grow with its input.
func joinItems(items []string) string {
	n := min(len(items), maxNamedItems)
	shown := make([]string, n)
	for i, item := range items[:n] {
		shown[i] = shorten(item, maxItemBytes)
	}
	if len(items) <= maxNamedItems {
		return strings.Join(shown, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(shown, "; "), len(items)-maxNamedItems)
}

// shorten cuts s to at most n bytes at a character boundary, marking the cut and giving the whole size, so that a
// reader knows how much was left out.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", s[:cut], len(s))
}

// sortedKeys gives a map's keys in order, so that messages and checks do not vary from run to run.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// hashToken is base64(SHA-256(token)): the form GitHub's audit log shows, which identifies a token in logs without
// revealing it.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.StdEncoding.EncodeToString(sum[:])
}
