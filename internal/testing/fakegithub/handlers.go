// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// This file holds the read-only endpoints; token creation is in mint.go.

// GET /app
func (s *Server) getApp(c *call) *apiError {
	s.mu.RLock()
	obj := s.integration(c.links, c.app)
	s.mu.RUnlock()
	c.writeJSON(http.StatusOK, obj)
	return nil
}

// GET /app/installations
func (s *Server) listInstallations(c *call) *apiError {
	q := c.r.URL.Query()
	var since time.Time
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return errInvalidRequest("%q is not a valid date-time for 'since'.", v)
		}
		since = t
	}
	page := parsePage(q)

	s.mu.RLock()
	var all []*installationState
	for _, in := range s.st.appInstallations(c.app.ID) {
		if in.updatedAt.After(since) {
			all = append(all, in)
		}
	}
	lo, hi := page.bounds(len(all))
	out := make([]installationObject, 0, hi-lo)
	for _, in := range all[lo:hi] {
		out = append(out, s.installation(c.links, in))
	}
	s.mu.RUnlock()

	c.setLinkHeader(page, len(all))
	c.writeJSON(http.StatusOK, out)
	return nil
}

// GET /app/installations/{installation_id}
func (s *Server) getInstallation(c *call) *apiError {
	id, err := strconv.ParseInt(c.params["installation_id"], 10, 64)
	if err != nil {
		return errNotFound()
	}
	return s.answerInstallation(c, func(in *installationState) bool { return in.ID == id })
}

// GET /orgs/{org}/installation: only organization accounts.
func (s *Server) getOrgInstallation(c *call) *apiError {
	org := c.params["org"]
	return s.answerInstallation(c, func(in *installationState) bool {
		return in.AccountType == "Organization" && strings.EqualFold(in.Account, org)
	})
}

// GET /users/{username}/installation: any account, as on GitHub.
func (s *Server) getUserInstallation(c *call) *apiError {
	user := c.params["username"]
	return s.answerInstallation(c, func(in *installationState) bool {
		return strings.EqualFold(in.Account, user)
	})
}

// GET /repos/{owner}/{repo}/installation: the installation that reaches the repository.
func (s *Server) getRepoInstallation(c *call) *apiError {
	owner, repo := c.params["owner"], c.params["repo"]
	return s.answerInstallation(c, func(in *installationState) bool {
		if !strings.EqualFold(in.Account, owner) {
			return false
		}
		for _, r := range in.Repositories {
			if strings.EqualFold(r.Name, repo) {
				return true
			}
		}
		return false
	})
}

// answerInstallation answers with the authenticated App's installation that matches, or 404.
func (s *Server) answerInstallation(c *call, matches func(*installationState) bool) *apiError {
	s.mu.RLock()
	var obj *installationObject
	for _, in := range s.st.appInstallations(c.app.ID) {
		if matches(in) {
			o := s.installation(c.links, in)
			obj = &o
			break
		}
	}
	s.mu.RUnlock()
	if obj == nil {
		return errNotFound()
	}
	c.writeJSON(http.StatusOK, obj)
	return nil
}

// DELETE /installation/token
func (s *Server) revokeToken(c *call) *apiError {
	now := s.nowFor(c.token.appID)
	s.mu.Lock()
	c.token.revoked = true
	c.token.revokedAt = now
	s.mu.Unlock()
	c.noContent()
	return nil
}

type tokenRepositoriesBody struct {
	TotalCount          int                `json:"total_count"`
	RepositorySelection string             `json:"repository_selection"`
	Repositories        []repositoryObject `json:"repositories"`
}

// GET /installation/repositories: what the token reaches.
func (s *Server) listTokenRepositories(c *call) *apiError {
	page := parsePage(c.r.URL.Query())
	s.mu.RLock()
	t := c.token
	in := s.st.installations[t.installationID]
	acct := s.st.accounts[strings.ToLower(in.Account)]
	repos := s.st.tokenRepositories(t)
	lo, hi := page.bounds(len(repos))
	body := tokenRepositoriesBody{
		TotalCount:          len(repos),
		RepositorySelection: t.selection,
		Repositories:        make([]repositoryObject, 0, hi-lo),
	}
	for _, repo := range repos[lo:hi] {
		body.Repositories = append(body.Repositories, s.repository(c.links, c.version, acct, repo, t.permissions))
	}
	s.mu.RUnlock()

	c.setLinkHeader(page, len(repos))
	c.writeJSON(http.StatusOK, body)
	return nil
}

type rateLimitObject struct {
	Limit     int   `json:"limit"`
	Used      int   `json:"used"`
	Remaining int   `json:"remaining"`
	Reset     int64 `json:"reset"`
}

type rateLimitOverview struct {
	Resources map[string]rateLimitObject `json:"resources"`
	Rate      *rateLimitObject           `json:"rate,omitempty"` // gone in API version 2026-03-10
}

// GET /rate_limit: the caller's core counter, and untouched counters for the other resources.
func (s *Server) getRateLimit(c *call) *apiError {
	now := s.nowFor(c.appID)
	fresh := func(limit int, window time.Duration) rateLimitObject {
		return rateLimitObject{Limit: limit, Remaining: limit, Reset: now.Add(window).Unix()}
	}
	core := rateLimitObject{Limit: c.rate.limit, Used: c.rate.used, Remaining: c.rate.remaining(), Reset: c.rate.reset.Unix()}
	body := rateLimitOverview{Resources: map[string]rateLimitObject{
		"core":                        core,
		"search":                      fresh(30, time.Minute),
		"code_search":                 fresh(10, time.Minute),
		"graphql":                     fresh(5000, time.Hour),
		"integration_manifest":        fresh(5000, time.Hour),
		"source_import":               fresh(100, time.Minute),
		"dependency_snapshots":        fresh(100, time.Minute),
		"dependency_sbom":             fresh(100, time.Hour),
		"code_scanning_autofix":       fresh(10, time.Minute),
		"actions_runner_registration": fresh(10000, time.Hour),
		"scim":                        fresh(15000, time.Hour),
	}}
	if c.version != apiVersion20260310 {
		body.Rate = &core
	}
	c.writeJSON(http.StatusOK, body)
	return nil
}
