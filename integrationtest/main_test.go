// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// modulePath is the plugin's Go module; its Version variable carries the version the plugin reports to Vault.
const modulePath = "github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app"

// binaries are the programs under test.
type binaries struct {
	vault, plugin, fakeGitHub string
	pluginVersion             string
}

// shared is what TestMain starts for all tests: one emulator and one Vault dev server with the plugin registered.
type shared struct {
	bins      binaries
	gh        *fakeGitHub
	vault     *vaultServer
	pluginSHA string
	logDir    string
}

var (
	// repoRoot is the project's root directory (the parent of this package's directory).
	repoRoot string
	// stack is set up by TestMain; nil with skipReason set when Vault cannot be obtained outside CI.
	stack      *shared
	skipReason string
)

// ciMode reports whether the run is in CI, where nothing may skip.
func ciMode() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

// requireStack returns the shared stack, or skips the test (outside CI only) when it could not be set up.
func requireStack(t *testing.T) *shared {
	t.Helper()
	if stack == nil {
		if ciMode() {
			t.Fatalf("the integration stack is missing in CI: %s", skipReason)
		}
		t.Skip(skipReason)
	}
	return stack
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err == nil {
		_, err = os.Stat(filepath.Join(root, "go.mod"))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "integrationtest: cannot find the project root: %v\n", err)
		return 1
	}
	repoRoot = root

	// Only the test binary's -test.* flags exist; a -list or -run of nothing still calls TestMain, which is
	// cheap enough not to special-case.
	work, err := os.MkdirTemp("", "github-app-integrationtest-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "integrationtest: %v\n", err)
		return 1
	}
	defer os.RemoveAll(work)

	start := time.Now()
	bins, vaultErr, err := resolveBinaries(filepath.Join(work, "bin"))
	if err == nil && vaultErr == nil {
		bins.vault = pinFile(bins.vault, filepath.Join(work, "bin", "vault"))
	}
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "integrationtest: FAIL: %v\n", err)
		return 1
	case vaultErr != nil && ciMode():
		fmt.Fprintf(os.Stderr, "integrationtest: FAIL (CI=true, nothing may skip): no Vault binary: %v\n", vaultErr)
		return 1
	case vaultErr != nil:
		skipReason = fmt.Sprintf("no Vault binary could be obtained (set VAULT_BIN or see scripts/vault.sh): %v", vaultErr)
		fmt.Fprintf(os.Stderr, "integrationtest: SKIPPING every test: %s\n", skipReason)
		return m.Run()
	}

	s, err := startShared(bins, filepath.Join(work, "shared"))
	if s != nil {
		defer s.stop()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "integrationtest: FAIL: starting the shared stack: %v\n", err)
		if s != nil {
			s.dumpLogs()
		}
		return 1
	}
	stack = s
	fmt.Fprintf(os.Stderr, "integrationtest: Vault %s, plugin %s (%s), emulator at %s; set up in %s\n",
		s.vault.addr, bins.pluginVersion, bins.plugin, s.gh.url, time.Since(start).Round(time.Millisecond))

	code := m.Run()
	if code != 0 {
		s.dumpLogs()
	}
	return code
}

