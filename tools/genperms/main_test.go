// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package main

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var (
	specsDir  = filepath.Join("..", "..", "internal", "testing", "ghcontract", "openapi")
	committed = filepath.Join("..", "..", "internal", "github", "permissions_gen.go")
)

// TestCommittedTableIsFresh regenerates the table the way go generate does and compares it with the committed file,
// so that updating the descriptions without regenerating fails the tests.
func TestCommittedTableIsFresh(t *testing.T) {
	out := filepath.Join(t.TempDir(), "permissions_gen.go")
	if err := run([]string{"-out", out, "-specs", specsDir}, io.Discard); err != nil {
		t.Fatalf("run: %v", err)
	}
	fresh, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(committed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, want) {
		t.Fatalf("%s is stale: run go generate ./internal/github/", committed)
	}
}

// parseTable reads permissionLevels back out of generated source, so the assertions check the file the plugin
// compiles rather than the generator's internals.
func parseTable(t *testing.T, src []byte) (levels map[string][]string, notes map[string]string) {
	t.Helper()
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "permissions_gen.go", src, parser.ParseComments)
	if err != nil {
		t.Fatalf("generated source does not parse: %v", err)
	}
	if file.Name.Name != "github" {
		t.Errorf("package %s, want github", file.Name.Name)
	}
	if !ast.IsGenerated(file) {
		t.Error("generated source lacks the standard \"Code generated ... DO NOT EDIT.\" header")
	}
	comments := map[int]string{}
	for _, group := range file.Comments {
		comments[fset.Position(group.Pos()).Line] = strings.TrimSpace(group.Text())
	}
	levels = map[string][]string{}
	notes = map[string]string{}
	ast.Inspect(file, func(n ast.Node) bool {
		spec, ok := n.(*ast.ValueSpec)
		if !ok || len(spec.Names) != 1 || spec.Names[0].Name != "permissionLevels" {
			return true
		}
		lit := spec.Values[0].(*ast.CompositeLit)
		for _, elt := range lit.Elts {
			kv := elt.(*ast.KeyValueExpr)
			name, err := strconv.Unquote(kv.Key.(*ast.BasicLit).Value)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range kv.Value.(*ast.CompositeLit).Elts {
				level, err := strconv.Unquote(l.(*ast.BasicLit).Value)
				if err != nil {
					t.Fatal(err)
				}
				levels[name] = append(levels[name], level)
			}
			notes[name] = comments[fset.Position(kv.Pos()).Line]
		}
		return false
	})
	if len(levels) == 0 {
		t.Fatal("no permissionLevels entries in the generated source")
	}
	return levels, notes
}

func TestGeneratedTable(t *testing.T) {
	src, err := os.ReadFile(committed)
	if err != nil {
		t.Fatal(err)
	}
	levels, notes := parseTable(t, src)

	tests := []struct {
		permission string
		levels     []string // nil: must be absent
		note       string
	}{
		{"contents", []string{"read", "write"}, ""},
		{"metadata", []string{"read", "write"}, ""},
		{"workflows", []string{"write"}, ""},
		{"profile", []string{"write"}, ""},
		{"organization_events", []string{"read"}, ""},
		{"organization_projects", []string{"read", "write", "admin"}, ""},
		{"organization_administration", []string{"read", "write"}, ""},
		{"enterprise_administration", []string{"read", "write"}, "ghec, ghes-3.19 only"},
		{"enterprise_custom_properties", []string{"read", "write"}, "ghes-3.19 only"},
		{"custom_properties_for_organizations", []string{"read", "write"}, "api.github.com, ghec only"},
		{"delete_repo", nil, ""},
		{"single_file_paths", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.permission, func(t *testing.T) {
			got, ok := levels[tt.permission]
			if tt.levels == nil {
				if ok {
					t.Fatalf("%s is in the table: %q", tt.permission, got)
				}
				return
			}
			if !slices.Equal(got, tt.levels) {
				t.Errorf("levels = %q, want %q", got, tt.levels)
			}
			if notes[tt.permission] != tt.note {
				t.Errorf("note = %q, want %q", notes[tt.permission], tt.note)
			}
		})
	}

	t.Run("every level is ranked and ascending", func(t *testing.T) {
		hasAdmin := false
		for name, ls := range levels {
			if len(ls) == 0 {
				t.Errorf("%s has no levels", name)
			}
			for i, level := range ls {
				if levelOrder[level] == 0 {
					t.Errorf("%s has unknown level %q", name, level)
				}
				if i > 0 && levelOrder[ls[i-1]] >= levelOrder[level] {
					t.Errorf("%s levels %q are not strictly ascending", name, ls)
				}
				hasAdmin = hasAdmin || level == "admin"
			}
		}
		if !hasAdmin {
			t.Error("no permission accepts admin, yet GitHub documents some")
		}
	})

	t.Run("names are sorted", func(t *testing.T) {
		var order []string
		for _, line := range strings.Split(string(src), "\n") {
			if name, _, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && strings.HasPrefix(name, `"`) {
				order = append(order, name)
			}
		}
		if len(order) != len(levels) || !slices.IsSorted(order) {
			t.Errorf("entries are not one per line in sorted order: %q", order)
		}
	})

	// The table is the union over the editions: every permission of every edition is in it, with every level.
	t.Run("union of the editions", func(t *testing.T) {
		for _, edition := range editions {
			data, err := os.ReadFile(filepath.Join(specsDir, edition+".openapi.json"))
			if err != nil {
				t.Fatal(err)
			}
			var doc description
			if err := json.Unmarshal(data, &doc); err != nil {
				t.Fatal(err)
			}
			for name, prop := range doc.Components.Schemas["app-permissions"].Properties {
				for _, level := range prop.Enum {
					if !slices.Contains(levels[name], level) {
						t.Errorf("%s: %s:%s is missing from the table", edition, name, level)
					}
				}
			}
		}
	})
}

