// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

const (
	pathInstallationsHelpSynopsis    = "List the App's installations."
	pathInstallationsHelpDescription = `
Lists every installation of an App (the App of config, or app=<name> for another), keyed by the login of the account
it is installed on, with its installation_id, account_type, repository_selection and whether it is suspended. Use it
to find what to put in a role's installation_id or owner, and to check that every App of a pool is installed on the
role's owner.
`
)

func pathInstallations(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "installations/?$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "installations",
		},
		Fields: map[string]*framework.FieldSchema{
			"app": {
				Type:        framework.TypeString,
				Default:     defaultAppName,
				Description: "The name of the App whose installations to list; default is the App of config.",
				Query:       true,
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ListOperation: &framework.PathOperation{
				Callback:                    b.pathInstallationsList,
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
				DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "list"},
			},
		},
		HelpSynopsis:    pathInstallationsHelpSynopsis,
		HelpDescription: strings.TrimSpace(pathInstallationsHelpDescription),
	}
}

func (b *backend) pathInstallationsList(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	app := d.Get("app").(string)
	if problem := checkAppName(app); problem != "" {
		return logical.ErrorResponse("app: " + problem), nil
	}
	client, err := b.appClientFor(ctx, req.Storage, app)
	if err != nil {
		return nil, err
	}
	if client == nil {
		return logical.ErrorResponse(notConfigured(app)), nil
	}
	list, complete, err := client.Installations(ctx)
	if err != nil {
		return nil, githubError(err, opList, fmt.Sprintf("listing the installations of App %q", app), adviceArgs{})
	}
	keys := make([]string, 0, len(list))
	info := make(map[string]any, len(list))
	for _, in := range list {
		keys = append(keys, in.Account.Login)
		info[in.Account.Login] = map[string]any{
			"installation_id":      in.ID,
			"account_type":         in.Account.Type,
			"repository_selection": in.RepositorySelection,
			"suspended":            in.Suspended(),
		}
	}
	resp := logical.ListResponseWithInfo(keys, info)
	if !complete {
		resp.AddWarning(fmt.Sprintf("the list stops after %d installations (%d pages): GitHub announced more", len(list), github.MaxPages))
	}
	return resp, nil
}