// resolveBinaries finds or builds the programs under test. vaultErr says why no Vault could be obtained (the one
// thing that may make the tests skip outside CI); err is any other failure.
func resolveBinaries(buildDir string) (b binaries, vaultErr, err error) {
	b.pluginVersion = os.Getenv("PLUGIN_VERSION")
	if b.pluginVersion == "" {
		data, err := os.ReadFile(filepath.Join(repoRoot, "VERSION"))
		if err != nil {
			return b, nil, fmt.Errorf("PLUGIN_VERSION is unset and the VERSION file is unreadable: %w", err)
		}
		b.pluginVersion = strings.TrimSpace(string(data))
	}
	if !strings.HasPrefix(b.pluginVersion, "v") {
		return b, nil, fmt.Errorf("plugin version %q: Vault wants a semantic version such as v0.1.0", b.pluginVersion)
	}

	if b.plugin = os.Getenv("PLUGIN_BIN"); b.plugin == "" {
		b.plugin = filepath.Join(buildDir, pluginName)
		// The same ldflag as the Makefile: Vault registers a plugin with -version only when the binary reports it.
		if err := goBuild(b.plugin, "./cmd/"+pluginName, "-ldflags", "-X "+modulePath+".Version="+b.pluginVersion); err != nil {
			return b, nil, err
		}
	}
	if b.fakeGitHub = os.Getenv("FAKEGITHUB_BIN"); b.fakeGitHub == "" {
		b.fakeGitHub = filepath.Join(buildDir, "fakegithub")
		if err := goBuild(b.fakeGitHub, "./internal/testing/cmd/fakegithub"); err != nil {
			return b, nil, err
		}
	}
	for _, p := range []*string{&b.plugin, &b.fakeGitHub} {
		if st, err := os.Stat(*p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return b, nil, fmt.Errorf("%s is not an executable file (%v)", *p, err)
		}
		if *p, err = filepath.Abs(*p); err != nil {
			return b, nil, err
		}
	}

	if bin := os.Getenv("VAULT_BIN"); bin != "" {
		// An explicit choice that does not work is a mistake to report, not a reason to skip.
		if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return b, nil, fmt.Errorf("VAULT_BIN=%s is not an executable file (%v)", bin, err)
		}
		b.vault, err = filepath.Abs(bin)
		return b, nil, err
	}
	b.vault, vaultErr = vaultFromScript()
	return b, vaultErr, nil
}

// pinFile hard-links src into the run's directory and returns the link, so that a rebuild of the cached Vault
// (scripts/vault.sh in another shell) cannot pull the binary from under a running test. Where no link can be
// made (another file system), it returns src.
func pinFile(src, link string) string {
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return src
	}
	if err := os.Link(src, link); err != nil {
		return src
	}
	return link
}

func goBuild(out, pkg string, flags ...string) error {
	args := append([]string{"build", "-trimpath", "-o", out}, flags...)
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, output.String())
	}
	return nil
}

// vaultFromScript returns the Vault that scripts/vault.sh finds or builds (a cold build takes about ten minutes;
// TestMain's work runs before the test timeout starts).
func vaultFromScript() (string, error) {
	cmd := exec.Command("bash", filepath.Join(repoRoot, "scripts", "vault.sh"))
	cmd.Dir = repoRoot
	cmd.Stderr = os.Stderr // its progress: a cold build is long, and silence would look like a hang
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("bash scripts/vault.sh: %w", err)
	}
	fields := strings.Fields(string(out))
	if len(fields) == 0 {
		return "", errors.New("bash scripts/vault.sh printed no path")
	}
	return fields[len(fields)-1], nil
}

// startShared starts the emulator and the dev server, and registers the plugin. On error it returns what it has
// started so far, for the caller to stop.
func startShared(bins binaries, dir string) (*shared, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &shared{bins: bins, logDir: dir}
	var err error
	if s.gh, err = startFakeGitHub(bins.fakeGitHub, dir); err != nil {
		return s, err
	}
	if s.vault, err = startVaultDev(bins.vault, dir); err != nil {
		return s, err
	}
	if s.pluginSHA, err = s.vault.registerPlugin(bins.plugin, bins.pluginVersion); err != nil {
		return s, err
	}
	return s, nil
}

func (s *shared) stop() {
	if s.vault != nil {
		if err := s.vault.proc.stop(20 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "integrationtest: %v\n", err)
		}
	}
	if s.gh != nil {
		if err := s.gh.proc.stop(5 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "integrationtest: %v\n", err)
		}
	}
}

// dumpLogs prints the end of the shared servers' logs, for a failed run.
func (s *shared) dumpLogs() {
	if s.vault != nil {
		fmt.Fprintf(os.Stderr, "--- last lines of the shared Vault's log:\n%s\n", s.vault.proc.logTail(150))
	}
	if s.gh != nil {
		fmt.Fprintf(os.Stderr, "--- last lines of the emulator's log:\n%s\n", s.gh.proc.logTail(50))
	}
}
