// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	dto "github.com/prometheus/client_model/go"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

// TestMetricsCountWhatHappened: the mount's counters agree with what the emulator saw, and no label
// carries an owner, an installation, a repository or a token.
func TestMetricsCountWhatHappened(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	e.role("gone", map[string]any{"installation_id": 9999})
	e.gh.ResetStats()
	var leases []*logical.Response
	for range 3 {
		leases = append(leases, e.mint("ci"))
	}
	e.do(logical.ReadOperation, "token/gone", nil)
	e.do(logical.UpdateOperation, "token/ci", map[string]any{"repositories": "web"})
	e.do(logical.ReadOperation, "token/nope", nil)
	if err := e.revoke(leases[0]); err != nil {
		t.Fatal(err)
	}

	text := metricsText(t, e)
	m := parseMetrics(t, text)
	st := e.gh.Stats()
	mint := map[string]string{"endpoint": "POST " + mintRouteTemplate}
	checks := []struct {
		name   string
		family string
		labels map[string]string
		want   float64
	}{
		{"minted", "github_app_tokens_minted_total", map[string]string{"role": "ci"}, 3},
		{"GitHub's 404", "github_app_mint_failures_total", map[string]string{"role": "gone", "kind": "not_found"}, 1},
		{"refused narrowing", "github_app_mint_failures_total", map[string]string{"role": "ci", "kind": "denied"}, 1},
		{"missing role", "github_app_mint_failures_total", map[string]string{"role": "(unknown)", "kind": "invalid_request"}, 1},
		{"mint calls 2xx", "github_app_github_requests_total", map[string]string{"endpoint": mint["endpoint"], "status_class": "2xx"}, 3},
		{"mint calls 4xx", "github_app_github_requests_total", map[string]string{"endpoint": mint["endpoint"], "status_class": "4xx"}, 1},
		{"owner lookups", "github_app_github_requests_total", map[string]string{"endpoint": "GET /orgs/{org}/installation"}, float64(st.Calls["GET /orgs/{org}/installation"])},
		{"revocations", "github_app_github_requests_total", map[string]string{"endpoint": "DELETE /installation/token"}, float64(st.Calls["DELETE /installation/token"])},
		{"latency observations", "github_app_github_request_duration_seconds", mint, float64(st.Calls[mintRoute])},
		{"revoked", "github_app_revocations_total", map[string]string{"outcome": "succeeded"}, 1},
		{"cache miss", "github_app_installation_cache_total", map[string]string{"result": "miss"}, 1},
		{"cache hits", "github_app_installation_cache_total", map[string]string{"result": "hit"}, 2},
		{"signatures", "github_app_jwt_signatures_total", nil, 1},
		{"rate limit", "github_app_rate_limit_limit", nil, 5000},
		{"capacity", "github_app_github_max_in_flight", nil, 32},
	}
	for _, c := range checks {
		if got := sample(m, c.family, c.labels); got != c.want {
			t.Errorf("%s: %s%v = %v, want %v", c.name, c.family, c.labels, got, c.want)
		}
	}
	if remaining := sample(m, "github_app_rate_limit_remaining", nil); remaining <= 0 || remaining >= 5000 {
		t.Errorf("rate limit remaining %v", remaining)
	}
	// Labels are what must stay bounded; sample values are numbers that may happen to hold any digits.
	for name, f := range m {
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				for _, banned := range []string{"acme", "2001", "9999", "ghs_", "api", "web", "nope"} {
					if strings.Contains(l.GetValue(), banned) {
						t.Errorf("%s has label %s=%q: labels must stay bounded", name, l.GetName(), l.GetValue())
					}
				}
			}
		}
	}
	if strings.Contains(text, "ghs_") || strings.Contains(text, "acme") {
		t.Error("the scrape holds a token or an owner")
	}

	resp, err := e.do(logical.ReadOperation, "metrics", nil)
	mustOK(t, resp, err)
	minted := resp.Data["metrics"].(map[string]any)["github_app_tokens_minted_total"].(map[string]any)
	if samples := minted["samples"].([]map[string]any); len(samples) != 1 || samples[0]["value"] != float64(3) {
		t.Fatalf("JSON metrics: %#v", minted)
	}
	resp, err = e.do(logical.ReadOperation, "metrics", map[string]any{"format": "xml"})
	_, msg := mustFail(t, resp, err)
	wantContains(t, msg, `format "xml"`, "prometheus")
}

