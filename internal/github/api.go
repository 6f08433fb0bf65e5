// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// App is the GitHub App the JWT authenticates as.
type App struct {
	ID       int64   `json:"id"`
	Slug     string  `json:"slug"`
	Name     string  `json:"name"`
	ClientID string  `json:"client_id"`
	Owner    Account `json:"owner"`
}

// Account is the user or organisation an App or installation belongs to.
type Account struct {
	ID    int64  `json:"id"`
	Login string `json:"login"`
	Type  string `json:"type"` // "Organization" or "User"
}

// Installation is an installation of the App on an account.
type Installation struct {
	ID                  int64             `json:"id"`
	AppID               int64             `json:"app_id"`
	Account             Account           `json:"account"`
	RepositorySelection string            `json:"repository_selection"`
	Permissions         map[string]string `json:"permissions"`
	SuspendedAt         *time.Time        `json:"suspended_at"`
}

// Suspended reports whether the installation is suspended.
func (i *Installation) Suspended() bool { return i.SuspendedAt != nil }

// Repository is what the plugin keeps of GitHub's repository objects.
type Repository struct {
	ID       int64   `json:"id"`
	Name     string  `json:"name"`
	FullName string  `json:"full_name"`
	Owner    Account `json:"owner"`
}

// TokenRequest narrows an installation token. Empty fields mean everything the installation has.
type TokenRequest struct {
	Repositories  []string          `json:"repositories,omitempty"`
	RepositoryIDs []int64           `json:"repository_ids,omitempty"`
	Permissions   map[string]string `json:"permissions,omitempty"`
}

// Token is a minted installation access token.
type Token struct {
	Token               string            `json:"token"`
	ExpiresAt           time.Time         `json:"expires_at"`
	Permissions         map[string]string `json:"permissions"`
	RepositorySelection string            `json:"repository_selection"`
	Repositories        []Repository      `json:"repositories"`
}

// String keeps the token's value out of any log line or error that formats a Token.
func (t Token) String() string {
	return fmt.Sprintf("installation token (expires %s, %d permissions, %d repositories)",
		t.ExpiresAt.Format(time.RFC3339), len(t.Permissions), len(t.Repositories))
}

// GoString does the same for %#v.
func (t Token) GoString() string { return t.String() }

// App returns the App the configured key and ID authenticate as (GET /app). It is the cheapest call that proves
// the credentials.
func (c *Client) App(ctx context.Context) (*App, error) {
	var app App
	if _, err := c.do(ctx, call{method: http.MethodGet, route: "/app", path: "/app", out: &app}); err != nil {
		return nil, err
	}
	return &app, nil
}

// MaxPages bounds how many pages of 100 a listing reads: a server that always announces another page cannot keep a
// request listing forever. 100 pages hold 10,000 installations or repositories.
const MaxPages = 100

// Installations lists the App's installations, all pages up to MaxPages (GET /app/installations), each once. complete
// is false when GitHub announced more pages than that.
func (c *Client) Installations(ctx context.Context) (list []Installation, complete bool, err error) {
	// Pages are read one request at a time: an installation added or removed meanwhile shifts the others, so that
	// GitHub may list one on two pages. The first listing is kept.
	seen := map[int64]bool{}
	complete, err = c.pages(ctx, call{method: http.MethodGet, route: "/app/installations", path: "/app/installations"}, func(cl *call) func() int {
		var batch []Installation
		cl.out = &batch
		return func() int {
			for _, in := range batch {
				if !seen[in.ID] {
					seen[in.ID] = true
					list = append(list, in)
				}
			}
			return len(batch)
		}
	})
	return list, complete, err
}

// Installation returns one installation (GET /app/installations/{id}).
func (c *Client) Installation(ctx context.Context, id int64) (*Installation, error) {
	var in Installation
	path := "/app/installations/" + strconv.FormatInt(id, 10)
	if _, err := c.do(ctx, call{method: http.MethodGet, route: "/app/installations/{installation_id}", path: path, out: &in}); err != nil {
		return nil, err
	}
	return &in, nil
}

// FindInstallation finds the App's installation on an organisation or user account: GET /orgs/{owner}/installation,
// then GET /users/{owner}/installation when the first answers 404. GitHub matches logins case-insensitively.
func (c *Client) FindInstallation(ctx context.Context, owner string) (*Installation, error) {
	var in Installation
	esc := url.PathEscape(owner)
	_, err := c.do(ctx, call{method: http.MethodGet, route: "/orgs/{org}/installation", path: "/orgs/" + esc + "/installation", out: &in})
	if KindOf(err) == KindNotFound {
		_, err = c.do(ctx, call{method: http.MethodGet, route: "/users/{username}/installation", path: "/users/" + esc + "/installation", out: &in})
	}
	if err != nil {
		return nil, err
	}
	return &in, nil
}

