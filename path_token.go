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

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

const (
	pathTokenHelpSynopsis    = "Mint a GitHub App installation access token for a role."
	pathTokenHelpDescription = `
Reading token/<role> mints an installation access token with the role's whole scope and returns it under a Vault
lease; when the lease ends (expiry or revocation) the token is revoked at GitHub.

Writing to token/<role> (which needs the update capability) asks for less than the role allows: a subset of its
repositories, repository IDs and permissions (a permission's level may be lower), and a shorter ttl. Anything outside
the role is refused with 403. Each item must be spelled as Vault policies would name it: repository names as the role
stores them (no owner prefix, same case) or, on a role without repositories, as GitHub spells them; permissions as
name=level with lower-case levels (a string or a list, not an object); repository IDs as strings of decimal digits
(a JSON number never matches a policy). Other spellings are refused with 400 and the form to use. A read takes no
parameters.
`
)

func pathToken(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "token/" + framework.GenericNameRegex("role"),
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
		},
		Fields: map[string]*framework.FieldSchema{
			"role": {
				Type:        framework.TypeString,
				Description: "The name of the role to mint a token for.",
				Required:    true,
			},
			"repositories": {
				Type:        framework.TypeCommaStringSlice,
				Description: "Names of repositories the token should cover: a subset of the role's. Leave out for the role's.",
			},
			"repository_ids": {
				Type:        framework.TypeCommaIntSlice,
				Description: "IDs of repositories the token should cover: a subset of the role's. Leave out for the role's.",
			},
			"permissions": {
				Type:        framework.TypeKVPairs,
				Description: "Permissions the token should carry, as name=level pairs, each within the role's. Leave out for the role's.",
			},
			"ttl": {
				Type:        framework.TypeDurationSecond,
				Description: "The lease TTL, at most the role's. Leave out for the role's.",
			},
		},
		// A write asks for less than a read gives, so it must need the update capability, never create.
		ExistenceCheck: func(context.Context, *logical.Request, *framework.FieldData) (bool, error) { return true, nil },
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:                    b.pathTokenRead,
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationVerb:   "generate",
					OperationSuffix: "token",
				},
			},
			logical.UpdateOperation: &framework.PathOperation{
				Callback:                    b.pathTokenWrite,
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationVerb:   "generate",
					OperationSuffix: "token-with-parameters",
				},
			},
		},
		HelpSynopsis:    pathTokenHelpSynopsis,
		HelpDescription: strings.TrimSpace(pathTokenHelpDescription),
	}
}

// overGrantRevokeTimeout bounds the revocation of a token GitHub granted more broadly than asked.
const overGrantRevokeTimeout = 30 * time.Second

// narrowingFields are the fields of a token write, which ask for less than the role.
var narrowingFields = []string{"repositories", "repository_ids", "permissions", "ttl"}

// tokenRequest is what one mint asks GitHub for, and the lease it goes under.
type tokenRequest struct {
	github.TokenRequest
	ttl time.Duration
}

// request is the role's whole scope.
func (r *role) request() tokenRequest {
	return tokenRequest{
		TokenRequest: github.TokenRequest{Repositories: r.Repositories, RepositoryIDs: r.RepositoryIDs, Permissions: r.Permissions},
		ttl:          r.TTL,
	}
}

// refusal is why a token write is refused: malformed input (400) or items outside the role (403).
type refusal struct {
	malformed, denied []string
}

func (f *refusal) add(malformed, denied []string) {
	f.malformed = append(f.malformed, malformed...)
	f.denied = append(f.denied, denied...)
}

func (f *refusal) empty() bool { return len(f.malformed) == 0 && len(f.denied) == 0 }

func (f *refusal) response(roleName string) (*logical.Response, error) {
	if len(f.malformed) > 0 {
		return logical.ErrorResponse("role %q: %s", roleName, joinItems(f.malformed)), nil
	}
	return nil, logical.CodedError(http.StatusForbidden, fmt.Sprintf("role %q does not allow: %s", roleName, joinItems(f.denied)))
}

