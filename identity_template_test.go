// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// jwtAccessor is the mount accessor of the JWT auth method in these tests.
const jwtAccessor = "auth_jwt_1a2b3c4d"

// Templates as an operator writes them for GitHub Actions (claim_mappings repository, repository_owner,
// repository_id).
const (
	tplRepository = "{{identity.entity.aliases." + jwtAccessor + ".metadata.repository}}"
	tplOwner      = "{{identity.entity.aliases." + jwtAccessor + ".metadata.repository_owner}}"
	tplRepoID     = "{{identity.entity.aliases." + jwtAccessor + ".metadata.repository_id}}"
)

// identityView is a system view that looks entities and groups up by ID, as Vault does, and counts the lookups.
type identityView struct {
	*logical.StaticSystemView
	mu       sync.Mutex
	entities map[string]*logical.Entity
	groups   map[string][]*logical.Group
	lookups  atomic.Int64
}

func (v *identityView) EntityInfo(id string) (*logical.Entity, error) {
	v.lookups.Add(1)
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.entities[id], nil
}

func (v *identityView) GroupsForEntity(id string) ([]*logical.Group, error) {
	v.lookups.Add(1)
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.groups[id], nil
}

// githubJob is the entity a GitHub Actions job has after logging in through the JWT auth method with claim_mappings
// for repository, repository_owner and repository_id.
func githubJob(id, repository, owner, repositoryID string) *logical.Entity {
	return &logical.Entity{
		ID: id, Name: "entity_" + id,
		Aliases: []*logical.Alias{{
			MountAccessor: jwtAccessor, MountType: "jwt", Name: "repo:" + repository + ":ref:refs/heads/main",
			Metadata: map[string]string{"repository": repository, "repository_owner": owner, "repository_id": repositoryID},
		}},
	}
}

// identityEnv is a testEnv whose backend sees the entities of identityView.
type identityEnv struct {
	*testEnv
	view *identityView
	st   *countingStorage
}

func newIdentityEnv(t *testing.T) *identityEnv {
	t.Helper()
	e := newTestEnv(t)
	view := &identityView{StaticSystemView: e.sys, entities: map[string]*logical.Entity{
		"api":    githubJob("api", "acme/api", "acme", "3001"),
		"web":    githubJob("web", "acme/web", "acme", "3002"),
		"upper":  githubJob("upper", "ACME/Web", "ACME", "3002"),
		"other":  githubJob("other", "other/x", "other", "9001"),
		"octo":   githubJob("octo", "octocat/dotfiles", "octocat", "4001"),
		"spaces": githubJob("spaces", "acme/we b", "-acme-", "x3001"),
		"empty":  githubJob("empty", "", "", ""),
		"nokey":  {ID: "nokey", Name: "nokey", Aliases: []*logical.Alias{{MountAccessor: jwtAccessor, Name: "n", Metadata: map[string]string{}}}},
		"noalias": {ID: "noalias", Name: "alice", Metadata: map[string]string{"team": "web"},
			Aliases: []*logical.Alias{{MountAccessor: "auth_userpass_99", Name: "alice"}}},
	}, groups: map[string][]*logical.Group{
		"noalias": {{ID: "g1", Name: "deployers", Metadata: map[string]string{"repository": "infra"}}},
	}}
	st := &countingStorage{Storage: e.storage}
	e.b.Cleanup(context.Background())
	e.storage = st
	b, err := Factory(context.Background(), &logical.BackendConfig{
		Logger:      hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: e.logs}),
		System:      view,
		StorageView: st,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Cleanup(context.Background()) })
	e.b = b.(*backend)
	return &identityEnv{testEnv: e, view: view, st: st}
}

// use points the env's helpers at a subtest until the returned function restores the parent.
func (e *identityEnv) use(t *testing.T) func() {
	parent := e.t
	e.t = t
	return func() { e.t = parent }
}

