// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// Fixture is the initial state of the emulator: the Apps and where they are installed.
// The package documentation shows it as JSON.
type Fixture struct {
	Apps          []App          `json:"apps"`
	Installations []Installation `json:"installations"`
}

// App is a GitHub App.
type App struct {
	ID       int64  `json:"id"`
	ClientID string `json:"client_id"` // e.g. "Iv23liFAKE000001"; generated from ID when empty
	Slug     string `json:"slug"`      // generated from Name when empty
	Name     string `json:"name"`      // defaults to Slug
	Owner    string `json:"owner"`     // login of the owner account; defaults to the first installation's account
	// PublicKeys holds PEM public keys ("PUBLIC KEY" PKIX or "RSA PUBLIC KEY" PKCS#1).
	// GitHub lets an App have several active keys at once; a JWT signed by any of them is accepted.
	PublicKeys []string `json:"public_keys,omitempty"`
	// RateLimit, when set, is the App's own budget at the start (spent by calls with its JWT),
	// enforced as SetAppRateLimit enforces it.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
	// BotUserID is the user ID of the App's bot user, "<slug>[bot]", which commits made as the
	// App are attributed to; derived from the slug (stable across runs) when 0.
	BotUserID int64 `json:"bot_user_id,omitempty"`
}

// Installation is an App installed on an organization or user account.
type Installation struct {
	ID                  int64             `json:"id"`
	AppID               int64             `json:"app_id"`
	Account             string            `json:"account"`              // login
	AccountID           int64             `json:"account_id,omitempty"` // generated (stable per login) when 0
	AccountType         string            `json:"account_type"`         // "Organization" (default) or "User"
	RepositorySelection string            `json:"repository_selection"` // "all" (default) or "selected"
	Repositories        []Repository      `json:"repositories"`         // what the installation can reach
	Permissions         map[string]string `json:"permissions"`          // granted, e.g. {"contents":"write","metadata":"read"}
	Suspended           bool              `json:"suspended"`
	// RateLimit, when set, is the installation's budget at the start (spent by calls with its
	// tokens), enforced as SetInstallationRateLimit enforces it.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
}

// Repository is a repository of an installation's account.
type Repository struct {
	ID      int64  `json:"id"` // generated when 0
	Name    string `json:"name"`
	Private bool   `json:"private"`
}