// pathTokenRead mints a token with the role's whole scope. Narrowing is a write, governed by the update capability,
// so a read with parameters is refused rather than narrowed quietly.
func (b *backend) pathTokenRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (resp *logical.Response, err error) {
	name := d.Get("role").(string)
	exists := false
	defer func() { b.metrics.mintOutcome(name, exists, err, resp) }()
	var given []string
	for _, f := range narrowingFields {
		if _, ok := d.Raw[f]; ok {
			given = append(given, f)
		}
	}
	if len(given) > 0 {
		// Only to label the refusal in metrics; an error here leaves the role unknown.
		r, _ := b.roles.get(ctx, req.Storage, name)
		exists = r != nil
		return logical.ErrorResponse("a read of token/%s mints the role's whole scope and takes no parameters (%s given): "+
			"to ask for less, write them to the path (vault write %stoken/%s %s=...), which needs the update capability",
			name, strings.Join(given, ", "), req.MountPoint, name, given[0]), nil
	}
	r, err := b.roles.get(ctx, req.Storage, name)
	exists = r != nil
	if err != nil || r == nil {
		return noRole(name, err)
	}
	if r, err = b.renderRole(req, name, r); err != nil {
		return nil, err
	}
	if resp, err = b.mint(ctx, req.Storage, name, r, r.request()); err != nil {
		return failed(err)
	}
	return resp, nil
}

// pathTokenWrite mints a token with what the write asks for, within the role.
func (b *backend) pathTokenWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (resp *logical.Response, err error) {
	name := d.Get("role").(string)
	exists := false
	defer func() { b.metrics.mintOutcome(name, exists, err, resp) }()
	r, err := b.roles.get(ctx, req.Storage, name)
	exists = r != nil
	if err != nil || r == nil {
		return noRole(name, err)
	}
	if r, err = b.renderRole(req, name, r); err != nil {
		return nil, err
	}
	tr, refused := narrow(r, d, b.System().DefaultLeaseTTL)
	if refused != nil {
		return refused.response(name)
	}
	if resp, err = b.mint(ctx, req.Storage, name, r, tr); err != nil {
		return failed(err)
	}
	return resp, nil
}

func noRole(name string, err error) (*logical.Response, error) {
	if err != nil {
		return nil, err
	}
	return logical.ErrorResponse("role %q does not exist", name), nil
}

// narrow builds the request of a token write: what was asked where given, the role's scope where not. defaultTTL
// gives the mount's default TTL, which is the role's when the role sets none.
func narrow(r *role, d *framework.FieldData, defaultTTL func() time.Duration) (tokenRequest, *refusal) {
	tr := r.request()
	var f refusal
	rawNames, namesGiven := d.Raw["repositories"]
	rawIDs, idsGiven := d.Raw["repository_ids"]
	if namesGiven || idsGiven {
		names, malformed, denied := askedRepositories(r, rawNames)
		f.add(malformed, denied)
		ids, malformed, denied := askedRepositoryIDs(r, rawIDs)
		f.add(malformed, denied)
		tr.Repositories, tr.RepositoryIDs = names, ids
		// An empty list would reach GitHub as "every repository": refuse it rather than widen the token, or fall
		// back to the role's list, which a policy that allows only some names would not expect either.
		switch n := len(names) + len(ids); {
		case n == 0 && f.empty():
			f.add([]string{"repositories and repository_ids name no repository: leave both out to get the role's repositories"}, nil)
		case n > maxRepositories:
			f.add([]string{fmt.Sprintf("%d repositories asked: GitHub accepts at most %d in one token", n, maxRepositories)}, nil)
		}
	}
	if raw, ok := d.Raw["permissions"]; ok {
		perms, malformed, denied := askedPermissions(r, raw)
		f.add(malformed, denied)
		if len(perms) > 0 {
			tr.Permissions = perms
		}
	}
	if v, ok := d.GetOk("ttl"); ok {
		ttl := time.Duration(v.(int)) * time.Second
		ceiling := r.TTL
		if ceiling <= 0 {
			ceiling = defaultTTL()
		}
		switch {
		case ttl > ceiling && ceiling > 0:
			f.add(nil, []string{fmt.Sprintf("ttl %s (the role allows %s)", ttl, ceiling)})
		case ttl > 0:
			tr.ttl = ttl
		}
	}
	if f.empty() {
		return tr, nil
	}
	return tr, &f
}