// doAs sends a request on behalf of an entity ("" for a token without one).
func (e *identityEnv) doAs(entityID string, op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	e.t.Helper()
	req := &logical.Request{Operation: op, Path: path, Data: data, Storage: e.storage, EntityID: entityID}
	resp, err := e.b.HandleRequest(context.Background(), req)
	e.record(resp, err)
	return resp, err
}

// mintAs reads token/<role> as an entity and returns what the token reaches at the emulator.
func (e *identityEnv) mintAs(entityID, roleName string) []string {
	e.t.Helper()
	resp, err := e.doAs(entityID, logical.ReadOperation, "token/"+roleName, nil)
	mustOK(e.t, resp, err)
	return e.reach(resp.Data["token"].(string))
}

// refusedAs reads token/<role> as an entity, fails the test unless it is refused with 403 and no token was
// minted, and returns the message.
func (e *identityEnv) refusedAs(entityID, roleName string) string {
	e.t.Helper()
	before := e.gh.Stats().Calls[mintRoute]
	resp, err := e.doAs(entityID, logical.ReadOperation, "token/"+roleName, nil)
	status, msg := mustFail(e.t, resp, err)
	if status != http.StatusForbidden {
		e.t.Errorf("status %d, want 403: %s", status, msg)
	}
	if after := e.gh.Stats().Calls[mintRoute]; after != before {
		e.t.Errorf("a refused mint asked GitHub for %d tokens", after-before)
	}
	return msg
}

