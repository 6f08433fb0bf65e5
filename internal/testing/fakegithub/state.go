// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"cmp"
	"crypto/rsa"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// state is everything GitHub would know: Apps, installations, repositories and issued tokens.
// Server.mu guards it.
type state struct {
	apps           map[int64]*appState
	appsByClientID map[string]*appState
	installations  map[int64]*installationState
	accounts       map[string]account // lower-case login → account
	accountByID    map[int64]string   // account ID → lower-case login
	repoByName     map[string]int64   // "owner/name", lower-case → repository ID
	repoByID       map[int64]string   // repository ID → "owner/name", lower-case
	tokens         map[string]*tokenState
	nextRepoID     int64
	bots           map[string]*appState // lower-case bot login ("<slug>[bot]") → App
	botIDs         map[int64]*appState  // bot user ID → App
}

type appState struct {
	App
	keys []*rsa.PublicKey
}

type account struct {
	login string // as first spelled
	id    int64
	typ   string // "Organization" or "User"
}

type installationState struct {
	Installation
	createdAt   time.Time
	updatedAt   time.Time
	suspendedAt time.Time
}

type tokenState struct {
	value          string
	appID          int64
	installationID int64
	expiresAt      time.Time
	permissions    map[string]string
	repoIDs        []int64 // nil: whatever the installation reaches, now and later
	selection      string
	revoked        bool
	revokedAt      time.Time
}

func newState() state {
	return state{
		apps:           make(map[int64]*appState),
		appsByClientID: make(map[string]*appState),
		installations:  make(map[int64]*installationState),
		accounts:       make(map[string]account),
		accountByID:    make(map[int64]string),
		repoByName:     make(map[string]int64),
		repoByID:       make(map[int64]string),
		tokens:         make(map[string]*tokenState),
		nextRepoID:     100_000_000,
		bots:           make(map[string]*appState),
		botIDs:         make(map[int64]*appState),
	}
}

func (st *state) addApp(a App) error {
	if _, dup := st.apps[a.ID]; dup {
		return fmt.Errorf("app id %d used twice", a.ID)
	}
	if _, dup := st.appsByClientID[a.ClientID]; dup {
		return fmt.Errorf("app %d: client_id %q used twice", a.ID, a.ClientID)
	}
	bot := strings.ToLower(botLogin(a.Slug))
	if other, dup := st.bots[bot]; dup {
		return fmt.Errorf("app %d: slug %q is app %d's already; GitHub's slugs are unique", a.ID, a.Slug, other.ID)
	}
	switch other, dup := st.botIDs[a.BotUserID]; {
	case a.BotUserID == 0:
		a.BotUserID = generatedAccountID(bot)
		for st.botIDs[a.BotUserID] != nil {
			a.BotUserID++
		}
	case dup:
		return fmt.Errorf("app %d: bot_user_id %d is app %d's already", a.ID, a.BotUserID, other.ID)
	}
	as := &appState{App: a}
	as.PublicKeys = nil // kept parsed in keys
	for i, p := range a.PublicKeys {
		key, err := parsePublicKey(p)
		if err != nil {
			return fmt.Errorf("app %d: public key %d: %w", a.ID, i, err)
		}
		as.keys = append(as.keys, key)
	}
	st.apps[a.ID] = as
	st.appsByClientID[a.ClientID] = as
	st.bots[bot] = as
	st.botIDs[a.BotUserID] = as
	return nil
}

