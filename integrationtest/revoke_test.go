package integrationtest

import (
	"testing"
	"time"
)

// TestRevokePrefix revokes every lease of a role at once, the way an operator answers a leak, and checks that
// every token is dead at GitHub when the command returns.
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
}
