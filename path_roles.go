package githubapp

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

const (
	roleStoragePrefix = "roles/"

	// maxRepositories is GitHub's limit on repositories (names and IDs together) in one token request.
	maxRepositories = 500
	// tokenLifetime is how long GitHub's installation tokens live.
	tokenLifetime = time.Hour
)

var (
	// GitHub logins: letters, digits and hyphens, at most 39 characters; Enterprise Managed Users add an
	// underscore and a short code.
	ownerPattern = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,98}[A-Za-z0-9_])?$`)
	// Repository names: letters, digits, '.', '-' and '_', at most 100 characters.
	repoNamePattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
	// Permission names as GitHub spells them: lower case words joined by underscores.
	permissionNamePattern = regexp.MustCompile(`^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$`)
)

// role is a stored role: the ceiling of what tokens minted for it may carry.
type role struct {
	InstallationID int64             `json:"installation_id,omitempty"`
	Owner          string            `json:"owner,omitempty"`
	Repositories   []string          `json:"repositories,omitempty"`
	RepositoryIDs  []int64           `json:"repository_ids,omitempty"`
	Permissions    map[string]string `json:"permissions,omitempty"`
	TTL            time.Duration     `json:"ttl,omitempty"`
}

const (
	pathRolesHelpSynopsis    = "Manage roles: which installation, repositories and permissions tokens may carry."
	pathRolesHelpDescription = `
A role binds an installation of the App (by installation_id, or by the owner login it is installed on) to the
repositories and permissions that tokens minted for the role may carry, and to the lease TTL of those tokens.

Empty repositories and repository_ids mean every repository the installation can reach; empty permissions mean every
permission the installation has. Reading token/<role> mints a token with the role's whole scope; writing to it asks
for less.
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
			Description: "The organization or user login the App is installed on; the installation is looked up at GitHub and cached. Exactly one of installation_id and owner is required.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Owner",
			},
		},
		"repositories": {
			Type:        framework.TypeCommaStringSlice,
			Description: "Names of the repositories a token may cover, without the owner. Empty means every repository the installation can reach. At most 500 names and IDs together.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Repositories",
			},
		},
		"repository_ids": {
			Type:        framework.TypeCommaIntSlice,
			Description: "IDs of the repositories a token may cover. Empty means every repository the installation can reach. At most 500 names and IDs together.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Repository IDs",
			},
		},
		"permissions": {
			Type:        framework.TypeKVPairs,
			Description: "The permissions a token may carry, as name=level pairs such as contents=read or pull_requests=write. Levels are read, write or admin, as GitHub allows for each permission. Empty means every permission of the installation.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Permissions",
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
	lock := locksutil.LockForKey(b.roleLocks, name)
	lock.Lock()
	defer lock.Unlock()
	err := req.Storage.Delete(ctx, roleStoragePrefix+name)
	b.roles.drop(name)
	if err != nil {
		return nil, fmt.Errorf("deleting role: %w", err)
	}
	return nil, nil
}

func (b *backend) pathRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	// Two updates of one role must not lose each other's fields.
	lock := locksutil.LockForKey(b.roleLocks, name)
	lock.Lock()
	defer lock.Unlock()

	r, err := getRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		r = &role{}
	}

	resp := &logical.Response{}
	if problems := applyRoleFields(r, d, resp); len(problems) > 0 {
		return logical.ErrorResponse("role %q: %s", name, strings.Join(problems, "; ")), nil
	}
	if len(r.Repositories) == 0 && len(r.RepositoryIDs) == 0 {
		resp.AddWarning("repositories and repository_ids are empty: tokens from this role reach every repository the installation can reach")
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

	entry, err := logical.StorageEntryJSON(roleStoragePrefix+name, r)
	if err != nil {
		return nil, fmt.Errorf("encoding role: %w", err)
	}
	err = req.Storage.Put(ctx, entry)
	b.roles.drop(name)
	if err != nil {
		return nil, fmt.Errorf("storing role: %w", err)
	}
	if len(resp.Warnings) == 0 {
		return nil, nil
	}
	return resp, nil
}

