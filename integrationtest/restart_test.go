// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"fmt"
	"maps"
	"path/filepath"
	"testing"
	"time"
)

// TestRestart runs a Vault with file storage, sets the plugin up, mints a token, replaces the config at the same
// base_url by one with another proxy and key, and restarts Vault: the config (without the key, but with its
// fingerprint), the roles and the leases survive, and revoking the earlier lease still kills its token at GitHub,
// not through the other proxy.
func TestRestart(t *testing.T) {
	s := requireStack(t)
	gh := s.gh
	dir := t.TempDir()
	v := startVaultFile(t, s.bins.vault, dir)

	// Initialise and unseal. The unseal key and root token are test secrets: never logged.
	var initOut struct {
		UnsealKeysB64 []string `json:"unseal_keys_b64"`
		RootToken     string   `json:"root_token"`
	}
	v.cliJSON(t, "", &initOut, "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json")
	if len(initOut.UnsealKeysB64) != 1 || initOut.RootToken == "" {
		t.Fatalf("vault operator init returned %d unseal keys and a root token of %d characters",
			len(initOut.UnsealKeysB64), len(initOut.RootToken))
	}
	v.rootToken = initOut.RootToken
	unseal(t, v, initOut.UnsealKeysB64[0])

	sha, err := v.registerPlugin(s.bins.plugin, s.bins.pluginVersion)
	if err != nil {
		t.Fatal(err)
	}
	if sha != s.pluginSHA {
		t.Fatalf("the plugin copied for the file-storage Vault has sha256 %s, want %s", sha, s.pluginSHA)
	}
	const mount = "github"
	v.cli(t, "secrets", "enable", "-path="+mount, "-plugin-version="+s.bins.pluginVersion, pluginName)
	v.configure(t, mount, gh)
	v.cli(t, "write", mount+"/roles/ci", "owner="+acmeOwner, "repositories=api,web",
		"permissions=contents=read,pull_requests=write", "ttl=20m")

	type configData struct {
		AppID       int64  `json:"app_id"`
		Fingerprint string `json:"private_key_fingerprint"`
		BaseURL     string `json:"base_url"`
		AppSlug     string `json:"app_slug"`
	}
	type roleData struct {
		Owner        string            `json:"owner"`
		Repositories []string          `json:"repositories"`
		Permissions  map[string]string `json:"permissions"`
		TTL          int               `json:"ttl"`
	}
	readConfig := func() configData {
		var out struct{ Data configData }
		v.cliJSON(t, v.rootToken, &out, "read", "-format=json", mount+"/config")
		return out.Data
	}
	readRole := func() roleData {
		var out struct{ Data roleData }
		v.cliJSON(t, v.rootToken, &out, "read", "-format=json", mount+"/roles/ci")
		return out.Data
	}
	cfgBefore, roleBefore := readConfig(), readRole()
	minted := v.mintCLI(t, v.rootToken, mount+"/token/ci")
	gh.mustReach(t, minted.Data.Token, "api", "web")

	// Someone who may write config but holds no App key replaces it at the same base_url with their own proxy and
	// key: the lease minted before must still be revoked at GitHub after the restart, never through that proxy.
	proxy := newRecordingProxy(t)
	otherKey := filepath.Join(t.TempDir(), "other.pem")
	writeOtherKey(t, otherKey)
	v.cli(t, "write", mount+"/config", "base_url="+gh.url, "proxy_url="+proxy.srv.URL, "private_key=@"+otherKey)
	if seen := proxy.requests(); len(seen) == 0 {
		t.Fatal("the config write was not verified through the new proxy: the test does not take over as intended")
	}
	cfgBefore = readConfig()

	// Stop (SIGTERM, and wait), then start again on the same storage: a restarted Vault is sealed.
	if err := v.proc.stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	restartVaultFile(t, v, dir)
	unseal(t, v, initOut.UnsealKeysB64[0])

	cfgAfter := readConfig()
	if cfgAfter != cfgBefore || cfgAfter.AppID != appID || cfgAfter.Fingerprint != keyFingerprint(t, otherKey) {
		t.Errorf("config after the restart: %+v, before: %+v", cfgAfter, cfgBefore)
	}
	roleAfter := readRole()
	if roleAfter.Owner != roleBefore.Owner || !sameSet(roleAfter.Repositories, roleBefore.Repositories) ||
		!maps.Equal(roleAfter.Permissions, roleBefore.Permissions) || roleAfter.TTL != roleBefore.TTL {
		t.Errorf("role ci after the restart: %+v, before: %+v", roleAfter, roleBefore)
	}
	var roles []string
	v.cliJSON(t, v.rootToken, &roles, "list", "-format=json", mount+"/roles")
	if !sameSet(roles, []string{"ci"}) {
		t.Errorf("roles after the restart: %v, want [ci]", roles)
	}

	// The lease survived, and its token still works until it is revoked.
	if _, err := v.leaseExpiry(t, minted.LeaseID); err != nil {
		t.Fatalf("the lease minted before the restart is unknown after it: %v", redactErr(err))
	}
	gh.mustReach(t, minted.Data.Token, "api", "web")
	v.cli(t, "lease", "revoke", minted.LeaseID)
	gh.waitDead(t, minted.Data.Token, 15*time.Second, "the token minted before the restart, after vault lease revoke")
	if seen := proxy.requests(); len(seen) != 0 {
		t.Errorf("the replacing config's proxy saw %v", seen)
	}

	// And the restarted plugin mints again, with the App's key written back and no proxy.
	v.cli(t, "write", mount+"/config", "private_key=@"+gh.keyFile, "base_url="+gh.url, "proxy_url=")
	again := v.mintCLI(t, v.rootToken, mount+"/token/ci")
	gh.mustReach(t, again.Data.Token, "api", "web")
	v.cli(t, "lease", "revoke", "-sync", again.LeaseID)
}

// startVaultFile starts a Vault server (not dev mode) with file storage in dir, on a free loopback port; the test
// stops it when it ends.
func startVaultFile(t *testing.T, bin, dir string) *vaultServer {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	v, err := newConfiguredServer(bin, dir, "vault-file", serverConfig{
		storage:   fmt.Sprintf("storage \"file\" {\n  path = %q\n}", filepath.Join(dir, "data")),
		apiAddr:   fmt.Sprintf("127.0.0.1:%d", port),
		pluginDir: filepath.Join(dir, "plugins"),
	})
	if err != nil {
		t.Fatal(err)
	}
	restartVaultFile(t, v, dir)
	return v
}

// restartVaultFile starts (again) the file-storage Vault whose config is in dir, and waits for its listener.
func restartVaultFile(t *testing.T, v *vaultServer, dir string) {
	t.Helper()
	if v.home != dir {
		t.Fatalf("the server lives in %s, not %s", v.home, dir)
	}
	if err := v.startServer(); err != nil {
		t.Fatalf("the file-storage Vault did not start: %v", err)
	}
	stopOnCleanup(t, v.proc, 80)
}

// unseal unseals the server through the API (the key stays out of command lines) and waits until it is active.
func unseal(t *testing.T, v *vaultServer, key string) {
	t.Helper()
	sealed, err := v.submitUnsealKey(key)
	if err != nil {
		t.Fatalf("unsealing: %v", err)
	}
	if sealed {
		t.Fatal("still sealed after the unseal key")
	}
	if err := v.waitActive(t, 30*time.Second); err != nil {
		t.Fatalf("Vault is not active after unsealing: %v", err)
	}
}
