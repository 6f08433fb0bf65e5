// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// A mount serves one or more GitHub Apps, each under a name. The App named default is the one config reads and
// writes: its entry stays where earlier versions kept the config, so that a mount made by them works without a step,
// and a downgrade still finds it. Every other App is stored under apps/<name>.
const (
	defaultAppName   = "default"
	appStoragePrefix = "apps/"
	// maxAppNameLength matches a DNS label, which App names resemble.
	maxAppNameLength = 63
)

// appNamePattern is what an App's name may hold.
var appNamePattern = regexp.MustCompile(`^[a-z0-9_-]{1,63}$`)

const (
	pathAppsHelpSynopsis    = "Manage the GitHub Apps of the mount: one per name, config being the App named default."
	pathAppsHelpDescription = `
Each App is written here with every field of config: its ID or client ID, its key (or a KMS or HSM signer), how to
reach GitHub, its rate_limit_refresh. Each has its own client and its own view of GitHub: rate limits, outages and
calls in flight. "config" and "apps/default" are the same App.

Several Apps installed on the same organisations give a role several installations' rate limits: a role that names
them in apps mints from the one with the most requests left (app_selection=budget) or the first that can serve
(app_selection=ordered), and passes over an App that GitHub has limited, that is failing, or that is not installed.

Deleting an App leaves its leases revocable; roles that name it pass it over.
`
	pathAppsListHelpSynopsis = "List the mount's Apps."
)

func pathApps(b *backend) []*framework.Path {
	fields := appFields()
	fields["name"] = &framework.FieldSchema{
		Type:        framework.TypeString,
		Description: "The App's name on this mount: lower-case letters, digits, '-' and '_', at most 63. The name default is the App that config reads and writes.",
		Required:    true,
	}
	return []*framework.Path{
		{
			Pattern: "apps/" + framework.GenericNameRegex("name"),
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "app",
			},
			Fields:         fields,
			ExistenceCheck: b.pathAppExists,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback:     b.pathAppRead,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				},
				logical.CreateOperation: &framework.PathOperation{
					Callback:                    b.pathAppWrite,
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
					DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "write"},
				},
				logical.UpdateOperation: &framework.PathOperation{
					Callback:                    b.pathAppWrite,
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
					DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "write"},
				},
				logical.DeleteOperation: &framework.PathOperation{
					Callback:                    b.pathAppDelete,
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
					DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "delete"},
				},
			},
			HelpSynopsis:    pathAppsHelpSynopsis,
			HelpDescription: strings.TrimSpace(pathAppsHelpDescription),
		},
		{
			Pattern: "apps/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "apps",
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{
					Callback:     b.pathAppsList,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "list"},
				},
			},
			HelpSynopsis:    pathAppsListHelpSynopsis,
			HelpDescription: strings.TrimSpace(pathAppsHelpDescription),
		},
	}
}

func (b *backend) pathAppExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	name := d.Get("name").(string)
	if checkAppName(name) != "" {
		return false, nil
	}
	cfg, err := getAppConfig(ctx, req.Storage, name)
	return cfg != nil, err
}

func (b *backend) pathAppRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if problem := checkAppName(name); problem != "" {
		return logical.ErrorResponse(problem), nil
	}
	resp, err := b.readApp(ctx, req.Storage, name)
	if resp != nil {
		resp.Data["name"] = name
	}
	return resp, err
}

func (b *backend) pathAppWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if problem := checkAppName(name); problem != "" {
		return logical.ErrorResponse(problem), nil
	}
	return b.writeApp(ctx, req.Storage, name, d)
}

func (b *backend) pathAppDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if problem := checkAppName(name); problem != "" {
		return logical.ErrorResponse(problem), nil
	}
	return b.deleteApp(ctx, req.Storage, name)
}

