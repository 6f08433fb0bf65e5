package githubapp

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
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
the role is refused with 403.
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

// tokenRequest is what one mint asks GitHub for, and the lease it goes under.
type tokenRequest struct {
	github.TokenRequest
	ttl time.Duration
}

// pathTokenRead and pathTokenWrite are one handler: a read names no fields, so narrow gives the role's whole
// scope; a write may ask for less.
func (b *backend) pathTokenRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return b.pathTokenWrite(ctx, req, d)
}

func (b *backend) pathTokenWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("role").(string)
	r, err := b.roles.get(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return logical.ErrorResponse("role %q does not exist", name), nil
	}
	tr, problems, denied := narrow(r, d, b.System().DefaultLeaseTTL)
	if len(problems) > 0 {
		return logical.ErrorResponse("role %q: %s", name, strings.Join(problems, "; ")), nil
	}
	if len(denied) > 0 {
		return nil, logical.CodedError(http.StatusForbidden,
			fmt.Sprintf("role %q does not allow: %s", name, strings.Join(denied, "; ")))
	}
	return b.mint(ctx, req.Storage, name, r, tr)
}

// narrow builds the request of a write to token/<role>: what was asked where given, the role's scope where not.
// problems are malformed input (400); denied lists each item outside the role (403). defaultTTL gives the mount's
// default TTL, which is the role's TTL when the role sets none. It is called only when a write asks for a ttl and the
// role sets none: from a plugin it is a gRPC round trip to Vault, which a plain read must not pay for.
func narrow(r *role, d *framework.FieldData, defaultTTL func() time.Duration) (tokenRequest, []string, []string) {
	tr := tokenRequest{
		TokenRequest: github.TokenRequest{Repositories: r.Repositories, RepositoryIDs: r.RepositoryIDs, Permissions: r.Permissions},
		ttl:          r.TTL,
	}
	var problems, denied []string
	repoLimited := len(r.Repositories) > 0 || len(r.RepositoryIDs) > 0

	names, namesGiven := d.GetOk("repositories")
	ids, idsGiven := d.GetOk("repository_ids")
	if namesGiven || idsGiven {
		tr.Repositories, tr.RepositoryIDs = nil, nil
	}
	if namesGiven {
		var own []string
		for _, n := range names.([]string) {
			// A repository of another owner is outside the role, not malformed.
			if o, _, ok := strings.Cut(strings.TrimSpace(n), "/"); ok && r.Owner != "" && !strings.EqualFold(o, r.Owner) {
				denied = append(denied, fmt.Sprintf("repository %q", strings.TrimSpace(n)))
				continue
			}
			own = append(own, n)
		}
		norm, errs := normalizeRepositories(own, r.Owner)
		problems = append(problems, errs...)
		for _, n := range norm {
			if repoLimited && !slices.ContainsFunc(r.Repositories, func(s string) bool { return strings.EqualFold(s, n) }) {
				denied = append(denied, fmt.Sprintf("repository %q", n))
				continue
			}
			tr.Repositories = append(tr.Repositories, n)
		}
	}
	if idsGiven {
		norm, errs := normalizeRepositoryIDs(ids.([]int))
		problems = append(problems, errs...)
		for _, id := range norm {
			if repoLimited && !slices.Contains(r.RepositoryIDs, id) {
				denied = append(denied, fmt.Sprintf("repository_id %d", id))
				continue
			}
			tr.RepositoryIDs = append(tr.RepositoryIDs, id)
		}
	}
	// An empty list would reach GitHub as "every repository": refuse it rather than widen the token, or fall back
	// to the role's list, which a policy that allows only some names would not expect either.
	if (namesGiven || idsGiven) && len(tr.Repositories)+len(tr.RepositoryIDs) == 0 && len(denied) == 0 {
		problems = append(problems, "repositories and repository_ids name no repository: leave both out to get the role's repositories")
	}
	if n := len(tr.Repositories) + len(tr.RepositoryIDs); n > maxRepositories {
		problems = append(problems, fmt.Sprintf("%d repositories asked: GitHub accepts at most %d in one token", n, maxRepositories))
	}

	reqPerms, _, err := permissionsField(d)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(reqPerms) > 0 {
		perms, errs, _ := normalizePermissions(reqPerms)
		problems = append(problems, errs...)
		tr.Permissions = map[string]string{}
		for _, p := range sortedKeys(perms) {
			level := perms[p]
			if len(r.Permissions) > 0 {
				allowed, ok := r.Permissions[p]
				if !ok {
					denied = append(denied, fmt.Sprintf("permission %s", p))
					continue
				}
				if github.LevelRank(level) > github.LevelRank(allowed) {
					denied = append(denied, fmt.Sprintf("permission %s=%s (the role allows %s)", p, level, allowed))
					continue
				}
			}
			tr.Permissions[p] = level
		}
	}

	if v, ok := d.GetOk("ttl"); ok {
		ttl := time.Duration(v.(int)) * time.Second
		ceiling := r.TTL
		if ceiling <= 0 {
			ceiling = defaultTTL()
		}
		switch {
		case ttl < 0:
			problems = append(problems, fmt.Sprintf("ttl %s is negative: expected a duration such as 10m", ttl))
		case ttl > ceiling && ceiling > 0:
			denied = append(denied, fmt.Sprintf("ttl %s (the role allows %s)", ttl, ceiling))
		case ttl > 0:
			tr.ttl = ttl
		}
	}
	return tr, problems, denied
}

