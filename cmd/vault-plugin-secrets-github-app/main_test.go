// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoTestInfrastructureInBinary keeps the emulator, the contract validator and their dependencies out of the
// plugin that operators run.
func TestNoTestInfrastructureInBinary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list gave %d packages; expected the plugin's whole graph", len(deps))
	}
	for _, dep := range deps {
		for _, banned := range []string{"/internal/testing/", "getkin/kin-openapi"} {
			if strings.Contains(dep, banned) {
				t.Errorf("the plugin binary imports %s", dep)
			}
		}
	}
}
