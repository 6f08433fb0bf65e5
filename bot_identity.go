// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/sync/singleflight"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// This file gives every token response the identity of the App's bot user, so that a job can commit as the App:
// the bot user's ID is looked up once per client (GET /users/<slug>[bot], with the token just minted) and kept
// beside the installation cache, so that a config change forgets it.
//
// The lookup runs on the path of the first mint, not in the background: the consumers that need these fields
// (Vault Agent templates writing git config) render once, and a first answer without them would fail a job after
// every restart or config change. It costs the first mint one more call of its installation's budget.

const (
	// botRetryInterval is how long after a failed lookup mints go without the bot identity before one tries again.
	botRetryInterval = time.Minute
	// botLookupTimeout bounds the lookup that the first mint waits for.
	botLookupTimeout = 10 * time.Second
)

// botIdentity is who commits made as the App are attributed to.
type botIdentity struct {
	slug   string // the App's slug
	login  string // its bot user's login, <slug>[bot]
	userID int64  // its bot user's ID
	email  string // <userID>+<login>@<noreply domain>
}

// botIdentityCache remembers the bot identity that one config's client learned. It belongs to one appClient and is
// dropped with it.
type botIdentityCache struct {
	domain string // the noreply domain of commit emails
	logger hclog.Logger

	mu      sync.Mutex
	slug    string // from the config; learned from GET /app when the config has none (verify=false)
	known   *botIdentity
	failed  error     // why the last lookup failed
	retryAt time.Time // no lookup before this after a failure
	lookups singleflight.Group
}

func newBotIdentityCache(cfg *githubConfig, logger hclog.Logger) *botIdentityCache {
	return &botIdentityCache{slug: cfg.AppSlug, domain: cfg.noreplyDomain(), logger: logger}
}

// get returns the bot identity, looking it up with token (an installation token of the App) when it is not known and
// no lookup failed within botRetryInterval. Concurrent first mints share one lookup.
func (c *botIdentityCache) get(ctx context.Context, gh *github.Client, token string, now time.Time) (*botIdentity, error) {
	c.mu.Lock()
	known, failed, retryAt := c.known, c.failed, c.retryAt
	c.mu.Unlock()
	switch {
	case known != nil:
		return known, nil
	case failed != nil && now.Before(retryAt):
		return nil, retryError(failed, retryAt)
	}

	v, err := sharedCall(ctx, &c.lookups, "bot", botLookupTimeout, func(ctx context.Context) (any, error) {
		id, err := c.lookup(ctx, gh, token)
		c.mu.Lock()
		defer c.mu.Unlock()
		if err != nil {
			c.failed, c.retryAt = err, now.Add(botRetryInterval)
			c.logger.Warn("the App's bot identity is unknown: token responses go without it until a mint tries again",
				"retry_after", c.retryAt.UTC().Format(time.RFC3339), "error", err)
			return nil, retryError(err, c.retryAt)
		}
		c.known, c.failed = id, nil
		return id, nil
	})
	id, _ := v.(*botIdentity)
	return id, err
}

// retryError says why the bot identity is unknown and when a mint looks it up again.
func retryError(err error, at time.Time) error {
	return fmt.Errorf("%w; a mint from %s looks it up again", err, at.UTC().Format(time.RFC3339))
}

// lookup learns the slug when the config has none, then the bot user's ID.
func (c *botIdentityCache) lookup(ctx context.Context, gh *github.Client, token string) (*botIdentity, error) {
	c.mu.Lock()
	slug := c.slug
	c.mu.Unlock()
	if slug == "" {
		app, err := gh.App(ctx)
		if err != nil {
			return nil, fmt.Errorf("learning the App's slug: %w", err)
		}
		if app.Slug == "" {
			return nil, errors.New("learning the App's slug: GitHub's answer to GET /app has none")
		}
		slug = app.Slug
		c.mu.Lock()
		c.slug = slug
		c.mu.Unlock()
	}
	login := github.BotLogin(slug)
	u, err := gh.BotUser(ctx, token, login)
	if err != nil {
		return nil, fmt.Errorf("looking up the App's bot user %s: %w", login, err)
	}
	if u.Type != "Bot" {
		return nil, fmt.Errorf("looking up the App's bot user %s: GitHub answered with a user of type %q", login, u.Type)
	}
	return &botIdentity{
		slug:   slug,
		login:  login,
		userID: u.ID,
		email:  fmt.Sprintf("%d+%s@%s", u.ID, login, c.domain),
	}, nil
}

// addBotIdentity puts the App's bot identity on a token response, looked up with the token of that response when it
// is not known yet. A failed lookup fails no mint: the response goes without the fields and says why.
func (b *backend) addBotIdentity(ctx context.Context, c *appClient, token string, resp *logical.Response) {
	id, err := c.bot.get(ctx, c.Client, token, b.now())
	if err != nil {
		resp.AddWarning(fmt.Sprintf("app_slug, bot_login, bot_user_id and commit_email are left out: %v", err))
		return
	}
	resp.Data["app_slug"] = id.slug
	resp.Data["bot_login"] = id.login
	resp.Data["bot_user_id"] = id.userID
	resp.Data["commit_email"] = id.email
}

// noreplyDomain is the domain of the App's commit email: noreply_domain when set, else GitHub's for base_url.
func (c *githubConfig) noreplyDomain() string {
	if c.NoreplyDomain != "" {
		return c.NoreplyDomain
	}
	return defaultNoreplyDomain(c.BaseURL)
}

// defaultNoreplyDomain is where GitHub gives users their noreply addresses: users.noreply.github.com for
// github.com, users.noreply.SUBDOMAIN.ghe.com for GHE.com (https://api.SUBDOMAIN.ghe.com), and
// users.noreply.HOST for GitHub Enterprise Server (https://HOST/api/v3).
func defaultNoreplyDomain(baseURL string) string {
	u, err := url.Parse(baseURL)
	host := ""
	if err == nil {
		host = strings.ToLower(u.Hostname())
	}
	switch {
	case host == "" || host == "api.github.com" || host == "github.com":
		return "users.noreply.github.com"
	case strings.HasPrefix(host, "api.") && strings.HasSuffix(host, ".ghe.com"):
		return "users.noreply." + strings.TrimPrefix(host, "api.")
	}
	return "users.noreply." + host
}

// dnsLabel is one label of a DNS name: letters, digits and inner hyphens, at most 63 characters.
var dnsLabel = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)

// checkNoreplyDomain accepts a DNS name of two labels or more, in lower case; "" unsets it. It returns the name as
// stored, or why it is refused.
func checkNoreplyDomain(raw string) (string, string) {
	d := strings.ToLower(strings.TrimSpace(raw))
	if d == "" {
		return "", ""
	}
	labels := strings.Split(d, ".")
	ok := len(d) <= 253 && len(labels) >= 2
	for _, l := range labels {
		ok = ok && dnsLabel.MatchString(l)
	}
	if !ok {
		// quoted shows the value only when it is short and on one line: a key pasted here must not be echoed.
		return "", fmt.Sprintf("%s is not a DNS name: expected a domain such as users.noreply.github.example.com "+
			"(letters, digits and hyphens in dot-separated labels, no scheme, port or trailing dot), or \"\" for GitHub's "+
			"for base_url", quoted("noreply_domain", raw))
	}
	return d, ""
}
