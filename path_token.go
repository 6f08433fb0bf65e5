// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
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
	if resp, err = b.mintToken(ctx, req.Storage, name, r, r.request()); err != nil {
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
	if resp, err = b.mintToken(ctx, req.Storage, name, r, tr); err != nil {
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
