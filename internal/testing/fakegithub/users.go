// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"fmt"
	"net/http"
	"strings"
)

// publicUser is GitHub's public-user object: a simple-user and the profile around it.
type publicUser struct {
	simpleUser
	Name            *string `json:"name"`
	Company         *string `json:"company"`
	Blog            string  `json:"blog"`
	Location        *string `json:"location"`
	Email           *string `json:"email"`
	Hireable        *bool   `json:"hireable"`
	Bio             *string `json:"bio"`
	TwitterUsername *string `json:"twitter_username"`
	PublicRepos     int     `json:"public_repos"`
	PublicGists     int     `json:"public_gists"`
	Followers       int     `json:"followers"`
	Following       int     `json:"following"`
	CreatedAt       string  `json:"created_at"`
	UpdatedAt       string  `json:"updated_at"`
}

// GET /users/{username}: the bot user of one of the emulator's Apps ("<slug>[bot]", the
// account that commits made as the App are attributed to), or an account the emulator knows
// from its installations. Logins match case-insensitively, as on GitHub; others are 404.
func (s *Server) getUser(c *call) *apiError {
	login := strings.ToLower(c.params["username"])
	s.mu.RLock()
	var obj *publicUser
	if app, ok := s.st.bots[login]; ok {
		u := s.botUser(c.links, app)
		obj = &u
	} else if acct, ok := s.st.accounts[login]; ok {
		u := s.publicUser(c.links.user(acct))
		obj = &u
	}
	s.mu.RUnlock()
	if obj == nil {
		return errNotFound()
	}
	c.writeJSON(http.StatusOK, obj)
	return nil
}

// botUser renders an App's bot user as GitHub shows it: type Bot, the App's page as html_url
// and the App's avatar. The caller holds Server.mu.
func (s *Server) botUser(l links, a *appState) publicUser {
	u := s.publicUser(l.user(account{login: botLogin(a.Slug), id: a.BotUserID, typ: "Bot"}))
	u.HTMLURL = l.web + "/apps/" + a.Slug
	u.AvatarURL = fmt.Sprintf("https://avatars.githubusercontent.com/in/%d?v=4", a.ID)
	if l.web != "https://github.com" {
		u.AvatarURL = fmt.Sprintf("%s/avatars/in/%d?", l.web, a.ID)
	}
	return u
}

// publicUser completes a simple-user with an empty profile, created with the fixture.
func (s *Server) publicUser(u simpleUser) publicUser {
	return publicUser{
		simpleUser: u,
		CreatedAt:  timestamp(s.epoch),
		UpdatedAt:  timestamp(s.epoch),
	}
}

// BotUser returns the login and user ID of an App's bot user.
func (s *Server) BotUser(appID int64) (login string, id int64, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.st.apps[appID]
	if !ok {
		return "", 0, fmt.Errorf("fakegithub: app %d does not exist", appID)
	}
	return botLogin(a.Slug), a.BotUserID, nil
}
