// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/vault/sdk/helper/identitytpl"
	"github.com/hashicorp/vault/sdk/logical"
)

// Identity-templated roles (templated=true): owner, repositories and repository_ids may hold Vault identity templates
// such as {{identity.entity.aliases.auth_jwt_1a2b3c4d.metadata.repository}}, rendered at every mint from the
// requesting entity. Role writes check that each template parses and names only identity fields that render to one
// string; mints render them with the SDK's identitytpl package and check every rendered value as a role write checks
// a literal one. Any failure refuses the mint with 403: a template never falls back to a wider scope. The rendered
// role is a copy made for one request; it is never cached, and the stored role (cached in roleStore) is not touched.

// directivePatterns are the identity fields a role template may name: those that render to one string in Vault's
// ACL templating mode. Lists (identity.entity.groups.names) and whole maps (identity.entity.metadata) render to
// nothing there, and time.* is not an identity.
var directivePatterns = []*regexp.Regexp{
	regexp.MustCompile(`^identity\.entity\.(id|name)$`),
	regexp.MustCompile(`^identity\.entity\.metadata\.\S+$`),
	regexp.MustCompile(`^identity\.entity\.aliases\.[^.\s]+\.(id|name|metadata\.\S+|custom_metadata\.\S+)$`),
	regexp.MustCompile(`^identity\.groups\.(ids|names)\.[^.\s]+\.(id|name|metadata\.\S+)$`),
}

const acceptedDirectives = "identity.entity.id, identity.entity.name, identity.entity.metadata.<key>, " +
	"identity.entity.aliases.<mount accessor>.name (or .id, .metadata.<key>, .custom_metadata.<key>), " +
	"identity.groups.names.<group name>.name (or .id, .metadata.<key>; also identity.groups.ids.<group ID>.…)"

// templateField describes a role field that may hold templates: the characters its literal text may use around a
// template, and what its rendered value must be.
type templateField struct {
	name     string
	literal  *regexp.Regexp
	expected string
}

var (
	ownerTemplateField = templateField{"owner", regexp.MustCompile(`^[A-Za-z0-9_-]*$`),
		"a GitHub organization or user login (letters, digits, hyphens)"}
	repositoriesTemplateField = templateField{"repositories", regexp.MustCompile(`^[A-Za-z0-9._/-]*$`),
		"a repository name (letters, digits, '.', '-' and '_', at most 100 characters) or owner/name with the role's owner"}
	repositoryIDsTemplateField = templateField{"repository_ids", regexp.MustCompile(`^[0-9]*$`),
		"a repository ID (decimal digits)"}
)

// isTemplate reports whether a field value is meant as a template. On a templated role a value without braces is
// literal; on a plain role braces are never interpreted (and are not valid in logins, names or IDs).
func isTemplate(s string) bool { return strings.Contains(s, "{{") || strings.Contains(s, "}}") }

// templatePart is a piece of a parsed template: literal text, or the identity field a directive names.
type templatePart struct {
	text      string
	directive bool
}

// parseTemplate splits a template as identitytpl does (which checks it first): literal text and the directives
// between "{{" and "}}", trimmed.
func parseTemplate(s string) ([]templatePart, error) {
	if _, _, err := identitytpl.PopulateString(identitytpl.PopulateStringInput{
		String: s, Mode: identitytpl.ACLTemplating, ValidityCheckOnly: true,
	}); err != nil {
		return nil, err
	}
	pieces := strings.Split(s, "{{")
	parts := []templatePart{{text: pieces[0]}}
	for _, p := range pieces[1:] {
		directive, rest, _ := strings.Cut(p, "}}")
		parts = append(parts, templatePart{text: strings.TrimSpace(directive), directive: true}, templatePart{text: rest})
	}
	return parts, nil
}

