// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
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

// typeProblem checks the fields of a request against their schema before the SDK converts them. The SDK's error
// quotes a value it cannot convert, and Vault returns that error, logs it and writes it unhashed to audit devices: a
// key pasted into app_id or request_timeout would be kept in clear. So a value that must not be quoted (see quotable)
// is converted here first, and refused with a message that names only the field, what it expects and what it was
// given. A quotable value is left to the SDK, whose message shows it.
func typeProblem(schema map[string]*framework.FieldSchema, data map[string]any) string {
	for _, field := range sortedKeys(data) {
		s, ok := schema[field]
		v := data[field]
		if !ok || quotable(v) {
			continue
		}
		fd := framework.FieldData{Raw: map[string]any{field: v}, Schema: map[string]*framework.FieldSchema{field: s}}
		if _, _, err := fd.GetOkErr(field); err == nil {
			continue
		}
		msg := fmt.Sprintf("%s must be %s, not %s", field, expectedType(s.Type), describeValue(v))
		if s.Type == framework.TypeString {
			msg += fmt.Sprintf(": send it as one string (with the CLI, %s=@file)", field)
		}
		return msg
	}
	return ""
}

// expectedType describes what a field of the type accepts, for messages.
func expectedType(t framework.FieldType) string {
	switch t {
	case framework.TypeBool:
		return "a boolean (true or false)"
	case framework.TypeInt, framework.TypeInt64:
		return "an integer"
	case framework.TypeDurationSecond, framework.TypeSignedDurationSecond:
		return "a duration (such as 30s, 5m or a number of seconds)"
	case framework.TypeString, framework.TypeLowerCaseString, framework.TypeNameString:
		return "a string"
	case framework.TypeCommaStringSlice, framework.TypeStringSlice:
		return "a list of strings or one comma-separated string"
	case framework.TypeCommaIntSlice:
		return "a list of integers or one comma-separated string of them"
	case framework.TypeKVPairs:
		return "key=value pairs, as an object or a list of key=value strings"
	case framework.TypeMap:
		return "an object"
	default:
		return "a value of type " + t.String()
	}
}
