// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/hashicorp/vault/sdk/logical"
)

// A role's repository_patterns are shell patterns (path.Match: *, ?, [...]) over the names of the repositories its
// installation can reach. They are resolved at each mint against the installation's repository list
// (repository_cache.go), so that a repository created later is covered once the list is read again.

// normalizeRepositoryPatterns checks the patterns of a role write and drops repeats. A pattern never holds an
// identity template, on any role: a caller's metadata would then choose how much the token reaches.
func normalizeRepositoryPatterns(in []string) (out []string, p problems) {
	for _, raw := range in {
		pattern := strings.TrimSpace(raw)
		switch {
		case pattern == "":
			continue
		case strings.Contains(pattern, "{{"):
			p.reject(fmt.Sprintf("repository_patterns %q holds an identity template: patterns cannot be templated, "+
				"on any role; use a literal pattern such as team-a-*, or a templated repositories entry", shorten(pattern, 80)))
		case strings.Contains(pattern, "/"):
			p.reject(fmt.Sprintf("repository_patterns %q holds a '/': a pattern matches repository names without their "+
				"owner, such as team-a-*", shorten(pattern, 80)))
		case !validPattern(pattern):
			p.reject(fmt.Sprintf("repository_patterns %q is a malformed pattern: expected shell-style wildcards "+
				"(* any characters, ? one character, [abc] or [a-z] one of a set, [^a-z] one not in it, \\ to escape)", shorten(pattern, 80)))
		case !slices.Contains(out, pattern):
			out = append(out, pattern)
		}
	}
	return out, p
}

// validPattern reports whether path.Match accepts the pattern; it reports a malformed one whatever the name.
func validPattern(pattern string) bool {
	_, err := path.Match(pattern, "")
	return err == nil
}

// matchesPattern reports whether a repository name matches one of the role's patterns. Case is ignored, as GitHub
// ignores it in repository names: team-a-* covers Team-A-Web.
func (r *role) matchesPattern(name string) bool {
	return slices.ContainsFunc(r.RepositoryPatterns, func(pattern string) bool { return patternMatch(pattern, name) })
}

func patternMatch(pattern, name string) bool {
	ok, err := path.Match(strings.ToLower(pattern), strings.ToLower(name))
	return err == nil && ok
}

// byPatternOnly lists the names of a token write that the role allows by a pattern alone: the mint holds them to the
// installation's repository list.
func (r *role) byPatternOnly(names []string) []string {
	var out []string
	for _, name := range names {
		if stored, _ := r.repository(name); stored == "" {
			out = append(out, name)
		}
	}
	return out
}

// matching lists, in GitHub's spelling and sorted, the repositories that match the patterns, and the patterns that
// match none.
func (l *repositoryList) matching(patterns []string) (names, unmatched []string) {
	hit := make([]bool, len(patterns))
	folded := make([]string, len(patterns))
	for i, pattern := range patterns {
		folded[i] = strings.ToLower(pattern)
	}
	// The list's keys are the names folded to lower case already.
	for key, name := range l.spelling {
		matched := false
		for i, pattern := range folded {
			if ok, err := path.Match(pattern, key); err == nil && ok {
				hit[i], matched = true, true
			}
		}
		if matched {
			names = append(names, name)
		}
	}
	for i, pattern := range patterns {
		if !hit[i] {
			unmatched = append(unmatched, pattern)
		}
	}
	slices.Sort(names)
	return names, unmatched
}

// resolvePatterns completes the request of a role with repository patterns from the installation's repository
// list: a request for the role's whole scope gets every repository that matches (each pattern must match one), and
// the names of a token write that only a pattern allows are held to the list, in GitHub's spelling. It returns the
// installation to mint from (looked up again when GitHub no longer knows a cached one), the request, and what is
// refused: a response, or a 403 error.
func (m *mint) resolvePatterns(ctx context.Context, in installation, tr tokenRequest) (installation, tokenRequest, *logical.Response, error) {
	if len(tr.patterns) == 0 && len(tr.byPattern) == 0 {
		return in, tr, nil, nil
	}
	in, list, err := m.repositoryList(ctx, in, false)
	if err != nil {
		return in, tr, nil, err
	}
	if len(tr.byPattern) > 0 {
		var misspelled []string
		if in, list, misspelled, err = m.heldToList(ctx, in, list, tr.byPattern); err != nil {
			return in, tr, nil, err
		}
		if len(misspelled) > 0 {
			resp, err := (&problems{malformed: misspelled}).response(m.roleName)
			return in, tr, resp, err
		}
	}
	if len(tr.patterns) == 0 {
		return in, tr, nil, nil
	}
	matched, unmatched := list.matching(tr.patterns)
	if len(unmatched) > 0 {
		verb := "matches"
		if len(unmatched) > 1 {
			verb = "each match"
		}
		return in, tr, nil, logical.CodedError(http.StatusForbidden, fmt.Sprintf("role %q: repository_patterns %s "+
			"%s none of the %d repositories installation %d can reach%s: no token was minted; fix the pattern, or "+
			"wait for the engine to list the repositories again (every repository_list_ttl) if one was just created",
			m.roleName, joinQuoted(unmatched), verb, len(list.spelling), in.id, partialNote(list)))
	}
	repos := slices.Clone(tr.Repositories)
	for _, name := range matched {
		if stored, _ := m.role.repository(name); stored == "" {
			repos = append(repos, name)
		}
	}
	if n := len(repos) + len(tr.RepositoryIDs); n > maxRepositories {
		return in, tr, nil, logical.CodedError(http.StatusForbidden, fmt.Sprintf("role %q covers %d repositories "+
			"(repository_patterns %s match %d): GitHub accepts at most %d in one token, and no token was minted; "+
			"narrow the patterns, or ask for fewer repositories by writing repositories to the token path",
			m.roleName, n, joinQuoted(tr.patterns), len(matched), maxRepositories))
	}
	tr.Repositories, tr.patterns = repos, nil
	return in, tr, nil, nil
}

// repositoryList reads the installation's repository list from the cache (again, at most every relistInterval,
// when relist is set), looking an owner's installation up again when GitHub no longer knows the cached one.
func (m *mint) repositoryList(ctx context.Context, in installation, relist bool) (installation, *repositoryList, error) {
	get := m.c.repositories.list
	if relist {
		get = m.c.repositories.relist
	}
	now := m.b.now()
	list, err := get(ctx, m.c.Client, in.id, now)
	if again, ok := m.moved(ctx, in, err); ok {
		in = again
		list, err = get(ctx, m.c.Client, in.id, now)
	}
	if err != nil {
		return in, nil, githubError(err, opMint, fmt.Sprintf("listing the repositories of installation %d for role %q", in.id, m.roleName), adviceArgs{})
	}
	return in, list, nil
}

// partialNote says that a list is not all the installation's repositories.
func partialNote(l *repositoryList) string {
	if l.complete {
		return ""
	}
	return " (GitHub listed only the first of them; the engine reads no more)"
}

// joinQuoted quotes each item and joins them with commas.
func joinQuoted(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = fmt.Sprintf("%q", shorten(s, 80))
	}
	return strings.Join(quoted, ", ")
}