// LoadFixture reads a JSON fixture. Unknown fields are an error, so that a typo
// does not silently give an installation more than intended. New validates the content.
func LoadFixture(path string) (Fixture, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Fixture{}, fmt.Errorf("read fixture: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f Fixture
	if err := dec.Decode(&f); err != nil {
		return Fixture{}, fmt.Errorf("parse fixture %s: %w", path, err)
	}
	return f, nil
}

// DemoFixture is the small built-in fixture that cmd/fakegithub serves when no fixture is given.
// It is the same as cmd/fakegithub/fixture.example.json.
func DemoFixture() Fixture {
	return Fixture{
		Apps: []App{{
			ID:       1001,
			ClientID: "Iv23liFAKEAPP0001",
			Slug:     "vault-demo",
			Name:     "Vault Demo",
			Owner:    "acme",
		}},
		Installations: []Installation{
			{
				ID:                  2001,
				AppID:               1001,
				Account:             "acme",
				AccountID:           5001,
				AccountType:         "Organization",
				RepositorySelection: "selected",
				Repositories: []Repository{
					{ID: 3001, Name: "api", Private: true},
					{ID: 3002, Name: "web", Private: true},
					{ID: 3003, Name: "infra", Private: true},
				},
				Permissions: map[string]string{
					"contents":      "write",
					"metadata":      "read",
					"pull_requests": "write",
					"issues":        "write",
					"actions":       "read",
				},
			},
			{
				ID:                  2002,
				AppID:               1001,
				Account:             "octocat",
				AccountID:           583231,
				AccountType:         "User",
				RepositorySelection: "selected",
				Repositories: []Repository{
					{ID: 3101, Name: "dotfiles"},
				},
				Permissions: map[string]string{
					"contents": "read",
					"metadata": "read",
				},
			},
		},
	}
}

// PoolFixture is DemoFixture with two more Apps installed on acme, for App pools: App 1002
// (client ID Iv23liFAKEAPP0002, slug vault-demo-2) with installation 2102, and App 1003
// (Iv23liFAKEAPP0003, vault-demo-3) with installation 2103. Each of the three installations on
// acme reaches api, web and infra with the same permissions, so that any App of the pool can
// serve a role on acme. It is the same as cmd/fakegithub/fixture.pool.example.json.
func PoolFixture() Fixture {
	f := DemoFixture()
	acme := f.Installations[0]
	for _, n := range []int64{2, 3} {
		f.Apps = append(f.Apps, App{
			ID:       1000 + n,
			ClientID: fmt.Sprintf("Iv23liFAKEAPP%04d", n),
			Slug:     fmt.Sprintf("vault-demo-%d", n),
			Name:     fmt.Sprintf("Vault Demo %d", n),
			Owner:    "acme",
		})
		in := acme
		in.ID, in.AppID = 2100+n, 1000+n
		in.Repositories = slices.Clone(acme.Repositories)
		in.Permissions = maps.Clone(acme.Permissions)
		f.Installations = append(f.Installations, in)
	}
	return f
}

var (
	// GitHub logins: alphanumerics and single hyphens, not at either end, at most 39 characters.
	loginPattern = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9]|-[A-Za-z0-9]){0,38}$`)
	// Repository names: letters, digits, '.', '-', '_'.
	repoNamePattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
	// Permission names as GitHub spells them: snake_case.
	permissionNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	slugPattern           = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
)

// normalizeApp fills defaults and checks one App. It does not parse keys.
func normalizeApp(a App, installations []Installation) (App, error) {
	if a.ID <= 0 {
		return a, fmt.Errorf("app id %d: must be positive", a.ID)
	}
	if a.ClientID == "" {
		a.ClientID = fmt.Sprintf("Iv23liFAKE%07d", a.ID%10_000_000)
	}
	if a.Slug == "" {
		a.Slug = slugify(a.Name)
	}
	if a.Slug == "" {
		a.Slug = fmt.Sprintf("app-%d", a.ID)
	}
	if !slugPattern.MatchString(a.Slug) {
		return a, fmt.Errorf("app %d: slug %q: use lower-case letters, digits and hyphens", a.ID, a.Slug)
	}
	if a.Name == "" {
		a.Name = a.Slug
	}
	if a.Owner == "" {
		for _, in := range installations {
			if in.AppID == a.ID {
				a.Owner = in.Account
				break
			}
		}
	}
	if a.Owner == "" {
		return a, fmt.Errorf("app %d: owner is required when the app has no installation", a.ID)
	}
	if !loginPattern.MatchString(a.Owner) {
		return a, fmt.Errorf("app %d: owner %q is not a valid GitHub login", a.ID, a.Owner)
	}
	if a.RateLimit != nil {
		if err := a.RateLimit.Validate(); err != nil {
			return a, fmt.Errorf("app %d: rate_limit: %w", a.ID, err)
		}
	}
	if a.BotUserID < 0 {
		return a, fmt.Errorf("app %d: bot_user_id %d: must be positive", a.ID, a.BotUserID)
	}
	return a, nil
}

// botLogin is the login of an App's bot user, as GitHub spells it.
func botLogin(slug string) string { return slug + "[bot]" }

func slugify(name string) string {
	var b strings.Builder
	hyphen := false
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
			hyphen = false
		case b.Len() > 0 && !hyphen:
			b.WriteByte('-')
			hyphen = true
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}

// normalizeInstallation fills defaults and checks one installation on its own.
// Checks across installations (unique IDs, consistent accounts and repositories) are in state.add.
func normalizeInstallation(in Installation) (Installation, error) {
	if in.ID <= 0 {
		return in, fmt.Errorf("installation id %d: must be positive", in.ID)
	}
	if !loginPattern.MatchString(in.Account) {
		return in, fmt.Errorf("installation %d: account %q is not a valid GitHub login", in.ID, in.Account)
	}
	switch in.AccountType {
	case "":
		in.AccountType = "Organization"
	case "Organization", "User":
	default:
		return in, fmt.Errorf("installation %d: account_type %q: want \"Organization\" or \"User\"", in.ID, in.AccountType)
	}
	switch in.RepositorySelection {
	case "":
		in.RepositorySelection = "all"
	case "all", "selected":
	default:
		return in, fmt.Errorf("installation %d: repository_selection %q: want \"all\" or \"selected\"", in.ID, in.RepositorySelection)
	}
	if in.AccountID < 0 {
		return in, fmt.Errorf("installation %d: account_id %d: must be positive", in.ID, in.AccountID)
	}
	if in.RateLimit != nil {
		if err := in.RateLimit.Validate(); err != nil {
			return in, fmt.Errorf("installation %d: rate_limit: %w", in.ID, err)
		}
	}

	// Copy what the caller may still hold, so that later changes on their side do not leak in.
	in.Repositories = append([]Repository(nil), in.Repositories...)
	names := make(map[string]bool, len(in.Repositories))
	for _, repo := range in.Repositories {
		if !repoNamePattern.MatchString(repo.Name) || repo.Name == "." || repo.Name == ".." {
			return in, fmt.Errorf("installation %d: repository name %q is not valid (no owner/ prefix; letters, digits, '.', '-', '_')", in.ID, repo.Name)
		}
		if repo.ID < 0 {
			return in, fmt.Errorf("installation %d: repository %q: id must be positive", in.ID, repo.Name)
		}
		key := strings.ToLower(repo.Name)
		if names[key] {
			return in, fmt.Errorf("installation %d: repository %q listed twice (names are case-insensitive)", in.ID, repo.Name)
		}
		names[key] = true
	}

	perms := make(map[string]string, len(in.Permissions))
	for name, level := range in.Permissions {
		if err := checkPermissionLevel(name, level); err != nil {
			return in, fmt.Errorf("installation %d: %w", in.ID, err)
		}
		perms[name] = level
	}
	in.Permissions = perms
	return in, nil
}

// checkPermissionLevel reports whether level is one GitHub allows for the permission name.
func checkPermissionLevel(name, level string) error {
	if !permissionNamePattern.MatchString(name) {
		return fmt.Errorf("permission %q: names are snake_case, e.g. pull_requests", name)
	}
	allowed, known := github.PermissionLevels(name)
	if !known {
		allowed = []string{"read", "write", "admin"}
	}
	for _, l := range allowed {
		if l == level {
			return nil
		}
	}
	return fmt.Errorf("permission %q: level %q is not one of %s", name, level, strings.Join(allowed, ", "))
}

// generatedAccountID gives a login a stable ID, so that a fixture without IDs
// produces the same objects on every run.
func generatedAccountID(login string) int64 {
	h := fnv.New32a()
	h.Write([]byte(strings.ToLower(login)))
	return 10_000_000 + int64(h.Sum32()%90_000_000)
}
