// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The README's install commands name a release, a platform and a plugin directory. The test runs them with these
// replaced by the release it builds, this machine's platform, and its own Vault's plugin directory; the download
// URL becomes a file:// URL of the build's output, which curl fetches the same way.
const (
	readmeReleaseURL = "https://github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/releases/download/v0.4.0"
	readmeVersion    = "0.4.0"
	readmePlatform   = "linux_amd64"
	readmePluginDir  = "/etc/vault/plugins"
)

// TestInstallFromRelease installs the plugin the way the README's "Install" section tells an operator to: it builds
// the release for this machine with `make release`, then runs the README's commands themselves (download, check
// against the SHA256SUMS file, unzip, copy into plugin_directory, register by sha256 and version, mount) against a
// Vault dev server of its own, and mints a token through the mount. The shared server is left alone: registering
// the release binary there would replace the plugin every other test runs.
func TestInstallFromRelease(t *testing.T) {
	s := requireStack(t)
	requireCommands(t, "make", "curl", "sha256sum", "unzip", "bash")
	if want := "v" + readmeVersion; s.bins.pluginVersion != want {
		t.Errorf("the README's Install section shows %s, but this build is %s: show the version being released", want, s.bins.pluginVersion)
	}
	version := s.bins.pluginVersion
	fileVersion := strings.TrimPrefix(version, "v")
	platform := runtime.GOOS + "_" + runtime.GOARCH
	zipName := fmt.Sprintf("%s_%s_%s.zip", pluginName, fileVersion, platform)
	sumsName := fmt.Sprintf("%s_%s_SHA256SUMS", pluginName, fileVersion)

	// The release, built by the Makefile's own target for this platform only.
	dist := t.TempDir()
	start := time.Now()
	makeRelease(t, dist, version, runtime.GOOS+"/"+runtime.GOARCH)
	t.Logf("make release for %s/%s took %s", runtime.GOOS, runtime.GOARCH, time.Since(start).Round(time.Millisecond))
	zipSum, err := fileSHA256(filepath.Join(dist, zipName))
	if err != nil {
		t.Fatalf("make release made no %s: %v", zipName, err)
	}
	sums, err := os.ReadFile(filepath.Join(dist, sumsName))
	if err != nil {
		t.Fatalf("make release made no %s: %v", sumsName, err)
	}
	if want := zipSum + "  " + zipName + "\n"; string(sums) != want {
		t.Fatalf("%s is %q, want %q", sumsName, sums, want)
	}
	binSum := zipEntrySHA256(t, filepath.Join(dist, zipName), pluginName)

	// A Vault of its own, with the plugin directory empty.
	dir := t.TempDir()
	v, err := startVaultDev(s.bins.vault, dir)
	if err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, v.proc, 80)

	script := readmeInstallScript(t)
	for _, sub := range []struct{ placeholder, value string }{
		{readmeReleaseURL, "file://" + dist}, // first: it holds the version too
		{readmeVersion, fileVersion},
		{readmePlatform, platform},
		{readmePluginDir, v.pluginDir},
	} {
		if !strings.Contains(script, sub.placeholder) {
			t.Fatalf("the README's install commands no longer contain %q, which the test replaces:\n%s", sub.placeholder, script)
		}
		script = strings.ReplaceAll(script, sub.placeholder, sub.value)
	}
	t.Logf("running the README's install commands:\n%s", script)
	out := runInstallScript(t, v, s.bins.vault, script)

	// The checksum file vouched for the zip.
	if want := zipName + ": OK"; !strings.Contains(out, want) {
		t.Errorf("sha256sum -c did not print %q:\n%s", want, out)
	}

	installed := filepath.Join(v.pluginDir, pluginName)
	t.Run("version flag", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Without Vault's environment the plugin would refuse to serve and exit 1; -version must answer first.
		stdout, err := exec.CommandContext(ctx, installed, "-version").Output()
		if err != nil {
			t.Fatalf("%s -version: %v", installed, err)
		}
		if string(stdout) != version+"\n" {
			t.Errorf("%s -version printed %q, want %q", installed, stdout, version+"\n")
		}
	})

	t.Run("catalog and mount run the release binary", func(t *testing.T) {
		if got, err := fileSHA256(installed); err != nil || got != binSum {
			t.Fatalf("%s has sha256 %s (%v), want the zip's binary's %s", installed, got, err, binSum)
		}
		var info struct {
			Version string `json:"version"`
			SHA256  string `json:"sha256"`
			Command string `json:"command"`
		}
		v.cliJSON(t, v.rootToken, &info, "plugin", "info", "-format=json", "-version="+version, "secret", pluginName)
		if info.Version != version || info.SHA256 != binSum || info.Command != pluginName {
			t.Errorf("vault plugin info: got %+v, want version %s, sha256 %s, command %s", info, version, binSum, pluginName)
		}
		var mounts map[string]struct {
			Type                 string `json:"type"`
			RunningPluginVersion string `json:"running_plugin_version"`
			RunningSHA256        string `json:"running_sha256"`
		}
		v.cliJSON(t, v.rootToken, &mounts, "secrets", "list", "-detailed", "-format=json")
		m, ok := mounts["github/"]
		if !ok {
			t.Fatalf("the README's commands mounted nothing at github/: %v", mounts)
		}
		if m.Type != pluginName || m.RunningPluginVersion != version || m.RunningSHA256 != binSum {
			t.Errorf("mount github/: got %+v, want type %s running %s with sha256 %s", m, pluginName, version, binSum)
		}
	})

	t.Run("mints", func(t *testing.T) {
		v.configure(t, "github", s.gh)
		v.cli(t, "write", "github/roles/ci", "owner="+acmeOwner, "repositories=api", "permissions=contents=read")
		minted := v.mintCLI(t, v.rootToken, "github/token/ci")
		s.gh.mustReach(t, minted.Data.Token, "api")
		v.cli(t, "lease", "revoke", "-sync", minted.LeaseID)
		s.gh.waitDead(t, minted.Data.Token, 15*time.Second, "the release's token after vault lease revoke")
	})
}

