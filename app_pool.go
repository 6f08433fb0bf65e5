// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// A role may name several Apps, each installed on the role's owner: every installation has its own rate limit, so a
// pool of Apps multiplies what a fleet of CI jobs may spend. A mint goes to one App, picked by the role's
// app_selection, and passes over an App that cannot serve now without making the caller wait or fail.
const (
	// appSelectionBudget picks the App whose installation has the most requests left, as last seen.
	appSelectionBudget = "budget"
	// appSelectionOrdered picks the first App of the role's list that can serve.
	appSelectionOrdered = "ordered"
	// maxRoleApps bounds a role's Apps: each is a client, and a mint may try them all.
	maxRoleApps = 32
	// unusableFor is how long a pool passes over an App whose client could not be built before trying it again.
	unusableFor = 5 * time.Second
)

// unusableApp is an App whose client could not be built, and until when pools pass it over.
type unusableApp struct {
	err   error
	until time.Time
}

// Why an App was passed over, for messages and the app_skips_total metric.
const (
	skipRateLimited   = "rate_limited"
	skipUnavailable   = "unavailable"
	skipNotConfigured = "not_configured"
	skipNotInstalled  = "not_installed"
	skipFailed        = "failed"
)

// skip is an App passed over by a mint, and why.
type skip struct {
	app    string
	reason string
	err    *failure
}

// mintToken mints a token for a role from one of its Apps.
func (b *backend) mintToken(ctx context.Context, s logical.Storage, roleName string, r *role, tr tokenRequest) (*logical.Response, error) {
	names := r.appNames()
	if len(names) > 1 {
		return b.mintFromPool(ctx, s, roleName, r, tr, names)
	}
	c, err := b.appClientFor(ctx, s, names[0])
	if err != nil {
		return nil, err
	}
	if c == nil {
		return logical.ErrorResponse(notConfigured(names[0])), nil
	}
	m := &mint{b: b, s: s, c: c, roleName: roleName, role: r}
	return m.token(ctx, tr)
}

// mintFromPool tries the role's Apps in the order its app_selection gives, passing over each that cannot serve, and
// answers with the first token minted; when none can serve, with the most useful of their errors. Calls to GitHub
// do not wait for a limit to end or for a probe of a failing GitHub: the next App is the better wait.
func (b *backend) mintFromPool(ctx context.Context, s logical.Storage, roleName string, r *role, tr tokenRequest, names []string) (*logical.Response, error) {
	owner := strings.ToLower(r.Owner)
	budget := r.appSelection() == appSelectionBudget
	order := names
	var built map[string]*appClient
	if budget {
		// Ranked by what the clients built so far know; an App is only built when its turn comes.
		built = b.cachedClients()
		order = b.byBudget(names, built, owner)
	}

	var skips []skip
	noWait := github.WithoutWaiting(ctx)
	for _, name := range order {
		c, err := b.poolClient(ctx, s, name)
		var f *failure
		switch {
		case errors.As(err, &f):
			// A KMS or HSM signer that does not open: passed over like an App that fails.
			skips = append(skips, b.passOver(roleName, name, skipFailed, f))
			continue
		case err != nil:
			return nil, err
		case c == nil:
			skips = append(skips, b.passOver(roleName, name, skipNotConfigured, &failure{
				status: http.StatusBadRequest, kind: skipNotConfigured, msg: notConfigured(name)}))
			continue
		}
		m := &mint{b: b, s: s, c: c, roleName: roleName, role: r}
		resp, err := m.token(noWait, tr)
		if err != nil {
			reason, f := skipReason(err)
			if reason == "" {
				return nil, err
			}
			skips = append(skips, b.passOver(roleName, name, reason, f))
			continue
		}
		if budget && m.minted != nil {
			now := b.now()
			if left, _, ok := c.budgets.remaining(owner, now); ok && left == 0 {
				// The App that could serve with the most left has nothing left: the token is valid, but GitHub
				// refuses its calls until the window ends.
				resp.AddWarning(fmt.Sprintf("the installation of App %q on %s, which minted this token, has spent its "+
					"rate limit as last seen, as have the role's other Apps that could serve: calls with this token "+
					"are refused until %s", c.name, r.Owner, c.budgets.reset(owner).UTC().Format(time.RFC3339)))
			}
			c.budgets.offer(owner, m.installationID, m.minted, now)
			built[name] = c // this mint may have built it
			b.refreshBudgets(owner, names, built)
		}
		return resp, nil
	}
	return nil, noAppCouldServe(roleName, skips)
}

// poolClient is appClientFor for a mint of a role with several Apps. An App whose client could not be built (its KMS
// or HSM signer did not open) is not tried again for unusableFor: every mint would otherwise reach that KMS, holding
// the backend's lock, while other Apps serve.
func (b *backend) poolClient(ctx context.Context, s logical.Storage, name string) (*appClient, error) {
	b.unusableMu.Lock()
	u, ok := b.unusable[name]
	b.unusableMu.Unlock()
	if ok && b.now().Before(u.until) {
		return nil, u.err
	}
	c, err := b.appClientFor(ctx, s, name)
	var f *failure
	if errors.As(err, &f) {
		b.unusableMu.Lock()
		b.unusable[name] = unusableApp{err: err, until: b.now().Add(unusableFor)}
		b.unusableMu.Unlock()
	}
	return c, err
}

