// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

const (
	roleStoragePrefix = "roles/"

	// tokenLifetime is how long GitHub's installation tokens live.
	tokenLifetime = time.Hour
)

// role is a stored role: the ceiling of what tokens minted for it may carry.
type role struct {
	InstallationID int64  `json:"installation_id,omitempty"`
	Owner          string `json:"owner,omitempty"`
	// AccountID is the GitHub account Owner named when the role first minted. A login can be renamed and then
	// taken by another account; a role never follows its login to another account without an operator's write.
	AccountID     int64    `json:"account_id,omitempty"`
	Repositories  []string `json:"repositories,omitempty"`
	RepositoryIDs []int64  `json:"repository_ids,omitempty"`
	// RepositoryPatterns match repository names, resolved at each mint (repository_patterns.go).
	RepositoryPatterns []string          `json:"repository_patterns,omitempty"`
	Permissions        map[string]string `json:"permissions,omitempty"`
	TTL                time.Duration     `json:"ttl,omitempty"`

	// Templated lets Owner, Repositories and RepositoryIDTemplates hold identity templates, rendered at each mint
	// from the caller's entity (identity_template.go). On a plain role nothing is ever interpreted.
	Templated bool `json:"templated,omitempty"`
	// RepositoryIDTemplates are the templated entries of repository_ids; literal IDs stay in RepositoryIDs.
	RepositoryIDTemplates []string `json:"repository_id_templates,omitempty"`

	// Apps names the Apps tokens may come from (path_apps.go); empty means the default App alone. AppSelection says
	// how one is picked when there are several (app_pool.go): appSelectionBudget (also when empty) or
	// appSelectionOrdered.
	Apps         []string `json:"apps,omitempty"`
	AppSelection string   `json:"app_selection,omitempty"`

	// ownerFromTemplate marks a role rendered for one request whose owner came from a template: it names no one
	// account to pin. Never stored.
	ownerFromTemplate bool
}

// limitsRepositories reports whether the role names repositories or patterns of them; without, its tokens reach
// every repository of the installation.
func (r *role) limitsRepositories() bool {
	return len(r.Repositories) > 0 || len(r.RepositoryIDs) > 0 || len(r.RepositoryIDTemplates) > 0 ||
		len(r.RepositoryPatterns) > 0
}

const (
	pathRolesHelpSynopsis    = "Manage roles: which installation, repositories and permissions tokens may carry."
	pathRolesHelpDescription = `
A role binds an installation of the App (by installation_id, or by the owner login it is installed on) to the
repositories and permissions that tokens minted for the role may carry, and to the lease TTL of those tokens.

Empty repositories, repository_ids and repository_patterns mean every repository the installation can reach; empty
permissions mean every permission the installation has. Reading token/<role> mints a token with the role's whole
scope; writing to it asks for less.

repository_patterns (such as team-a-*) are resolved at each mint against the installation's repositories, listed at
GitHub and cached for the config's repository_list_ttl: a read covers every repository that matches, a write may name
any of them in GitHub's spelling. A pattern that matches nothing, or more than 500 repositories in all, refuses the
mint with 403. Patterns are never identity templates.

A role with several Apps (apps, each App written at apps/<name> and installed on the role's owner) mints from one
of them: with app_selection=budget (the default), the App whose installation has the most requests left in its
rate-limit window; with app_selection=ordered, the first that can serve. An App that GitHub has limited, that is
failing, that has no config or is not installed on the owner is passed over without an error while another serves.

With templated=true, owner, repositories and repository_ids may hold Vault identity templates, rendered at each mint
from the caller's identity entity, such as
repositories={{identity.entity.aliases.<jwt mount accessor>.metadata.repository}} with a JWT auth role that maps
GitHub Actions' repository claim with claim_mappings: one role then gives every workflow a token for its own
repository. Each template renders to one value; a rendered owner/name is accepted when its owner is the role's. A
caller without an entity, a template that renders empty, or a rendered value that is not a valid login, name or ID
is refused with 403, never given a wider token. A templated owner pins no account. On a role without templated=true,
braces are never interpreted.
`
	pathRolesListHelpSynopsis    = "List the roles."
	pathRolesListHelpDescription = "List the names of the roles defined on this mount."
)

func roleFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"name": {
			Type:        framework.TypeString,
			Description: "The role's name.",
			Required:    true,
		},
		"installation_id": {
			Type:        framework.TypeInt64,
			Description: "The ID of the installation that tokens come from. Exactly one of installation_id and owner is required.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Installation ID",
			},
		},
		"owner": {
			Type:        framework.TypeString,
			Description: "The organization or user login the App is installed on; the installation is looked up at GitHub and cached per login. The first mint pins the GitHub account the login names; writing owner again accepts a new account. Exactly one of installation_id and owner is required. On a templated role, owner may be an identity template such as {{identity.entity.aliases.<mount accessor>.metadata.repository_owner}}, rendered at each mint; a templated owner pins no account.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Owner",
			},
		},
		"repositories": {
			Type:        framework.TypeCommaStringSlice,
			Description: "Names of the repositories a token may cover, without the owner. Empty means every repository the installation can reach. At most 500 names and IDs together. On a templated role, an entry may be an identity template such as {{identity.entity.aliases.<mount accessor>.metadata.repository}}, rendered at each mint to one name, or to owner/name when the owner is the role's.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Repositories",
			},
		},
		"repository_ids": {
			// Strings, so that a templated role can hold templates; role writes accept only decimal IDs otherwise.
			Type:        framework.TypeCommaStringSlice,
			Description: "IDs of the repositories a token may cover, in decimal. Empty means every repository the installation can reach. At most 500 names and IDs together. On a templated role, an entry may be an identity template such as {{identity.entity.aliases.<mount accessor>.metadata.repository_id}}, rendered at each mint to one ID.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Repository IDs",
			},
		},
		"repository_patterns": {
			Type:        framework.TypeCommaStringSlice,
			Description: "Shell-style patterns over the names of the repositories a token may cover, such as team-a-* (* any characters, ? one, [a-z] one of a set; case is ignored, as GitHub ignores it). They are resolved at each mint against the repositories the installation can reach, listed at GitHub and cached for the config's repository_list_ttl: a new repository is covered after at most that long. Every pattern must match a repository, and all matches with repositories and repository_ids at most 500, or the mint is refused. At most 500 patterns; never an identity template.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Repository patterns",
			},
		},
		"permissions": {
			Type:        framework.TypeKVPairs,
			Description: "The permissions a token may carry, as name=level pairs such as contents=read or pull_requests=write. Levels are read, write or admin, as GitHub allows for each permission. Empty means every permission of the installation.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Permissions",
			},
		},
		"templated": {
			Type:        framework.TypeBool,
			Description: "Whether owner, repositories and repository_ids may hold Vault identity templates ({{identity.entity.name}}, {{identity.entity.metadata.<key>}}, {{identity.entity.aliases.<mount accessor>.metadata.<key>}}, {{identity.groups.names.<group>.name}} and the like), rendered at each mint from the caller's identity entity. A caller without an entity, a template that renders empty, or a rendered value that is not a valid login, repository name or ID is refused with 403. Defaults to false, where braces are never interpreted.",
			Default:     false,
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Templated",
			},
		},
		"apps": {
			Type:        framework.TypeCommaStringSlice,
			Description: "The names of the Apps (apps/<name>; config is the App named default) that tokens of this role may come from, at most 32. Defaults to default alone. With more than one, the role must name its installations by owner: each App has its own installation on that owner. Every App named must exist when the role is written.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Apps",
			},
		},
		"app_selection": {
			Type:        framework.TypeString,
			Description: "How a role with several Apps picks the App that mints: budget (the default) takes the App whose installation on the owner has the most requests left in its rate-limit window, as last seen; ordered takes the first App of apps that can serve, for work that must stay on one App while it is healthy. Either way an App that GitHub has limited, that is failing, that is not configured or not installed on the owner is passed over.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "App selection",
			},
		},
		"ttl": {
			Type:        framework.TypeDurationSecond,
			Description: "The lease TTL of tokens minted for this role. Defaults to the mount's default lease TTL, and is always capped to the token's remaining lifetime (one hour) and the mount's max TTL. A shorter TTL revokes the token at GitHub when the lease ends.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "TTL",
			},
		},
	}
}

