// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

// Command release builds the plugin's release artefacts the way HashiCorp publishes its plugins: for each platform
// a zip, NAME_VERSION_OS_ARCH.zip (VERSION without the leading v), holding the static binary NAME (NAME.exe on
// windows), and one NAME_VERSION_SHA256SUMS file listing the zips in sha256sum's format. A platform with the
// suffix -pkcs11 (linux/amd64-pkcs11) is the PKCS#11 build: it needs cgo, so it is dynamically linked against the C
// library and cannot run on musl-based images such as Alpine's; its zip is NAME_VERSION_OS_ARCH_pkcs11.zip.
//
// Usage (make release runs it from the module root):
//
//	go run ./tools/release -version v0.2.0 -ldflags '-s -w -X ...Version=v0.2.0' \
//		-mtime "$SOURCE_DATE_EPOCH" -out dist linux/amd64 darwin/arm64 ...
//
// The artefacts are reproducible: the same commit built with the same Go toolchain gives byte-identical zips, so
// anyone can rebuild a release and compare it with the SHA256SUMS file. Hence go build runs with -trimpath (no
// local paths), -buildid= (no build ID, nor a linker build ID in a cgo build), cgo off (on in a -pkcs11 build) and the caller's GOFLAGS and microarchitecture levels replaced
// by fixed values; and each zip holds one entry with a fixed name, mode and modification time (-mtime), instead
// of the build's clock and the file system's metadata.
package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"
)

// zipEpoch is the earliest time a zip's MS-DOS date field can hold (1980-01-01 UTC).
var zipEpoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// versionPattern is a semantic version with the leading v that Vault's plugin catalog expects.
var versionPattern = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// platformPattern is a GOOS/GOARCH pair, with -pkcs11 for the cgo build that holds the PKCS#11 signer.
var platformPattern = regexp.MustCompile(`^[a-z0-9]+/[a-z0-9]+(-pkcs11)?$`)

// pkcs11Suffix marks the cgo build of a platform.
const pkcs11Suffix = "-pkcs11"

// crossCompilers are the C compilers of Debian's cross toolchains (gcc-aarch64-linux-gnu, gcc-x86-64-linux-gnu) that a
// PKCS#11 build for another architecture than the builder's needs.
var crossCompilers = map[string]string{"amd64": "x86_64-linux-gnu-gcc", "arm64": "aarch64-linux-gnu-gcc"}

// config is one release build.
type config struct {
	name      string    // binary name and file name prefix
	pkg       string    // the main package to build
	dir       string    // where go build runs: the module root
	version   string    // with the leading v
	ldflags   string    // the caller's linker flags (version stamping); -buildid= is added
	mtime     time.Time // the modification time of every file in the zips
	out       string    // the output directory
	platforms []string  // GOOS/GOARCH
}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet("release", flag.ContinueOnError)
	cfg := config{dir: "."}
	flags.StringVar(&cfg.name, "name", "vault-plugin-secrets-github-app", "the plugin's name: binary name and file name prefix")
	flags.StringVar(&cfg.pkg, "pkg", "./cmd/vault-plugin-secrets-github-app", "the main package to build")
	flags.StringVar(&cfg.version, "version", "", "the release's version, such as v0.2.0 (required)")
	flags.StringVar(&cfg.ldflags, "ldflags", "", "linker flags that stamp the version into the binary")
	mtime := flags.Int64("mtime", -1, "modification time of the files in the zips, in seconds since 1970 (required; "+
		"make release passes SOURCE_DATE_EPOCH, the last commit's time)")
	flags.StringVar(&cfg.out, "out", "dist", "the output directory")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), "usage: release -version vX.Y.Z -mtime SECONDS [flags] GOOS/GOARCH...")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return err
	}
	cfg.platforms = flags.Args()
	if *mtime < 0 {
		return errors.New("-mtime is required")
	}
	cfg.mtime = time.Unix(*mtime, 0).UTC()

	zips, sums, err := build(ctx, cfg)
	if err != nil {
		return err
	}
	for _, z := range zips {
		fmt.Fprintln(stdout, z)
	}
	fmt.Fprintln(stdout, sums)
	return nil
}