// TestTemplateWriteValidation: a role write checks that each template parses and names an identity field that
// renders to one value, and refuses templates on plain roles.
func TestTemplateWriteValidation(t *testing.T) {
	e := newIdentityEnv(t)
	tpl := map[string]any{"templated": true, "owner": "acme"}
	with := func(base map[string]any, kv ...any) map[string]any {
		out := map[string]any{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	tests := []struct {
		name  string
		data  map[string]any
		wants []string
	}{
		{"braces in a plain role's repositories", map[string]any{"owner": "acme", "repositories": tplRepository},
			[]string{`repository "` + tplRepository + `" is not a valid repository name`, "only on roles with templated=true"}},
		{"braces in a plain role's owner", map[string]any{"owner": tplOwner},
			[]string{`owner "` + tplOwner + `" is invalid`, "only on roles with templated=true"}},
		{"braces in a plain role's repository_ids", map[string]any{"owner": "acme", "repository_ids": tplRepoID},
			[]string{`repository_ids holds "` + tplRepoID + `"`, "only on roles with templated=true"}},
		{"not a repository ID", map[string]any{"owner": "acme", "repository_ids": "api"},
			[]string{`repository_ids holds "api": expected positive repository IDs in decimal`}},
		{"unbalanced", with(tpl, "repositories", "{{identity.entity.name"),
			[]string{`repositories template "{{identity.entity.name" does not parse`}},
		{"unbalanced closing", with(tpl, "repositories", "identity.entity.name}}"),
			[]string{`does not parse`}},
		{"unknown field", with(tpl, "repositories", "{{identity.entity.email}}"),
			[]string{`names "identity.entity.email", which is not an identity field that renders to one value`, "identity.entity.aliases.<mount accessor>"}},
		{"a list", with(tpl, "repositories", "{{identity.entity.groups.names}}"),
			[]string{`names "identity.entity.groups.names"`}},
		{"a whole map", with(tpl, "repositories", "{{identity.entity.metadata}}"),
			[]string{`names "identity.entity.metadata"`}},
		{"an alias's whole metadata", with(tpl, "repositories", "{{identity.entity.aliases."+jwtAccessor+".metadata}}"),
			[]string{`which is not an identity field`}},
		{"time", with(tpl, "repositories", "{{time.now}}"), []string{`names "time.now"`}},
		{"empty braces", with(tpl, "repositories", "{{}}"), []string{`has an empty {{}}`}},
		{"text a name cannot hold", with(tpl, "repositories", "{{identity.entity.name}} x"),
			[]string{`has text " x" around its templates that cannot be part of a repository name`}},
		{"owner with a slash", with(tpl, "owner", "acme/{{identity.entity.name}}"),
			[]string{`owner template "acme/{{identity.entity.name}}" has text "acme/"`, "GitHub organization or user login"}},
		{"ID with letters", with(tpl, "repository_ids", "id-{{identity.entity.name}}"),
			[]string{`repository_ids template "id-{{identity.entity.name}}" has text "id-"`, "decimal digits"}},
		{"owner/name beside a templated owner", map[string]any{"templated": true, "owner": tplOwner, "repositories": "acme/api"},
			[]string{`repository "acme/api" has an owner, but the role's owner is a template: give the name alone ("api")`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.do(logical.UpdateOperation, "roles/bad", tt.data)
			status, msg := mustFail(t, resp, err)
			if status != http.StatusBadRequest {
				t.Errorf("status %d, want 400", status)
			}
			wantContains(t, msg, tt.wants...)
			if r, _ := getRole(t.Context(), e.storage, "bad"); r != nil {
				t.Fatalf("a refused write stored the role: %#v", r)
			}
		})
	}

	t.Run("turning templated off keeps no template", func(t *testing.T) {
		e.role("t", map[string]any{"templated": true, "owner": "acme", "repositories": tplRepository})
		resp, err := e.do(logical.UpdateOperation, "roles/t", map[string]any{"templated": false})
		_, msg := mustFail(t, resp, err)
		wantContains(t, msg, "templated=false, but the role holds identity templates", `repositories "`+tplRepository+`"`)
		resp, err = e.do(logical.UpdateOperation, "roles/t", map[string]any{"templated": false, "repositories": "api"})
		mustOK(t, resp, err)
	})
}

func TestTemplateWriteWarningsAndReadBack(t *testing.T) {
	e := newIdentityEnv(t)
	resp, err := e.do(logical.UpdateOperation, "roles/path", map[string]any{
		"templated": true, "owner": "acme", "repositories": "{{identity.entity.aliases.jwt.metadata.repository}}",
		"permissions": "contents=read",
	})
	mustOK(t, resp, err)
	wantContains(t, strings.Join(resp.Warnings, "\n"), `names mount accessor "jwt", which does not look like an auth method's accessor`)

	resp, err = e.do(logical.UpdateOperation, "roles/none", map[string]any{
		"templated": true, "owner": "acme", "repositories": "api", "permissions": "contents=read",
	})
	mustOK(t, resp, err)
	wantContains(t, strings.Join(resp.Warnings, "\n"), "templated is true, but no field holds an identity template")

	// A templated role reads back with its templates as written; literal entries are normalized as on any role.
	resp, err = e.do(logical.UpdateOperation, "roles/ci", map[string]any{
		"templated": true, "owner": tplOwner, "repositories": []string{tplRepository, "infra", tplRepository, " {{ identity.entity.name }} "},
		"repository_ids": []any{"3003", tplRepoID}, "permissions": "contents=read",
	})
	mustOK(t, resp, err)
	if resp != nil {
		t.Fatalf("unexpected warnings: %v", resp.Warnings)
	}
	resp, err = e.do(logical.ReadOperation, "roles/ci", nil)
	mustOK(t, resp, err)
	want := map[string]any{
		"installation_id": int64(0), "owner": tplOwner, "account_id": int64(0), "templated": true,
		"repositories":   []string{tplRepository, "infra", "{{ identity.entity.name }}"},
		"repository_ids": []any{int64(3003), tplRepoID}, "repository_patterns": []string{},
		"permissions": map[string]string{"contents": "read"}, "ttl": int64(0),
		"apps": []string{"default"}, "app_selection": "budget",
	}
	if !reflect.DeepEqual(resp.Data, want) {
		t.Fatalf("role read:\n got %#v\nwant %#v", resp.Data, want)
	}
}

// TestTemplateRendering is the mint-time table: each caller gets its own repository, and every rendering failure
// is a 403 that names the template and what is missing, with no token minted.
func TestTemplateRendering(t *testing.T) {
	e := newIdentityEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"templated": true, "owner": "acme", "repositories": tplRepository, "permissions": "contents=read"})
	e.role("org", map[string]any{"templated": true, "owner": tplOwner, "repositories": tplRepository, "permissions": "contents=read"})
	e.role("ids", map[string]any{"templated": true, "owner": "acme", "repository_ids": tplRepoID, "permissions": "contents=read"})
	e.role("byid", map[string]any{"templated": true, "installation_id": testOrgInstall, "repositories": tplRepository, "permissions": "contents=read"})
	e.role("meta", map[string]any{"templated": true, "owner": "acme", "repositories": "{{identity.entity.metadata.team}}", "permissions": "contents=read"})
	e.role("group", map[string]any{"templated": true, "owner": "acme", "repositories": "{{identity.groups.names.deployers.metadata.repository}}", "permissions": "contents=read"})

	reached := []struct {
		role, entity string
		want         []string
	}{
		{"ci", "api", []string{"api"}},
		{"ci", "web", []string{"web"}},
		{"ci", "upper", []string{"web"}}, // ACME/Web: the owner compares case-insensitively, as GitHub's logins do
		{"org", "api", []string{"api"}},
		{"org", "octo", []string{"dotfiles"}}, // the user installation, looked up by the rendered owner
		{"ids", "api", []string{"api"}},
		{"ids", "web", []string{"web"}},
		{"meta", "noalias", []string{"web"}},
		{"group", "noalias", []string{"infra"}},
	}
	for _, tt := range reached {
		t.Run(fmt.Sprintf("%s as %s", tt.role, tt.entity), func(t *testing.T) {
			defer e.use(t)()
			if got := e.mintAs(tt.entity, tt.role); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("the token reaches %v, want %v", got, tt.want)
			}
		})
	}

	refused := []struct {
		name, role, entity string
		wants              []string
	}{
		{"no entity", "ci", "", []string{`role "ci": it holds identity templates (repositories "` + tplRepository + `")`,
			"the request's Vault token has none", "root tokens", "no token was minted"}},
		{"unknown entity", "ci", "gone", []string{"identity entity gone was not found"}},
		{"another owner", "ci", "other", []string{`repositories template "` + tplRepository + `" rendered "other/x", whose owner "other" is not the role's owner "acme"`}},
		{"no alias on the accessor", "ci", "noalias", []string{`repositories template "` + tplRepository + `" cannot be rendered`,
			"alice (noalias)", "no alias on the auth method with mount accessor " + jwtAccessor}},
		{"metadata not mapped", "ci", "nokey", []string{`its alias on ` + jwtAccessor + ` has no metadata "repository"`, "claim_mappings"}},
		{"renders empty", "ci", "empty", []string{`has metadata "repository", but it is empty`}},
		{"not a repository name", "ci", "spaces", []string{`rendered "acme/we b", which is not a repository name`}},
		{"owner renders empty", "org", "empty", []string{`owner template "` + tplOwner + `" cannot be rendered`, "but it is empty"}},
		{"owner not a login", "org", "spaces", []string{`owner template "` + tplOwner + `" rendered "-acme-", which is not a GitHub organization or user login`}},
		{"not an ID", "ids", "spaces", []string{`repository_ids template "` + tplRepoID + `" rendered "x3001", which is not a repository ID`}},
		{"owner/name on an installation-bound role", "byid", "api", []string{`rendered "acme/api", which names an owner`, "only on roles bound by owner"}},
		{"entity metadata missing", "meta", "api", []string{`the entity has no metadata "team"`}},
		{"not in the group", "group", "api", []string{`it is not a member of the group with name "deployers"`}},
	}
	for _, tt := range refused {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			defer e.use(t)()
			msg := e.refusedAs(tt.entity, tt.role)
			t.Log(msg)
			wantContains(t, msg, tt.wants...)
		})
	}

	// No token reaches the log, or a response or error outside the token field.
	e.mu.Lock()
	outputs := strings.Join(e.outputs, "\n")
	e.mu.Unlock()
	logs := e.logs.String()
	for _, tok := range e.gh.Tokens() {
		if strings.Contains(outputs, tok.Value) || strings.Contains(logs, tok.Value) {
			t.Errorf("a token (%d chars) leaked into a response, an error or the log", len(tok.Value))
		}
	}
}