func pathRoles(b *backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern: "roles/" + framework.GenericNameRegex("name"),
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "role",
			},
			Fields:         roleFields(),
			ExistenceCheck: b.pathRoleExists,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback:     b.pathRoleRead,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				},
				logical.CreateOperation: &framework.PathOperation{
					Callback:     b.pathRoleWrite,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "write"},
				},
				logical.UpdateOperation: &framework.PathOperation{
					Callback:     b.pathRoleWrite,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "write"},
				},
				logical.DeleteOperation: &framework.PathOperation{
					Callback:     b.pathRoleDelete,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "delete"},
				},
			},
			HelpSynopsis:    pathRolesHelpSynopsis,
			HelpDescription: strings.TrimSpace(pathRolesHelpDescription),
		},
		{
			Pattern: "roles/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "roles",
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{
					Callback:     b.pathRoleList,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "list"},
				},
			},
			HelpSynopsis:    pathRolesListHelpSynopsis,
			HelpDescription: pathRolesListHelpDescription,
		},
	}
}

func (b *backend) pathRoleExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	r, err := getRole(ctx, req.Storage, d.Get("name").(string))
	return r != nil, err
}

func (b *backend) pathRoleRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	r, err := getRole(ctx, req.Storage, d.Get("name").(string))
	if err != nil || r == nil {
		return nil, err
	}
	return &logical.Response{Data: r.toResponseData()}, nil
}

func (b *backend) pathRoleList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := req.Storage.List(ctx, roleStoragePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing roles: %w", err)
	}
	return logical.ListResponse(names), nil
}

func (b *backend) pathRoleDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := b.roles.delete(ctx, req.Storage, name); err != nil {
		return nil, err
	}
	b.metrics.forgetRole(name)
	return nil, nil
}

// pathRoleWrite creates or updates a role with the fields given; a refused write leaves the stored role as it was.
func (b *backend) pathRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	var resp *logical.Response
	var failure error
	err := b.roles.update(ctx, req.Storage, name, func(r *role) *role {
		if r == nil {
			r = &role{}
		}
		p := applyRoleFields(r, d)
		if p.empty() && given(d, "apps") {
			missing, err := missingApps(ctx, req.Storage, r.appNames())
			if err != nil {
				resp, failure = nil, err
				return nil
			}
			for _, app := range missing {
				p.reject(fmt.Sprintf("apps names App %q, which does not exist: write apps/%s (or config, for "+
					"default) first, or leave it out", app, app))
			}
		}
		if !p.empty() {
			resp = logical.ErrorResponse("role %q: %s", name, joinItems(p.malformed))
			return nil
		}
		resp = b.roleWarnings(r, p.warnings)
		return r
	})
	if err != nil {
		return nil, err
	}
	return resp, failure
}

// roleWarnings answers a role write that is stored: the warnings of its fields, then those of the role as a whole;
// nil when there are none.
func (b *backend) roleWarnings(r *role, warnings []string) *logical.Response {
	resp := &logical.Response{}
	addWarnings(resp, warnings)
	if !r.limitsRepositories() {
		resp.AddWarning("repositories, repository_ids and repository_patterns are empty: tokens from this role reach every repository the installation can reach")
	}
	if wide := r.accountWidePermissions(); r.limitsRepositories() && len(wide) > 0 {
		resp.AddWarning(fmt.Sprintf("permissions %s apply to the installation's whole account (organization, members "+
			"or user): they are not limited by the repositories the role names", strings.Join(wide, ", ")))
	}
	if r.Templated && len(r.templates()) == 0 {
		resp.AddWarning("templated is true, but no field holds an identity template ({{...}}): every caller gets the same scope")
	}
	if len(r.Permissions) == 0 {
		resp.AddWarning("permissions is empty: tokens from this role carry every permission of the installation")
	}
	if r.TTL > tokenLifetime {
		resp.AddWarning(fmt.Sprintf("ttl %s is longer than GitHub's token lifetime: leases will be capped to the token's remaining lifetime (at most %s)", r.TTL, tokenLifetime))
	}
	if maxTTL := b.System().MaxLeaseTTL(); maxTTL > 0 && r.TTL > maxTTL {
		resp.AddWarning(fmt.Sprintf("ttl %s is longer than the mount's max TTL %s: leases will be capped to it", r.TTL, maxTTL))
	}
	if len(resp.Warnings) == 0 {
		return nil
	}
	return resp
}

