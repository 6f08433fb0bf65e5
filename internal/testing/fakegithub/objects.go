// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// This file builds the JSON objects GitHub answers with, field for field as its OpenAPI
// description requires (simple-user, integration, installation, repository).

// links are the bases that URLs in answers start from.
type links struct {
	api string // the API as the client reached it, e.g. http://127.0.0.1:PORT or .../api/v3
	web string // the web UI: https://github.com, or the host itself in the GHES form
}

func linksFor(r *http.Request, prefix string) links {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := scheme + "://" + r.Host
	l := links{api: host + prefix, web: "https://github.com"}
	if prefix != "" {
		l.web = host
	}
	return l
}

// timestamp formats a time as GitHub does: RFC 3339, UTC, whole seconds, "Z".
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// nodeID is GitHub's legacy global ID: base64 of "<len(type)>:<type><id>".
func nodeID(typ string, id int64) string {
	return base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "%02d:%s%d", len(typ), typ, id))
}

type simpleUser struct {
	Login             string `json:"login"`
	ID                int64  `json:"id"`
	NodeID            string `json:"node_id"`
	AvatarURL         string `json:"avatar_url"`
	GravatarID        string `json:"gravatar_id"`
	URL               string `json:"url"`
	HTMLURL           string `json:"html_url"`
	FollowersURL      string `json:"followers_url"`
	FollowingURL      string `json:"following_url"`
	GistsURL          string `json:"gists_url"`
	StarredURL        string `json:"starred_url"`
	SubscriptionsURL  string `json:"subscriptions_url"`
	OrganizationsURL  string `json:"organizations_url"`
	ReposURL          string `json:"repos_url"`
	EventsURL         string `json:"events_url"`
	ReceivedEventsURL string `json:"received_events_url"`
	Type              string `json:"type"`
	UserViewType      string `json:"user_view_type"`
	SiteAdmin         bool   `json:"site_admin"`
}

func (l links) user(a account) simpleUser {
	api := l.api + "/users/" + url.PathEscape(a.login)
	avatar := fmt.Sprintf("https://avatars.githubusercontent.com/u/%d?v=4", a.id)
	if l.web != "https://github.com" {
		avatar = fmt.Sprintf("%s/avatars/u/%d?", l.web, a.id)
	}
	return simpleUser{
		Login:             a.login,
		ID:                a.id,
		NodeID:            nodeID(a.typ, a.id),
		AvatarURL:         avatar,
		GravatarID:        "",
		URL:               api,
		HTMLURL:           l.web + "/" + a.login,
		FollowersURL:      api + "/followers",
		FollowingURL:      api + "/following{/other_user}",
		GistsURL:          api + "/gists{/gist_id}",
		StarredURL:        api + "/starred{/owner}{/repo}",
		SubscriptionsURL:  api + "/subscriptions",
		OrganizationsURL:  api + "/orgs",
		ReposURL:          api + "/repos",
		EventsURL:         api + "/events{/privacy}",
		ReceivedEventsURL: api + "/received_events",
		Type:              a.typ,
		UserViewType:      "public",
		SiteAdmin:         false,
	}
}

type integrationObject struct {
	ID                 int64             `json:"id"`
	Slug               string            `json:"slug"`
	NodeID             string            `json:"node_id"`
	ClientID           string            `json:"client_id"`
	Owner              simpleUser        `json:"owner"`
	Name               string            `json:"name"`
	Description        string            `json:"description"`
	ExternalURL        string            `json:"external_url"`
	HTMLURL            string            `json:"html_url"`
	CreatedAt          string            `json:"created_at"`
	UpdatedAt          string            `json:"updated_at"`
	Permissions        map[string]string `json:"permissions"`
	Events             []string          `json:"events"`
	InstallationsCount int               `json:"installations_count"`
}