// applyRoleFields copies the fields given in a write onto r and validates the result, adding warnings to resp. It
// returns one message per problem.
func applyRoleFields(r *role, d *framework.FieldData, resp *logical.Response) []string {
	var problems []string
	id, idGiven := d.GetOk("installation_id")
	owner, ownerGiven := d.GetOk("owner")
	// Setting one binding replaces the other, so a role can move from owner to installation_id in one write.
	switch {
	case idGiven && ownerGiven:
		r.InstallationID, r.Owner = id.(int64), strings.TrimSpace(owner.(string))
		if r.InstallationID != 0 && r.Owner != "" {
			problems = append(problems, fmt.Sprintf("installation_id %d and owner %q are both given: give exactly one", r.InstallationID, r.Owner))
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
	switch {
	case r.InstallationID < 0:
		problems = append(problems, fmt.Sprintf("installation_id %d is invalid: expected a positive installation ID (see LIST installations)", r.InstallationID))
	case r.Owner != "" && !ownerPattern.MatchString(r.Owner):
		problems = append(problems, fmt.Sprintf("owner %q is invalid: expected a GitHub organization or user login (letters, digits, hyphens)", r.Owner))
	case r.InstallationID == 0 && r.Owner == "":
		problems = append(problems, "installation_id or owner is required: give the installation's ID or the login it is installed on")
	}

	if v, ok := d.GetOk("repositories"); ok {
		names, errs := normalizeRepositories(v.([]string), r.Owner)
		problems = append(problems, errs...)
		r.Repositories = names
	}
	if v, ok := d.GetOk("repository_ids"); ok {
		ids, errs := normalizeRepositoryIDs(v.([]int))
		problems = append(problems, errs...)
		r.RepositoryIDs = ids
	}
	if n := len(r.Repositories) + len(r.RepositoryIDs); n > maxRepositories {
		problems = append(problems, fmt.Sprintf("repositories and repository_ids name %d repositories: GitHub accepts at most %d in one token", n, maxRepositories))
	}

	if v, ok, err := permissionsField(d); err != nil {
		problems = append(problems, err.Error())
	} else if ok {
		perms, errs, warns := normalizePermissions(v)
		problems = append(problems, errs...)
		for _, w := range warns {
			resp.AddWarning(w)
		}
		r.Permissions = perms
	}

	if v, ok := d.GetOk("ttl"); ok {
		ttl := time.Duration(v.(int)) * time.Second
		if ttl < 0 {
			problems = append(problems, fmt.Sprintf("ttl %s is negative: expected a duration such as 15m, or 0 for the mount's default", ttl))
		}
		r.TTL = ttl
	}
	return problems
}

// normalizeRepositories validates repository names. "owner/name" is accepted when owner is the role's owner and
// stored as "name"; names are de-duplicated case-insensitively, as GitHub compares them.
func normalizeRepositories(in []string, roleOwner string) ([]string, []string) {
	var out, problems []string
	seen := map[string]bool{}
	for _, raw := range in {
		name := strings.TrimSpace(raw)
		if name == "" {
			continue
		}
		if o, n, ok := strings.Cut(name, "/"); ok {
			switch {
			case roleOwner == "":
				problems = append(problems, fmt.Sprintf("repository %q has an owner: give the name alone (%q); "+
					"owner/name is accepted only on roles bound by owner", name, n))
				continue
			case !strings.EqualFold(o, roleOwner):
				problems = append(problems, fmt.Sprintf("repository %q belongs to %q, not to the role's owner %q: "+
					"a token covers repositories of one installation only", name, o, roleOwner))
				continue
			}
			name = n
		}
		if !repoNamePattern.MatchString(name) || name == "." || name == ".." {
			problems = append(problems, fmt.Sprintf("repository %q is not a valid repository name: expected letters, digits, '.', '-' and '_', at most 100 characters", raw))
			continue
		}
		if key := strings.ToLower(name); !seen[key] {
			seen[key] = true
			out = append(out, name)
		}
	}
	return out, problems
}

func normalizeRepositoryIDs(in []int) ([]int64, []string) {
	var out []int64
	var problems []string
	seen := map[int64]bool{}
	for _, v := range in {
		id := int64(v)
		if id <= 0 {
			problems = append(problems, fmt.Sprintf("repository_ids holds %d: expected positive repository IDs", id))
			continue
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, problems
}

// normalizePermissions checks names and levels against GitHub's documented table. Malformed names are errors with a
// suggestion; well-formed names GitHub does not (yet) document are accepted with a warning.
func normalizePermissions(in map[string]string) (map[string]string, []string, []string) {
	var problems, warnings []string
	out := make(map[string]string, len(in))
	for _, name := range sortedKeys(in) {
		level := strings.ToLower(strings.TrimSpace(in[name]))
		if !permissionNamePattern.MatchString(name) {
			msg := fmt.Sprintf("permission %q is not a valid name: GitHub's names are lower case words joined by underscores", name)
			if s := suggestPermission(name); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			problems = append(problems, msg)
			continue
		}
		if github.LevelRank(level) == 0 {
			problems = append(problems, fmt.Sprintf("permission %s has level %q: expected read, write or admin", name, in[name]))
			continue
		}
		levels, known := github.PermissionLevels(name)
		switch {
		case !known:
			warnings = append(warnings, fmt.Sprintf("permission %q is not in GitHub's published list known to this plugin; it is accepted as written, and GitHub will refuse it if it does not exist", name))
		case !slices.Contains(levels, level):
			problems = append(problems, fmt.Sprintf("permission %s does not accept level %q: GitHub allows %s", name, level, strings.Join(levels, ", ")))
			continue
		}
		out[name] = level
	}
	return out, problems, warnings
}

// permissionsField reads the permissions field. Besides what Vault's key-value type takes (a JSON object, or a
// list of name=level entries), it accepts one comma-separated string, the form that is easiest on the vault CLI:
// permissions=contents=read,pull_requests=write. List entries are not split, so that a policy's
// denied_parameters sees every entry as Vault splits it.
func permissionsField(d *framework.FieldData) (map[string]string, bool, error) {
	raw, ok := d.Raw["permissions"]
	if !ok {
		return nil, false, nil
	}
	var entries []string
	switch v := raw.(type) {
	case string:
		entries = strings.Split(v, ",")
	case []string:
		entries = v
	case []any:
		for _, e := range v {
			s, isString := e.(string)
			if !isString {
				return nil, false, fmt.Errorf("permissions entry %v is not a name=level string", e)
			}
			entries = append(entries, s)
		}
	default:
		m, _, err := d.GetOkErr("permissions")
		if err != nil {
			return nil, false, fmt.Errorf("permissions: expected name=level pairs or an object of levels: %w", err)
		}
		return m.(map[string]string), true, nil
	}
	out := map[string]string{}
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		name, level, found := strings.Cut(e, "=")
		if !found || strings.TrimSpace(name) == "" {
			return nil, false, fmt.Errorf("permissions entry %q is not name=level, such as contents=read", e)
		}
		out[strings.TrimSpace(name)] = strings.TrimSpace(level)
	}
	return out, true, nil
}

// suggestPermission turns "pull-requests" or "Pull_Requests" into "pull_requests" when that is a known name.
func suggestPermission(name string) string {
	s := strings.ToLower(strings.TrimSpace(name))
	s = strings.NewReplacer("-", "_", " ", "_", ".", "_").Replace(s)
	if _, ok := github.PermissionLevels(s); ok {
		return s
	}
	return ""
}

func (r *role) toResponseData() map[string]any {
	repos := r.Repositories
	if repos == nil {
		repos = []string{}
	}
	ids := r.RepositoryIDs
	if ids == nil {
		ids = []int64{}
	}
	perms := r.Permissions
	if perms == nil {
		perms = map[string]string{}
	}
	return map[string]any{
		"installation_id": r.InstallationID,
		"owner":           r.Owner,
		"repositories":    repos,
		"repository_ids":  ids,
		"permissions":     perms,
		"ttl":             int64(r.TTL.Seconds()),
	}
}

// getRole reads a stored role; nil when there is none.
func getRole(ctx context.Context, s logical.Storage, name string) (*role, error) {
	entry, err := s.Get(ctx, roleStoragePrefix+name)
	if err != nil {
		return nil, fmt.Errorf("reading role %q: %w", name, err)
	}
	if entry == nil {
		return nil, nil
	}
	var r role
	if err := entry.DecodeJSON(&r); err != nil {
		return nil, fmt.Errorf("decoding role %q: %w", name, err)
	}
	return &r, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