// checkTemplate validates one templated field value at write time. It returns at most one malformed problem (the write
// is refused), and warnings.
func checkTemplate(f templateField, value string) (p problems) {
	parts, err := parseTemplate(value)
	if err != nil {
		p.reject(fmt.Sprintf("%s template %q does not parse: %v; write identity templates as {{identity.entity.name}}", f.name, value, err))
		return p
	}
	for _, part := range parts {
		switch {
		case !part.directive && !f.literal.MatchString(part.text):
			p.reject(fmt.Sprintf("%s template %q has text %q around its templates that cannot be part of %s", f.name, value, part.text, f.expected))
			return p
		case !part.directive:
		case part.text == "":
			p.reject(fmt.Sprintf("%s template %q has an empty {{}}: name an identity field, such as %s", f.name, value, acceptedDirectives))
			return p
		case !slices.ContainsFunc(directivePatterns, func(re *regexp.Regexp) bool { return re.MatchString(part.text) }):
			p.reject(fmt.Sprintf("%s template %q names %q, which is not an identity field that renders to one value: "+
				"use %s", f.name, value, part.text, acceptedDirectives))
			return p
		default:
			if acc, ok := aliasAccessor(part.text); ok && !strings.HasPrefix(acc, "auth_") {
				p.warn(fmt.Sprintf("%s template %q names mount accessor %q, which does not look like "+
					"an auth method's accessor (such as auth_jwt_1a2b3c4d): templates name an auth method by accessor, "+
					"not by path; see the Accessor column of vault auth list", f.name, value, acc))
			}
		}
	}
	return p
}

// aliasAccessor returns the mount accessor an alias directive names.
func aliasAccessor(directive string) (string, bool) {
	rest, ok := strings.CutPrefix(directive, "identity.entity.aliases.")
	if !ok {
		return "", false
	}
	acc, _, _ := strings.Cut(rest, ".")
	return acc, true
}

// templates lists the role's fields that hold templates, as "field \"template\"" for messages.
func (r *role) templates() []string {
	var out []string
	if isTemplate(r.Owner) {
		out = append(out, fmt.Sprintf("owner %q", r.Owner))
	}
	for _, s := range r.Repositories {
		if isTemplate(s) {
			out = append(out, fmt.Sprintf("repositories %q", s))
		}
	}
	for _, s := range r.RepositoryIDTemplates {
		out = append(out, fmt.Sprintf("repository_ids %q", s))
	}
	return out
}

// ---------------------------------------------------------------------------------------------------- role writes

// normalizeTemplatedRepositories validates the repositories of a templated role: templates are checked and kept as
// written; literal names are normalized as on a plain role.
func normalizeTemplatedRepositories(in []string, roleOwner string) (out []string, p problems) {
	seen := map[string]bool{}
	for _, raw := range in {
		entry := strings.TrimSpace(raw)
		switch {
		case entry == "":
			continue
		case isTemplate(entry):
			q := checkTemplate(repositoriesTemplateField, entry)
			p.add(q)
			if !q.empty() {
				continue
			}
			if !seen[entry] {
				seen[entry] = true
				out = append(out, entry)
			}
			continue
		case isTemplate(roleOwner) && strings.Contains(entry, "/"):
			_, name, _ := strings.Cut(entry, "/")
			p.reject(fmt.Sprintf("repository %q has an owner, but the role's owner is a template: "+
				"give the name alone (%q)", entry, name))
			continue
		}
		owner := roleOwner
		if isTemplate(owner) {
			owner = ""
		}
		names, q := normalizeRepositories([]string{entry}, owner)
		p.add(q)
		for _, n := range names {
			if key := strings.ToLower(n); !seen[key] {
				seen[key] = true
				out = append(out, n)
			}
		}
	}
	return out, p
}

// normalizeRoleRepositoryIDs validates the repository_ids of a role write: positive decimal IDs, and on a templated
// role templates that render to one.
func normalizeRoleRepositoryIDs(in []string, templated bool) (ids []int64, templates []string, p problems) {
	seenID := map[int64]bool{}
	for _, raw := range in {
		entry := strings.TrimSpace(raw)
		switch {
		case entry == "":
			continue
		case templated && isTemplate(entry):
			q := checkTemplate(repositoryIDsTemplateField, entry)
			p.add(q)
			if q.empty() && !slices.Contains(templates, entry) {
				templates = append(templates, entry)
			}
			continue
		}
		id, err := strconv.ParseInt(entry, 10, 64)
		switch {
		case err != nil:
			p.reject(fmt.Sprintf("repository_ids holds %q: expected positive repository IDs in decimal%s", entry, templateHint(entry)))
		case id <= 0:
			p.reject(fmt.Sprintf("repository_ids holds %d: expected positive repository IDs", id))
		case !seenID[id]:
			seenID[id] = true
			ids = append(ids, id)
		}
	}
	return ids, templates, p
}

// templateHint is added to the error of a plain role's field that holds what looks like a template.
func templateHint(value string) string {
	if isTemplate(value) {
		return "; identity templates are accepted only on roles with templated=true"
	}
	return ""
}

// ------------------------------------------------------------------------------------------------------- mints