// integration renders GET /app. The caller holds Server.mu.
func (s *Server) integration(l links, a *appState) integrationObject {
	return integrationObject{
		ID:                 a.ID,
		Slug:               a.Slug,
		NodeID:             nodeID("Integration", a.ID),
		ClientID:           a.ClientID,
		Owner:              l.user(s.st.ownerAccount(a.Owner)),
		Name:               a.Name,
		Description:        "",
		ExternalURL:        l.web + "/apps/" + a.Slug,
		HTMLURL:            l.web + "/apps/" + a.Slug,
		CreatedAt:          timestamp(s.epoch),
		UpdatedAt:          timestamp(s.epoch),
		Permissions:        s.st.appPermissions(a.ID),
		Events:             []string{},
		InstallationsCount: len(s.st.appInstallations(a.ID)),
	}
}

type installationObject struct {
	ID                     int64             `json:"id"`
	ClientID               string            `json:"client_id"`
	Account                simpleUser        `json:"account"`
	RepositorySelection    string            `json:"repository_selection"`
	AccessTokensURL        string            `json:"access_tokens_url"`
	RepositoriesURL        string            `json:"repositories_url"`
	HTMLURL                string            `json:"html_url"`
	AppID                  int64             `json:"app_id"`
	AppSlug                string            `json:"app_slug"`
	TargetID               int64             `json:"target_id"`
	TargetType             string            `json:"target_type"`
	Permissions            map[string]string `json:"permissions"`
	Events                 []string          `json:"events"`
	CreatedAt              string            `json:"created_at"`
	UpdatedAt              string            `json:"updated_at"`
	SingleFileName         *string           `json:"single_file_name"`
	HasMultipleSingleFiles bool              `json:"has_multiple_single_files"`
	SingleFilePaths        []string          `json:"single_file_paths"`
	SuspendedBy            *simpleUser       `json:"suspended_by"`
	SuspendedAt            *string           `json:"suspended_at"`
}

// installation renders an installation. The caller holds Server.mu.
func (s *Server) installation(l links, in *installationState) installationObject {
	acct := s.st.accounts[strings.ToLower(in.Account)]
	app := s.st.apps[in.AppID]
	html := fmt.Sprintf("%s/settings/installations/%d", l.web, in.ID)
	if acct.typ == "Organization" {
		html = fmt.Sprintf("%s/organizations/%s/settings/installations/%d", l.web, acct.login, in.ID)
	}
	obj := installationObject{
		ID:                     in.ID,
		ClientID:               app.ClientID,
		Account:                l.user(acct),
		RepositorySelection:    in.RepositorySelection,
		AccessTokensURL:        fmt.Sprintf("%s/app/installations/%d/access_tokens", l.api, in.ID),
		RepositoriesURL:        l.api + "/installation/repositories",
		HTMLURL:                html,
		AppID:                  in.AppID,
		AppSlug:                app.Slug,
		TargetID:               acct.id,
		TargetType:             acct.typ,
		Permissions:            maps.Clone(in.Permissions),
		Events:                 []string{},
		CreatedAt:              timestamp(in.createdAt),
		UpdatedAt:              timestamp(in.updatedAt),
		SingleFileName:         nil,
		HasMultipleSingleFiles: false,
		SingleFilePaths:        []string{},
	}
	if in.Suspended {
		// Suspended by the account itself, or for an organization by one of its owners.
		by := account{login: acct.login, id: acct.id, typ: "User"}
		if acct.typ == "Organization" {
			by = account{login: acct.login + "-admin", id: generatedAccountID(acct.login + "-admin"), typ: "User"}
		}
		u := l.user(by)
		at := timestamp(in.suspendedAt)
		obj.SuspendedBy, obj.SuspendedAt = &u, &at
	}
	return obj
}

type repoPermissions struct {
	Admin    bool `json:"admin"`
	Maintain bool `json:"maintain"`
	Push     bool `json:"push"`
	Triage   bool `json:"triage"`
	Pull     bool `json:"pull"`
}

