// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// GitHub accepts at most 500 repositories (names and IDs together) in one token request.
const maxTokenRepositories = 500

const maxRequestBody = 1 << 20

// mintRequest is the body of POST /app/installations/{installation_id}/access_tokens.
type mintRequest struct {
	repositories  []string
	repositoryIDs []int64
	permissions   map[string]string
}

func (m mintRequest) scoped() bool { return len(m.repositories)+len(m.repositoryIDs) > 0 }

type installationTokenBody struct {
	Token               string             `json:"token"`
	ExpiresAt           string             `json:"expires_at"`
	Permissions         map[string]string  `json:"permissions"`
	RepositorySelection string             `json:"repository_selection"`
	Repositories        []repositoryObject `json:"repositories,omitempty"`
}

// unstatedTokenBody is a token answer that states nothing of the token's scope (Faults.OmitTokenScope).
type unstatedTokenBody struct {
	Token     string `json:"token"`
	ExpiresAt string `json:"expires_at"`
}

// POST /app/installations/{installation_id}/access_tokens
func (s *Server) createToken(c *call) *apiError {
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, maxRequestBody))
	if err != nil {
		return newError(http.StatusBadRequest, msgProblemsParsingJSON)
	}
	req, e := parseMintRequest(body)
	if e != nil {
		return e
	}
	id, err := strconv.ParseInt(c.params["installation_id"], 10, 64)
	if err != nil {
		return errNotFound()
	}

	overGrant, longTokens, omitScope := s.tokenFaults(c.app.ID)
	now := s.nowFor(c.app.ID)
	long := longTokens || strings.EqualFold(c.r.Header.Get("X-GitHub-Stateless-S2S-Token"), "enabled")

	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.st.installations[id]
	if in == nil || in.AppID != c.app.ID {
		return errNotFound()
	}
	if in.Suspended {
		return newError(http.StatusForbidden, msgSuspended)
	}
	repoIDs, e := scopeRepositories(in, req)
	if e != nil {
		return e
	}
	perms, e := scopePermissions(in, req.permissions)
	if e != nil {
		return e
	}
	selection := in.RepositorySelection
	if repoIDs != nil {
		selection = "selected"
	}
	listRepos := repoIDs != nil
	if overGrant {
		// A broken or malicious GitHub (or proxy) hands out more than was asked for.
		perms = maps.Clone(in.Permissions)
		repoIDs, selection = nil, in.RepositorySelection
	}

	t := &tokenState{
		appID:          in.AppID,
		installationID: in.ID,
		expiresAt:      expiry(now, s.tokenLifetime),
		permissions:    perms,
		repoIDs:        repoIDs,
		selection:      selection,
	}
	for t.value == "" || s.st.tokens[t.value] != nil {
		if long {
			t.value = longToken(in.AppID, in.ID, now, t.expiresAt)
		} else {
			t.value = classicToken()
		}
	}
	s.st.tokens[t.value] = t
	s.stats.issuedToken(in.AppID)

	if omitScope {
		c.writeJSON(http.StatusCreated, unstatedTokenBody{Token: t.value, ExpiresAt: timestamp(t.expiresAt)})
		return nil
	}
	resp := installationTokenBody{
		Token:               t.value,
		ExpiresAt:           timestamp(t.expiresAt),
		Permissions:         maps.Clone(perms),
		RepositorySelection: selection,
	}
	if listRepos {
		acct := s.st.accounts[strings.ToLower(in.Account)]
		resp.Repositories = []repositoryObject{}
		for _, repo := range s.st.tokenRepositories(t) {
			resp.Repositories = append(resp.Repositories, s.repository(c.links, c.version, acct, repo, perms))
		}
	}
	c.writeJSON(http.StatusCreated, resp)
	return nil
}

// scopeRepositories resolves the repositories asked for to IDs, in the installation's order.
// nil means the request did not limit repositories.
func scopeRepositories(in *installationState, req mintRequest) ([]int64, *apiError) {
	if !req.scoped() {
		return nil, nil
	}
	if len(req.repositories)+len(req.repositoryIDs) > maxTokenRepositories {
		return nil, errUnprocessable("Too many repositories were requested. The maximum is 500 repositories and repository IDs together.")
	}
	byName := make(map[string]int64, len(in.Repositories))
	byID := make(map[int64]bool, len(in.Repositories))
	for _, repo := range in.Repositories {
		byName[strings.ToLower(repo.Name)] = repo.ID
		byID[repo.ID] = true
	}
	want := make(map[int64]bool)
	for _, name := range req.repositories {
		// GitHub wants bare names: "owner/name" does not name a repository here.
		id, ok := byName[strings.ToLower(name)]
		if !ok {
			return nil, errUnprocessable(msgRepoInaccessible)
		}
		want[id] = true
	}
	for _, id := range req.repositoryIDs {
		if !byID[id] {
			return nil, errUnprocessable(msgRepoInaccessible)
		}
		want[id] = true
	}
	out := make([]int64, 0, len(want))
	for _, repo := range in.Repositories {
		if want[repo.ID] {
			out = append(out, repo.ID)
		}
	}
	return out, nil
}