func (b *backend) pathAppsList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := listApps(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	info := make(map[string]any, len(names))
	for _, name := range names {
		cfg, err := getAppConfig(ctx, req.Storage, name)
		if err != nil {
			return nil, err
		}
		if cfg == nil {
			continue // deleted meanwhile
		}
		info[name] = map[string]any{
			"app_id":   cfg.AppID,
			"app_slug": cfg.AppSlug,
			"base_url": cfg.BaseURL,
			"signer":   cfg.signerKind(),
		}
	}
	return logical.ListResponseWithInfo(names, info), nil
}

// deleteApp removes an App's config. Its leases can still be revoked (revocation_target.go); roles that name it skip
// it, and a warning names them.
func (b *backend) deleteApp(ctx context.Context, s logical.Storage, name string) (*logical.Response, error) {
	b.configMu.Lock()
	defer b.configMu.Unlock()
	// The roles are listed first: a delete that fails must leave the App as it was.
	naming, err := b.rolesNaming(ctx, s, name)
	if err != nil {
		return nil, err
	}
	b.lock.Lock()
	err = s.Delete(ctx, appStoragePath(name))
	b.resetLocked(name)
	b.lock.Unlock()
	if err != nil {
		return nil, fmt.Errorf("deleting the config of App %q: %w", name, err)
	}
	b.metrics.forgetApp(name)
	if len(naming) == 0 {
		return nil, nil
	}
	verb := "name"
	if len(naming) == 1 {
		verb = "names"
	}
	resp := &logical.Response{}
	resp.AddWarning(fmt.Sprintf("App %q is deleted; %s still %s it and mint from their other Apps, if any, until "+
		"they are written without it", name, listRoles(naming), verb))
	return resp, nil
}

// listApps returns the names of the configured Apps, sorted.
func listApps(ctx context.Context, s logical.Storage) ([]string, error) {
	names, err := s.List(ctx, appStoragePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing Apps: %w", err)
	}
	names = slices.DeleteFunc(names, func(n string) bool { return checkAppName(n) != "" || n == defaultAppName })
	def, err := getConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	if def != nil {
		names = append(names, defaultAppName)
	}
	slices.Sort(names)
	return names, nil
}

// appStoragePath is where an App's config is stored.
func appStoragePath(name string) string {
	if name == defaultAppName {
		return configStoragePath
	}
	return appStoragePrefix + name
}

// checkAppName says what is wrong with an App's name; "" when nothing is.
func checkAppName(name string) string {
	if appNamePattern.MatchString(name) {
		return ""
	}
	shown := name
	if len(shown) > maxAppNameLength+10 {
		shown = shown[:maxAppNameLength] + "…"
	}
	return fmt.Sprintf("App name %q is invalid: expected 1 to %d lower-case letters, digits, '-' and '_'", shown, maxAppNameLength)
}

// rolesNaming returns the roles whose apps name the App, sorted. Roles that name no Apps use the default one
// without naming it.
func (b *backend) rolesNaming(ctx context.Context, s logical.Storage, app string) ([]string, error) {
	names, err := s.List(ctx, roleStoragePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing roles: %w", err)
	}
	var naming []string
	for _, name := range names {
		r, err := b.roles.get(ctx, s, name)
		if err != nil {
			return nil, err
		}
		if r != nil && slices.Contains(r.Apps, app) {
			naming = append(naming, name)
		}
	}
	slices.Sort(naming)
	return naming, nil
}

// listRoles names roles in a message, the first few of them.
func listRoles(names []string) string {
	const shown = 10
	if len(names) == 1 {
		return fmt.Sprintf("role %q", names[0])
	}
	quoted := make([]string, 0, shown)
	for _, n := range names[:min(len(names), shown)] {
		quoted = append(quoted, fmt.Sprintf("%q", n))
	}
	s := "roles " + strings.Join(quoted, ", ")
	if len(names) > shown {
		s += fmt.Sprintf(" and %d more", len(names)-shown)
	}
	return s
}
