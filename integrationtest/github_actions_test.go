// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	vaultapi "github.com/hashicorp/vault/api"
)

// actionsIssuer is GitHub Actions' OIDC issuer.
const actionsIssuer = "https://token.actions.githubusercontent.com"

// actionsRepositories are the repositories of acme in this test's emulator: ten, so that fifty logins spread over
// ten repositories (the built-in fixture has three). The emulator also has an installation on the organization
// "other", so that a refusal there is Vault's or the plugin's, never GitHub's.
var actionsRepositories = []string{"api", "web", "infra", "docs", "cli", "sdk", "mobile", "billing", "search", "auth"}

// actionsFixture is the emulator's fixture for this test, in internal/testing/cmd/fakegithub's -fixture format.
func actionsFixture() string {
	var repos []string
	for i, name := range actionsRepositories {
		repos = append(repos, fmt.Sprintf(`{"id": %d, "name": %q, "private": true}`, 3001+i, name))
	}
	return fmt.Sprintf(`{
  "apps": [{"id": %d, "slug": "vault-demo", "name": "Vault Demo", "owner": "acme"}],
  "installations": [
    {"id": 2001, "app_id": %d, "account": "acme", "account_type": "Organization", "repository_selection": "selected",
     "repositories": [%s],
     "permissions": {"contents": "write", "metadata": "read", "pull_requests": "write", "issues": "write"}},
    {"id": 2005, "app_id": %d, "account": "other", "account_type": "Organization", "repository_selection": "selected",
     "repositories": [{"id": 9001, "name": "x"}],
     "permissions": {"contents": "write", "metadata": "read", "pull_requests": "write"}}
  ]
}`, appID, appID, strings.Join(repos, ", "), appID)
}

// oidcIssuer signs OIDC tokens shaped like those GitHub Actions gives a job. Vault's JWT auth method trusts its
// public key (jwt_validation_pubkeys) in place of GitHub's discovery document.
type oidcIssuer struct {
	key     *rsa.PrivateKey
	pubFile string
	n       int
}

func newOIDCIssuer(t *testing.T, dir string) *oidcIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(dir, "actions-oidc.pub.pem")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &oidcIssuer{key: key, pubFile: pubFile}
}

// job describes a workflow job: its repository (owner/name), branch and environment ("" for none).
type job struct {
	repository, ref, environment string
	// drop names claims to leave out, for tokens GitHub would not issue.
	drop []string
	// owner overrides repository_owner, for tokens GitHub would not issue.
	owner string
}

// sub is the job's subject as GitHub writes it by default: the environment when the job has one, else the ref.
func (j job) sub() string {
	if j.environment != "" {
		return "repo:" + j.repository + ":environment:" + j.environment
	}
	return "repo:" + j.repository + ":ref:" + j.ref
}

func (j job) String() string {
	s := j.repository
	if j.environment != "" {
		s += " (environment " + j.environment + ")"
	}
	return s
}