// addInstallation checks an installation against the rest of the state and stores it.
// Nothing is stored when it fails.
func (st *state) addInstallation(in Installation, now time.Time) error {
	in, err := normalizeInstallation(in)
	if err != nil {
		return err
	}
	if _, ok := st.apps[in.AppID]; !ok {
		return fmt.Errorf("installation %d: app %d does not exist", in.ID, in.AppID)
	}
	if _, dup := st.installations[in.ID]; dup {
		return fmt.Errorf("installation id %d used twice", in.ID)
	}
	for _, other := range st.installations {
		if other.AppID == in.AppID && strings.EqualFold(other.Account, in.Account) {
			return fmt.Errorf("installation %d: app %d is already installed on %s (installation %d); GitHub allows one installation per account", in.ID, in.AppID, in.Account, other.ID)
		}
	}

	acct, err := st.resolveAccount(in)
	if err != nil {
		return err
	}
	in.AccountID = acct.id

	// Repository IDs are global on GitHub: the same repository may appear in several
	// installations (of different Apps), but an ID always names the same repository.
	owner := strings.ToLower(in.Account)
	assigned := make(map[int64]string) // IDs given out to this installation, not yet stored
	for i := range in.Repositories {
		repo := &in.Repositories[i]
		full := owner + "/" + strings.ToLower(repo.Name)
		known, exists := st.repoByName[full]
		switch {
		case repo.ID == 0 && exists:
			repo.ID = known
		case repo.ID == 0:
			repo.ID = st.freeRepoID(assigned)
		case exists && known != repo.ID:
			return fmt.Errorf("installation %d: repository %s/%s has id %d elsewhere, not %d", in.ID, in.Account, repo.Name, known, repo.ID)
		}
		if other, used := st.repoByID[repo.ID]; used && other != full {
			return fmt.Errorf("installation %d: repository id %d already names %s", in.ID, repo.ID, other)
		}
		if other, used := assigned[repo.ID]; used && other != full {
			return fmt.Errorf("installation %d: repository id %d used twice", in.ID, repo.ID)
		}
		assigned[repo.ID] = full
	}

	for id, full := range assigned {
		st.repoByID[id] = full
		st.repoByName[full] = id
	}
	st.accounts[owner] = acct
	st.accountByID[acct.id] = owner
	is := &installationState{Installation: in, createdAt: now, updatedAt: now}
	if in.Suspended {
		is.suspendedAt = now
	}
	st.installations[in.ID] = is
	return nil
}

// resolveAccount finds or creates the account an installation is on, keeping an account's
// ID and type the same across installations.
func (st *state) resolveAccount(in Installation) (account, error) {
	login := strings.ToLower(in.Account)
	if acct, ok := st.accounts[login]; ok {
		if in.AccountID != 0 && in.AccountID != acct.id {
			return account{}, fmt.Errorf("installation %d: account %s has id %d elsewhere, not %d", in.ID, in.Account, acct.id, in.AccountID)
		}
		if in.AccountType != acct.typ {
			return account{}, fmt.Errorf("installation %d: account %s is an %s elsewhere, not a %s", in.ID, in.Account, acct.typ, in.AccountType)
		}
		return acct, nil
	}
	id := in.AccountID
	if id == 0 {
		id = generatedAccountID(login)
		for st.accountByID[id] != "" {
			id++
		}
	}
	if other := st.accountByID[id]; other != "" && other != login {
		return account{}, fmt.Errorf("installation %d: account id %d already names %s", in.ID, id, other)
	}
	return account{login: in.Account, id: id, typ: in.AccountType}, nil
}

func (st *state) freeRepoID(taken map[int64]string) int64 {
	for {
		id := st.nextRepoID
		st.nextRepoID++
		if _, used := st.repoByID[id]; used {
			continue
		}
		if _, used := taken[id]; used {
			continue
		}
		return id
	}
}

// appByIssuer finds the App a JWT's iss names: its numeric ID or its client ID.
func (st *state) appByIssuer(iss string) *appState {
	if a, ok := st.appsByClientID[iss]; ok {
		return a
	}
	id, err := strconv.ParseInt(iss, 10, 64)
	if err != nil {
		return nil
	}
	return st.apps[id]
}

// ownerAccount describes an App's owner for the "owner" object of GET /app.
func (st *state) ownerAccount(login string) account {
	if acct, ok := st.accounts[strings.ToLower(login)]; ok {
		return acct
	}
	return account{login: login, id: generatedAccountID(login), typ: "Organization"}
}

// appInstallations lists an App's installations by ascending ID, the order GitHub uses.
func (st *state) appInstallations(appID int64) []*installationState {
	var out []*installationState
	for _, in := range st.installations {
		if in.AppID == appID {
			out = append(out, in)
		}
	}
	slices.SortFunc(out, func(a, b *installationState) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// tokenRepositories lists the repositories a token reaches, in the installation's order.
func (st *state) tokenRepositories(t *tokenState) []Repository {
	in := st.installations[t.installationID]
	if in == nil {
		return nil
	}
	if t.repoIDs == nil {
		return in.Repositories
	}
	var out []Repository
	for _, repo := range in.Repositories {
		if slices.Contains(t.repoIDs, repo.ID) {
			out = append(out, repo)
		}
	}
	return out
}

// appPermissions is the union of what the App's installations were granted, at the highest
// level seen: the emulator's stand-in for the permissions an App asks for.
func (st *state) appPermissions(appID int64) map[string]string {
	out := make(map[string]string)
	for _, in := range st.installations {
		if in.AppID != appID {
			continue
		}
		for name, level := range in.Permissions {
			if github.LevelRank(level) > github.LevelRank(out[name]) {
				out[name] = level
			}
		}
	}
	return out
}