// mint asks GitHub for a token, checks that GitHub granted no more than asked, and wraps it in a lease.
func (b *backend) mint(ctx context.Context, s logical.Storage, roleName string, r *role, tr tokenRequest) (*logical.Response, error) {
	c, err := b.getClient(ctx, s)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return logical.ErrorResponse("the engine is not configured: write the App's ID and private key to config first"), nil
	}
	// Whatever narrowing did, a role with a repository limit never asks GitHub for every repository.
	if r.limitsRepositories() && len(tr.Repositories)+len(tr.RepositoryIDs) == 0 {
		return nil, fmt.Errorf("role %q: refusing to ask GitHub for every repository on a role limited to some", roleName)
	}
	in, err := b.installation(ctx, s, c, roleName, r, len(tr.Repositories) > 0)
	if err != nil {
		return nil, err
	}
	in, misspelled, err := b.spelledAsGitHub(ctx, s, c, roleName, r, in, tr.Repositories)
	if err != nil {
		return nil, err
	}
	if len(misspelled) > 0 {
		return (&refusal{malformed: misspelled}).response(roleName)
	}
	tok, in, err := b.createToken(ctx, s, c, roleName, r, in, tr.TokenRequest)
	if err != nil {
		return nil, err
	}
	if err := b.refuseOverGrant(ctx, c, roleName, tr.TokenRequest, tok, in.accountID); err != nil {
		return nil, err
	}
	tok, unstated := b.unstatedScope(roleName, tr.TokenRequest, tok)
	resp := b.leaseResponse(roleName, c.BaseURL(), in.id, tok, tr.ttl)
	resp.Secret.InternalData[leaseDestinationField] = c.destination
	if unstated != "" {
		resp.AddWarning(unstated)
	}
	b.addBotIdentity(ctx, c, tok.Token, resp)
	if rl := c.Gate().RateLimit(); rl.Low() {
		resp.AddWarning(fmt.Sprintf("GitHub's rate limit for the App is low: %d of %d requests left until %s",
			rl.Remaining, rl.Limit, rl.Reset.UTC().Format(time.RFC3339)))
	}
	return resp, nil
}

