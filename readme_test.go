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
