// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// secretTokenType is the lease type of minted installation tokens.
const secretTokenType = "github_installation_token"

// expiryMargin is how long after a token's expires_at its revocation still calls GitHub, in case Vault's clock is
// ahead of GitHub's.
const expiryMargin = 10 * time.Second

func secretToken(b *backend) *framework.Secret {
	return &framework.Secret{
		Type: secretTokenType,
		Fields: map[string]*framework.FieldSchema{
			"token": {
				Type:        framework.TypeString,
				Description: "The installation access token.",
			},
			"expires_at": {
				Type:        framework.TypeString,
				Description: "When GitHub expires the token (RFC 3339).",
			},
			"installation_id": {
				Type:        framework.TypeInt64,
				Description: "The installation the token belongs to.",
			},
			"permissions": {
				Type:        framework.TypeMap,
				Description: "The permissions GitHub granted the token.",
			},
			"repository_selection": {
				Type:        framework.TypeString,
				Description: "Whether the token reaches all of the installation's repositories or selected ones.",
			},
			"repositories": {
				Type:        framework.TypeStringSlice,
				Description: "Names of the repositories the token covers, when it is limited to some.",
			},
			"role": {
				Type:        framework.TypeString,
				Description: "The role the token was minted for.",
			},
			"hashed_token": {
				Type:        framework.TypeString,
				Description: "The base64 of the token's SHA-256: the form GitHub's audit log shows.",
			},
			"app": {
				Type:        framework.TypeString,
				Description: "The name on this mount of the App that minted the token (default for config's).",
			},
			"app_id": {
				Type:        framework.TypeInt64,
				Description: "The GitHub ID of the App that minted the token.",
			},
			"app_slug": {
				Type:        framework.TypeString,
				Description: "The slug of the App that minted the token. It is left out, with a warning, while the App's bot user cannot be looked up.",
			},
			"bot_login": {
				Type:        framework.TypeString,
				Description: "The login of the App's bot user, <app_slug>[bot]: the name to commit as, for example in git config user.name.",
			},
			"bot_user_id": {
				Type:        framework.TypeInt64,
				Description: "The GitHub user ID of the App's bot user, looked up once per App and cached.",
			},
			"commit_email": {
				Type:        framework.TypeString,
				Description: "The email address that attributes commits to the App's bot user, <bot_user_id>+<bot_login>@<noreply domain>: the address for git config user.email.",
			},
		},
		// GitHub cannot extend an installation token, so there is no Renew: Vault refuses renewal.
		Revoke: b.secretTokenRevoke,
	}
}

// secretTokenRevoke revokes a token at GitHub when its lease ends, through the destination it was minted through
// (revocation_target.go). It needs only what the lease and the stored targets hold, so it works after the config was
// deleted or changed. An error makes Vault retry later.
func (b *backend) secretTokenRevoke(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	token, _ := req.Secret.InternalData["token"].(string)
	baseURL, _ := req.Secret.InternalData["base_url"].(string)
	role, _ := req.Secret.InternalData["role"].(string)
	dest, _ := req.Secret.InternalData[leaseDestinationField].(string)
	// Leases of earlier versions name no App: theirs was the default one.
	app, _ := req.Secret.InternalData["app"].(string)
	if token == "" || baseURL == "" {
		return nil, errors.New("the lease holds no token or base URL: nothing can be revoked")
	}
	// GitHub has already killed a token past its expiry: a call would only spend rate limit (and fail during an
	// outage, which would keep the lease). The margin covers a Vault clock ahead of GitHub's.
	if raw, _ := req.Secret.InternalData["expires_at"].(string); raw != "" {
		if expires, err := time.Parse(time.RFC3339, raw); err == nil && b.now().After(expires.Add(expiryMargin)) {
			b.metrics.revocations.WithLabelValues("skipped").Inc()
			b.Logger().Debug("the token has expired at GitHub; the lease ends without a call", "role", role,
				"hashed_token", hashToken(token))
			return nil, nil
		}
	}
	client, err := b.revocationClient(ctx, req.Storage, cmp.Or(app, defaultAppName), baseURL, dest)
	if err != nil {
		return nil, err
	}
	if err := client.RevokeToken(ctx, token); err != nil {
		b.metrics.revocations.WithLabelValues("failed").Inc()
		b.Logger().Warn("revoking a token at GitHub failed; Vault will retry", "role", role,
			"hashed_token", hashToken(token), "error", err)
		return nil, fmt.Errorf("revoking the installation token of role %q at %s: %w", role, baseURL, err)
	}
	b.metrics.revocations.WithLabelValues("succeeded").Inc()
	return nil, nil
}