// applyRoleFields copies the fields given in a write onto r and validates the result. Its malformed problems refuse
// the write; its warnings go with the answer.
func applyRoleFields(r *role, d *framework.FieldData) problems {
	var p problems
	wasTemplated := r.Templated
	if v, ok := d.GetOk("templated"); ok {
		r.Templated = v.(bool)
	}
	applyApps(r, d, &p)
	applyBinding(r, d, &p)
	if !applyRepositories(r, d, &p) {
		return p
	}
	if wasTemplated && !r.Templated {
		if t := r.templates(); len(t) > 0 {
			p.reject(fmt.Sprintf("templated=false, but the role holds identity templates (%s): write "+
				"literal values for those fields in the same write, or keep templated=true", joinItems(t)))
		}
	}
	if n := len(r.Repositories) + len(r.RepositoryIDs) + len(r.RepositoryIDTemplates); n > maxRepositories {
		p.reject(fmt.Sprintf("repositories and repository_ids name %d repositories: GitHub accepts at most %d in one token", n, maxRepositories))
	}
	if v, ok, err := permissionsField(d); err != nil {
		p.reject(err.Error())
	} else if ok {
		perms, q := normalizePermissions(v)
		p.add(q)
		r.Permissions = perms
	}
	// The SDK refuses a negative ttl before the handler runs.
	if v, ok := d.GetOk("ttl"); ok {
		r.TTL = time.Duration(v.(int)) * time.Second
	}
	return p
}

// applyBinding copies installation_id and owner, and checks that the role is bound to exactly one of them.
func applyBinding(r *role, d *framework.FieldData, p *problems) {
	id, idGiven := d.GetOk("installation_id")
	owner, ownerGiven := d.GetOk("owner")
	// Setting one binding replaces the other, so a role can move from owner to installation_id in one write.
	switch {
	case idGiven && ownerGiven:
		r.InstallationID, r.Owner = id.(int64), strings.TrimSpace(owner.(string))
		if r.InstallationID != 0 && r.Owner != "" {
			p.reject(fmt.Sprintf("installation_id %d and owner %q are both given: give exactly one", r.InstallationID, r.Owner))
		}
	case idGiven:
		if r.InstallationID = id.(int64); r.InstallationID != 0 {
			r.Owner = ""
		}
	case ownerGiven:
		if r.Owner = strings.TrimSpace(owner.(string)); r.Owner != "" {
			r.InstallationID = 0
		}
	}
	// Writing the owner, even unchanged, is how an operator accepts the account the login names now.
	if idGiven || ownerGiven {
		r.AccountID = 0
	}
	switch {
	case r.InstallationID < 0:
		p.reject(fmt.Sprintf("installation_id %d is invalid: expected a positive installation ID (see LIST installations)", r.InstallationID))
	case r.Templated && isTemplate(r.Owner):
		p.add(checkTemplate(ownerTemplateField, r.Owner))
	case r.Owner != "" && !ownerPattern.MatchString(r.Owner):
		p.reject(fmt.Sprintf("owner %q is invalid: expected a GitHub organization or user login (letters, digits, hyphens)%s", r.Owner, templateHint(r.Owner)))
	case r.InstallationID == 0 && r.Owner == "":
		p.reject("installation_id or owner is required: give the installation's ID or the login it is installed on")
	case r.InstallationID != 0 && len(r.Apps) > 1:
		p.reject(fmt.Sprintf("installation_id %d names one App's installation, but apps names %d Apps: a role with "+
			"several Apps names its installations by owner (each App has its own installation on it)", r.InstallationID, len(r.Apps)))
	}
}

// applyApps copies apps and app_selection.
func applyApps(r *role, d *framework.FieldData, p *problems) {
	if v, ok := d.GetOk("apps"); ok {
		var names []string
		for _, raw := range v.([]string) {
			name := strings.TrimSpace(raw)
			switch {
			case checkAppName(name) != "":
				p.reject("apps: " + checkAppName(name))
			case slices.Contains(names, name):
				p.reject(fmt.Sprintf("apps names App %q twice: name each App once", name))
			default:
				names = append(names, name)
			}
		}
		if len(names) > maxRoleApps {
			p.reject(fmt.Sprintf("apps names %d Apps: expected at most %d", len(names), maxRoleApps))
		}
		if len(names) == 1 && names[0] == defaultAppName {
			names = nil // the default, stored as earlier versions stored it
		}
		r.Apps = names
	}
	if v, ok := d.GetOk("app_selection"); ok {
		sel := strings.TrimSpace(v.(string))
		switch sel {
		case appSelectionBudget, appSelectionOrdered:
			r.AppSelection = sel
		case "":
			r.AppSelection = ""
		default:
			p.reject(fmt.Sprintf("app_selection %q is not known: expected %s (the App with the most requests left) or %s "+
				"(the first App of apps that can serve)", sel, appSelectionBudget, appSelectionOrdered))
		}
	}
}

