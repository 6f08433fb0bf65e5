// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// overGrantRevokeTimeout bounds the revocation of a token GitHub granted more broadly than asked.
const overGrantRevokeTimeout = 30 * time.Second

// mint is one token mint for a role: what its steps need, resolved once.
type mint struct {
	b        *backend
	s        logical.Storage
	c        *appClient
	roleName string
	role     *role

	// minted is the token returned and its installation, once the mint succeeded: what a pool reads its
	// installation's budget with (installation_budget.go).
	minted         *github.Token
	installationID int64
}

// token mints the token a request asks for.
func (m *mint) token(ctx context.Context, tr tokenRequest) (*logical.Response, error) {
	in, err := m.installation(ctx, len(tr.Repositories) > 0 || len(tr.patterns) > 0)
	if err != nil {
		return nil, err
	}
	in, tr, refused, err := m.resolvePatterns(ctx, in, tr)
	if refused != nil || err != nil {
		return refused, err
	}
	// Whatever narrowing did, a role with a repository limit never asks GitHub for every repository.
	if m.role.limitsRepositories() && len(tr.Repositories)+len(tr.RepositoryIDs) == 0 {
		return nil, fmt.Errorf("role %q: refusing to ask GitHub for every repository on a role limited to some", m.roleName)
	}
	in, misspelled, err := m.spelledAsGitHub(ctx, in, tr.Repositories)
	if err != nil {
		return nil, err
	}
	if len(misspelled) > 0 {
		return (&problems{malformed: misspelled}).response(m.roleName)
	}
	tok, in, err := m.createToken(ctx, in, tr.TokenRequest)
	if err != nil {
		return nil, err
	}
	if err := m.refuseOverGrant(ctx, tr.TokenRequest, tok, in.accountID); err != nil {
		return nil, err
	}
	tok, unstated := m.unstatedScope(tr.TokenRequest, tok)
	resp := m.leaseResponse(in.id, tok, tr.ttl)
	m.minted, m.installationID = tok, in.id
	if unstated != "" {
		resp.AddWarning(unstated)
	}
	m.b.addBotIdentity(ctx, m.c, tok.Token, resp)
	if rl := m.c.gate.RateLimit(); rl.Low() {
		resp.AddWarning(fmt.Sprintf("GitHub's rate limit for the App is low: %d of %d requests left until %s",
			rl.Remaining, rl.Limit, rl.Reset.UTC().Format(time.RFC3339)))
	}
	return resp, nil
}

// installation finds the role's installation. An owner-bound role's is looked up (and cached), and the account it
// is on is pinned on the role at its first mint. needAccount asks for the account of an installation-bound role
// too: the over-grant check places repositories asked by name with it.
func (m *mint) installation(ctx context.Context, needAccount bool) (installation, error) {
	if m.role.Owner != "" {
		return m.ownerInstallation(ctx)
	}
	in := installation{id: m.role.InstallationID}
	if needAccount {
		account, err := m.c.installations.account(ctx, m.c.Client, in.id)
		if err != nil {
			return in, githubError(err, opMint, fmt.Sprintf("finding the account of installation %d for role %q", in.id, m.roleName), adviceArgs{})
		}
		in.accountID = account
	}
	return in, nil
}

// ownerInstallation looks up the installation on the role's owner, and holds it to the account the role is pinned to.
func (m *mint) ownerInstallation(ctx context.Context) (installation, error) {
	in, cached, err := m.c.installations.byOwner(ctx, m.c.Client, m.role.Owner, m.b.now())
	m.b.metrics.installationHit.WithLabelValues(map[bool]string{true: "hit", false: "miss"}[cached]).Inc()
	if err != nil {
		return in, githubError(err, opLookup, fmt.Sprintf("finding the installation of owner %q", m.role.Owner), adviceArgs{owner: m.role.Owner})
	}
	switch {
	case m.role.ownerFromTemplate: // each caller may name another account: nothing to pin (identity_template.go)
	case m.role.AccountID == 0:
		m.pinAccount(ctx, in.accountID)
	case m.role.AccountID != in.accountID:
		return in, &failure{status: http.StatusForbidden, kind: "account_changed", msg: fmt.Sprintf("role %q: owner %q "+
			"now names GitHub account %d, not account %d that the role was pinned to (was the login renamed and taken by "+
			"another account?); no token was minted: if the new account is right, write the role's owner again",
			m.roleName, m.role.Owner, in.accountID, m.role.AccountID)}
	}
	return in, nil
}

