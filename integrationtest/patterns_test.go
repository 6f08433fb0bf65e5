// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"fmt"
	"strings"
	"testing"
)

// TestRepositoryPatternsThroughVault: a role with repository_patterns, written and read through the vault CLI,
// mints the repositories that match; a write narrows to one of them and is refused one that does not match; a
// pattern that matches nothing is a 403 and no token; the config shows repository_list_ttl.
func TestRepositoryPatternsThroughVault(t *testing.T) {
	s := requireStack(t)
	v, gh := s.vault, s.gh
	mount := v.newMount(t, s.bins.pluginVersion)
	v.configure(t, mount, gh)
	v.cli(t, "write", mount+"/config", "repository_list_ttl=2m")
	var cfg struct {
		Data map[string]any `json:"data"`
	}
	v.cliJSON(t, v.rootToken, &cfg, "read", "-format=json", mount+"/config")
	if got := fmt.Sprint(cfg.Data["repository_list_ttl"]); got != "120" {
		t.Errorf("config repository_list_ttl = %s, want 120", got)
	}

	// The installation reaches api, web and infra: [aw]* matches api and web.
	v.cli(t, "write", mount+"/roles/aw", "owner="+acmeOwner, "repository_patterns=[aw]*", "permissions=contents=read")
	var role struct {
		Data struct {
			RepositoryPatterns []string `json:"repository_patterns"`
		} `json:"data"`
	}
	v.cliJSON(t, v.rootToken, &role, "read", "-format=json", mount+"/roles/aw")
	if !sameSet(role.Data.RepositoryPatterns, []string{"[aw]*"}) {
		t.Errorf("role aw reads back repository_patterns %v", role.Data.RepositoryPatterns)
	}

	out := v.mintCLI(t, v.rootToken, mount+"/token/aw")
	if !sameSet(out.Data.Repositories, []string{"api", "web"}) {
		t.Errorf("token data names repositories %v, want [api web]", out.Data.Repositories)
	}
	gh.mustReach(t, out.Data.Token, "api", "web")
	v.cli(t, "lease", "revoke", out.LeaseID)

	out = v.mintCLI(t, v.rootToken, mount+"/token/aw", "repositories=web")
	gh.mustReach(t, out.Data.Token, "web")
	v.cli(t, "lease", "revoke", out.LeaseID)

	before := gh.issued(t)
	r := v.cliDenied(t, v.rootToken, "write", mount+"/token/aw", "repositories=infra")
	if !strings.Contains(r.stderr, `repository "infra"`) {
		t.Errorf("the refusal does not name infra: %s", r)
	}
	v.cli(t, "write", mount+"/roles/none", "owner="+acmeOwner, "repository_patterns=team-z-*")
	r = v.cliDenied(t, v.rootToken, "read", mount+"/token/none")
	if !strings.Contains(r.stderr, `"team-z-*"`) || !strings.Contains(r.stderr, "matches none") {
		t.Errorf("the refusal does not name the pattern that matches nothing: %s", r)
	}
	// The repository list is cached since the first mint: the refusals issued no token at all.
	if after := gh.issued(t); after != before {
		t.Errorf("%d tokens issued by refused requests", after-before)
	}
}