// scopePermissions checks the permissions asked for against the installation's.
// None asked means all of the installation's. As GitHub does, a token that asks for
// permissions also gets metadata:read when the installation has metadata.
func scopePermissions(in *installationState, asked map[string]string) (map[string]string, *apiError) {
	if len(asked) == 0 {
		return maps.Clone(in.Permissions), nil
	}
	names := slices.Sorted(maps.Keys(asked))
	for _, name := range names {
		granted, ok := in.Permissions[name]
		if !ok {
			return nil, errUnprocessable(msgPermNotGranted)
		}
		if github.LevelRank(asked[name]) > github.LevelRank(granted) {
			return nil, errUnprocessable(msgPermLevel)
		}
	}
	out := maps.Clone(asked)
	if _, has := in.Permissions["metadata"]; has {
		if _, askedFor := out["metadata"]; !askedFor {
			out["metadata"] = "read"
		}
	}
	return out, nil
}

// parseMintRequest reads the optional body, refusing what GitHub's request schema refuses,
// with messages in the style of GitHub's schema validation.
func parseMintRequest(body []byte) (mintRequest, *apiError) {
	var req mintRequest
	if len(bytes.TrimSpace(body)) == 0 {
		return req, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return req, newError(http.StatusBadRequest, msgProblemsParsingJSON)
	}

	if raw, ok := fields["repositories"]; ok && !isNull(raw) {
		items, e := arrayItems("repositories", raw)
		if e != nil {
			return req, e
		}
		for _, item := range items {
			var name string
			if err := json.Unmarshal(item, &name); err != nil {
				return req, errInvalidRequest("For 'items', %s is not a string.", item)
			}
			req.repositories = append(req.repositories, name)
		}
	}

	if raw, ok := fields["repository_ids"]; ok && !isNull(raw) {
		items, e := arrayItems("repository_ids", raw)
		if e != nil {
			return req, e
		}
		for _, item := range items {
			id, err := strconv.ParseInt(string(item), 10, 64)
			if err != nil {
				return req, errInvalidRequest("For 'items', %s is not an integer.", item)
			}
			req.repositoryIDs = append(req.repositoryIDs, id)
		}
	}

	if raw, ok := fields["permissions"]; ok && !isNull(raw) {
		var perms map[string]json.RawMessage
		if err := json.Unmarshal(raw, &perms); err != nil {
			return req, errInvalidRequest("For 'properties/permissions', %s is not an object.", raw)
		}
		req.permissions = make(map[string]string, len(perms))
		for _, name := range slices.Sorted(maps.Keys(perms)) {
			var level string
			if err := json.Unmarshal(perms[name], &level); err != nil {
				return req, errInvalidRequest("For 'properties/%s', %s is not a string.", name, perms[name])
			}
			if e := checkRequestedLevel(name, level); e != nil {
				return req, e
			}
			req.permissions[name] = level
		}
	}
	return req, nil
}

func arrayItems(field string, raw json.RawMessage) ([]json.RawMessage, *apiError) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, errInvalidRequest("For 'properties/%s', %s is not an array.", field, raw)
	}
	return items, nil
}

// checkRequestedLevel refuses levels the schema does not allow for a permission
// (e.g. contents:admin); names the table does not know may ask read, write or admin.
func checkRequestedLevel(name, level string) *apiError {
	allowed, known := github.PermissionLevels(name)
	if !known {
		allowed = []string{"read", "write", "admin"}
	}
	if slices.Contains(allowed, level) {
		return nil
	}
	quoted, _ := json.Marshal(allowed)
	return errInvalidRequest("For 'properties/%s', %q is not one of %s.", name, level, strings.ReplaceAll(string(quoted), ",", ", "))
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// expiry is when a token issued now dies. It is a whole second, as GitHub's expires_at shows
// it: rounded up for live tokens, so that expires_at never comes before the real end, and
// down for tokens born dead (lifetime <= 0), so that they are dead at once.
func expiry(now time.Time, lifetime time.Duration) time.Time {
	t := now.Add(lifetime)
	r := t.Truncate(time.Second)
	if lifetime > 0 && !r.Equal(t) {
		r = r.Add(time.Second)
	}
	return r
}
