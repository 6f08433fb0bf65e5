// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocsShowTheTestedExamples: every file in examples/ (which the integration tests run) appears verbatim in the
// README or in a page of docs/, so that the documentation cannot drift from what is tested; and the README shows the
// two commands a newcomer needs.
func TestDocsShowTheTestedExamples(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	docs := []string{string(readme)}
	pages, err := filepath.Glob("docs/*.md")
	if err != nil || len(pages) == 0 {
		t.Fatalf("docs: %v %v", pages, err)
	}
	for _, p := range pages {
		body, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(body))
	}
	files, err := filepath.Glob("examples/*")
	if err != nil || len(files) < 4 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		shown := false
		for _, d := range docs {
			shown = shown || strings.Contains(d, strings.TrimRight(string(body), "\n"))
		}
		if !shown {
			t.Errorf("neither README.md nor docs/ shows %s verbatim", f)
		}
	}
	for _, cmd := range []string{"make demo", "make test"} {
		if !strings.Contains(string(readme), cmd) {
			t.Errorf("README.md does not show %q", cmd)
		}
	}
}

// TestLicenseHeaders: the project is MPL-2.0 (LICENSE), and every Go source file says so in an SPDX header.
func TestLicenseHeaders(t *testing.T) {
	license, err := os.ReadFile("LICENSE")
	if err != nil || !strings.HasPrefix(string(license), "Mozilla Public License, version 2.0") {
		t.Fatalf("LICENSE is not the MPL-2.0 text (%v)", err)
	}
	const header = "// Copyright (c) vault-plugin-secrets-github-app contributors\n// SPDX-License-Identifier: MPL-2.0\n"
	checked := 0
	err = filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != "." || d.Name() == "bin" || d.Name() == "dist" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checked++
		if !strings.HasPrefix(string(src), header) {
			t.Errorf("%s does not start with the SPDX header", path)
		}
		return nil
	})
	if err != nil || checked < 50 {
		t.Fatalf("checked %d Go files: %v", checked, err)
	}
}
