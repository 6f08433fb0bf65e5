// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"net/http"
	"net/url"
	"strings"
)

// ghesPrefix is where GitHub Enterprise Server serves the REST API.
const ghesPrefix = "/api/v3"

// authMode is how a route wants callers to authenticate.
type authMode int

const (
	authApp          authMode = iota // Authorization: Bearer <JWT>
	authInstallation                 // Authorization: token <installation token> (or Bearer)
	authOptional                     // anything, or nothing: GET /rate_limit
)

// route is one REST endpoint. pattern uses GitHub's path templates, which also name the stats keys.
type route struct {
	method  string
	pattern string
	auth    authMode
	doc     string // documentation_url for this endpoint's errors
	handle  func(*Server, *call) *apiError
	parts   []string
}

func (rt *route) key() string { return rt.method + " " + rt.pattern }

func newRoutes() []*route {
	routes := []*route{
		{method: http.MethodGet, pattern: "/app", auth: authApp,
			doc: "https://docs.github.com/rest/apps/apps#get-the-authenticated-app", handle: (*Server).getApp},
		{method: http.MethodGet, pattern: "/app/installations", auth: authApp,
			doc: "https://docs.github.com/rest/apps/apps#list-installations-for-the-authenticated-app", handle: (*Server).listInstallations},
		{method: http.MethodGet, pattern: "/app/installations/{installation_id}", auth: authApp,
			doc: "https://docs.github.com/rest/apps/apps#get-an-installation-for-the-authenticated-app", handle: (*Server).getInstallation},
		{method: http.MethodPost, pattern: "/app/installations/{installation_id}/access_tokens", auth: authApp,
			doc: "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app", handle: (*Server).createToken},
		{method: http.MethodGet, pattern: "/orgs/{org}/installation", auth: authApp,
			doc: "https://docs.github.com/rest/apps/apps#get-an-organization-installation-for-the-authenticated-app", handle: (*Server).getOrgInstallation},
		{method: http.MethodGet, pattern: "/users/{username}/installation", auth: authApp,
			doc: "https://docs.github.com/rest/apps/apps#get-a-user-installation-for-the-authenticated-app", handle: (*Server).getUserInstallation},
		{method: http.MethodGet, pattern: "/repos/{owner}/{repo}/installation", auth: authApp,
			doc: "https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app", handle: (*Server).getRepoInstallation},
		{method: http.MethodDelete, pattern: "/installation/token", auth: authInstallation,
			doc: "https://docs.github.com/rest/apps/installations#revoke-an-installation-access-token", handle: (*Server).revokeToken},
		{method: http.MethodGet, pattern: "/installation/repositories", auth: authInstallation,
			doc: "https://docs.github.com/rest/apps/installations#list-repositories-accessible-to-the-app-installation", handle: (*Server).listTokenRepositories},
		{method: http.MethodGet, pattern: "/users/{username}", auth: authOptional,
			doc: "https://docs.github.com/rest/users/users#get-a-user", handle: (*Server).getUser},
		{method: http.MethodGet, pattern: "/rate_limit", auth: authOptional,
			doc: "https://docs.github.com/rest/rate-limit/rate-limit#get-rate-limit-status-for-the-authenticated-user", handle: (*Server).getRateLimit},
	}
	for _, rt := range routes {
		rt.parts = strings.Split(strings.TrimPrefix(rt.pattern, "/"), "/")
	}
	return routes
}

// match finds the route for a request path (without the /api/v3 prefix) and its parameters.
// A known path with another method is no route either: GitHub answers 404 there too.
func match(routes []*route, method, escapedPath string) (*route, map[string]string) {
	parts := strings.Split(strings.TrimPrefix(escapedPath, "/"), "/")
	for _, rt := range routes {
		if rt.method != method || len(rt.parts) != len(parts) {
			continue
		}
		params, ok := matchParts(rt.parts, parts)
		if ok {
			return rt, params
		}
	}
	return nil, nil
}

func matchParts(pattern, parts []string) (map[string]string, bool) {
	var params map[string]string
	for i, p := range pattern {
		if name, isParam := strings.CutPrefix(p, "{"); isParam {
			value, err := url.PathUnescape(parts[i])
			if err != nil || value == "" || strings.Contains(value, "/") {
				return nil, false
			}
			if params == nil {
				params = make(map[string]string)
			}
			params[strings.TrimSuffix(name, "}")] = value
			continue
		}
		if p != parts[i] {
			return nil, false
		}
	}
	return params, true
}

// splitPrefix removes the GHES /api/v3 prefix from an escaped path.
func splitPrefix(escapedPath string) (prefix, rest string) {
	if escapedPath == ghesPrefix {
		return ghesPrefix, "/"
	}
	if rest, ok := strings.CutPrefix(escapedPath, ghesPrefix+"/"); ok {
		return ghesPrefix, "/" + rest
	}
	return "", escapedPath
}