func TestGenerateRejectsBadInput(t *testing.T) {
	valid := func(edition string) string {
		data, err := os.ReadFile(filepath.Join(specsDir, edition+".openapi.json"))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	permissionsOnly := func(props string) string {
		return `{"components":{"schemas":{"app-permissions":{"type":"object","properties":` + props + `}}}}`
	}
	tests := []struct {
		name    string
		ghes    string // content of ghes-3.19.openapi.json; the other two are GitHub's
		wantErr string
	}{
		{"unknown level", permissionsOnly(`{"contents":{"type":"string","enum":["read","maintain"]}}`), `"maintain"`},
		{"level list missing", permissionsOnly(`{"contents":{"type":"string"}}`), `"contents"`},
		{"no app-permissions schema", `{"components":{"schemas":{}}}`, "app-permissions"},
		{"not JSON", `{`, "parsing"},
		{"missing file", "", "reading the ghes-3.19 description"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, edition := range editions[:2] {
				if err := os.WriteFile(filepath.Join(dir, edition+".openapi.json"), []byte(valid(edition)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tt.ghes != "" {
				if err := os.WriteFile(filepath.Join(dir, "ghes-3.19.openapi.json"), []byte(tt.ghes), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out := filepath.Join(dir, "out.go")
			err := run([]string{"-out", out, "-specs", dir}, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("run error = %v, want one mentioning %q", err, tt.wantErr)
			}
			if _, statErr := os.Stat(out); !os.IsNotExist(statErr) {
				t.Error("a failed run wrote the output file")
			}
		})
	}
}

// TestEditionNotes covers level differences between editions, which today's descriptions do not have.
func TestEditionNotes(t *testing.T) {
	tests := []struct {
		name    string
		byLevel map[string][]string
		want    string
	}{
		{"everywhere", map[string][]string{"read": editions, "write": editions}, ""},
		{"one edition", map[string][]string{"read": {"ghes-3.19"}}, "ghes-3.19 only"},
		{"admin on some", map[string][]string{"read": editions, "write": editions, "admin": {"ghes-3.19", "ghec"}},
			"admin: ghec, ghes-3.19 only"},
		{"both", map[string][]string{"read": {"ghec", "ghes-3.19"}, "write": {"ghec"}},
			"ghec, ghes-3.19 only; write: ghec only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var levels []string
			for _, l := range []string{"read", "write", "admin"} {
				if tt.byLevel[l] != nil {
					levels = append(levels, l)
				}
			}
			if got := editionNote(tt.byLevel, levels); got != tt.want {
				t.Errorf("editionNote = %q, want %q", got, tt.want)
			}
		})
	}
}
