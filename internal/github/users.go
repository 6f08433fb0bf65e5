// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// User is what the plugin keeps of GitHub's user objects.
type User struct {
	ID    int64  `json:"id"`
	Login string `json:"login"`
	Type  string `json:"type"` // "User", "Organization" or "Bot"
}

// BotLogin is the login of an App's bot user, the account that commits made as the App are attributed to.
func BotLogin(slug string) string { return slug + "[bot]" }

// BotUser looks up a user (GET /users/{username}) with an installation token: in practice an App's bot user,
// BotLogin(slug), whose ID makes the App's commit email. A token is required because GitHub hides bot users of
// Apps installed in an organisation with Enterprise Managed Users from anonymous callers (404), and because an
// anonymous call would spend the server's IP budget of 60 requests an hour.
//
// It goes through the mount's Gate as a token-authenticated call, like InstallationRateLimit: the installation's
// budget pays for it, not the App's. A login GitHub does not know gives a KindNotFound error.
func (c *Client) BotUser(ctx context.Context, token, login string) (*User, error) {
	if token == "" {
		// An empty token would make the call an App call, signed with the JWT.
		return nil, errors.New("github: looking up a user needs an installation token")
	}
	var u User
	cl := call{method: http.MethodGet, route: "/users/{username}", path: "/users/" + url.PathEscape(login), token: token, out: &u}
	ans, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	switch {
	case u.ID <= 0 || u.Login == "":
		return nil, &Error{Kind: KindOther, Method: cl.method, Path: cl.path, StatusCode: ans.status,
			Message: "unreadable answer: no user ID or login"}
	case !strings.EqualFold(u.Login, login):
		return nil, &Error{Kind: KindOther, Method: cl.method, Path: cl.path, StatusCode: ans.status,
			Message: fmt.Sprintf("the answer is user %q, not %q", u.Login, login)}
	}
	return &u, nil
}
