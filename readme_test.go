package githubapp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeShowsTheTestedExamples: the policies and the Agent configuration in the README are the files in
// examples/, which the integration tests run.
func TestReadmeShowsTheTestedExamples(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
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
		if !strings.Contains(string(readme), strings.TrimRight(string(body), "\n")) {
			t.Errorf("README.md does not show %s verbatim", f)
		}
	}
	for _, cmd := range []string{"make demo", "make test"} {
		if !strings.Contains(string(readme), cmd) {
			t.Errorf("README.md does not show %q", cmd)
		}
	}
}
