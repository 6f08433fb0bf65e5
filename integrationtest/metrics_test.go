// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestMetricsAndStatus scrapes the mount's metrics through a real Vault the way docs/metrics.md's
// Prometheus job does (GET with format=prometheus and the Vault token as a bearer token), parses them with
// Prometheus' own parser, checks the counters against the emulator's, and reads status with the CLI. A token without
// the capability gets 403 on both.
func TestMetricsAndStatus(t *testing.T) {
	s := requireStack(t)
	v, gh := s.vault, s.gh
	mount := v.newMount(t, s.bins.pluginVersion)
	v.configure(t, mount, gh)
	v.cli(t, "write", mount+"/roles/ci", "owner="+acmeOwner, "repositories=api", "permissions=contents=read", "ttl=5m")

	before := gh.stats(t)
	for range 3 {
		out := v.mintCLI(t, v.rootToken, mount+"/token/ci")
		v.cli(t, "lease", "revoke", "-sync", out.LeaseID)
	}
	// A token answer that leaves out the token's scope, as some GitHub Enterprise Server answers do: the token comes
	// back stating what was asked, with a warning, and is counted.
	gh.setFaults(t, map[string]any{"omit_token_scope": true})
	out := v.mintCLI(t, v.rootToken, mount+"/token/ci")
	gh.setFaults(t, map[string]any{})
	if len(out.Warnings) != 1 || !strings.Contains(out.Warnings[0], "did not state the token's permissions, repository_selection, repositories") ||
		out.Data.Permissions["contents"] != "read" || out.Data.RepositorySelection != "selected" || !slices.Equal(out.Data.Repositories, []string{"api"}) {
		t.Errorf("a token whose scope GitHub did not state: warnings %q, permissions %v, repository_selection %q, repositories %q",
			out.Warnings, out.Data.Permissions, out.Data.RepositorySelection, out.Data.Repositories)
	}
	v.cli(t, "lease", "revoke", "-sync", out.LeaseID)
	// A role that does not exist gets no series of its own.
	if r := v.run(v.rootToken, "", "read", mount+"/token/no-such-role"); r.err == nil {
		t.Errorf("reading a token of a role that does not exist succeeded: %s", r)
	}
	after := gh.stats(t)

	scraper := tokenWithPolicyText(t, v, mount+"-metrics", `path "`+mount+`/metrics" { capabilities = ["read"] }`)
	reader := tokenWithExamplePolicy(t, v, mount, "policy-ci-read.hcl")

	scrape := func(token string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, v.addr+"/v1/"+mount+"/metrics?format=prometheus", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	resp, text := scrape(scraper)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("scrape: HTTP %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), redact(text))
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("Prometheus' parser refuses the scrape: %v", err)
	}
	value := func(family string, labels map[string]string) float64 {
		var sum float64
		for _, m := range families[family].GetMetric() {
			if labelsMatch(m, labels) {
				sum += m.GetCounter().GetValue()
			}
		}
		return sum
	}
	for _, c := range []struct {
		name, family string
		labels       map[string]string
		want         int
	}{
		{"tokens minted", "github_app_tokens_minted_total", map[string]string{"role": "ci"}, 4},
		{"scope not stated", "github_app_unstated_scope_tokens_total", map[string]string{"role": "ci"}, 1},
		{"a role that does not exist", "github_app_mint_failures_total", map[string]string{"role": "(unknown)", "kind": "invalid_request"}, 1},
		{"mints at GitHub", "github_app_github_requests_total", map[string]string{"endpoint": "POST /app/installations/{installation_id}/access_tokens"},
			after.Calls["POST /app/installations/{installation_id}/access_tokens"] - before.Calls["POST /app/installations/{installation_id}/access_tokens"]},
		{"revocations at GitHub", "github_app_github_requests_total", map[string]string{"endpoint": "DELETE /installation/token"},
			after.Calls["DELETE /installation/token"] - before.Calls["DELETE /installation/token"]},
		{"revocations", "github_app_revocations_total", map[string]string{"outcome": "succeeded"}, 4},
		{"owner lookups", "github_app_installation_cache_total", map[string]string{"result": "miss"}, 1},
	} {
		if got := value(c.family, c.labels); got != float64(c.want) {
			t.Errorf("%s: %s%v = %v, want %d", c.name, c.family, c.labels, got, c.want)
		}
	}
	// Labels must stay bounded (sample values are numbers that may hold any digits), and no token appears anywhere.
	for name, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				for _, banned := range []string{acmeOwner, "2001", "api", "no-such-role"} {
					if strings.Contains(l.GetValue(), banned) {
						t.Errorf("%s has label %s=%q", name, l.GetName(), l.GetValue())
					}
				}
			}
		}
	}
	if strings.Contains(text, "ghs_") || strings.Contains(text, acmeOwner) {
		t.Error("the scrape holds a token or an owner")
	}

	if resp, _ := scrape(reader); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a token without read on metrics scraped with HTTP %d, want 403", resp.StatusCode)
	}
	v.cliDenied(t, reader, "read", mount+"/status")

	table := v.cli(t, "read", mount+"/status")
	t.Logf("vault read %s/status:\n%s", mount, redact(table))
	for _, want := range []string{"app_slug", "private_key_fingerprint", "rate_limit", "installations", "jwt_expires_at", s.bins.pluginVersion} {
		if !strings.Contains(table, want) {
			t.Errorf("vault read %s/status does not show %s", mount, want)
		}
	}
	var status struct {
		Data struct {
			AppID         int64            `json:"app_id"`
			RateLimit     map[string]any   `json:"rate_limit"`
			GitHub        map[string]any   `json:"github"`
			Installations []map[string]any `json:"installations"`
		} `json:"data"`
	}
	v.cliJSON(t, v.rootToken, &status, "read", "-format=json", mount+"/status")
	if status.Data.AppID != appID || status.Data.RateLimit["limit"] != float64(5000) || status.Data.GitHub["last_outcome"] != "ok" ||
		len(status.Data.Installations) != 1 {
		t.Errorf("status: %+v", status.Data)
	}
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	have := map[string]string{}
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}
