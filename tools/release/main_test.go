// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

const modulePath = "github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app"

// testMtime has odd seconds: the zip's extended timestamp keeps them, the MS-DOS field (2 s steps) does not.
var testMtime = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// TestReleaseIsReproducible builds the release for this machine's platform twice, into two directories, and wants
// the same bytes both times; then checks what the zip holds and that the binary reports the stamped version.
// One platform keeps it fast; the others differ only in GOOS/GOARCH.
func TestReleaseIsReproducible(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	const version = "v1.2.3-repro.1"
	platform := runtime.GOOS + "/" + runtime.GOARCH
	cfg := config{
		name:      "vault-plugin-secrets-github-app",
		pkg:       "./cmd/vault-plugin-secrets-github-app",
		dir:       root,
		version:   version,
		ldflags:   "-s -w -X " + modulePath + ".Version=" + version,
		mtime:     testMtime,
		platforms: []string{platform},
	}
	ctx := context.Background()

	var zips [2][]string
	var sums [2]string
	for i := range 2 {
		cfg.out = t.TempDir()
		zips[i], sums[i], err = build(ctx, cfg)
		if err != nil {
			t.Fatalf("build %d: %v", i+1, err)
		}
	}

	wantZip := "vault-plugin-secrets-github-app_1.2.3-repro.1_" + runtime.GOOS + "_" + runtime.GOARCH + ".zip"
	wantSums := "vault-plugin-secrets-github-app_1.2.3-repro.1_SHA256SUMS"
	for i := range 2 {
		if len(zips[i]) != 1 || filepath.Base(zips[i][0]) != wantZip {
			t.Fatalf("build %d made zips %v, want one named %s", i+1, zips[i], wantZip)
		}
		if filepath.Base(sums[i]) != wantSums {
			t.Fatalf("build %d made checksums %s, want %s", i+1, sums[i], wantSums)
		}
	}
	zip1, zip2 := readFile(t, zips[0][0]), readFile(t, zips[1][0])
	if !bytes.Equal(zip1, zip2) {
		t.Errorf("the two builds' zips differ (%d and %d bytes): the release is not reproducible", len(zip1), len(zip2))
	}
	sums1, sums2 := readFile(t, sums[0]), readFile(t, sums[1])
	if !bytes.Equal(sums1, sums2) {
		t.Errorf("the two builds' SHA256SUMS differ:\n%s\n%s", sums1, sums2)
	}
	sum, err := fileSHA256(zips[0][0])
	if err != nil {
		t.Fatal(err)
	}
	if want := sum + "  " + wantZip + "\n"; string(sums1) != want {
		t.Errorf("SHA256SUMS is %q, want %q", sums1, want)
	}

	bin := unzipOne(t, zips[0][0], testMtime)
	out, err := exec.Command(bin, "-version").Output()
	if err != nil {
		t.Fatalf("%s -version: %v", bin, err)
	}
	if string(out) != version+"\n" {
		t.Errorf("%s -version printed %q, want %q", bin, out, version+"\n")
	}
	if runtime.GOOS == "linux" {
		// CGO_ENABLED=0 gives a static binary: no dynamic loader to ask for, so it runs on any Linux.
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("the linux binary is dynamically linked (it has a %s program header)", p.Type)
			}
		}
	}
}

// unzipOne checks that the zip holds just the plugin's executable with the fixed time and mode, and extracts it.
func unzipOne(t *testing.T, zipPath string, mtime time.Time) string {
	t.Helper()
	r, err := zip.OpenReader(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	name := "vault-plugin-secrets-github-app"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	if len(r.File) != 1 || r.File[0].Name != name {
		var names []string
		for _, f := range r.File {
			names = append(names, f.Name)
		}
		t.Fatalf("%s holds %v, want just %s", zipPath, names, name)
	}
	f := r.File[0]
	if !f.Modified.Equal(mtime) {
		t.Errorf("%s in the zip is dated %s, want %s", name, f.Modified, mtime)
	}
	if f.Mode() != 0o755 {
		t.Errorf("%s in the zip has mode %s, want -rwxr-xr-x", name, f.Mode())
	}
	if f.Method != zip.Deflate {
		t.Errorf("%s in the zip is stored with method %d, want deflate", name, f.Method)
	}
	rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc) // checks the CRC too
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestZipIgnoresFileMetadata: the zip is the same whatever the binary's own modification time and mode, and
// whatever the builder's time zone.
func TestZipIgnoresFileMetadata(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "plugin")
	if err := os.WriteFile(bin, []byte("not really a binary"), 0o700); err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, "a.zip"), filepath.Join(dir, "b.zip")
	if err := writeZip(a, bin, "plugin", testMtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(bin, time.Unix(1, 0), time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, 0o600); err != nil {
		t.Fatal(err)
	}
	// The same instant in another zone.
	if err := writeZip(b, bin, "plugin", testMtime.In(time.FixedZone("UTC+5", 5*3600))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, a), readFile(t, b)) {
		t.Error("the zips differ after a change of the file's time and mode and of the time zone")
	}
}