// TestStatus: what the mount knows of the App and GitHub, and no secret.
func TestStatus(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.do(logical.ReadOperation, "status", nil)
	mustOK(t, resp, err)
	if resp.Data["configured"] != false {
		t.Fatalf("status before config: %#v", resp.Data)
	}
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme"})
	tok := e.mint("ci").Data["token"].(string)
	e.role("gone", map[string]any{"installation_id": 9999})
	e.do(logical.ReadOperation, "token/gone", nil)

	resp, err = e.do(logical.ReadOperation, "status", nil)
	mustOK(t, resp, err)
	d := resp.Data
	gh := d["github"].(map[string]any)
	rl := d["rate_limit"].(map[string]any)
	if d["app_id"] != int64(testAppID) || d["app_slug"] != "vault-test" || d["private_key_fingerprint"] == "" ||
		d["base_url"] != e.srv.URL || d["plugin_version"] != Version {
		t.Errorf("status: %#v", d)
	}
	if gh["last_outcome"] != "HTTP 404" || gh["last_call"] == "" || gh["failing_since"] != "" || gh["max_concurrent_requests"] != 32 {
		t.Errorf("status github: %#v", gh)
	}
	if rl["limit"] != 5000 || rl["resource"] != "core" || rl["reset"] == "" {
		t.Errorf("status rate_limit: %#v", rl)
	}
	if exp, err := time.Parse(time.RFC3339, d["jwt_expires_at"].(string)); err != nil || time.Until(exp) < 7*time.Minute {
		t.Errorf("jwt_expires_at %v (%v)", d["jwt_expires_at"], err)
	}
	inst := d["installations"].([]map[string]any)
	if len(inst) != 1 || inst[0]["owner"] != "acme" || inst[0]["installation_id"] != int64(testOrgInstall) {
		t.Errorf("installations %#v", inst)
	}

	// A failure names GitHub's request ID.
	e.gh.SetFaults(fakegithub.Faults{SecondaryRateLimit: 403, RetryAfter: 30})
	defer e.gh.SetFaults(fakegithub.Faults{})
	e.do(logical.ReadOperation, "token/ci", nil)
	resp, _ = e.do(logical.ReadOperation, "status", nil)
	gh = resp.Data["github"].(map[string]any)
	if id, _ := gh["last_failure_request_id"].(string); len(id) < 10 || !strings.Contains(gh["last_error"].(string), id) {
		t.Errorf("the last failure's request ID %q is not in %q", id, gh["last_error"])
	}

	out, _ := json.Marshal(resp.Data)
	lines := strings.Split(strings.TrimSpace(testKeyPEM), "\n")
	for _, secret := range append(lines[1:len(lines)-1], tok) {
		if strings.Contains(string(out), secret) {
			t.Fatal("the status holds a secret")
		}
	}
}

// roleSeries returns, for every sample of the scrape that carries a role label, that label's value, keyed by
// family.
func roleSeries(families map[string]*dto.MetricFamily) map[string][]string {
	out := map[string][]string{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "role" {
					out[name] = append(out[name], l.GetValue())
				}
			}
		}
	}
	return out
}

// TestMetricsRoleLabelsStayBounded: a caller may name any role in a token path; only roles that exist get a series
// of their own, so made-up names cannot grow the scrape or the plugin's memory. Every other name shares one label
// value, which no role name can take, and a long role name is cut to a bounded label that stays apart from its
// neighbours.
func TestMetricsRoleLabelsStayBounded(t *testing.T) {
	e := newTestEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
	long := strings.Repeat("r", 300)
	e.role(long+"1", map[string]any{"owner": "acme", "permissions": "contents=read"})
	e.role(long+"2", map[string]any{"owner": "acme", "permissions": "contents=read"})
	e.mint("ci")
	for range 2 {
		e.mint(long + "1")
	}
	e.mint(long + "2")

	const madeUp = 150
	for i := range madeUp {
		name := fmt.Sprintf("%s-%d", strings.Repeat("x", 4096), i)
		switch i % 3 {
		case 0:
			e.do(logical.ReadOperation, "token/"+name, nil)
		case 1:
			e.do(logical.UpdateOperation, "token/"+name, map[string]any{"repositories": "api"})
		case 2:
			e.do(logical.ReadOperation, "token/"+name, map[string]any{"ttl": "1m"})
		}
	}
	// An existing role's refused read is still the role's.
	e.do(logical.ReadOperation, "token/ci", map[string]any{"ttl": "1m"})

	text := metricsText(t, e)
	if len(text) > 32<<10 {
		t.Errorf("the scrape is %d bytes after %d made-up role names", len(text), madeUp)
	}
	m := parseMetrics(t, text)
	labels := map[string]bool{}
	series, longest := 0, 0
	for _, values := range roleSeries(m) {
		for _, v := range values {
			series++
			labels[v] = true
			longest = max(longest, len(v))
		}
	}
	if longest > 128 {
		t.Errorf("a role label of %d bytes: at most 128 are kept", longest)
	}
	if len(labels) != 4 || series > 8 {
		t.Errorf("%d series with %d role labels after %d made-up names, want at most 8 with 4: %q", series, len(labels),
			madeUp, slices.Sorted(maps.Keys(labels)))
	}
	if got := sample(m, "github_app_mint_failures_total", map[string]string{"role": "(unknown)", "kind": "invalid_request"}); got != madeUp {
		t.Errorf("made-up names counted under (unknown): %v, want %d", got, madeUp)
	}
	if got := sample(m, "github_app_mint_failures_total", map[string]string{"role": "ci", "kind": "invalid_request"}); got != 1 {
		t.Errorf("the existing role's refused read: %v, want 1", got)
	}

	// The two long names share their first 300 bytes: each keeps a label of its own, stable from mint to mint.
	var longLabels []string
	for _, v := range roleSeries(m)["github_app_tokens_minted_total"] {
		if strings.HasPrefix(v, "rrrr") {
			longLabels = append(longLabels, v)
		}
	}
	if len(longLabels) != 2 || longLabels[0] == longLabels[1] {
		t.Fatalf("labels of the two long roles: %q", longLabels)
	}
	counts := []float64{
		sample(m, "github_app_tokens_minted_total", map[string]string{"role": longLabels[0]}),
		sample(m, "github_app_tokens_minted_total", map[string]string{"role": longLabels[1]}),
	}
	if slices.Sort(counts); counts[0] != 1 || counts[1] != 2 {
		t.Errorf("mints of the two long roles: %v, want 1 and 2", counts)
	}
}

