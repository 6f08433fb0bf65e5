// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	pathStatusHelpSynopsis    = "Read what the mount knows of its App and of GitHub: the first thing to look at when tokens fail."
	pathStatusHelpDescription = `
Returns the configured App (ID, slug, name, key fingerprint, base URL), GitHub as the mount last saw it (the time
and outcome of the last call, the last failure with GitHub's request ID, since when GitHub has been failing, a rate
limit in force), the App's rate limit as GitHub last reported it, the installations the mount has looked up, when the
cached App JWT expires, calls in flight, and the plugin's version. It never returns a secret, and it does not call
GitHub: it shows what the engine learned from the calls it made.
`
)

func pathStatus(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "status",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathStatusRead,
				DisplayAttrs: &framework.DisplayAttributes{OperationSuffix: "status"},
			},
		},
		HelpSynopsis:    pathStatusHelpSynopsis,
		HelpDescription: strings.TrimSpace(pathStatusHelpDescription),
	}
}

func (b *backend) pathStatusRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	data := map[string]any{"plugin_version": Version, "configured": false}
	cfg, err := getConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		data["configured"] = true
		data["app_id"], data["app_slug"], data["app_name"] = cfg.AppID, cfg.AppSlug, cfg.AppName
		data["client_id"], data["base_url"] = cfg.ClientID, cfg.BaseURL
		data["private_key_fingerprint"] = cfg.Fingerprint
		data["signer"] = cfg.signerDescription()
	}

	st := b.gate.Status()
	data["github"] = map[string]any{
		"last_call":               timestamp(st.LastCall),
		"last_outcome":            st.LastOutcome,
		"last_failure":            timestamp(st.LastFailure),
		"last_error":              st.LastError,
		"last_failure_request_id": st.LastFailureRequestID,
		"failing_since":           timestamp(st.FailingSince),
		"rate_limited_until":      timestamp(st.LimitedUntil),
		"rate_limit_kind":         st.LimitKind,
		"in_flight":               st.InFlight,
		"max_concurrent_requests": st.Capacity,
	}
	data["rate_limit"] = map[string]any{
		"limit":     st.Rate.Limit,
		"remaining": st.Rate.Remaining,
		"used":      st.Rate.Used,
		"reset":     timestamp(st.Rate.Reset),
		"resource":  st.Rate.Resource,
		"seen":      timestamp(st.Rate.Seen),
	}

	b.lock.RLock()
	c := b.client
	b.lock.RUnlock()
	installations := []map[string]any{}
	if c != nil {
		data["jwt_expires_at"] = timestamp(c.JWTExpiry())
		data["possible_duplicate_tokens"] = c.PossibleDuplicateTokens()
		installations = c.installations.snapshot()
		if s := c.Signer(); s != nil && cfg != nil {
			// What the KMS or HSM said of the key it signs with (a KMS key's ARN rather than an alias).
			data["signer"] = s.Describe()
		}
	}
	data["installations"] = installations
	return &logical.Response{Data: data}, nil
}

// timestamp is a time for a status answer: RFC 3339 in UTC, or "" when unknown.
func timestamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