func TestWriteSumsSortsByName(t *testing.T) {
	dir := t.TempDir()
	var files []string
	for _, name := range []string{"p_1.0.0_windows_amd64.zip", "p_1.0.0_darwin_arm64.zip"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, path)
	}
	sums := filepath.Join(dir, "p_1.0.0_SHA256SUMS")
	if err := writeSums(sums, files); err != nil {
		t.Fatal(err)
	}
	// Each file holds its own name; the lines come sorted by name, whatever the order given.
	want := fmt.Sprintf("%x  p_1.0.0_darwin_arm64.zip\n%x  p_1.0.0_windows_amd64.zip\n",
		sha256.Sum256([]byte("p_1.0.0_darwin_arm64.zip")), sha256.Sum256([]byte("p_1.0.0_windows_amd64.zip")))
	if got := string(readFile(t, sums)); got != want {
		t.Errorf("SHA256SUMS:\n%s\nwant:\n%s", got, want)
	}
}

func TestBuildRefusesBadInput(t *testing.T) {
	good := config{name: "p", pkg: "./cmd/p", version: "v1.0.0", mtime: testMtime, out: t.TempDir(),
		platforms: []string{"linux/amd64"}}
	tests := []struct {
		name   string
		change func(*config)
		want   string
	}{
		{"version without v", func(c *config) { c.version = "1.0.0" }, "leading v"},
		{"version not semantic", func(c *config) { c.version = "v1.0" }, "semantic version"},
		{"time before 1980", func(c *config) { c.mtime = time.Unix(0, 0) }, "earliest a zip can hold"},
		{"no platform", func(c *config) { c.platforms = nil }, "no platform"},
		{"platform not GOOS/GOARCH", func(c *config) { c.platforms = []string{"linux-amd64"} }, "not GOOS/GOARCH"},
		{"platform twice", func(c *config) { c.platforms = []string{"linux/amd64", "linux/amd64"} }, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.change(&cfg)
			_, _, err := build(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("build: got error %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestPKCS11ReleaseIsReproducible builds the PKCS#11 artefact of this machine's Linux platform twice: it needs cgo,
// so it is a separate, dynamically linked binary beside the static one, named for its variant, and just as
// reproducible.
func TestPKCS11ReleaseIsReproducible(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("PKCS#11 artefacts are built for Linux only")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	const version = "v1.2.3-repro.1"
	cfg := config{
		name:      "vault-plugin-secrets-github-app",
		pkg:       "./cmd/vault-plugin-secrets-github-app",
		dir:       root,
		version:   version,
		ldflags:   "-s -w -X " + modulePath + ".Version=" + version,
		mtime:     testMtime,
		platforms: []string{"linux/" + runtime.GOARCH + "-pkcs11"},
	}
	var zips [2][]string
	for i := range 2 {
		cfg.out = t.TempDir()
		if zips[i], _, err = build(context.Background(), cfg); err != nil {
			t.Fatalf("build %d: %v", i+1, err)
		}
	}
	wantZip := "vault-plugin-secrets-github-app_1.2.3-repro.1_linux_" + runtime.GOARCH + "_pkcs11.zip"
	if len(zips[0]) != 1 || filepath.Base(zips[0][0]) != wantZip {
		t.Fatalf("the build made %v, want one zip named %s", zips[0], wantZip)
	}
	if !bytes.Equal(readFile(t, zips[0][0]), readFile(t, zips[1][0])) {
		t.Error("the two builds' PKCS#11 zips differ: the release is not reproducible")
	}
	bin := unzipOne(t, zips[0][0], testMtime)
	if out, err := exec.Command(bin, "-version").Output(); err != nil || string(out) != version+"\n" {
		t.Errorf("%s -version printed %q (%v), want %q", bin, out, err, version+"\n")
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(libs, func(l string) bool { return strings.HasPrefix(l, "libc.so") }) {
		t.Errorf("the PKCS#11 binary links %v: want the C library, which loads PKCS#11 modules", libs)
	}
}