// renderRole returns the role a mint works with: r itself when nothing in it is templated, else a copy for this
// request with every template rendered from the requesting entity. Failures are 403 and name the template and
// what is missing.
func (b *backend) renderRole(req *logical.Request, roleName string, r *role) (*role, error) {
	if !r.Templated {
		return r, nil
	}
	templates := r.templates()
	if len(templates) == 0 {
		return r, nil
	}
	refuse := func(format string, args ...any) error {
		return logical.CodedError(http.StatusForbidden, fmt.Sprintf("role %q: ", roleName)+fmt.Sprintf(format, args...)+"; no token was minted")
	}
	if req.EntityID == "" {
		return nil, refuse("it holds identity templates (%s), which render from the caller's identity entity, and the "+
			"request's Vault token has none (root tokens and tokens made with vault token create have none): log in "+
			"through an auth method, such as jwt, whose login creates an entity", joinItems(templates))
	}
	entity, err := b.System().EntityInfo(req.EntityID)
	if err != nil {
		return nil, fmt.Errorf("role %q: looking up the caller's identity entity %s: %w", roleName, req.EntityID, err)
	}
	if entity == nil {
		return nil, refuse("the caller's identity entity %s was not found, so %s cannot be rendered", req.EntityID, joinItems(templates))
	}
	var groups []*logical.Group
	if slices.ContainsFunc(templates, func(s string) bool { return strings.Contains(s, "identity.groups.") }) {
		if groups, err = b.System().GroupsForEntity(req.EntityID); err != nil {
			return nil, fmt.Errorf("role %q: looking up the groups of the caller's identity entity %s: %w", roleName, req.EntityID, err)
		}
	}
	rd := renderer{entity: entity, groups: groups}

	out := *r
	out.Repositories, out.RepositoryIDs, out.RepositoryIDTemplates = nil, nil, nil
	if isTemplate(r.Owner) {
		owner, problem := rd.render(ownerTemplateField, r.Owner)
		if problem == "" && !ownerPattern.MatchString(owner) {
			problem = fmt.Sprintf("owner template %q rendered %q, which is not %s", r.Owner, owner, ownerTemplateField.expected)
		}
		if problem != "" {
			return nil, refuse("%s", problem)
		}
		// A templated owner names another account for each caller: there is no one account to pin.
		out.Owner, out.AccountID, out.ownerFromTemplate = owner, 0, true
	}

	seen := map[string]bool{}
	for _, entry := range r.Repositories {
		name := entry
		if isTemplate(entry) {
			rendered, problem := rd.render(repositoriesTemplateField, entry)
			if problem == "" {
				name, problem = renderedRepository(entry, rendered, out.Owner)
			}
			if problem != "" {
				return nil, refuse("%s", problem)
			}
		}
		if key := strings.ToLower(name); !seen[key] {
			seen[key] = true
			out.Repositories = append(out.Repositories, name)
		}
	}
	out.RepositoryIDs = slices.Clone(r.RepositoryIDs)
	for _, entry := range r.RepositoryIDTemplates {
		rendered, problem := rd.render(repositoryIDsTemplateField, entry)
		id, err := strconv.ParseInt(rendered, 10, 64)
		if problem == "" && (!decimalIDPattern.MatchString(rendered) || err != nil) {
			problem = fmt.Sprintf("repository_ids template %q rendered %q, which is not %s", entry, rendered, repositoryIDsTemplateField.expected)
		}
		if problem != "" {
			return nil, refuse("%s", problem)
		}
		if !slices.Contains(out.RepositoryIDs, id) {
			out.RepositoryIDs = append(out.RepositoryIDs, id)
		}
	}
	// Every template renders to one value or refuses the mint, so a role limited to some repositories stays limited.
	if r.limitsRepositories() != out.limitsRepositories() {
		return nil, fmt.Errorf("role %q: rendering its templates lost its repository limit", roleName)
	}
	return &out, nil
}

// renderedRepository checks a rendered repositories entry: a name, or owner/name (GitHub's repository claim) whose
// owner is the role's. It returns the name.
func renderedRepository(template, rendered, roleOwner string) (string, string) {
	name := rendered
	if owner, n, found := strings.Cut(rendered, "/"); found {
		switch {
		case roleOwner == "":
			return "", fmt.Sprintf("repositories template %q rendered %q, which names an owner: owner/name is accepted "+
				"only on roles bound by owner (write owner instead of installation_id), or render the name alone", template, rendered)
		case !strings.EqualFold(owner, roleOwner):
			return "", fmt.Sprintf("repositories template %q rendered %q, whose owner %q is not the role's owner %q: "+
				"a token covers repositories of the role's owner only", template, rendered, owner, roleOwner)
		}
		name = n
	}
	if !validRepoName(name) {
		return "", fmt.Sprintf("repositories template %q rendered %q, which is not %s", template, rendered, repositoriesTemplateField.expected)
	}
	return name, ""
}