// sign returns the job's OIDC token, with the claims GitHub documents.
func (iss *oidcIssuer) sign(t *testing.T, j job) string {
	t.Helper()
	if j.ref == "" {
		j.ref = "refs/heads/main"
	}
	owner, _, _ := strings.Cut(j.repository, "/")
	if j.owner != "" {
		owner = j.owner
	}
	iss.n++
	now := time.Now()
	claims := jwt.MapClaims{
		"iss": actionsIssuer, "aud": "https://github.com/acme", "sub": j.sub(),
		"jti": fmt.Sprintf("job-%d", iss.n), "iat": now.Unix(), "nbf": now.Add(-5 * time.Second).Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"repository": j.repository, "repository_owner": owner, "repository_owner_id": "5001",
		"repository_id": fmt.Sprint(3000 + iss.n), "ref": j.ref, "ref_type": "branch", "actor": "octocat",
		"workflow": "ci", "event_name": "push", "run_id": fmt.Sprint(1000 + iss.n),
		"job_workflow_ref": j.repository + "/.github/workflows/ci.yml@" + j.ref,
	}
	if j.environment != "" {
		claims["environment"] = j.environment
	}
	for _, c := range j.drop {
		delete(claims, c)
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(iss.key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// since is what the emulator saw between two readings: the calls in all, and by route.
func (st emulatorStats) since(before emulatorStats) (int, map[string]int) {
	calls := map[string]int{}
	for k, n := range st.Calls {
		if d := n - before.Calls[k]; d != 0 {
			calls[k] = d
		}
	}
	return st.TotalCalls - before.TotalCalls, calls
}

// runExampleScript runs a shell script of examples/ (written by the test into dir, with its substitutions) with the
// vault CLI of the server as root.
func (v *vaultServer) runExampleScript(t *testing.T, dir, name string) {
	t.Helper()
	binDir := filepath.Join(dir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(v.bin, filepath.Join(binDir, "vault")); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-euo", "pipefail", name)
	cmd.Dir = dir
	cmd.Env = cleanEnv(v.home, "VAULT_ADDR="+v.addr, "VAULT_TOKEN="+v.rootToken,
		"PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	t.Logf("bash %s:\n%s", name, redact(string(out)))
	if err != nil {
		t.Fatalf("bash %s: %v", name, err)
	}
}

// TestGitHubActionsOIDC runs the GitHub Actions example of docs/github-actions.md (examples/github-actions-*) against a
// real Vault: the JWT auth method trusts an issuer that signs tokens shaped like GitHub Actions', one templated role
// gives every job a token for its own repository, and a templated policy gives deploy tokens to production jobs only.
func TestGitHubActionsOIDC(t *testing.T) {
	s := requireStack(t)
	v := s.vault
	dir := t.TempDir()

	fixture := filepath.Join(dir, "fixture.json")
	if err := os.WriteFile(fixture, []byte(actionsFixture()), 0o644); err != nil {
		t.Fatal(err)
	}
	gh, err := startFakeGitHub(s.bins.fakeGitHub, dir, "-fixture", fixture)
	if err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, gh.proc, 30)
	mount := v.newMount(t, s.bins.pluginVersion)
	v.configure(t, mount, gh)
	issuer := newOIDCIssuer(t, dir)

	// The example files as docs/github-actions.md shows them, the mount path substituted; GitHub's discovery URL is
	// replaced by the test issuer's public key, the one thing a test cannot reach.
	exdir := filepath.Join(dir, "examples")
	if err := os.MkdirAll(exdir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"github-actions-jwt-role.json": readExample(t, "github-actions-jwt-role.json", ""),
		"policy-ci-read.hcl":           readExample(t, "policy-ci-read.hcl", mount),
		"policy-github-deploy.hcl":     readExample(t, "policy-github-deploy.hcl", mount),
		"github-actions-deploy.sh":     readExample(t, "github-actions-deploy.sh", mount),
		"github-actions-setup.sh": replaceOnce(t, readExample(t, "github-actions-setup.sh", mount),
			"oidc_discovery_url="+actionsIssuer, "jwt_validation_pubkeys=@"+issuer.pubFile),
	} {
		if err := os.WriteFile(filepath.Join(exdir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		// Disabling the auth method revokes its logins' Vault tokens, and with them their GitHub tokens.
		for _, args := range [][]string{{"auth", "disable", "jwt"}, {"policy", "delete", "github-ci"}, {"policy", "delete", "github-deploy"}} {
			if r := v.run(v.rootToken, "", args...); r.err != nil {
				t.Errorf("%s", r)
			}
		}
	})
	v.runExampleScript(t, exdir, "github-actions-setup.sh")
	checkWorkflowExample(t)

	accessor := strings.TrimSpace(v.cli(t, "read", "-field=accessor", "sys/auth/jwt"))
	var roleOut struct {
		Data struct {
			Owner        string   `json:"owner"`
			Repositories []string `json:"repositories"`
			Templated    bool     `json:"templated"`
		} `json:"data"`
	}
	v.cliJSON(t, v.rootToken, &roleOut, "read", "-format=json", mount+"/roles/ci")
	wantTemplate := "{{identity.entity.aliases." + accessor + ".metadata.repository}}"
	if !roleOut.Data.Templated || roleOut.Data.Owner != acmeOwner || len(roleOut.Data.Repositories) != 1 || roleOut.Data.Repositories[0] != wantTemplate {
		t.Fatalf("role ci reads back as %+v, want templated with repositories [%s]", roleOut.Data, wantTemplate)
	}
	help := normalizeSpace(v.cli(t, "path-help", mount+"/roles/ci"))
	for _, want := range []string{"templated (bool)", "Whether owner, repositories and repository_ids may hold Vault identity templates"} {
		if !strings.Contains(help, want) {
			t.Errorf("vault path-help %s/roles/ci does not show %q", mount, want)
		}
	}
	checkOpenAPITemplateFields(t, v)

	// login logs a job in through the JWT auth method and returns its Vault token.
	login := func(t *testing.T, j job) string {
		t.Helper()
		secret, err := v.client(t, "").Logical().Write("auth/jwt/login", map[string]any{"role": "ci", "jwt": issuer.sign(t, j)})
		if err != nil {
			t.Fatalf("login as %s: %s", j, redactErr(err))
		}
		if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" || secret.Auth.EntityID == "" {
			t.Fatalf("login as %s: no token or no entity", j)
		}
		return secret.Auth.ClientToken
	}
	// read reads a path of the mount as a Vault token and returns the GitHub token.
	read := func(t *testing.T, token, path string) (string, error) {
		t.Helper()
		secret, err := v.client(t, token).Logical().Read(mount + "/" + path)
		if err != nil {
			return "", err
		}
		tok, _ := secret.Data["token"].(string)
		if tok == "" {
			t.Fatalf("%s/%s: no token in the answer", mount, path)
		}
		return tok, nil
	}
	mustReadReach := func(t *testing.T, who, token, path string, want ...string) {
		t.Helper()
		tok, err := read(t, token, path)
		if err != nil {
			t.Fatalf("%s: reading %s/%s: %s", who, mount, path, redactErr(err))
		}
		gh.mustReach(t, tok, want...)
		t.Logf("%s: %s/%s → a token that reaches %v at the emulator", who, mount, path, want)
	}
	mustRefuse := func(t *testing.T, who, token, path string, wants ...string) {
		t.Helper()
		before := gh.issued(t)
		_, err := read(t, token, path)
		var re *vaultapi.ResponseError
		if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: reading %s/%s: want HTTP 403, got %s", who, mount, path, redactErr(err))
		}
		msg := normalizeSpace(err.Error())
		for _, w := range wants {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: the refusal does not say %q: %s", who, w, msg)
			}
		}
		if after := gh.issued(t); after != before {
			t.Fatalf("%s: a refused read had the emulator issue %d tokens", who, after-before)
		}
		t.Logf("%s: %s/%s → HTTP 403: %s", who, mount, path, redact(normalizeSpace(strings.Join(re.Errors, "; "))))
	}

	t.Run("50 logins for 10 repositories", func(t *testing.T) {
		before := gh.stats(t)
		type minted struct{ repo, token string }
		var tokens []minted
		for i := range 50 {
			repo := actionsRepositories[i%len(actionsRepositories)]
			tok, err := read(t, login(t, job{repository: "acme/" + repo}), "token/ci")
			if err != nil {
				t.Fatalf("login %d as acme/%s: %s", i, repo, redactErr(err))
			}
			tokens = append(tokens, minted{repo, tok})
		}
		total, calls := gh.stats(t).since(before)
		t.Logf("50 logins for 10 repositories cost %d GitHub calls: %v", total, calls)
		// At most one lookup of the owner's installation and one of the App's bot user, for the first mint.
		if total > 52 || calls["GET /orgs/{org}/installation"] != 1 || calls["GET /users/{username}"] > 1 {
			t.Errorf("50 mints cost %d GitHub calls with %d owner lookups and %d bot user lookups; want at most 52, "+
				"with one owner lookup and at most one bot user lookup",
				total, calls["GET /orgs/{org}/installation"], calls["GET /users/{username}"])
		}
		for _, m := range tokens {
			gh.mustReach(t, m.token, m.repo)
		}
	})

	t.Run("each job gets its own repository", func(t *testing.T) {
		mustReadReach(t, "login as acme/api", login(t, job{repository: "acme/api"}), "token/ci", "api")
		mustReadReach(t, "login as acme/web", login(t, job{repository: "acme/web"}), "token/ci", "web")
	})

	t.Run("another owner", func(t *testing.T) {
		// The JWT role's bound_claims refuse the login itself: no Vault token, so nothing to read.
		_, err := v.client(t, "").Logical().Write("auth/jwt/login", map[string]any{"role": "ci", "jwt": issuer.sign(t, job{repository: "other/x"})})
		var re *vaultapi.ResponseError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), `claim "repository_owner" does not match`) {
			t.Fatalf("login as other/x: want the bound claims to refuse it, got %s", redactErr(err))
		}
		t.Logf("login as other/x: refused by the JWT role's bound_claims (HTTP %d: %s)", re.StatusCode, normalizeSpace(strings.Join(re.Errors, "; ")))
		// Should the auth side ever let it through (here: a token GitHub would not issue, whose repository_owner
		// claim says acme), the template's owner check refuses it, although GitHub would mint for other/x.
		tok := login(t, job{repository: "other/x", owner: "acme"})
		mustRefuse(t, "login as other/x with repository_owner acme", tok, "token/ci",
			`rendered "other/x", whose owner "other" is not the role's owner "acme"`)
	})

	t.Run("no entity", func(t *testing.T) {
		want := []string{`role "ci": it holds identity templates (repositories "` + wantTemplate + `")`,
			"the request's Vault token has none", "log in through an auth method"}
		mustRefuse(t, "root token", v.rootToken, "token/ci", want...)
		mustRefuse(t, "token from vault token create", tokenWithExamplePolicy(t, v, mount, "policy-ci-read.hcl"), "token/ci", want...)
	})

	t.Run("claim not mapped", func(t *testing.T) {
		tok := login(t, job{repository: "acme/api", ref: "refs/heads/no-claim", drop: []string{"repository"}})
		mustRefuse(t, "login as acme/api without a repository claim", tok, "token/ci",
			`has no metadata "repository"`, "claim_mappings")
	})

	t.Run("deploy tokens for production jobs only", func(t *testing.T) {
		// A job of acme/api without an environment logs in before the production job of the same repository: its
		// entity is another (user_claim is sub), so the production login's metadata does not become its.
		plain := login(t, job{repository: "acme/api"})
		v.runExampleScript(t, exdir, "github-actions-deploy.sh")
		prod := login(t, job{repository: "acme/api", environment: "production"})
		staging := login(t, job{repository: "acme/web", environment: "staging"})

		mustReadReach(t, "login as acme/api (environment production)", prod, "token/deploy-production", "infra")
		mustReadReach(t, "login as acme/api (environment production)", prod, "token/ci", "api")
		mustRefuse(t, "login as acme/web (environment staging)", staging, "token/deploy-production", "permission denied")
		mustReadReach(t, "login as acme/web (environment staging)", staging, "token/ci", "web")
		mustRefuse(t, "login as acme/api (no environment)", plain, "token/deploy-production", "permission denied")
	})
}