type repositoryObject struct {
	ID                       int64           `json:"id"`
	NodeID                   string          `json:"node_id"`
	Name                     string          `json:"name"`
	FullName                 string          `json:"full_name"`
	Private                  bool            `json:"private"`
	Owner                    simpleUser      `json:"owner"`
	HTMLURL                  string          `json:"html_url"`
	Description              *string         `json:"description"`
	Fork                     bool            `json:"fork"`
	URL                      string          `json:"url"`
	ArchiveURL               string          `json:"archive_url"`
	AssigneesURL             string          `json:"assignees_url"`
	BlobsURL                 string          `json:"blobs_url"`
	BranchesURL              string          `json:"branches_url"`
	CollaboratorsURL         string          `json:"collaborators_url"`
	CommentsURL              string          `json:"comments_url"`
	CommitsURL               string          `json:"commits_url"`
	CompareURL               string          `json:"compare_url"`
	ContentsURL              string          `json:"contents_url"`
	ContributorsURL          string          `json:"contributors_url"`
	DeploymentsURL           string          `json:"deployments_url"`
	DownloadsURL             string          `json:"downloads_url"`
	EventsURL                string          `json:"events_url"`
	ForksURL                 string          `json:"forks_url"`
	GitCommitsURL            string          `json:"git_commits_url"`
	GitRefsURL               string          `json:"git_refs_url"`
	GitTagsURL               string          `json:"git_tags_url"`
	GitURL                   string          `json:"git_url"`
	IssueCommentURL          string          `json:"issue_comment_url"`
	IssueEventsURL           string          `json:"issue_events_url"`
	IssuesURL                string          `json:"issues_url"`
	KeysURL                  string          `json:"keys_url"`
	LabelsURL                string          `json:"labels_url"`
	LanguagesURL             string          `json:"languages_url"`
	MergesURL                string          `json:"merges_url"`
	MilestonesURL            string          `json:"milestones_url"`
	NotificationsURL         string          `json:"notifications_url"`
	PullsURL                 string          `json:"pulls_url"`
	ReleasesURL              string          `json:"releases_url"`
	SSHURL                   string          `json:"ssh_url"`
	StargazersURL            string          `json:"stargazers_url"`
	StatusesURL              string          `json:"statuses_url"`
	SubscribersURL           string          `json:"subscribers_url"`
	SubscriptionURL          string          `json:"subscription_url"`
	TagsURL                  string          `json:"tags_url"`
	TeamsURL                 string          `json:"teams_url"`
	TreesURL                 string          `json:"trees_url"`
	CloneURL                 string          `json:"clone_url"`
	MirrorURL                *string         `json:"mirror_url"`
	HooksURL                 string          `json:"hooks_url"`
	SVNURL                   string          `json:"svn_url"`
	Homepage                 *string         `json:"homepage"`
	Language                 *string         `json:"language"`
	Forks                    int             `json:"forks"`
	ForksCount               int             `json:"forks_count"`
	StargazersCount          int             `json:"stargazers_count"`
	WatchersCount            int             `json:"watchers_count"`
	Watchers                 int             `json:"watchers"`
	Size                     int             `json:"size"`
	DefaultBranch            string          `json:"default_branch"`
	OpenIssuesCount          int             `json:"open_issues_count"`
	OpenIssues               int             `json:"open_issues"`
	IsTemplate               bool            `json:"is_template"`
	Topics                   []string        `json:"topics"`
	HasIssues                bool            `json:"has_issues"`
	HasProjects              bool            `json:"has_projects"`
	HasWiki                  bool            `json:"has_wiki"`
	HasPages                 bool            `json:"has_pages"`
	HasDownloads             *bool           `json:"has_downloads,omitempty"` // gone in API version 2026-03-10
	HasDiscussions           bool            `json:"has_discussions"`
	Archived                 bool            `json:"archived"`
	Disabled                 bool            `json:"disabled"`
	Visibility               string          `json:"visibility"`
	PushedAt                 string          `json:"pushed_at"`
	CreatedAt                string          `json:"created_at"`
	UpdatedAt                string          `json:"updated_at"`
	Permissions              repoPermissions `json:"permissions"`
	AllowForking             bool            `json:"allow_forking"`
	WebCommitSignoffRequired bool            `json:"web_commit_signoff_required"`
	License                  *struct{}       `json:"license"`
}