// renderer renders templates for one entity with the SDK's identitytpl, one directive at a time, so that a failure
// names the identity field that is missing.
type renderer struct {
	entity *logical.Entity
	groups []*logical.Group
}

// render renders a stored template; problem says why it could not be.
func (rd renderer) render(f templateField, template string) (value, problem string) {
	parts, err := parseTemplate(template)
	if err != nil {
		return "", fmt.Sprintf("%s template %q does not parse: %v", f.name, template, err)
	}
	var b strings.Builder
	for _, p := range parts {
		if !p.directive {
			b.WriteString(p.text)
			continue
		}
		_, v, err := identitytpl.PopulateString(identitytpl.PopulateStringInput{
			String: "{{" + p.text + "}}", Mode: identitytpl.ACLTemplating, Entity: rd.entity, Groups: rd.groups,
		})
		if err == nil && v == "" {
			err = identitytpl.ErrTemplateValueNotFound
		}
		if err != nil {
			return "", fmt.Sprintf("%s template %q cannot be rendered for the caller's identity entity %s: %s",
				f.name, template, entityLabel(rd.entity), rd.missing(p.text))
		}
		b.WriteString(v)
	}
	return b.String(), ""
}

// missing explains why a directive rendered nothing for the entity.
func (rd renderer) missing(directive string) string {
	e := rd.entity
	metadata := func(what string, m map[string]string, key, advice string) string {
		if v, ok := m[key]; ok && v == "" {
			return fmt.Sprintf("%s has metadata %q, but it is empty", what, key)
		}
		return fmt.Sprintf("%s has no metadata %q%s", what, key, advice)
	}
	switch rest := strings.TrimPrefix(directive, "identity.entity."); {
	case rest == "name" || rest == "id":
		return fmt.Sprintf("its %s is empty", rest)
	case strings.HasPrefix(rest, "metadata."):
		return metadata("the entity", e.Metadata, strings.TrimPrefix(rest, "metadata."), "")
	case strings.HasPrefix(rest, "aliases."):
		acc, field, _ := strings.Cut(strings.TrimPrefix(rest, "aliases."), ".")
		i := slices.IndexFunc(e.Aliases, func(a *logical.Alias) bool { return a.MountAccessor == acc })
		if i < 0 {
			return fmt.Sprintf("it has no alias on the auth method with mount accessor %s (it did not log in through that auth method)", acc)
		}
		a := e.Aliases[i]
		what := "its alias on " + acc
		switch {
		case strings.HasPrefix(field, "metadata."):
			return metadata(what, a.Metadata, strings.TrimPrefix(field, "metadata."),
				" (the auth method sets alias metadata at login: for jwt, map the claim with the role's claim_mappings)")
		case strings.HasPrefix(field, "custom_metadata."):
			return metadata(what, a.CustomMetadata, strings.TrimPrefix(field, "custom_metadata."), " in custom_metadata")
		default:
			return fmt.Sprintf("the %s of %s is empty", field, what)
		}
	}
	if rest, ok := strings.CutPrefix(directive, "identity.groups."); ok {
		kind, rest, _ := strings.Cut(rest, ".")
		group, field, _ := strings.Cut(rest, ".")
		i := slices.IndexFunc(rd.groups, func(g *logical.Group) bool {
			return (kind == "ids" && g.ID == group) || (kind == "names" && g.Name == group)
		})
		if i < 0 {
			return fmt.Sprintf("it is not a member of the group with %s %q", strings.TrimSuffix(kind, "s"), group)
		}
		if key, ok := strings.CutPrefix(field, "metadata."); ok {
			return metadata(fmt.Sprintf("group %q", group), rd.groups[i].Metadata, key, "")
		}
		return fmt.Sprintf("the %s of group %q is empty", field, group)
	}
	return fmt.Sprintf("%s renders nothing", directive)
}

// entityLabel names an entity in messages: its name and ID.
func entityLabel(e *logical.Entity) string {
	if e.Name == "" {
		return e.ID
	}
	return fmt.Sprintf("%s (%s)", e.Name, e.ID)
}