// requireCommands fails the test in CI, and skips it elsewhere, when a program it runs is not on PATH.
func requireCommands(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if ciMode() {
				t.Fatalf("%s is needed and missing in CI: %v", name, err)
			}
			t.Skipf("%s is needed and not on PATH: %v", name, err)
		}
	}
}

// makeRelease runs `make release` for one platform with its output in dist.
func makeRelease(t *testing.T, dist, version, platform string) {
	t.Helper()
	cmd := exec.Command("make", "--no-print-directory", "-C", repoRoot, "release",
		"VERSION="+version, "PLATFORMS="+platform, "DIST="+dist)
	// Not the make that may be running this test: its flags and job server are not this make's business.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); name != "MAKEFLAGS" && name != "MFLAGS" && name != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
}

// zipEntrySHA256 checks that the zip holds the single entry name, executable, and returns the entry's SHA-256.
func zipEntrySHA256(t *testing.T, zipPath, name string) string {
	t.Helper()
	r, err := zip.OpenReader(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var names []string
	for _, f := range r.File {
		names = append(names, f.Name)
	}
	if len(names) != 1 || names[0] != name {
		t.Fatalf("%s holds %q, want just %s", zipPath, names, name)
	}
	if mode := r.File[0].Mode(); mode != 0o755 {
		t.Errorf("%s in %s has mode %s, want -rwxr-xr-x", name, zipPath, mode)
	}
	rc, err := r.File[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatalf("reading %s from %s: %v", name, zipPath, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// readmeInstallScript returns the shell block of the README's "Install" section that installs a release.
func readmeInstallScript(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Install\n")
	if !ok {
		t.Fatal(`README.md has no "## Install" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []string
	for rest := section; ; {
		var block string
		if _, rest, ok = strings.Cut(rest, "\n```sh\n"); !ok {
			break
		}
		block, rest, _ = strings.Cut(rest, "\n```\n")
		if strings.Contains(block, "sha256sum -c --ignore-missing") {
			blocks = append(blocks, block)
		}
	}
	if len(blocks) != 1 {
		t.Fatalf("the README's Install section has %d sh blocks with sha256sum -c --ignore-missing, want 1", len(blocks))
	}
	// What the README promises an operator, so that it cannot quietly drop a step.
	for _, want := range []string{"curl ", "sha256sum -c --ignore-missing " + pluginName + "_" + readmeVersion + "_SHA256SUMS",
		"unzip ", "cp ", "vault plugin register -sha256=", "-version=v" + readmeVersion + " secret " + pluginName,
		"vault secrets enable -path=github -plugin-version=v" + readmeVersion + " " + pluginName} {
		if !strings.Contains(blocks[0], want) {
			t.Errorf("the README's install commands lack %q:\n%s", want, blocks[0])
		}
	}
	return blocks[0] + "\n"
}

// runInstallScript runs the install commands with bash in a fresh directory, as root of the Vault v, with vault on
// PATH, stopping at the first failing command. It returns what they printed.
func runInstallScript(t *testing.T, v *vaultServer, vaultBin, script string) string {
	t.Helper()
	work := t.TempDir()
	pathDir := filepath.Join(work, ".path")
	if err := os.Mkdir(pathDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(vaultBin, filepath.Join(pathDir, "vault")); err != nil {
		t.Fatal(err)
	}
	scriptFile := filepath.Join(work, ".install.sh")
	if err := os.WriteFile(scriptFile, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-x", scriptFile)
	cmd.Dir = work
	cmd.Env = cleanEnv(v.home, "VAULT_ADDR="+v.addr, "VAULT_TOKEN="+v.rootToken,
		"PATH="+pathDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("their output (with bash -x):\n%s", redact(out.String()))
	if err != nil {
		t.Fatalf("the README's install commands failed: %v", err)
	}
	return out.String()
}
