// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRevokePrefix revokes every lease of a role at once, the way an operator answers a leak, and checks that
// every token is dead at GitHub when the command returns; also after the config was replaced at the same base_url
// by one with another proxy, which sees none of the earlier tokens.
func TestRevokePrefix(t *testing.T) {
	s := requireStack(t)
	v, gh := s.vault, s.gh
	mount := v.newMount(t, s.bins.pluginVersion)
	v.configure(t, mount, gh)
	v.cli(t, "write", mount+"/roles/ci", "owner="+acmeOwner, "repositories=api", "permissions=contents=read", "ttl=10m")
	v.cli(t, "write", mount+"/roles/other", "owner="+acmeOwner, "repositories=web", "permissions=contents=read", "ttl=10m")

	var tokens []string
	for range 5 {
		out := v.mintCLI(t, v.rootToken, mount+"/token/ci")
		gh.mustReach(t, out.Data.Token, "api")
		tokens = append(tokens, out.Data.Token)
	}
	// A token of another role, which the prefix does not cover.
	other := v.mintCLI(t, v.rootToken, mount+"/token/other")
	if got := len(v.leasesUnder(t, mount+"/token/ci/")); got != 5 {
		t.Fatalf("%d leases under %s/token/ci/, want 5", got, mount)
	}

	// Someone who may write config but holds no App key replaces it at the same base_url with their own proxy
	// and key (the proxy answers GET /app, so the write verifies). The tokens minted before must not reach it.
	proxy := newRecordingProxy(t)
	otherKey := filepath.Join(t.TempDir(), "other.pem")
	writeOtherKey(t, otherKey)
	v.cli(t, "write", mount+"/config", "base_url="+gh.url, "proxy_url="+proxy.srv.URL, "private_key=@"+otherKey)
	if seen := proxy.requests(); len(seen) == 0 {
		t.Fatal("the config write was not verified through the new proxy: the test does not take over as intended")
	}

	// -sync: the command returns once every revocation has run, so no polling is needed afterwards.
	v.cli(t, "lease", "revoke", "-sync", "-prefix", mount+"/token/ci")

	for i, tok := range tokens {
		status, _, err := gh.reach(tok)
		if err != nil {
			t.Fatal(err)
		}
		if status != 401 {
			t.Errorf("token %d of 5: the emulator answers HTTP %d after the revocation, want 401", i+1, status)
		}
		if st := gh.status(t, tok); !st.Revoked {
			t.Errorf("token %d of 5: the emulator has no revocation for it (expired=%v)", i+1, st.Expired)
		}
	}
	if got := v.leasesUnder(t, mount+"/token/ci/"); len(got) != 0 {
		t.Errorf("%d leases left under %s/token/ci/", len(got), mount)
	}
	gh.mustReach(t, other.Data.Token, "web")

	// And a lease revoked on its own, without -sync, within a few seconds.
	v.cli(t, "lease", "revoke", other.LeaseID)
	gh.waitDead(t, other.Data.Token, 10*time.Second, "the token of role other after vault lease revoke")
	if seen := proxy.requests(); len(seen) != 0 {
		t.Errorf("the replacing config's proxy saw %v", seen)
	}
}

// recordingProxy is the proxy of someone who may write config but holds no App key: it answers GET /app as the App
// would, every other request 204 (what GitHub answers a revocation), and records what it sees. It serves plain-http
// requests in absolute form, as the emulator's base URL is http.
type recordingProxy struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []string
}