// build builds, zips and checksums every platform of cfg. It returns the paths of the zips and of the SHA256SUMS
// file.
func build(ctx context.Context, cfg config) (zips []string, sums string, err error) {
	if !versionPattern.MatchString(cfg.version) {
		return nil, "", fmt.Errorf("version %q is not a semantic version with a leading v, such as v0.2.0", cfg.version)
	}
	if cfg.mtime.Before(zipEpoch) {
		return nil, "", fmt.Errorf("modification time %s is before %s, the earliest a zip can hold", cfg.mtime, zipEpoch)
	}
	if len(cfg.platforms) == 0 {
		return nil, "", errors.New("no platform given (GOOS/GOARCH)")
	}
	seen := map[string]bool{}
	for _, p := range cfg.platforms {
		if !platformPattern.MatchString(p) {
			return nil, "", fmt.Errorf("platform %q is not GOOS/GOARCH or GOOS/GOARCH-pkcs11", p)
		}
		if strings.HasSuffix(p, pkcs11Suffix) && !strings.HasPrefix(p, "linux/") {
			return nil, "", fmt.Errorf("platform %q: PKCS#11 builds are made for linux only", p)
		}
		if seen[p] {
			return nil, "", fmt.Errorf("platform %s is given twice", p)
		}
		seen[p] = true
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return nil, "", err
	}
	tmp, err := os.MkdirTemp("", "release-")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(tmp)

	// HashiCorp's file names carry the version without its v.
	fileVersion := strings.TrimPrefix(cfg.version, "v")
	for _, p := range cfg.platforms {
		goos, goarch, _ := strings.Cut(p, "/")
		goarch, pkcs11 := strings.CutSuffix(goarch, pkcs11Suffix)
		binName := cfg.name
		if goos == "windows" {
			binName += ".exe"
		}
		variant := ""
		if pkcs11 {
			variant = "_pkcs11"
		}
		bin := filepath.Join(tmp, goos+"_"+goarch+variant, binName)
		if err := goBuild(ctx, cfg, goos, goarch, pkcs11, bin); err != nil {
			return nil, "", err
		}
		zipPath := filepath.Join(cfg.out, fmt.Sprintf("%s_%s_%s_%s%s.zip", cfg.name, fileVersion, goos, goarch, variant))
		if err := writeZip(zipPath, bin, binName, cfg.mtime); err != nil {
			return nil, "", fmt.Errorf("zipping %s: %w", p, err)
		}
		zips = append(zips, zipPath)
	}
	sums = filepath.Join(cfg.out, fmt.Sprintf("%s_%s_SHA256SUMS", cfg.name, fileVersion))
	if err := writeSums(sums, zips); err != nil {
		return nil, "", err
	}
	return zips, sums, nil
}

// goBuild builds cfg.pkg for one platform into out; with pkcs11, with cgo.
func goBuild(ctx context.Context, cfg config, goos, goarch string, pkcs11 bool, out string) error {
	ldflags := cfg.ldflags + " -buildid="
	cgo := []string{"CGO_ENABLED=0"}
	if pkcs11 {
		// The external linker would add a build ID of its own.
		ldflags += " -extldflags=-Wl,--build-id=none"
		cgo = []string{"CGO_ENABLED=1", "CGO_CFLAGS=-O2", "CGO_LDFLAGS="}
		if goarch != runtime.GOARCH {
			cgo = append(cgo, "CC="+crossCompilers[goarch])
		}
	}
	args := []string{"build", "-trimpath", "-ldflags", strings.TrimSpace(ldflags), "-o", out, cfg.pkg}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = cfg.dir
	// Later entries win: the caller's environment must not change the bytes. GOFLAGS could add -race, -cover or
	// -tags; GOAMD64 and GOARM64 would raise the instruction set above what every machine of the platform runs;
	// CGO_CFLAGS and CGO_LDFLAGS would change what the C compiler and linker make.
	cmd.Env = append(append(os.Environ(),
		"GOOS="+goos, "GOARCH="+goarch, "GOFLAGS=", "GOAMD64=v1", "GOARM64=v8.0"), cgo...)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s for %s/%s: %w\n%s", strings.Join(args, " "), goos, goarch, err, output.String())
	}
	return nil
}

// writeZip writes a zip holding the file bin as the single entry name, executable, with modification time mtime.
// Nothing in it depends on when or where it was built. It writes to a temporary file first, so that an
// interrupted run leaves no truncated zip under the final name.
func writeZip(zipPath, bin, name string, mtime time.Time) (err error) {
	src, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer src.Close()
	f, err := os.CreateTemp(filepath.Dir(zipPath), ".zip-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()

	zw := zip.NewWriter(f)
	// The UTC location matters: the MS-DOS date field is written in Modified's location, so a local time would
	// make the bytes depend on the builder's time zone.
	h := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: mtime.UTC()}
	// SetMode also marks the entry as made on Unix, so that unzip restores the executable bit Vault requires.
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, src); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), zipPath)
}

// writeSums writes the SHA-256 of each file in sha256sum's format, "HEX  NAME" as in HashiCorp's SHA256SUMS files,
// sorted by name so that the order in which the platforms were given does not matter.
func writeSums(path string, files []string) error {
	var lines []string
	for _, file := range files {
		sum, err := fileSHA256(file)
		if err != nil {
			return err
		}
		lines = append(lines, fmt.Sprintf("%s  %s\n", sum, filepath.Base(file)))
	}
	slices.SortFunc(lines, func(a, b string) int { return strings.Compare(a[64:], b[64:]) })
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}
