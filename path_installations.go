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
Lists every installation of the configured App, keyed by the login of the account it is installed on, with its
installation_id, account_type, repository_selection and whether it is suspended. Use it to find what to put in a
role's installation_id or owner.
`
)

func pathInstallations(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "installations/?$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "installations",
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

func (b *backend) pathInstallationsList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	client, err := b.getClient(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if client == nil {
		return logical.ErrorResponse("the engine is not configured: write the App's ID and private key to config first"), nil
	}
	list, complete, err := client.Installations(ctx)
	if err != nil {
		return nil, githubError(err, opList, "listing the App's installations", adviceArgs{})
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
