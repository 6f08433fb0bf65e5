// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// HandleRequest refuses input the SDK's conversion would quote in its error (a long, multi-line or structured value
// of the wrong type), or an oversized value.
func (b *backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if msg := b.inputProblem(req); msg != "" {
		return logical.ErrorResponse(msg), nil
	}
	return b.Backend.HandleRequest(ctx, req)
}

// HandleExistenceCheck runs before HandleRequest, and Vault logs its error. With such input the check is answered
// without the request's data (it only reads storage); HandleRequest then refuses the request.
func (b *backend) HandleExistenceCheck(ctx context.Context, req *logical.Request) (bool, bool, error) {
	if b.inputProblem(req) != "" {
		data := req.Data
		req.Data = nil
		defer func() { req.Data = data }()
	}
	return b.Backend.HandleExistenceCheck(ctx, req)
}

// inputProblem names the first field of req whose value the SDK could not convert to the field's type and would
// quote in its error (typeProblem); or, on role and token paths, the first value longer than maxValueBytes or with
// more than maxRepositories entries.
func (b *backend) inputProblem(req *logical.Request) string {
	if len(req.Data) == 0 {
		return ""
	}
	if path := b.Route(req.Path); path != nil {
		if msg := typeProblem(path.Fields, req.Data); msg != "" {
			return msg
		}
	}
	if !strings.HasPrefix(req.Path, roleStoragePrefix) && !strings.HasPrefix(req.Path, "token/") {
		return ""
	}
	for _, field := range sortedKeys(req.Data) {
		if msg := sizeProblem(field, reflect.ValueOf(req.Data[field])); msg != "" {
			return msg
		}
	}
	return ""
}

// maxValueBytes bounds one string of a role or token write: 500 repository names of 100 characters fit.
const maxValueBytes = 64 << 10

// listFields are the list parameters of role and token writes, which a string gives as comma-separated entries.
var listFields = map[string]bool{"repositories": true, "repository_ids": true, "repository_patterns": true, "permissions": true}

// sizeProblem checks a value's strings and entries, and those it holds.
func sizeProblem(field string, v reflect.Value) string {
	switch v.Kind() {
	case reflect.String:
		if listFields[field] {
			if n := strings.Count(v.String(), ",") + 1; n > maxRepositories {
				return tooManyEntries(field, n).Error()
			}
		}
		if v.Len() > maxValueBytes {
			return fmt.Sprintf("%s holds a value of %d bytes: at most %d are accepted", field, v.Len(), maxValueBytes)
		}
	case reflect.Slice, reflect.Array, reflect.Map:
		if v.Len() > maxRepositories {
			return tooManyEntries(field, v.Len()).Error()
		}
		if v.Kind() == reflect.Map {
			for it := v.MapRange(); it.Next(); {
				if msg := sizeProblem(field, it.Key()); msg != "" {
					return msg
				}
				if msg := sizeProblem(field, it.Value()); msg != "" {
					return msg
				}
			}
			return ""
		}
		for i := range v.Len() {
			if msg := sizeProblem(field, v.Index(i)); msg != "" {
				return msg
			}
		}
	case reflect.Interface, reflect.Pointer:
		if !v.IsNil() {
			return sizeProblem(field, v.Elem())
		}
	}
	return ""
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