// spelledAsGitHub holds the repository names of a token write on a role without a repository limit to the spelling
// GitHub gives them, from the installation's repository list. Such a role has no names of its own to compare with,
// and a policy's denied_parameters compares raw values while GitHub ignores case: "Infra" would pass a policy that
// denies "infra", and reach it. A name the list lacks makes the engine list again (at most once per relistInterval);
// one still missing is refused here rather than passed on, since GitHub might resolve it (a repository added in the
// meantime, in another spelling) to one that a policy names. It returns the installation to mint from (looked up
// again when GitHub no longer knows a cached one) and the refused names, explained.
func (m *mint) spelledAsGitHub(ctx context.Context, in installation, names []string) (installation, []string, error) {
	if m.role.limitsRepositories() || len(names) == 0 {
		return in, nil, nil
	}
	in, list, err := m.repositoryList(ctx, in, false)
	if err != nil {
		return in, nil, err
	}
	in, _, misspelled, err := m.heldToList(ctx, in, list, names)
	return in, misspelled, err
}

// heldToList holds names to the installation's repository list: it returns what is not spelled as GitHub spells
// it, and what the list lacks even after listing again (at most every relistInterval), and the list it used.
func (m *mint) heldToList(ctx context.Context, in installation, list *repositoryList, names []string) (installation, *repositoryList, []string, error) {
	misspelled, missing := list.check(names)
	if len(missing) > 0 {
		var err error
		if in, list, err = m.repositoryList(ctx, in, true); err != nil {
			return in, nil, nil, err
		}
		misspelled, missing = list.check(names)
	}
	for _, name := range missing {
		misspelled = append(misspelled, list.notListed(name, in.id, m.b.now()))
	}
	return in, list, misspelled, nil
}

// pinAccount records on an owner-bound role the account its owner names, at its first mint. It is best effort: a
// mint does not fail because the pin could not be stored, and the next mint tries again.
func (m *mint) pinAccount(ctx context.Context, accountID int64) {
	owner := m.role.Owner
	err := m.b.roles.update(ctx, m.s, m.roleName, func(r *role) *role {
		// The role may have changed since the mint read it.
		if r == nil || r.AccountID != 0 || !strings.EqualFold(r.Owner, owner) || accountID == 0 {
			return nil
		}
		r.AccountID = accountID
		return r
	})
	if err != nil {
		m.b.Logger().Warn("pinning the account of the role's owner failed; the next mint tries again", "role", m.roleName, "error", err)
	}
}

// createToken mints the token. When GitHub no longer knows a cached installation of an owner (the App was
// reinstalled), the owner is looked up again and, if the installation moved, the mint is tried once more.
func (m *mint) createToken(ctx context.Context, in installation, req github.TokenRequest) (*github.Token, installation, error) {
	tok, err := m.c.CreateToken(ctx, in.id, req)
	if again, ok := m.moved(ctx, in, err); ok {
		in = again
		tok, err = m.c.CreateToken(ctx, in.id, req)
	}
	if err != nil {
		return nil, in, githubError(err, opMint, fmt.Sprintf("minting a token for role %q (installation %d)", m.roleName, in.id), adviceArgs{})
	}
	return tok, in, nil
}

// moved looks an owner's installation up again when err says that GitHub no longer knows the cached one (the App was
// reinstalled). It returns the installation found and whether it is another one, worth trying the call again with.
func (m *mint) moved(ctx context.Context, in installation, err error) (installation, bool) {
	if err == nil || m.role.Owner == "" || !installationGone(err) {
		return in, false
	}
	m.c.installations.forget(m.role.Owner)
	again, lerr := m.installation(ctx, false)
	if lerr != nil || again.id == in.id {
		return in, false
	}
	return again, true
}