// appNames is the role's Apps: default alone when it names none.
func (r *role) appNames() []string {
	if len(r.Apps) == 0 {
		return []string{defaultAppName}
	}
	return r.Apps
}

// appSelection is how the role picks among its Apps.
func (r *role) appSelection() string {
	if r.AppSelection == "" {
		return appSelectionBudget
	}
	return r.AppSelection
}

// missingApps returns the names that no stored App has.
func missingApps(ctx context.Context, s logical.Storage, names []string) ([]string, error) {
	var missing []string
	for _, name := range names {
		cfg, err := getAppConfig(ctx, s, name)
		if err != nil {
			return nil, err
		}
		if cfg == nil {
			missing = append(missing, name)
		}
	}
	return missing, nil
}

// applyRepositories copies repositories and repository_ids. It returns false when a list is too long to read on.
func applyRepositories(r *role, d *framework.FieldData, p *problems) bool {
	if v, ok := d.GetOk("repositories"); ok {
		in := v.([]string)
		if len(in) > maxRepositories {
			p.reject(tooManyEntries("repositories", len(in)).Error())
			return false
		}
		var names []string
		var q problems
		if r.Templated {
			names, q = normalizeTemplatedRepositories(in, r.Owner)
		} else {
			names, q = normalizeRepositories(in, r.Owner)
			if slices.ContainsFunc(in, isTemplate) {
				q.reject("repositories holds an identity template" + templateHint("{{"))
			}
		}
		p.add(q)
		r.Repositories = names
	}
	if v, ok := d.GetOk("repository_ids"); ok {
		in := v.([]string)
		if len(in) > maxRepositories {
			p.reject(tooManyEntries("repository_ids", len(in)).Error())
			return false
		}
		ids, templates, q := normalizeRoleRepositoryIDs(in, r.Templated)
		p.add(q)
		r.RepositoryIDs, r.RepositoryIDTemplates = ids, templates
	}
	if v, ok := d.GetOk("repository_patterns"); ok {
		in := v.([]string)
		if len(in) > maxRepositories {
			p.reject(tooManyEntries("repository_patterns", len(in)).Error())
			return false
		}
		patterns, q := normalizeRepositoryPatterns(in)
		p.add(q)
		r.RepositoryPatterns = patterns
	}
	return true
}

// accountWidePermissions lists, sorted, the role's permissions that GitHub grants on the whole account.
func (r *role) accountWidePermissions() []string {
	var out []string
	for _, name := range sortedKeys(r.Permissions) {
		if github.AccountWide(name) {
			out = append(out, name)
		}
	}
	return out
}

func addWarnings(resp *logical.Response, warnings []string) {
	for _, w := range warnings {
		resp.AddWarning(w)
	}
}

func (r *role) toResponseData() map[string]any {
	repos := r.Repositories
	if repos == nil {
		repos = []string{}
	}
	var ids any = r.RepositoryIDs
	switch {
	case len(r.RepositoryIDTemplates) > 0:
		// Templates as written, after the literal IDs.
		mixed := make([]any, 0, len(r.RepositoryIDs)+len(r.RepositoryIDTemplates))
		for _, id := range r.RepositoryIDs {
			mixed = append(mixed, id)
		}
		for _, t := range r.RepositoryIDTemplates {
			mixed = append(mixed, t)
		}
		ids = mixed
	case r.RepositoryIDs == nil:
		ids = []int64{}
	}
	patterns := r.RepositoryPatterns
	if patterns == nil {
		patterns = []string{}
	}
	perms := r.Permissions
	if perms == nil {
		perms = map[string]string{}
	}
	return map[string]any{
		"installation_id":     r.InstallationID,
		"owner":               r.Owner,
		"account_id":          r.AccountID,
		"repositories":        repos,
		"repository_ids":      ids,
		"repository_patterns": patterns,
		"permissions":         perms,
		"ttl":                 int64(r.TTL.Seconds()),
		"templated":           r.Templated,
		"apps":                r.appNames(),
		"app_selection":       r.appSelection(),
	}
}