// TestTemplateLiteralBracesNeverInterpreted: a plain role holding "{{" (stored by an older version, or written to
// storage by hand) sends the text to GitHub as a name; it never renders, and never looks the caller up.
func TestTemplateLiteralBracesNeverInterpreted(t *testing.T) {
	e := newIdentityEnv(t)
	e.configure(nil)
	if err := putRole(t.Context(), e.storage, "plain", &role{Owner: "acme", Repositories: []string{tplRepository}}); err != nil {
		t.Fatal(err)
	}
	lookups := e.view.lookups.Load()
	resp, err := e.doAs("api", logical.ReadOperation, "token/plain", nil)
	_, msg := mustFail(t, resp, err)
	t.Log(msg)
	if strings.Contains(msg, "cannot be rendered") || e.view.lookups.Load() != lookups {
		t.Fatalf("a plain role was rendered: %s", msg)
	}
	for _, tok := range e.gh.Tokens() {
		t.Fatalf("a plain role holding braces got a token reaching %v", tok.Repositories)
	}
}

// TestTemplateNarrowing: token writes on a templated role narrow the rendered scope, with the strict spelling rules
// of any role.
func TestTemplateNarrowing(t *testing.T) {
	e := newIdentityEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"templated": true, "owner": "acme", "repositories": []string{tplRepository, "infra"},
		"permissions": "contents=write"})
	write := func(entity string, data map[string]any) (*logical.Response, error) {
		return e.doAs(entity, logical.UpdateOperation, "token/ci", data)
	}

	resp, err := write("api", map[string]any{"repositories": "api", "permissions": "contents=read"})
	mustOK(t, resp, err)
	if got := e.reach(resp.Data["token"].(string)); !reflect.DeepEqual(got, []string{"api"}) {
		t.Fatalf("narrowed to api, the token reaches %v", got)
	}
	resp, err = write("upper", map[string]any{"repositories": "Web"})
	mustOK(t, resp, err)
	if got := e.reach(resp.Data["token"].(string)); !reflect.DeepEqual(got, []string{"web"}) {
		t.Fatalf("narrowed to Web, the token reaches %v", got)
	}

	tests := []struct {
		entity string
		data   map[string]any
		status int
		wants  []string
	}{
		{"api", map[string]any{"repositories": "web"}, 403, []string{`role "ci" does not allow: repository "web"`}},
		{"web", map[string]any{"repositories": "api,infra"}, 403, []string{`repository "api"`}},
		{"api", map[string]any{"repositories": "API"}, 400, []string{`repository "API" is spelled "api" in the role`}},
		{"api", map[string]any{"repositories": "acme/api"}, 400, []string{`write the name without its owner`}},
		{"upper", map[string]any{"repositories": "web"}, 400, []string{`repository "web" is spelled "Web" in the role`}},
		{"", map[string]any{"repositories": "infra"}, 403, []string{"the request's Vault token has none"}},
		{"other", map[string]any{"repositories": "infra"}, 403, []string{`whose owner "other" is not the role's owner`}},
	}
	for _, tt := range tests {
		before := e.gh.Stats().Calls[mintRoute]
		resp, err := write(tt.entity, tt.data)
		status, msg := mustFail(t, resp, err)
		if status != tt.status {
			t.Errorf("%s %v: status %d, want %d: %s", tt.entity, tt.data, status, tt.status, msg)
		}
		wantContains(t, msg, tt.wants...)
		if e.gh.Stats().Calls[mintRoute] != before {
			t.Errorf("%s %v: a refused write minted a token", tt.entity, tt.data)
		}
	}
}