// byBudget orders Apps by the requests left to their installation on owner, most first, as last seen, Apps that
// GitHub has limited last. An App whose budget is not known (not read yet, or its window has
// ended since) ranks as full. Apps of equal rank are taken in
// turn, so that a pool whose budgets are all unknown spreads its first mints, and learns every budget.
func (b *backend) byBudget(names []string, clients map[string]*appClient, owner string) []string {
	now := b.now()
	left := make(map[string]int, len(names))
	// full is what an App of unknown budget ranks as: the largest limit seen among the pool's installations, so that
	// it takes turns with an App known to have all of its budget left.
	full := 0
	for _, name := range names {
		left[name] = -1
		if c := clients[name]; c != nil {
			if n, limit, ok := c.budgets.remaining(owner, now); ok {
				left[name], full = n, max(full, limit)
			}
		}
	}
	if full == 0 {
		full = math.MaxInt
	}
	for name, n := range left {
		if n < 0 {
			left[name] = full
		}
	}
	// An App that GitHub has limited ranks last: its gate would refuse it anyway, and its budget is not what holds it
	// back; it serves again when the limit ends. A failing App keeps its rank: an outage has no announced end, and
	// only the probe that its gate lets through once a second can find it over.
	limited := make(map[string]bool, len(names))
	for _, name := range names {
		if c := clients[name]; c != nil {
			limited[name] = !c.gate.Status().LimitedUntil.IsZero()
		}
	}
	turn := int(b.turn.Add(1) % uint64(len(names)))
	order := append(slices.Clone(names[turn:]), names[:turn]...)
	slices.SortStableFunc(order, func(x, y string) int {
		if limited[x] != limited[y] {
			if limited[x] {
				return 1
			}
			return -1
		}
		return cmp.Compare(left[y], left[x])
	})
	return order
}

// passOver records an App passed over by a mint. An App that is not configured is counted as "(unknown)": labels
// name only the mount's Apps.
func (b *backend) passOver(roleName, app, reason string, f *failure) skip {
	label := app
	if reason == skipNotConfigured {
		label = unknownRoleLabel
	}
	b.metrics.appSkips.WithLabelValues(label, reason).Inc()
	b.Logger().Debug("passing over an App of the role", "role", roleName, "app", app, "reason", reason, "error", f.msg)
	return skip{app: app, reason: reason, err: f}
}

// skipReason says why a failed mint lets the next App try: the App cannot serve now (GitHub limited it, GitHub is
// failing for it, it is not installed on the owner, its installation or credentials were refused, its installation
// lacks what was asked). It returns "" for failures another App would meet as well (the request itself, storage,
// a token refused as over-granted).
func skipReason(err error) (string, *failure) {
	var f *failure
	if !errors.As(err, &f) {
		return "", nil
	}
	switch f.kind {
	case kindLabel(github.KindRateLimited):
		return skipRateLimited, f
	case kindLabel(github.KindUnavailable):
		return skipUnavailable, f
	case kindLabel(github.KindNotFound):
		return skipNotInstalled, f
	case kindLabel(github.KindSuspended), kindLabel(github.KindBadCredentials), kindLabel(github.KindForbidden),
		kindLabel(github.KindValidation), signerFailureKind:
		return skipFailed, f
	}
	return "", nil
}

// noAppCouldServe is the answer when every App of a role was passed over. The most useful error comes first: while
// an App is only limited, 429 with the earliest end of the limits, after which one of them serves again; while GitHub
// fails for one, 502; otherwise the first App's error (its configuration or installation is to be fixed). The message
// names every App and why it was passed over.
func noAppCouldServe(roleName string, skips []skip) error {
	if len(skips) == 0 {
		return fmt.Errorf("role %q: no App to mint from", roleName)
	}
	reasons := make([]string, len(skips))
	var limited, unavailable *failure
	for i, s := range skips {
		reasons[i] = fmt.Sprintf("App %q: %s", s.app, s.err.msg)
		switch {
		case s.reason == skipRateLimited && (limited == nil || earlier(s.err.retryAfter, limited.retryAfter)):
			limited = s.err
		case s.reason == skipUnavailable && unavailable == nil:
			unavailable = s.err
		}
	}
	f := &failure{status: skips[0].err.status, kind: skips[0].err.kind}
	switch {
	case limited != nil && unavailable == nil:
		f.status, f.kind, f.retryAfter = http.StatusTooManyRequests, limited.kind, limited.retryAfter
	case unavailable != nil:
		f.status, f.kind = http.StatusBadGateway, unavailable.kind
	}
	f.msg = fmt.Sprintf("role %q: none of its %d Apps could mint a token: %s", roleName, len(skips), strings.Join(reasons, "; "))
	if f.retryAfter > 0 {
		f.msg += fmt.Sprintf(" (retry after %s)", f.retryAfter.Round(time.Second))
	}
	return f
}

// earlier reports whether a limit ending after x ends before one ending after y; an unknown end (0) is the latest.
func earlier(x, y time.Duration) bool {
	switch {
	case x <= 0:
		return false
	case y <= 0:
		return true
	}
	return x < y
}

// notConfigured says that an App named by a role has no config.
func notConfigured(app string) string {
	if app == defaultAppName {
		return "the engine is not configured: write the App's ID and private key to config first"
	}
	return fmt.Sprintf("App %q is not configured: write its ID and private key to apps/%s", app, app)
}