func newRecordingProxy(t *testing.T) *recordingProxy {
	t.Helper()
	p := &recordingProxy{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen = append(p.seen, r.Method+" "+r.URL.Path)
		p.mu.Unlock()
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/app") {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":%d,"slug":"vault-test","name":"Vault Test"}`, appID)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// requests returns what the proxy has seen and forgets it.
func (p *recordingProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := p.seen
	p.seen = nil
	return seen
}

// TestRevocationAtTheEdges lets leases end while GitHub is unreachable:
//   - a lease whose revocation fails is retried by Vault, and after the outage its token is revoked at GitHub;
//     nothing becomes irrevocable when the outage is shorter than Vault's retry window (six attempts, about ten
//     minutes);
//   - a lease whose token has expired by the time Vault retries ends without a call to GitHub;
//   - vault lease revoke -force removes a lease whose revocation fails; its token lives until its expires_at.
func TestRevocationAtTheEdges(t *testing.T) {
	s := requireStack(t)
	v, gh := s.vault, s.gh
	mount := v.newMount(t, s.bins.pluginVersion)
	v.configure(t, mount, gh)
	v.cli(t, "write", mount+"/roles/short", "owner="+acmeOwner, "repositories=api", "permissions=contents=read", "ttl=3s")
	v.cli(t, "write", mount+"/roles/long", "owner="+acmeOwner, "repositories=api", "permissions=contents=read", "ttl=10m")

	// A token GitHub expires after 4 s, minted before the token lifetime goes back to an hour.
	gh.admin(t, http.MethodPut, "/_fake/token-lifetime", map[string]string{"token_lifetime": "4s"}, nil)
	expiring := v.mintCLI(t, v.rootToken, mount+"/token/short")
	gh.admin(t, http.MethodPut, "/_fake/token-lifetime", map[string]string{"token_lifetime": "1h"}, nil)
	retried := v.mintCLI(t, v.rootToken, mount+"/token/short")
	forced := v.mintCLI(t, v.rootToken, mount+"/token/long")

	// GitHub goes away for 15 s: both short leases end during the outage and their revocations fail.
	gh.setFaults(t, map[string]any{"outage_for": "15s"})
	outageEnd := time.Now().Add(15 * time.Second)

	// An operator gives up on a lease: -force removes it from Vault although GitHub cannot be told.
	v.cli(t, "lease", "revoke", "-force", "-prefix", mount+"/token/long")
	if _, err := v.leaseExpiry(t, forced.LeaseID); err == nil {
		t.Error("the lease revoked with -force is still known to Vault")
	}

	time.Sleep(time.Until(outageEnd))
	before := gh.stats(t).Calls["DELETE /installation/token"]
	eventually(t, 75*time.Second, time.Second, "both leases end after the outage", func() error {
		if left := v.leasesUnder(t, mount+"/token/short/"); len(left) != 0 {
			return fmt.Errorf("%d leases left under %s/token/short/", len(left), mount)
		}
		return nil
	})
	t.Logf("both leases ended %s after the outage", time.Since(outageEnd).Round(time.Second))
	if st := gh.status(t, retried.Data.Token); !st.Revoked {
		t.Errorf("the token whose revocation Vault retried is not revoked at GitHub (expired %v)", st.Expired)
	}
	if st := gh.status(t, expiring.Data.Token); st.Revoked || !st.Expired {
		t.Errorf("the expired token: revoked %v, expired %v; want expired, and no revocation call", st.Revoked, st.Expired)
	}
	if calls := gh.stats(t).Calls["DELETE /installation/token"] - before; calls != 1 {
		t.Errorf("%d revocation calls reached GitHub after the outage, want 1 (the expired token needs none)", calls)
	}
	// docs/production.md shows these two reads for finding irrevocable leases.
	var count struct {
		Data struct {
			LeaseCount int `json:"lease_count"`
		} `json:"data"`
	}
	v.cliJSON(t, v.rootToken, &count, "read", "-format=json", "sys/leases/count", "type=irrevocable")
	var list struct {
		Data struct {
			Leases []any `json:"leases"`
		} `json:"data"`
	}
	v.cliJSON(t, v.rootToken, &list, "read", "-format=json", "sys/leases", "type=irrevocable")
	if count.Data.LeaseCount != 0 || len(list.Data.Leases) != 0 {
		t.Errorf("%d irrevocable leases (%d listed), want 0", count.Data.LeaseCount, len(list.Data.Leases))
	}

	// The forced lease's token is still alive at GitHub: -force tells Vault, not GitHub.
	gh.mustReach(t, forced.Data.Token, "api")
	var metrics struct {
		Data struct {
			Metrics map[string]struct {
				Samples []struct {
					Labels map[string]string `json:"labels"`
					Value  float64           `json:"value"`
				} `json:"samples"`
			} `json:"metrics"`
		} `json:"data"`
	}
	v.cliJSON(t, v.rootToken, &metrics, "read", "-format=json", mount+"/metrics")
	outcomes := map[string]float64{}
	for _, smp := range metrics.Data.Metrics["github_app_revocations_total"].Samples {
		outcomes[smp.Labels["outcome"]] = smp.Value
	}
	t.Logf("revocations by outcome: %v", outcomes)
	if outcomes["skipped"] != 1 || outcomes["succeeded"] != 1 || outcomes["failed"] < 2 {
		t.Errorf("revocations by outcome %v: want 1 skipped, 1 succeeded, at least 2 failed", outcomes)
	}
}
