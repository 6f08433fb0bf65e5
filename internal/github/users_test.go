// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github_test

import (
	"strings"
	"testing"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

const userRoute = "GET /users/{username}"

// BotUser finds the App's bot user with an installation token, as GitHub spells the login in the path.
func TestBotUser(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newClient(t)
	tok, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	login, id, err := h.fake.BotUser(testAppID)
	if err != nil {
		t.Fatal(err)
	}
	if login != github.BotLogin("vault-test") {
		t.Fatalf("the emulator's bot login %q, want %q", login, github.BotLogin("vault-test"))
	}
	u, err := c.BotUser(t.Context(), tok.Token, login)
	if err != nil {
		t.Fatalf("BotUser: %v", err)
	}
	if *u != (github.User{ID: id, Login: login, Type: "Bot"}) {
		t.Errorf("BotUser = %+v, want ID %d, login %q, type Bot", *u, id, login)
	}
	for _, r := range h.log.all() {
		if !strings.HasPrefix(r.Path, "/users/") {
			continue
		}
		if r.RequestURI != "/users/vault-test%5Bbot%5D" {
			t.Errorf("path sent %q, want /users/vault-test%%5Bbot%%5D", r.RequestURI)
		}
		if auth := r.Header.Get("Authorization"); auth != "Bearer "+tok.Token {
			t.Errorf("GET /users/{username} sent Authorization %.12s…, want the installation token", auth)
		}
	}
	if h.calls(userRoute) != 1 {
		t.Errorf("%d calls of %s, want 1", h.calls(userRoute), userRoute)
	}

	_, err = c.BotUser(t.Context(), tok.Token, "nobody[bot]")
	assertKind(t, err, github.KindNotFound)
	if _, err := c.BotUser(t.Context(), "", login); err == nil {
		t.Error("BotUser without a token made an App call")
	}
	if h.calls(userRoute) != 2 {
		t.Errorf("%d calls of %s, want 2 (none without a token)", h.calls(userRoute), userRoute)
	}
}

// The lookup is the installation's call: a rate limit GitHub set on the App does not hold it back.
func TestBotUserBypassesTheAppLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newClient(t)
	tok, err := c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.fake.SetAppRateLimit(testAppID, fakegithub.RateLimit{Remaining: 0}); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateToken(t.Context(), orgInstallation, github.TokenRequest{})
	assertKind(t, err, github.KindRateLimited)
	if _, err := c.BotUser(t.Context(), tok.Token, github.BotLogin("vault-test")); err != nil {
		t.Errorf("BotUser while the App is limited: %v", err)
	}
}