// checkOpenAPITemplateFields checks that Vault's OpenAPI document describes the role fields that may hold templates.
func checkOpenAPITemplateFields(t *testing.T, v *vaultServer) {
	t.Helper()
	secret, err := v.client(t, v.rootToken).Logical().Read("sys/internal/specs/openapi")
	if err != nil || secret == nil {
		t.Fatalf("reading sys/internal/specs/openapi: %v", err)
	}
	raw, _ := json.Marshal(secret.Data["components"])
	var components struct {
		Schemas map[string]struct {
			Properties map[string]struct {
				Type        string `json:"type"`
				Description string `json:"description"`
			} `json:"properties"`
		} `json:"schemas"`
	}
	if err := json.Unmarshal(raw, &components); err != nil {
		t.Fatalf("decoding the OpenAPI components: %v", err)
	}
	schema, ok := components.Schemas["GithubAppWriteRoleRequest"]
	if !ok {
		t.Fatal("the OpenAPI document has no schema GithubAppWriteRoleRequest")
	}
	for field, want := range map[string]string{
		"templated":      "may hold Vault identity templates",
		"owner":          "On a templated role, owner may be an identity template",
		"repositories":   "On a templated role, an entry may be an identity template",
		"repository_ids": "On a templated role, an entry may be an identity template",
	} {
		if p := schema.Properties[field]; !strings.Contains(p.Description, want) {
			t.Errorf("OpenAPI: role field %s is described as %q, want it to say %q", field, p.Description, want)
		}
	}
	if p := schema.Properties["templated"]; p.Type != "boolean" {
		t.Errorf("OpenAPI: templated has type %q, want boolean", p.Type)
	}
}