// mint asks GitHub for a token, checks that GitHub granted no more than asked, and wraps it in a lease.
func (b *backend) mint(ctx context.Context, s logical.Storage, roleName string, r *role, tr tokenRequest) (*logical.Response, error) {
	client, _, err := b.getClient(ctx, s)
	if err != nil {
		return nil, err
	}
	if client == nil {
		return logical.ErrorResponse("the engine is not configured: write the App's ID and private key to config first"), nil
	}

	// Whatever narrowing did, a role with a repository limit never asks GitHub for every repository.
	if (len(r.Repositories) > 0 || len(r.RepositoryIDs) > 0) && len(tr.Repositories)+len(tr.RepositoryIDs) == 0 {
		return nil, fmt.Errorf("role %q: refusing to ask GitHub for every repository on a role limited to some", roleName)
	}

	installationID, err := b.installationID(ctx, client, r)
	if err != nil {
		return nil, err
	}
	tok, err := client.CreateToken(ctx, installationID, tr.TokenRequest)
	if err != nil && r.Owner != "" && installationGone(err) {
		// The cached installation may be gone (the App was reinstalled): look it up again and, if it moved, try once
		// more.
		b.installations.forget(r.Owner)
		if id, lerr := b.installationID(ctx, client, r); lerr == nil && id != installationID {
			installationID = id
			tok, err = client.CreateToken(ctx, installationID, tr.TokenRequest)
		}
	}
	if err != nil {
		return nil, githubError(err, fmt.Sprintf("minting a token for role %q (installation %d)", roleName, installationID),
			mintHint(err))
	}
	if excess := excessGrant(tr.TokenRequest, tok); len(excess) > 0 {
		b.Logger().Error("GitHub granted more than asked; revoking the token", "role", roleName,
			"installation_id", installationID, "excess", strings.Join(excess, ", "))
		// Revoke even if the caller has gone away: this token must not live its hour.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), overGrantRevokeTimeout)
		rerr := client.RevokeToken(rctx, tok.Token)
		cancel()
		if rerr != nil {
			b.Logger().Error("revoking the over-broad token failed", "role", roleName, "error", rerr)
		}
		return nil, logical.CodedError(http.StatusBadGateway, fmt.Sprintf(
			"GitHub granted more than asked for role %q (%s): the token was revoked and not returned",
			roleName, strings.Join(excess, ", ")))
	}

	now := b.now()
	ttl, warnings := b.leaseTTL(tr.ttl, tok.ExpiresAt.Sub(now))

	repos := make([]string, len(tok.Repositories))
	for i, repo := range tok.Repositories {
		repos[i] = repo.Name
	}
	sum := sha256.Sum256([]byte(tok.Token))
	resp := b.Secret(secretTokenType).Response(map[string]any{
		"token":                tok.Token,
		"expires_at":           tok.ExpiresAt.UTC().Format(time.RFC3339),
		"installation_id":      installationID,
		"permissions":          tok.Permissions,
		"repository_selection": tok.RepositorySelection,
		"repositories":         repos,
		"role":                 roleName,
		"hashed_token":         base64.StdEncoding.EncodeToString(sum[:]),
	}, map[string]any{
		"token":           tok.Token,
		"base_url":        client.BaseURL(),
		"installation_id": installationID,
		"role":            roleName,
	})
	resp.Secret.TTL = ttl
	resp.Secret.MaxTTL = ttl
	resp.Secret.Renewable = false
	for _, w := range warnings {
		resp.AddWarning(w)
	}
	return resp, nil
}

