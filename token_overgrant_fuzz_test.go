// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// FuzzExcessGrant: excessGrant against requests as narrow builds them (levels read, write or admin) and tokens as
// GitHub could answer. Properties: a token equal to the request (plus metadata=read, with GitHub's spelling of the
// names) or narrower is never reported; a token broader in one way is always reported: a permission not asked
// (other than metadata=read), a level above the asked one or unknown, a repository not asked, one asked by name but
// of another account, a repository_selection other than "selected" when repositories were asked. What an answer
// leaves out (permissions, repository_selection, repositories) is not broader: such a token is returned with a
// warning (unstatedScope), never refused for it. For any token, it reports something exactly when the token is
// broader by those rules, and never names the token's value.
func FuzzExcessGrant(f *testing.F) {
	type seed struct {
		reqRepos, reqIDs, reqPerms string
		account                    int64
		tokRepos, tokPerms, sel    string
		mutation                   uint8
	}
	for _, s := range []seed{
		{"api,web", "3003", "contents=read,issues=write", 1, "1:3001:api,1:3002:web,9:3003:infra", "contents=read,issues=write,metadata=read", "selected", 0},
		{"api", "", "contents=read", 1, "1:3001:API", "contents=read,metadata=read", "selected", 1},
		{"api", "", "contents=read", 1, "2:3001:api", "contents=read", "selected", 2},
		{"api", "", "contents=read", 1, "1:3001:api", "contents=maintain", "selected", 3},
		{"api", "", "contents=read", 1, "1:3001:api", "contents=read", "all", 4},
		{"", "42", "", 0, "5:42:x", "administration=admin", "selected", 5},
		{"", "42", "", 0, "5:43:x", "", "selected", 6},
		{"", "", "metadata=write", 0, "", "metadata=read", "all", 7},
		{"", "", "contents=read", 0, "", "metadata=write", "all", 8},
		{"", "", "", 0, "1:1:a", "administration=admin", "all", 9},
		{"x", "", "", -1, "-1:0:X", "", "selected", 10},
		{"a", "1", "contents=admin", 9223372036854775807, "", "", "", 11},
	} {
		f.Add(s.reqRepos, s.reqIDs, s.reqPerms, s.account, s.tokRepos, s.tokPerms, s.sel, s.mutation)
	}
	f.Fuzz(func(t *testing.T, reqRepos, reqIDs, reqPerms string, account int64, tokRepos, tokPerms, sel string, mutation uint8) {
		req := github.TokenRequest{Repositories: listOf(reqRepos), Permissions: map[string]string{}}
		for _, s := range listOf(reqIDs) {
			if id, err := strconv.ParseInt(s, 10, 64); err == nil && id > 0 && !slices.Contains(req.RepositoryIDs, id) {
				req.RepositoryIDs = append(req.RepositoryIDs, id)
			}
		}
		for name, level := range pairsOf(reqPerms) {
			if rank[level] > 0 { // narrow passes on only read, write and admin
				req.Permissions[name] = level
			}
		}

		// The token GitHub should answer, and narrower ones: never reported.
		exact := exactToken(req, account, sel)
		if excess := excessGrant(req, exact, account); len(excess) > 0 {
			t.Fatalf("a token equal to the request is reported: %q", excess)
		}
		narrower := exactToken(req, account, sel)
		for _, name := range slices.Sorted(maps.Keys(narrower.Permissions)) {
			if mutation&1 != 0 {
				delete(narrower.Permissions, name)
			} else if narrower.Permissions[name] == "write" || narrower.Permissions[name] == "admin" {
				narrower.Permissions[name] = "read"
			}
		}
		if len(narrower.Repositories) > 1 {
			narrower.Repositories = narrower.Repositories[:len(narrower.Repositories)/2]
		}
		if excess := excessGrant(req, narrower, account); len(excess) > 0 {
			t.Fatalf("a token narrower than the request is reported: %q", excess)
		}
		// The exact token with fields left out, as some GitHub Enterprise Server answers: never reported.
		unstated := exactToken(req, account, sel)
		if mutation&2 != 0 {
			unstated.Permissions = nil
		}
		if mutation&4 != 0 {
			unstated.RepositorySelection = ""
		}
		if mutation&8 != 0 {
			unstated.Repositories = nil
		}
		if excess := excessGrant(req, unstated, account); len(excess) > 0 {
			t.Fatalf("a token whose answer leaves out fields is reported: %q", excess)
		}

		// One way broader: always reported.
		broader, what := broaden(req, account, sel, tokPerms, tokRepos, mutation)
		if broader != nil && len(excessGrant(req, broader, account)) == 0 {
			t.Fatalf("a token with %s is not reported", what)
		}

		// Any token: reported exactly when it is broader.
		tok := &github.Token{Token: "ghs_fuzzTokenValueNeverNamed", Permissions: pairsOf(tokPerms), RepositorySelection: sel}
		for _, e := range listOf(tokRepos) {
			tok.Repositories = append(tok.Repositories, repositoryOf(e))
		}
		excess := excessGrant(req, tok, account)
		if want := isBroader(req, tok, account); (len(excess) > 0) != want {
			t.Fatalf("excessGrant = %q for a token that is broader: %v\nrequest %+v\ntoken %+v", excess, want, req, *tok)
		}
		if len(excess) > len(tok.Permissions)+len(tok.Repositories)+1 {
			t.Fatalf("%d excess items for %d permissions and %d repositories", len(excess), len(tok.Permissions), len(tok.Repositories))
		}
		for _, e := range excess {
			if e == "" || strings.Contains(e, tok.Token) {
				t.Fatalf("an excess item %q", e)
			}
		}
	})
}