// repository renders a repository as an installation token sees it: perms are the token's.
func (s *Server) repository(l links, version string, acct account, repo Repository, perms map[string]string) repositoryObject {
	full := acct.login + "/" + repo.Name
	api := l.api + "/repos/" + full
	html := l.web + "/" + full
	webHost := strings.TrimPrefix(strings.TrimPrefix(l.web, "https://"), "http://")
	visibility := "public"
	if repo.Private {
		visibility = "private"
	}
	created := timestamp(s.epoch)
	obj := repositoryObject{
		ID:                       repo.ID,
		NodeID:                   nodeID("Repository", repo.ID),
		Name:                     repo.Name,
		FullName:                 full,
		Private:                  repo.Private,
		Owner:                    l.user(acct),
		HTMLURL:                  html,
		Description:              nil,
		URL:                      api,
		ArchiveURL:               api + "/{archive_format}{/ref}",
		AssigneesURL:             api + "/assignees{/user}",
		BlobsURL:                 api + "/git/blobs{/sha}",
		BranchesURL:              api + "/branches{/branch}",
		CollaboratorsURL:         api + "/collaborators{/collaborator}",
		CommentsURL:              api + "/comments{/number}",
		CommitsURL:               api + "/commits{/sha}",
		CompareURL:               api + "/compare/{base}...{head}",
		ContentsURL:              api + "/contents/{+path}",
		ContributorsURL:          api + "/contributors",
		DeploymentsURL:           api + "/deployments",
		DownloadsURL:             api + "/downloads",
		EventsURL:                api + "/events",
		ForksURL:                 api + "/forks",
		GitCommitsURL:            api + "/git/commits{/sha}",
		GitRefsURL:               api + "/git/refs{/sha}",
		GitTagsURL:               api + "/git/tags{/sha}",
		GitURL:                   "git://" + webHost + "/" + full + ".git",
		IssueCommentURL:          api + "/issues/comments{/number}",
		IssueEventsURL:           api + "/issues/events{/number}",
		IssuesURL:                api + "/issues{/number}",
		KeysURL:                  api + "/keys{/key_id}",
		LabelsURL:                api + "/labels{/name}",
		LanguagesURL:             api + "/languages",
		MergesURL:                api + "/merges",
		MilestonesURL:            api + "/milestones{/number}",
		NotificationsURL:         api + "/notifications{?since,all,participating}",
		PullsURL:                 api + "/pulls{/number}",
		ReleasesURL:              api + "/releases{/id}",
		SSHURL:                   "git@" + webHost + ":" + full + ".git",
		StargazersURL:            api + "/stargazers",
		StatusesURL:              api + "/statuses/{sha}",
		SubscribersURL:           api + "/subscribers",
		SubscriptionURL:          api + "/subscription",
		TagsURL:                  api + "/tags",
		TeamsURL:                 api + "/teams",
		TreesURL:                 api + "/git/trees{/sha}",
		CloneURL:                 html + ".git",
		HooksURL:                 api + "/hooks",
		SVNURL:                   html,
		DefaultBranch:            "main",
		Topics:                   []string{},
		HasIssues:                true,
		HasProjects:              true,
		HasWiki:                  true,
		Visibility:               visibility,
		PushedAt:                 created,
		CreatedAt:                created,
		UpdatedAt:                created,
		AllowForking:             !repo.Private,
		WebCommitSignoffRequired: false,
		Permissions: repoPermissions{
			Admin: perms["administration"] == "write",
			Push:  github.LevelRank(perms["contents"]) >= github.LevelRank("write"),
			Pull:  true,
		},
	}
	if version != apiVersion20260310 {
		yes := true
		obj.HasDownloads = &yes
	}
	return obj
}