// leaseTTL picks the lease TTL: the asked one (the role's or the request's) or the mount's default, capped to the
// mount's max TTL and the token's remaining life. A cap is worth a warning only when a TTL was asked for: the
// mount's default is usually far above GitHub's hour.
func (b *backend) leaseTTL(asked, remaining time.Duration) (time.Duration, []string) {
	var warnings []string
	ttl := asked
	if ttl <= 0 {
		ttl = b.System().DefaultLeaseTTL()
	}
	if maxTTL := b.System().MaxLeaseTTL(); maxTTL > 0 && ttl > maxTTL {
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

// excessGrant lists what a token carries beyond the request: permissions not asked, levels above those asked,
// repositories not asked. A request with no permissions or no repositories asked for everything of that kind.
// GitHub adds metadata=read to every token that reaches repositories, so that one is not an excess.
func excessGrant(req github.TokenRequest, tok *github.Token) []string {
	var excess []string
	if len(req.Permissions) > 0 {
		for _, p := range sortedKeys(tok.Permissions) {
			asked, ok := req.Permissions[p]
			switch {
			case !ok && p == "metadata" && tok.Permissions[p] == "read":
			case !ok:
				excess = append(excess, "permission "+p)
			case github.LevelRank(tok.Permissions[p]) > github.LevelRank(asked):
				excess = append(excess, fmt.Sprintf("permission %s=%s", p, tok.Permissions[p]))
			}
		}
	}
	if len(req.Repositories) > 0 || len(req.RepositoryIDs) > 0 {
		if tok.RepositorySelection != "selected" {
			excess = append(excess, fmt.Sprintf("repository_selection %q", tok.RepositorySelection))
		}
		for _, repo := range tok.Repositories {
			byName := slices.ContainsFunc(req.Repositories, func(s string) bool { return strings.EqualFold(s, repo.Name) })
			if !byName && !slices.Contains(req.RepositoryIDs, repo.ID) {
				excess = append(excess, "repository "+repo.Name)
			}
		}
	}
	return excess
}

// installationID returns the role's installation, looking up an owner's through the cache.
func (b *backend) installationID(ctx context.Context, client *github.Client, r *role) (int64, error) {
	if r.Owner == "" {
		return r.InstallationID, nil
	}
	id, err := b.installations.resolve(ctx, client, r.Owner, b.now())
	if err != nil {
		hint := ""
		if github.KindOf(err) == github.KindNotFound {
			hint = fmt.Sprintf("check that the App is installed on %q (LIST installations shows where it is)", r.Owner)
		}
		return 0, githubError(err, fmt.Sprintf("finding the installation of owner %q", r.Owner), hint)
	}
	return id, nil
}

// installationGone reports whether an error means a cached installation ID may be stale.
func installationGone(err error) bool {
	switch github.KindOf(err) {
	case github.KindNotFound, github.KindBadCredentials, github.KindForbidden, github.KindSuspended:
		return true
	}
	return false
}

func mintHint(err error) string {
	var gerr *github.Error
	if !errors.As(err, &gerr) {
		return ""
	}
	switch {
	case gerr.Kind == github.KindValidation && strings.Contains(gerr.Message, "repository"):
		return "check the role's repositories and repository_ids against what the installation can reach"
	case gerr.Kind == github.KindValidation && strings.Contains(gerr.Message, "permissions"):
		return "check the role's permissions against those granted to the installation in the App's settings"
	case gerr.Kind == github.KindNotFound:
		return "check the role's installation_id (LIST installations shows the App's installations)"
	}
	return ""
}