// CreateToken mints an installation access token (POST /app/installations/{id}/access_tokens).
func (c *Client) CreateToken(ctx context.Context, installationID int64, req TokenRequest) (*Token, error) {
	var tok Token
	path := "/app/installations/" + strconv.FormatInt(installationID, 10) + "/access_tokens"
	cl := call{method: http.MethodPost, route: "/app/installations/{installation_id}/access_tokens", path: path, out: &tok}
	// GitHub accepts an empty body as "everything"; send one only when it narrows.
	if len(req.Repositories) > 0 || len(req.RepositoryIDs) > 0 || len(req.Permissions) > 0 {
		cl.body = req
	}
	if _, err := c.do(ctx, cl); err != nil {
		return nil, err
	}
	return &tok, nil
}

// RevokeToken revokes an installation token (DELETE /installation/token, authenticated by the token itself). A
// token GitHub no longer accepts (401: expired or already revoked) counts as revoked.
func (c *Client) RevokeToken(ctx context.Context, token string) error {
	_, err := c.do(ctx, call{method: http.MethodDelete, route: "/installation/token", path: "/installation/token", token: token})
	if KindOf(err) == KindBadCredentials {
		c.logger.Debug("github: token already expired or revoked")
		return nil
	}
	return err
}

// TokenRepositories lists the repositories an installation token reaches (GET /installation/repositories, all
// pages). It shows what a token can really do; more than MaxPages pages is an error, since a partial list would
// mislead.
func (c *Client) TokenRepositories(ctx context.Context, token string) ([]Repository, error) {
	all, complete, err := c.tokenRepositories(ctx, token)
	if err == nil && !complete {
		err = &Error{Kind: KindOther, Method: http.MethodGet, Path: "/installation/repositories",
			Message: fmt.Sprintf("the token reaches more repositories than %d pages hold", MaxPages)}
	}
	return all, err
}

// InstallationRepositories lists the repositories an installation can reach, with their names as GitHub spells
// them (GET /installation/repositories, all pages up to MaxPages). The listing needs an installation token: one is
// minted for it with metadata=read alone and revoked as soon as the list is read, so that no token outlives the
// call. complete is false when GitHub announced more pages than MaxPages.
func (c *Client) InstallationRepositories(ctx context.Context, installationID int64) (repos []Repository, complete bool, err error) {
	tok, err := c.CreateToken(ctx, installationID, TokenRequest{Permissions: map[string]string{"metadata": "read"}})
	if err != nil {
		return nil, false, err
	}
	defer c.revokeListingToken(ctx, installationID, tok.Token)
	return c.tokenRepositories(ctx, tok.Token)
}

// listingTokenRevokeTimeout bounds the revocation of a token minted to list repositories.
const listingTokenRevokeTimeout = 30 * time.Second

// revokeListingToken revokes the token InstallationRepositories minted, even when the caller has gone away. A
// failure is logged, not returned: the list is good, and the token (metadata=read) dies within the hour.
func (c *Client) revokeListingToken(ctx context.Context, installationID int64, token string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), listingTokenRevokeTimeout)
	defer cancel()
	if err := c.RevokeToken(ctx, token); err != nil {
		c.logger.Warn("github: revoking the token minted to list an installation's repositories failed; it expires within the hour",
			"installation_id", installationID, "error", err)
	}
}

// tokenRepositories reads every page of GET /installation/repositories for a token, up to MaxPages.
func (c *Client) tokenRepositories(ctx context.Context, token string) (all []Repository, complete bool, err error) {
	cl := call{method: http.MethodGet, route: "/installation/repositories", path: "/installation/repositories", token: token}
	complete, err = c.pages(ctx, cl, func(cl *call) func() int {
		var batch struct {
			Repositories []Repository `json:"repositories"`
		}
		cl.out = &batch
		return func() int { all = append(all, batch.Repositories...); return len(batch.Repositories) }
	})
	if err != nil {
		return nil, false, err
	}
	return all, complete, nil
}

// pages runs a listing call page by page (per_page=100) for as long as GitHub's Link header announces a next page,
// up to MaxPages. page prepares each call (setting where the answer is decoded) and returns a function that keeps
// the decoded page and says how many items it held. The next page's URL is built here, never taken from the Link
// header: the JWT must not travel to wherever a Link header points.
func (c *Client) pages(ctx context.Context, cl call, page func(*call) func() int) (complete bool, err error) {
	for n := 1; n <= MaxPages; n++ {
		cl.query = url.Values{"per_page": {"100"}, "page": {strconv.Itoa(n)}}
		keep := page(&cl)
		ans, err := c.do(ctx, cl)
		if err != nil {
			return false, err
		}
		if keep() == 0 || !hasNextPage(ans.header) {
			return true, nil
		}
	}
	return false, nil
}

// hasNextPage reads GitHub's Link header for a rel="next" entry.
func hasNextPage(h http.Header) bool {
	for _, link := range h.Values("Link") {
		for _, part := range strings.Split(link, ",") {
			if strings.Contains(part, `rel="next"`) {
				return true
			}
		}
	}
	return false
}