// installationGone reports whether an error means a cached installation ID may be stale.
func installationGone(err error) bool {
	switch github.KindOf(err) {
	case github.KindNotFound, github.KindBadCredentials, github.KindForbidden, github.KindSuspended:
		return true
	}
	return false
}

// refuseOverGrant revokes a token that carries more than was asked, and says what: such a token must not be
// returned, nor live its hour.
func (m *mint) refuseOverGrant(ctx context.Context, req github.TokenRequest, tok *github.Token, accountID int64) error {
	excess := excessGrant(req, tok, accountID)
	if len(excess) == 0 {
		return nil
	}
	m.b.Logger().Error("GitHub granted more than asked; revoking the token", "role", m.roleName,
		"excess", joinItems(excess), "hashed_token", hashToken(tok.Token))
	// Revoke even if the caller has gone away.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), overGrantRevokeTimeout)
	defer cancel()
	if err := m.c.RevokeToken(rctx, tok.Token); err != nil {
		m.b.Logger().Error("revoking the over-broad token failed", "role", m.roleName, "hashed_token", hashToken(tok.Token), "error", err)
	}
	m.b.metrics.overGrants.WithLabelValues(roleLabel(m.roleName, true)).Inc()
	return &failure{status: http.StatusBadGateway, kind: "over_grant", msg: fmt.Sprintf(
		"GitHub granted more than asked for role %q (%s): the token was revoked and not returned", m.roleName, joinItems(excess))}
}

// excessGrant lists what a token carries beyond the request: permissions not asked, levels above those asked or
// unknown to the engine, repositories not asked or not of the installation's account (accountID; repositories asked
// by ID need no account, IDs being unique across GitHub), a repository selection other than "selected" when
// repositories were asked. A request with no permissions or no repositories asked for everything of that kind.
// GitHub adds metadata=read to every token that reaches repositories, so that one is not an excess. What the answer
// leaves out is no excess (unstatedScope deals with it); what it states is checked all the same.
func excessGrant(req github.TokenRequest, tok *github.Token, accountID int64) []string {
	var excess []string
	if len(req.Permissions) > 0 {
		for _, p := range sortedKeys(tok.Permissions) {
			granted := tok.Permissions[p]
			asked, ok := req.Permissions[p]
			switch {
			case !ok && p == "metadata" && granted == "read":
			case !ok:
				excess = append(excess, "permission "+p)
			case github.LevelRank(granted) == 0 || github.LevelRank(granted) > github.LevelRank(asked):
				excess = append(excess, fmt.Sprintf("permission %s=%s", p, granted))
			}
		}
	}
	if len(req.Repositories) > 0 || len(req.RepositoryIDs) > 0 {
		if tok.RepositorySelection != "selected" && tok.RepositorySelection != "" {
			excess = append(excess, fmt.Sprintf("repository_selection %q", tok.RepositorySelection))
		}
		for _, repo := range tok.Repositories {
			byID := slices.Contains(req.RepositoryIDs, repo.ID)
			byName := repo.Owner.ID == accountID &&
				slices.ContainsFunc(req.Repositories, func(s string) bool { return strings.EqualFold(s, repo.Name) })
			if !byID && !byName {
				excess = append(excess, "repository "+cmp.Or(repo.FullName, repo.Name))
			}
		}
	}
	return excess
}