// TestTemplateCaching: the stored role stays cached (a mint reads no storage), the rendered scope is the caller's
// alone, a templated owner costs one installation lookup per owner, and no account is pinned for it.
func TestTemplateCaching(t *testing.T) {
	e := newIdentityEnv(t)
	e.configure(nil)
	e.role("org", map[string]any{"templated": true, "owner": tplOwner, "repositories": tplRepository, "permissions": "contents=read"})
	e.gh.ResetStats()

	e.mintAs("api", "org") // fills the role cache and acme's installation
	reads := e.st.calls.Load()
	for i, entity := range []string{"web", "api", "octo", "web", "octo", "api", "upper"} {
		want := map[string]string{"api": "api", "web": "web", "upper": "web", "octo": "dotfiles"}[entity]
		if got := e.mintAs(entity, "org"); !reflect.DeepEqual(got, []string{want}) {
			t.Fatalf("mint %d as %s reaches %v, want [%s]: a rendered scope leaked between callers", i, entity, got, want)
		}
	}
	if n := e.st.calls.Load() - reads; n != 0 {
		t.Errorf("mints of a cached templated role made %d storage calls, want 0", n)
	}
	st := e.gh.Stats()
	orgLookups, userLookups := st.Calls["GET /orgs/{org}/installation"], st.Calls["GET /users/{username}/installation"]
	t.Logf("8 mints for 2 owners: %d GitHub calls (%v)", st.TotalCalls, st.Calls)
	// acme: one organization lookup; octocat: an organization lookup (404), then the user lookup.
	if orgLookups != 2 || userLookups != 1 {
		t.Errorf("owner lookups: %d organization, %d user; want 2 and 1 (one per owner)", orgLookups, userLookups)
	}
	resp, err := e.do(logical.ReadOperation, "roles/org", nil)
	mustOK(t, resp, err)
	if resp.Data["account_id"] != int64(0) {
		t.Errorf("a templated owner pinned account %v", resp.Data["account_id"])
	}

	// A literal owner beside templated repositories is pinned as on any owner-bound role.
	e.role("ci", map[string]any{"templated": true, "owner": "acme", "repositories": tplRepository, "permissions": "contents=read"})
	e.mintAs("web", "ci")
	resp, err = e.do(logical.ReadOperation, "roles/ci", nil)
	mustOK(t, resp, err)
	if resp.Data["account_id"] == int64(0) {
		t.Error("a literal owner on a templated role was not pinned")
	}
}

// TestTemplateConcurrentCallers: many callers minting from one cached templated role at once each get their own
// repository (run with -race).
func TestTemplateConcurrentCallers(t *testing.T) {
	e := newIdentityEnv(t)
	e.configure(nil)
	e.role("ci", map[string]any{"templated": true, "owner": "acme", "repositories": tplRepository, "permissions": "contents=read"})
	want := map[string]string{"api": "api", "web": "web", "upper": "web"}
	var wg sync.WaitGroup
	errs := make(chan string, 60)
	for i := range 60 {
		entity := []string{"api", "web", "upper"}[i%3]
		wg.Go(func() {
			req := &logical.Request{Operation: logical.ReadOperation, Path: "token/ci", Storage: e.storage, EntityID: entity}
			resp, err := e.b.HandleRequest(context.Background(), req)
			if err != nil || resp == nil || resp.IsError() {
				errs <- fmt.Sprintf("%s: %v %v", entity, err, resp)
				return
			}
			repos, _ := resp.Data["repositories"].([]string)
			if !slices.Equal(repos, []string{want[entity]}) {
				errs <- fmt.Sprintf("%s got a token for %v", entity, repos)
			}
		})
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
}
