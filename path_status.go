// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

const (
	pathStatusHelpSynopsis    = "Read what the mount knows of its App and of GitHub: the first thing to look at when tokens fail."
	pathStatusHelpDescription = `
Returns the App of config (ID, slug, name, key fingerprint, base URL), GitHub as the mount last saw it (the time
and outcome of the last call, the last failure with GitHub's request ID, since when GitHub has been failing, a rate
limit in force), the App's rate limit as GitHub last reported it, the installations the mount has looked up, when the
cached App JWT expires, calls in flight, and the plugin's version. Under apps, the same for every App of the
mount, by name, with the budget of each installation as last seen (the requests its tokens have left in the current
window; read for roles with several Apps under app_selection=budget). It never returns a secret, and it does not call
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
	names, err := listApps(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	clients := b.cachedClients()
	apps := make(map[string]any, len(names))
	for _, name := range names {
		cfg, err := getAppConfig(ctx, req.Storage, name)
		if err != nil {
			return nil, err
		}
		apps[name] = appStatus(cfg, clients[name])
	}
	// The default App's status stays at the top level, where earlier versions showed the config's.
	def, err := getConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	data := appStatus(def, clients[defaultAppName])
	data["plugin_version"] = Version
	data["apps"] = apps
	return &logical.Response{Data: data}, nil
}

// appStatus is what status shows of one App: its config (cfg, nil when it has none), and what its client (nil when
// not built yet) learned of GitHub: the last calls, a limit or outage in force, its rate limit, its installations
// with their budgets.
func appStatus(cfg *githubConfig, c *appClient) map[string]any {
	data := map[string]any{"configured": cfg != nil}
	if cfg != nil {
		data["app_id"], data["app_slug"], data["app_name"] = cfg.AppID, cfg.AppSlug, cfg.AppName
		data["client_id"], data["base_url"] = cfg.ClientID, cfg.BaseURL
		data["private_key_fingerprint"] = cfg.Fingerprint
		data["signer"] = cfg.signerDescription()
		data["rate_limit_refresh"] = int64(cfg.rateLimitRefresh().Seconds())
	}
	var st github.GateStatus
	installations := []map[string]any{}
	if c != nil {
		st = c.gate.Status()
		data["jwt_expires_at"] = timestamp(c.JWTExpiry())
		data["possible_duplicate_tokens"] = c.PossibleDuplicateTokens()
		installations = c.installations.snapshot()
		budgets := c.budgets.snapshot()
		for _, in := range installations {
			if rl, ok := budgets[in["installation_id"].(int64)]; ok {
				in["budget"] = map[string]any{
					"limit":     rl.Limit,
					"remaining": rl.Remaining,
					"used":      rl.Used,
					"reset":     timestamp(rl.Reset),
					"seen":      timestamp(rl.Seen),
				}
			}
		}
		if s := c.Signer(); s != nil && cfg != nil {
			// What the KMS or HSM said of the key it signs with (a KMS key's ARN rather than an alias).
			data["signer"] = s.Describe()
		}
	}
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
	data["installations"] = installations
	return data
}

// appViews is what the metrics' gauges show of each App the mount has a client for.
func (b *backend) appViews() []appView {
	clients := b.cachedClients()
	now := b.now()
	views := make([]appView, 0, len(clients))
	for _, name := range sortedKeys(clients) {
		c := clients[name]
		v := appView{name: name, status: c.gate.Status()}
		v.budget, v.budgetKnown = c.budgets.least(now)
		views = append(views, v)
	}
	return views
}

// timestamp is a time for a status answer: RFC 3339 in UTC, or "" when unknown.
func timestamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