// unstatedScope deals with a token answer that leaves out part of the token's scope, as GitHub Enterprise Server has
// been seen to do: its permissions or repository selection, or the repositories asked for. GitHub enforces what was
// asked all the same, so the token is no over-grant, but the check could not be made: it is returned stating what
// was asked where GitHub did not say, with a warning for the caller, a log line with its hash, and a count. It
// returns the token to lease (tok itself when the answer stated everything) and the warning.
func (m *mint) unstatedScope(req github.TokenRequest, tok *github.Token) (*github.Token, string) {
	asksRepositories := len(req.Repositories)+len(req.RepositoryIDs) > 0
	stated := *tok
	var missing []string
	if tok.Permissions == nil {
		missing = append(missing, "permissions")
		if len(req.Permissions) > 0 {
			stated.Permissions = maps.Clone(req.Permissions)
		}
	}
	if tok.RepositorySelection == "" {
		missing = append(missing, "repository_selection")
		if asksRepositories {
			stated.RepositorySelection = "selected"
		}
	}
	if asksRepositories && tok.Repositories == nil {
		missing = append(missing, "repositories")
		// Repositories asked by ID have no name to show.
		for _, name := range req.Repositories {
			stated.Repositories = append(stated.Repositories, github.Repository{Name: name})
		}
	}
	if len(missing) == 0 {
		return tok, ""
	}
	fields := strings.Join(missing, ", ")
	m.b.Logger().Warn("GitHub's token answer did not state the token's scope; returning the token with what was asked, "+
		"which GitHub enforces", "role", m.roleName, "unstated", fields, "hashed_token", hashToken(tok.Token))
	m.b.metrics.unstatedScopes.WithLabelValues(roleLabel(m.roleName, true)).Inc()
	return &stated, fmt.Sprintf("GitHub's answer did not state the token's %s: the response shows what was asked, "+
		"which GitHub enforces even when its answer does not say so", fields)
}

// leaseResponse wraps a token in a lease whose internal data holds only what revocation needs: the token, where it
// came from, and when GitHub expires it.
func (m *mint) leaseResponse(installationID int64, tok *github.Token, asked time.Duration) *logical.Response {
	ttl, warnings := m.b.leaseTTL(asked, tok.ExpiresAt.Sub(m.b.now()))
	repos := make([]string, len(tok.Repositories))
	for i, repo := range tok.Repositories {
		repos[i] = repo.Name
	}
	resp := m.b.Secret(secretTokenType).Response(map[string]any{
		"token":                tok.Token,
		"expires_at":           tok.ExpiresAt.UTC().Format(time.RFC3339),
		"installation_id":      installationID,
		"permissions":          tok.Permissions,
		"repository_selection": tok.RepositorySelection,
		"repositories":         repos,
		"role":                 m.roleName,
		"hashed_token":         hashToken(tok.Token),
		"app":                  m.c.name,
		"app_id":               m.c.appID,
	}, map[string]any{
		"token":           tok.Token,
		"base_url":        m.c.BaseURL(),
		"installation_id": installationID,
		"role":            m.roleName,
		"app":             m.c.name,
		"expires_at":      tok.ExpiresAt.UTC().Format(time.RFC3339),
	})
	resp.Secret.TTL = ttl
	resp.Secret.MaxTTL = ttl
	resp.Secret.Renewable = false
	resp.Secret.InternalData[leaseDestinationField] = m.c.destination
	for _, w := range warnings {
		resp.AddWarning(w)
	}
	return resp
}

// leaseTTL picks the lease TTL: the asked one (the role's or the request's) or the mount's default, capped to the
// mount's max TTL and the token's remaining life. A cap is worth a warning only when a TTL was asked for: the
// mount's default is usually far above GitHub's hour.
func (b *backend) leaseTTL(asked, remaining time.Duration) (time.Duration, []string) {
	var warnings []string
	maxTTL := b.System().MaxLeaseTTL()
	ttl := asked
	if ttl <= 0 {
		ttl = b.System().DefaultLeaseTTL()
	}
	if maxTTL > 0 && ttl > maxTTL {
		if asked > 0 {
			warnings = append(warnings, fmt.Sprintf("ttl %s capped to the mount's max TTL %s", ttl, maxTTL))
		}
		ttl = maxTTL
	}
	// A Vault clock far ahead of GitHub's could leave nothing; a lease of 0 would mean the mount's default.
	remaining = max(remaining.Truncate(time.Second), time.Second)
	if ttl <= 0 || ttl > remaining {
		if asked > 0 {
			warnings = append(warnings, fmt.Sprintf("ttl %s capped to the token's remaining lifetime at GitHub (%s)", ttl, remaining))
		}
		ttl = remaining
	}
	return ttl, warnings
}
