// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPluginCrash kills the plugin's process with SIGKILL and checks that Vault starts it again on the next request,
// and that a lease minted before the crash can still be revoked.
func TestPluginCrash(t *testing.T) {
	s := requireStack(t)
	v, gh := s.vault, s.gh
	mount := v.newMount(t, s.bins.pluginVersion)
	v.configure(t, mount, gh)
	v.cli(t, "write", mount+"/roles/ci", "owner="+acmeOwner, "repositories=api", "permissions=contents=read", "ttl=10m")
	before := v.mintCLI(t, v.rootToken, mount+"/token/ci")

	pids, err := pluginPIDs(v)
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) == 0 {
		t.Fatalf("no process of %s runs under Vault (pid %d)", filepath.Join(v.pluginDir, pluginName), v.proc.pid())
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %d: %v", pid, err)
		}
	}
	// Vault reaps its child; until then the PID is a zombie, which pluginPIDs does not count.
	eventually(t, 10*time.Second, 50*time.Millisecond, "the killed plugin process is gone", func() error {
		now, err := pluginPIDs(v)
		if err != nil {
			return err
		}
		for _, p := range now {
			for _, old := range pids {
				if p == old {
					return fmt.Errorf("pid %d still runs", p)
				}
			}
		}
		return nil
	})

	// Vault notices the dead plugin on the next request and starts it again; the first request may fail.
	var after secretOutput
	failures := 0
	eventually(t, 30*time.Second, 500*time.Millisecond, "a token read after the crash succeeds", func() error {
		r := v.run(v.rootToken, "", "read", "-format=json", mount+"/token/ci")
		if r.err != nil {
			failures++
			return errors.New(r.String())
		}
		after = secretOutput{}
		return decodeSecret(r.stdout, &after)
	})
	t.Logf("reads failed %d time(s) before Vault had restarted the plugin", failures)
	gh.mustReach(t, after.Data.Token, "api")

	now, err := pluginPIDs(v)
	if err != nil || len(now) == 0 {
		t.Errorf("no plugin process after the restart (%v)", err)
	}

	// The lease minted by the killed process is revoked by the new one.
	v.cli(t, "lease", "revoke", "-sync", before.LeaseID)
	gh.waitDead(t, before.Data.Token, 10*time.Second, "the token minted before the crash, after its revocation")
}

// pluginPIDs lists the live (not zombie) child processes of the Vault server that run this server's copy of the
// plugin. Only children of our own Vault count, so that no other process on the machine is ever touched.
func pluginPIDs(v *vaultServer) ([]int, error) { return pluginPIDsOf(v, pluginName) }

// pluginPIDsOf is pluginPIDs for the binary named file in the server's plugin directory.
func pluginPIDsOf(v *vaultServer, file string) ([]int, error) {
	want := filepath.Join(v.pluginDir, file)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// stat is "pid (comm) state ppid ...": comm may hold spaces, so parse after the last ')'.
		rest := string(stat)
		if i := strings.LastIndexByte(rest, ')'); i >= 0 {
			rest = rest[i+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) < 2 || fields[0] == "Z" || fields[1] != strconv.Itoa(v.proc.pid()) {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if argv0, _, _ := strings.Cut(string(cmdline), "\x00"); argv0 == want {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
