// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

// Package realgh reads GitHub's answers as other projects recorded them from real GitHub, from
// ../shared/realgh/recordings beside the repository. The data stays there: nothing is copied into the project. It is
// test infrastructure, never imported by the plugin.
package realgh

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Recording is one recorded exchange, as the files hold it.
type Recording struct {
	// File is the recording's file name.
	File    string              `json:"-"`
	ID      string              `json:"id"`
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Query   map[string]string   `json:"query"`
	Status  int                 `json:"status"`
	Headers map[string][]string `json:"headers"`
	Body    string              `json:"body"`
	Source  struct {
		Repo string `json:"repo"`
		Path string `json:"path"`
	} `json:"source"`
}

// Header returns the recorded headers under Go's canonical names (recorders spelled them in any case).
func (r *Recording) Header() http.Header {
	h := http.Header{}
	for k, vs := range r.Headers {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	return h
}

// JSON decodes the recorded body, numbers kept exact.
func (r *Recording) JSON(t testing.TB) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(r.Body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: body is not JSON: %v", r.File, err)
	}
	return v
}

// Load reads every recording. Without the recordings' folder the test skips, except in CI, where the data must be
// there.
func Load(t testing.TB) []*Recording {
	t.Helper()
	dir := dir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no recordings in %s", dir)
	}
	var recs []*Recording
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := &Recording{File: filepath.Base(f)}
		if err := json.Unmarshal(data, r); err != nil {
			t.Fatalf("%s: %v", r.File, err)
		}
		if r.Method == "" || r.Path == "" || r.Status == 0 {
			t.Fatalf("%s: no method, path or status", r.File)
		}
		recs = append(recs, r)
	}
	return recs
}

// dir finds ../shared/realgh/recordings beside the module root.
func dir(t testing.TB) string {
	t.Helper()
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(root)
		if parent == root {
			t.Fatal("no go.mod above the test's directory")
		}
		root = parent
	}
	rec := filepath.Join(root, "..", "shared", "realgh", "recordings")
	if _, err := os.Stat(rec); err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("GitHub's recorded answers are missing (%v): CI must provide ../shared/realgh/recordings", err)
		}
		t.Skipf("GitHub's recorded answers are not here (%v); they are read from ../shared/realgh/recordings", err)
	}
	return rec
}
