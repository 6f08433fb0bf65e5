// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// rateLimitBody is one counter of GET /rate_limit (GitHub's "rate-limit" schema).
type rateLimitBody struct {
	Limit     int   `json:"limit"`
	Remaining int   `json:"remaining"`
	Used      int   `json:"used"`
	Reset     int64 `json:"reset"`
}

// InstallationRateLimit reads the core rate limit of the installation a token belongs to (GET /rate_limit, which
// GitHub does not count against any limit): what the installation's tokens have left in the current window, and when
// the window ends. A token GitHub no longer accepts (expired, revoked) gives a KindBadCredentials error.
//
// It goes through the mount's Gate as a token-authenticated call, like a revocation: it takes a concurrency slot
// and fails fast while GitHub is failing, but a rate limit GitHub announced for the App neither holds it back nor is
// lifted by its answer, and its X-RateLimit headers (the installation's) do not replace the App's rate limit as the
// Gate knows it. It is never a mint: observers see it as "GET /rate_limit".
func (c *Client) InstallationRateLimit(ctx context.Context, token string) (RateLimit, error) {
	if token == "" {
		// An empty token would make the call an App call, signed with the JWT: the App's counter, not the installation's.
		return RateLimit{}, errors.New("github: reading an installation's rate limit needs one of its installation tokens")
	}
	var body struct {
		Resources struct {
			Core *rateLimitBody `json:"core"`
		} `json:"resources"`
		// Rate is the same counter as resources.core; GitHub drops it from API version 2026-03-10.
		Rate *rateLimitBody `json:"rate"`
	}
	cl := call{method: http.MethodGet, route: "/rate_limit", path: "/rate_limit", token: token, out: &body}
	ans, err := c.do(ctx, cl)
	if err != nil {
		return RateLimit{}, err
	}
	core := body.Resources.Core
	if core == nil {
		core = body.Rate
	}
	if core == nil || core.Limit < 0 || core.Remaining < 0 || core.Used < 0 {
		return RateLimit{}, &Error{Kind: KindOther, Method: cl.method, Path: cl.path, StatusCode: ans.status,
			Message: "unreadable answer: no core rate limit in resources.core or rate"}
	}
	seen, err := http.ParseTime(ans.header.Get("Date"))
	if err != nil {
		seen = c.now()
	}
	return RateLimit{
		Limit:     core.Limit,
		Remaining: core.Remaining,
		Used:      core.Used,
		Reset:     time.Unix(core.Reset, 0),
		Resource:  "core",
		Seen:      seen,
	}, nil
}