// installation finds the role's installation. An owner-bound role's is looked up (and cached), and the account it
// is on is pinned on the role at its first mint. needAccount asks for the account of an installation-bound role
// too: the over-grant check places repositories asked by name with it.
func (b *backend) installation(ctx context.Context, s logical.Storage, c *appClient, roleName string, r *role, needAccount bool) (installation, error) {
	if r.Owner == "" {
		in := installation{id: r.InstallationID}
		if needAccount {
			account, err := c.installations.account(ctx, c.Client, in.id)
			if err != nil {
				return in, githubError(err, opMint, fmt.Sprintf("finding the account of installation %d for role %q", in.id, roleName), adviceArgs{})
			}
			in.accountID = account
		}
		return in, nil
	}
	in, cached, err := c.installations.byOwner(ctx, c.Client, r.Owner, b.now())
	b.metrics.installationHit.WithLabelValues(map[bool]string{true: "hit", false: "miss"}[cached]).Inc()
	if err != nil {
		return in, githubError(err, opLookup, fmt.Sprintf("finding the installation of owner %q", r.Owner), adviceArgs{owner: r.Owner})
	}
	switch {
	case r.ownerFromTemplate: // each caller may name another account: nothing to pin (identity_template.go)
	case r.AccountID == 0:
		b.pinAccount(ctx, s, roleName, r.Owner, in.accountID)
	case r.AccountID != in.accountID:
		return in, &failure{status: http.StatusForbidden, kind: "account_changed", msg: fmt.Sprintf("role %q: owner %q "+
			"now names GitHub account %d, not account %d that the role was pinned to (was the login renamed and taken by "+
			"another account?); no token was minted: if the new account is right, write the role's owner again",
			roleName, r.Owner, in.accountID, r.AccountID)}
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
func (b *backend) spelledAsGitHub(ctx context.Context, s logical.Storage, c *appClient, roleName string, r *role, in installation, names []string) (installation, []string, error) {
	if r.limitsRepositories() || len(names) == 0 {
		return in, nil, nil
	}
	now := b.now()
	list, err := c.repositories.list(ctx, c.Client, in.id, now)
	if err != nil && r.Owner != "" && installationGone(err) {
		c.installations.forget(r.Owner)
		if again, lerr := b.installation(ctx, s, c, roleName, r, false); lerr == nil && again.id != in.id {
			in = again
			list, err = c.repositories.list(ctx, c.Client, in.id, now)
		}
	}
	misspelled, missing := []string(nil), names
	if err == nil {
		misspelled, missing = list.check(names)
	}
	if err == nil && len(missing) > 0 {
		if list, err = c.repositories.relist(ctx, c.Client, in.id, now); err == nil {
			misspelled, missing = list.check(names)
		}
	}
	if err != nil {
		return in, nil, githubError(err, opMint, fmt.Sprintf("listing the repositories of installation %d for role %q", in.id, roleName), adviceArgs{})
	}
	for _, name := range missing {
		misspelled = append(misspelled, list.notListed(name, in.id, now))
	}
	return in, misspelled, nil
}

// pinAccount records on an owner-bound role the account its owner names, at its first mint. It is best effort: a
// mint does not fail because the pin could not be stored, and the next mint tries again.
func (b *backend) pinAccount(ctx context.Context, s logical.Storage, roleName, owner string, accountID int64) {
	lock := locksutil.LockForKey(b.roleLocks, roleName)
	lock.Lock()
	defer lock.Unlock()
	r, err := getRole(ctx, s, roleName)
	// The role may have changed since the mint read it.
	if err != nil || r == nil || r.AccountID != 0 || !strings.EqualFold(r.Owner, owner) || accountID == 0 {
		return
	}
	r.AccountID = accountID
	if err := putRole(ctx, s, roleName, r); err != nil {
		b.Logger().Warn("pinning the account of the role's owner failed; the next mint tries again", "role", roleName, "error", err)
	}
	b.roles.drop(roleName)
}

// createToken mints the token. When GitHub no longer knows a cached installation of an owner (the App was
// reinstalled), the owner is looked up again and, if the installation moved, the mint is tried once more.
func (b *backend) createToken(ctx context.Context, s logical.Storage, c *appClient, roleName string, r *role, in installation, req github.TokenRequest) (*github.Token, installation, error) {
	tok, err := c.CreateToken(ctx, in.id, req)
	if err != nil && r.Owner != "" && installationGone(err) {
		c.installations.forget(r.Owner)
		if again, lerr := b.installation(ctx, s, c, roleName, r, false); lerr == nil && again.id != in.id {
			in = again
			tok, err = c.CreateToken(ctx, in.id, req)
		}
	}
	if err != nil {
		return nil, in, githubError(err, opMint, fmt.Sprintf("minting a token for role %q (installation %d)", roleName, in.id), adviceArgs{})
	}
	return tok, in, nil
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
func (b *backend) refuseOverGrant(ctx context.Context, c *appClient, roleName string, req github.TokenRequest, tok *github.Token, accountID int64) error {
	excess := excessGrant(req, tok, accountID)
	if len(excess) == 0 {
		return nil
	}
	b.Logger().Error("GitHub granted more than asked; revoking the token", "role", roleName,
		"excess", joinItems(excess), "hashed_token", hashToken(tok.Token))
	// Revoke even if the caller has gone away.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), overGrantRevokeTimeout)
	defer cancel()
	if err := c.RevokeToken(rctx, tok.Token); err != nil {
		b.Logger().Error("revoking the over-broad token failed", "role", roleName, "hashed_token", hashToken(tok.Token), "error", err)
	}
	b.metrics.overGrants.WithLabelValues(roleLabel(roleName, true)).Inc()
	return &failure{status: http.StatusBadGateway, kind: "over_grant", msg: fmt.Sprintf(
		"GitHub granted more than asked for role %q (%s): the token was revoked and not returned", roleName, joinItems(excess))}
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
func (b *backend) unstatedScope(roleName string, req github.TokenRequest, tok *github.Token) (*github.Token, string) {
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
	b.Logger().Warn("GitHub's token answer did not state the token's scope; returning the token with what was asked, "+
		"which GitHub enforces", "role", roleName, "unstated", fields, "hashed_token", hashToken(tok.Token))
	b.metrics.unstatedScopes.WithLabelValues(roleLabel(roleName, true)).Inc()
	return &stated, fmt.Sprintf("GitHub's answer did not state the token's %s: the response shows what was asked, "+
		"which GitHub enforces even when its answer does not say so", fields)
}

// leaseResponse wraps a token in a lease whose internal data holds only what revocation needs: the token, where it
// came from, and when GitHub expires it.
func (b *backend) leaseResponse(roleName, baseURL string, installationID int64, tok *github.Token, asked time.Duration) *logical.Response {
	ttl, warnings := b.leaseTTL(asked, tok.ExpiresAt.Sub(b.now()))
	repos := make([]string, len(tok.Repositories))
	for i, repo := range tok.Repositories {
		repos[i] = repo.Name
	}
	resp := b.Secret(secretTokenType).Response(map[string]any{
		"token":                tok.Token,
		"expires_at":           tok.ExpiresAt.UTC().Format(time.RFC3339),
		"installation_id":      installationID,
		"permissions":          tok.Permissions,
		"repository_selection": tok.RepositorySelection,
		"repositories":         repos,
		"role":                 roleName,
		"hashed_token":         hashToken(tok.Token),
	}, map[string]any{
		"token":           tok.Token,
		"base_url":        baseURL,
		"installation_id": installationID,
		"role":            roleName,
		"expires_at":      tok.ExpiresAt.UTC().Format(time.RFC3339),
	})
	resp.Secret.TTL = ttl
	resp.Secret.MaxTTL = ttl
	resp.Secret.Renewable = false
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