// TestMetricsForgetDeletedRoles: a deleted role's series go from every metric that has a role label, whether the
// role was deleted on this node or on another (which this node hears of through Invalidate); other roles keep
// theirs.
func TestMetricsForgetDeletedRoles(t *testing.T) {
	e := newTestEnv(t)
	tm := e.withTamper()
	e.configure(nil)
	long := strings.Repeat("d", 200)
	for _, name := range []string{"keep", "here", "elsewhere", long} {
		e.role(name, map[string]any{"owner": "acme", "repositories": "api", "permissions": "contents=read"})
		e.mint(name)
		e.do(logical.UpdateOperation, "token/"+name, map[string]any{"repositories": "web"})
		// An over-grant and an answer that does not state the scope put the role in the other vectors.
		tm.set(func(a map[string]any) { a["repository_selection"] = "all" })
		e.do(logical.ReadOperation, "token/"+name, nil)
		tm.set(func(a map[string]any) { delete(a, "permissions") })
		e.do(logical.ReadOperation, "token/"+name, nil)
		tm.set(nil)
	}
	before := roleSeries(parseMetrics(t, metricsText(t, e)))
	labelsOf := func(series map[string][]string) map[string]bool {
		out := map[string]bool{}
		for _, values := range series {
			for _, v := range values {
				out[v] = true
			}
		}
		return out
	}
	if got := labelsOf(before); len(got) != 4 || !got["keep"] || !got["here"] || !got["elsewhere"] {
		t.Fatalf("role labels before the deletes: %q", slices.Sorted(maps.Keys(got)))
	}

	resp, err := e.do(logical.DeleteOperation, "roles/here", nil)
	mustOK(t, resp, err)
	resp, err = e.do(logical.DeleteOperation, "roles/"+long, nil)
	mustOK(t, resp, err)
	// Another node deletes a role: this node's storage changes under it and Vault calls Invalidate.
	if err := e.storage.Delete(context.Background(), "roles/elsewhere"); err != nil {
		t.Fatal(err)
	}
	e.b.invalidate(context.Background(), "roles/elsewhere")

	after := roleSeries(parseMetrics(t, metricsText(t, e)))
	for family, values := range after {
		for _, v := range values {
			if v != "keep" {
				t.Errorf("%s keeps a series for %q after its role was deleted", family, v)
			}
		}
	}
	for family, values := range before {
		if slices.Contains(values, "keep") && !slices.Contains(after[family], "keep") {
			t.Errorf("%s lost the series of the role that was kept", family)
		}
	}
	if len(before) < 4 {
		t.Errorf("only %d metrics had role labels: %v", len(before), slices.Sorted(maps.Keys(before)))
	}
}

// TestRoleLabel: names up to 128 bytes are their own label; longer ones are cut to exactly 128 bytes, keep their
// start, end in '~' and a hash of the whole name (so that names differing only past the cut stay apart), and come
// out the same every time.
func TestRoleLabel(t *testing.T) {
	at := strings.Repeat("a", 128)
	long1, long2 := strings.Repeat("b", 200)+"1", strings.Repeat("b", 200)+"2"
	tests := []struct {
		name, role string
		exists     bool
		check      func(string) bool
	}{
		{"missing", "ci", false, func(l string) bool { return l == "(unknown)" }},
		{"short", "ci", true, func(l string) bool { return l == "ci" }},
		{"128 bytes", at, true, func(l string) bool { return l == at }},
		{"129 bytes", at + "a", true, func(l string) bool {
			return len(l) == 128 && strings.HasPrefix(l, at[:111]+"~") && l != at
		}},
		{"long", long1, true, func(l string) bool {
			return len(l) == 128 && strings.HasPrefix(l, long1[:111]+"~") && l == roleLabel(long1, true) && l != roleLabel(long2, true)
		}},
	}
	for _, tt := range tests {
		if got := roleLabel(tt.role, tt.exists); !tt.check(got) {
			t.Errorf("%s: roleLabel = %q", tt.name, got)
		}
	}
}