// checkWorkflowExample checks that the workflow of docs/github-actions.md (which the tests cannot run) uses what the
// test set up: the auth method's path, the JWT role, its audience, and the engine's paths.
func checkWorkflowExample(t *testing.T) {
	t.Helper()
	var role struct {
		BoundAudiences []string `json:"bound_audiences"`
	}
	if err := json.Unmarshal([]byte(readExample(t, "github-actions-jwt-role.json", "")), &role); err != nil || len(role.BoundAudiences) != 1 {
		t.Fatalf("examples/github-actions-jwt-role.json: %v (bound_audiences %v)", err, role.BoundAudiences)
	}
	workflow := readExample(t, "github-actions-workflow.yml", "")
	for _, want := range []string{
		"uses: hashicorp/vault-action@", "method: jwt", "path: jwt", "role: ci", "id-token: write",
		"jwtGithubAudience: " + role.BoundAudiences[0],
		"secrets: github/token/ci token | ", "environment: production", "secrets: github/token/deploy-production token | ",
	} {
		if !strings.Contains(workflow, want) {
			t.Errorf("examples/github-actions-workflow.yml does not say %q", want)
		}
	}
}

// replaceOnce replaces old by new in s, and fails the test unless old occurs exactly once.
func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if n := strings.Count(s, old); n != 1 {
		t.Fatalf("the example holds %q %d times, want once: the test substitutes it", old, n)
	}
	return strings.Replace(s, old, new, 1)
}