// exactToken is what GitHub answers to req: the permissions asked plus metadata=read, the repositories asked (by
// name, in another case, of the account; by ID, of any account), selection "selected". Without repositories asked
// the selection is whatever sel says.
func exactToken(req github.TokenRequest, account int64, sel string) *github.Token {
	tok := &github.Token{Token: "ghs_exact", Permissions: maps.Clone(req.Permissions), RepositorySelection: sel}
	if len(req.Permissions) > 0 {
		if _, asked := req.Permissions["metadata"]; !asked {
			tok.Permissions["metadata"] = "read"
		}
	}
	if len(req.Repositories)+len(req.RepositoryIDs) > 0 {
		tok.RepositorySelection = "selected"
	}
	id := int64(0)
	for _, name := range req.Repositories {
		id = freshID(req.RepositoryIDs, id)
		tok.Repositories = append(tok.Repositories, github.Repository{ID: id, Name: flipCase(name),
			Owner: github.Account{ID: account}})
	}
	for _, rid := range req.RepositoryIDs {
		tok.Repositories = append(tok.Repositories, github.Repository{ID: rid, Name: "by-id", Owner: github.Account{ID: account ^ 1}})
	}
	return tok
}

// broaden returns the exact token made broader in the way mutation picks, or nil when that way does not apply.
func broaden(req github.TokenRequest, account int64, sel, tokPerms, tokRepos string, mutation uint8) (*github.Token, string) {
	tok := exactToken(req, account, sel)
	asksRepos := len(req.Repositories)+len(req.RepositoryIDs) > 0
	switch mutation % 5 {
	case 0: // a permission not asked
		if len(req.Permissions) == 0 {
			return nil, ""
		}
		name, level := "administration", "read"
		for n, l := range pairsOf(tokPerms) {
			name, level = n, l
			break
		}
		if _, asked := req.Permissions[name]; asked || (name == "metadata" && level == "read") {
			return nil, ""
		}
		tok.Permissions[name] = level
		return tok, "the permission " + name + "=" + level + " not asked"
	case 1: // a level above the asked one, or unknown
		for _, name := range slices.Sorted(maps.Keys(req.Permissions)) {
			switch asked := req.Permissions[name]; {
			case rank[sel] == 0:
				tok.Permissions[name] = sel
			case asked != "admin":
				tok.Permissions[name] = map[string]string{"read": "write", "write": "admin"}[asked]
			default:
				continue
			}
			return tok, "the permission " + name + "=" + tok.Permissions[name] + " above " + req.Permissions[name]
		}
		return nil, ""
	case 2: // a repository not asked
		if !asksRepos {
			return nil, ""
		}
		name := "not-asked-" + strings.Join(listOf(tokRepos), "-")
		if slices.ContainsFunc(req.Repositories, func(s string) bool { return strings.EqualFold(s, name) }) {
			return nil, ""
		}
		id := freshID(req.RepositoryIDs, int64(len(tok.Repositories))+1000)
		tok.Repositories = append(tok.Repositories, github.Repository{ID: id, Name: name, Owner: github.Account{ID: account}})
		return tok, "the repository " + name + " not asked"
	case 3: // a repository asked by name, of another account
		if len(req.Repositories) == 0 {
			return nil, ""
		}
		tok.Repositories[0].Owner.ID = account ^ 1
		return tok, "the repository " + tok.Repositories[0].Name + " of another account"
	default: // every repository
		if !asksRepos {
			return nil, ""
		}
		tok.RepositorySelection = sel
		if sel == "selected" || sel == "" {
			tok.RepositorySelection = "all"
		}
		return tok, "repository_selection " + tok.RepositorySelection
	}
}

// isBroader is the over-grant rule, written from its description.
func isBroader(req github.TokenRequest, tok *github.Token, account int64) bool {
	if len(req.Permissions) > 0 {
		for name, granted := range tok.Permissions {
			asked, ok := req.Permissions[name]
			switch {
			case !ok && name == "metadata" && granted == "read":
			case !ok || rank[granted] == 0 || rank[granted] > rank[asked]:
				return true
			}
		}
	}
	if len(req.Repositories)+len(req.RepositoryIDs) == 0 {
		return false
	}
	if tok.RepositorySelection != "selected" && tok.RepositorySelection != "" {
		return true
	}
	for _, repo := range tok.Repositories {
		byName := repo.Owner.ID == account && slices.ContainsFunc(req.Repositories, func(s string) bool { return strings.EqualFold(s, repo.Name) })
		if !byName && !slices.Contains(req.RepositoryIDs, repo.ID) {
			return true
		}
	}
	return false
}

// freshID is an ID above after that the request does not ask for.
func freshID(asked []int64, after int64) int64 {
	id := after + 1
	for slices.Contains(asked, id) {
		id++
	}
	return id
}

// listOf is the non-empty trimmed parts of a comma-separated text.
func listOf(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// pairsOf reads "name=level,..." with any names and levels; the last of a name wins.
func pairsOf(s string) map[string]string {
	m := map[string]string{}
	for _, p := range listOf(s) {
		if name, level, ok := strings.Cut(p, "="); ok && name != "" {
			m[name] = level
		}
	}
	return m
}

// repositoryOf reads "ownerID:id:name" (missing parts are zero or empty).
func repositoryOf(s string) github.Repository {
	parts := strings.SplitN(s, ":", 3)
	var repo github.Repository
	repo.Owner.ID, _ = strconv.ParseInt(parts[0], 10, 64)
	if len(parts) > 1 {
		repo.ID, _ = strconv.ParseInt(parts[1], 10, 64)
	}
	if len(parts) > 2 {
		repo.Name = parts[2]
		repo.FullName = "owner/" + parts[2]
	}
	return repo
}
