// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package integrationtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/testing/fakegithub"
)

// TestDocsCommands makes the commands of the documentation a checked contract. It reads every command of every
// shell block of README.md, docs/*.md and SECURITY.md (continuations joined, comments dropped, the text otherwise as
// written), and each command must be in exactly one of three tables:
//
//   - docsRunHere: run by this test, in document order, on the shared dev server with the engine mounted at github/
//     (the docs' path), with the placeholders of docsSubstitutions replaced. Each must succeed and show what the
//     documentation says it shows. These are the commands that stand alone on a dev server.
//   - docsRunElsewhere: run by another test, which the table names; this test checks the claim where it can (the
//     script, README block or docs page that test runs holds the command, and the test's file holds the code that runs
//     it). Commands that need a cluster, a second plugin build, a release zip, Vault Agent, a JWT issuer or the shell
//     variables of the block they stand in are there.
//   - docsNotRunnable: not runnable on a test machine, with the reason; the documentation must label their blocks
//     "untested example" (in the section heading, the text before the block, or a comment in it).
//
// A documented command in no table, or in two, fails the test; so does a table entry that no documentation shows
// any more, and a substitution that no command needs.
func TestDocsCommands(t *testing.T) {
	cmds := docCommands(t)
	if len(cmds) < 50 {
		t.Fatalf("the documentation shows %d shell commands; the parser must have missed some", len(cmds))
	}
	t.Run("classes", func(t *testing.T) { checkDocClasses(t, cmds) })
	t.Run("run by other tests", func(t *testing.T) { checkDocClaims(t, cmds) })
	t.Run("labels", func(t *testing.T) { checkUntestedLabels(t, cmds) })
	t.Run("run here", func(t *testing.T) { runDocCommands(t, cmds) })
}

// ------------------------------------------------------------------------------------------- a. run by this test

// docRunSpec is how this test runs a documented command.
type docRunSpec struct {
	// refused, when set, is what the command's error output must say: the documentation says it is refused.
	refused string
	// check looks at what the command printed (and may ask Vault and the emulator); nil for none.
	check func(r *docsRun, out string)
}

// docsRunHere: the commands this test runs, on the shared dev server, in the order the documentation shows them.
var docsRunHere = map[string]docRunSpec{
	// README: Install (the rest of its block is TestInstallFromRelease's). It mounts the engine at github/.
	"vault secrets enable -path=github -plugin-version=v0.4.0 vault-plugin-secrets-github-app": {check: (*docsRun).mounted},
	// README: Configure.
	"vault write github/config app_id=123456 client_id=Iv23liAbCdEf01234567 private_key=@my-app.private-key.pem": {},
	"vault read github/config": {check: (*docsRun).configRead},
	// README: A role; docs/roles.md.
	"vault write github/roles/ci owner=acme repositories=api,web permissions=contents=read,pull_requests=write ttl=15m": {},
	"vault write github/roles/deploy installation_id=41234567 repository_ids=123456789 permissions=deployments=write":   {},
	"vault list github/roles": {check: (*docsRun).rolesListed},
	// docs/roles.md: Repository patterns (a write only: the demo installation has no team-a repositories;
	// TestRepositoryPatternsThroughVault mints from a pattern role).
	"vault write github/roles/team-a owner=acme repository_patterns='team-a-*,shared-?' permissions=contents=read": {},
	"vault list -detailed github/installations": {check: (*docsRun).installationsListed},
	// README: Reading tokens; docs/roles.md: Asking for less.
	"vault read github/token/ci": {check: (*docsRun).tokenRead},
	"vault write github/token/ci repositories=api permissions=contents=read ttl=5m": {check: (*docsRun).tokenNarrowed},
	// docs/policies.md.
	"vault policy write ci-read examples/policy-ci-read.hcl": {check: (*docsRun).policyWritten},
	"vault token create -policy=ci-read":                     {check: (*docsRun).readerCreated},
	// docs/limits.md; docs/production.md and docs/troubleshooting.md say it inline.
	"vault secrets tune -allowed-response-headers=Retry-After github/": {check: (*docsRun).retryAfterAllowed},
	// docs/production.md (TestCluster runs these too, on its cluster).
	"vault audit enable file file_path=/var/log/vault/audit.log":            {check: (*docsRun).auditEnabled},
	"vault secrets tune -audit-non-hmac-response-keys=hashed_token github/": {check: (*docsRun).hashedTokenInClear},
	"vault audit list -detailed":                                            {check: (*docsRun).auditListed},
	"vault read sys/leases/count type=irrevocable":                          {check: (*docsRun).leaseCount},
	"vault secrets list -detailed":                                          {check: (*docsRun).mountsListed},
	// docs/troubleshooting.md.
	"vault read github/status":                          {check: (*docsRun).statusRead},
	"vault read sys/leases type=irrevocable":            {},
	"vault lease revoke -force -prefix github/token/ci": {check: (*docsRun).forceRevoked},
}

// docSub replaces a placeholder of the documentation with this test's value.
type docSub struct{ doc, test string }

// docsSubstitutions are the only changes made to the commands this test runs: the docs' example values become the
// emulator's fixture and the test's files.
func docsSubstitutions(s *shared, dir string) []docSub {
	fixture := fakegithub.DemoFixture()
	return []docSub{
		// The version the shared server registered the plugin with (the VERSION file's, v0.4.0 at the time of writing).
		{"-plugin-version=v0.4.0", "-plugin-version=" + s.bins.pluginVersion},
		{"app_id=123456", fmt.Sprintf("app_id=%d", appID)},
		{"client_id=Iv23liAbCdEf01234567", "client_id=" + fixture.Apps[0].ClientID},
		// The App's key, and the emulator's URL in the same write (the one field the docs leave to its default).
		{"private_key=@my-app.private-key.pem", "private_key=@" + s.gh.keyFile + " base_url=" + s.gh.url},
		{"installation_id=41234567", fmt.Sprintf("installation_id=%d", acmeInstallID)},
		{"repository_ids=123456789", fmt.Sprintf("repository_ids=%d", repoID(fixture, acmeInstallID, "infra"))},
		{"examples/", filepath.Join(repoRoot, "examples") + string(filepath.Separator)},
		{"file_path=/var/log/vault/audit.log", "file_path=" + filepath.Join(dir, "audit.log")},
	}
}

func repoID(f fakegithub.Fixture, installation int64, name string) int64 {
	for _, in := range f.Installations {
		for _, r := range in.Repositories {
			if in.ID == installation && r.Name == name {
				return r.ID
			}
		}
	}
	return 0
}

// ----------------------------------------------------------------------------------------- b. run by other tests

// docClaim says which other test runs a documented command, and how this test checks that it does.
type docClaim struct {
	test string // the test that runs the command (or the CI step, for what the tests cannot run themselves)
	file string // the file that holds it, relative to the repository root
	// runs is what that test runs, which must hold the command: a shell script of the repository, or one of the
	// documentation parts that the test reads itself (readmeInstallBlock, productionPage); empty when shows is the
	// whole evidence.
	runs string
	// shows is text the file must hold: the code that runs what runs names, or runs the command itself.
	shows []string
}

const (
	readmeInstallBlock = "README.md#install (readmeInstallScript)"
	productionPage     = "docs/production.md (docVaultCommands)"
	poolsPage          = poolsPagePath + " (pageShellCommands)"
)

var (
	byCI = docClaim{test: "CI", file: ".ci/run", runs: ".ci/run"}
	// TestInstallFromRelease runs the README's install block as it is, with a release built by make release.
	byInstall = docClaim{test: "TestInstallFromRelease", file: "integrationtest/install_test.go", runs: readmeInstallBlock,
		shows: []string{"script := readmeInstallScript(t)", "runInstallScript(t, v, "}}
	// TestCluster checks that every vault command of docs/production.md is one its subtests ran.
	byCluster = docClaim{test: "TestCluster", file: "integrationtest/ha_test.go", runs: productionPage,
		shows: []string{`docVaultCommands(t, "docs/production.md")`, "testProductionCommands(t, c)"}}
	byClusterUpgrade = docClaim{test: "TestCluster", file: "integrationtest/ha_test.go",
		shows: []string{`newFile := pluginName + "_" + newVersion`, "newSHA := c.installPlugin(t, newBin, newFile)"}}
	byAgent = docClaim{test: "TestAgentTemplate", file: "integrationtest/agent_test.go",
		shows: []string{`readExample(t, "agent.hcl", "")`, `v.bin, "agent", "-config="+configFile`}}
	byGitHelper = docClaim{test: "TestAgentTemplate", file: "integrationtest/agent_test.go",
		runs: "examples/git-credential-github-app.sh",
		shows: []string{`filepath.Join(repoRoot, "examples", "git-credential-github-app.sh")`,
			"checkGitCredentialHelper(t, destination, first)", `"credential", "fill"`}}
	// TestAgentCommitsAsTheApp runs examples/agent-commit.hcl with Vault Agent, then examples/git-commit-as-app.sh.
	byAgentCommit = docClaim{test: "TestAgentCommitsAsTheApp", file: "integrationtest/bot_identity_test.go",
		shows: []string{`readExample(t, "agent-commit.hcl", "")`, `v.bin, "agent", "-config="+configFile`}}
	byCommitScript = docClaim{test: "TestAgentCommitsAsTheApp", file: "integrationtest/bot_identity_test.go",
		runs:  "examples/git-commit-as-app.sh",
		shows: []string{`filepath.Join(repoRoot, "examples", "git-commit-as-app.sh")`, `exec.Command("sh", script, commitMessage)`}}
	byActionsSetup = docClaim{test: "TestGitHubActionsOIDC", file: "integrationtest/github_actions_test.go",
		runs: "examples/github-actions-setup.sh", shows: []string{`v.runExampleScript(t, exdir, "github-actions-setup.sh")`}}
	byActionsDeploy = docClaim{test: "TestGitHubActionsOIDC", file: "integrationtest/github_actions_test.go",
		runs: "examples/github-actions-deploy.sh", shows: []string{`v.runExampleScript(t, exdir, "github-actions-deploy.sh")`}}
	// docs/signers.md: the cgo build registered with the allowed libraries, and KMS and HSM configs, through Vault.
	byAWSKMSSigner = docClaim{test: "TestAWSKMSSignerThroughVault", file: "integrationtest/signer_test.go",
		shows: []string{`"signer=awskms"`, `"kms_key_id=alias/github-app"`, `"aws_secret_access_key="+kmstest.SecretAccessKey`}}
	byPKCS11Signer = docClaim{test: "TestPKCS11SignerThroughVault", file: "integrationtest/signer_test.go",
		shows: []string{`"-env=GITHUB_APP_PKCS11_LIBRARIES="+lib`, `"signer=pkcs11", "pkcs11_library=" + lib`}}
	// The SoftHSM2 token and import, with softhsm2-util as the page shows it (hsmtest runs it).
	bySoftHSMSetup = docClaim{test: "TestPKCS11SignerThroughVault", file: "integrationtest/signer_test.go",
		shows: []string{"hsmtest.Setup(t.TempDir()"}}
	bySoftHSMUtil = docClaim{test: "hsmtest.Setup", file: "internal/testing/hsmtest/hsmtest.go",
		shows: []string{`"--init-token", "--free", "--label"`, `"--import", f.Name(), "--token", k.Token, "--label"`}}
	// Key rotation with each signer: the engine's unit tests, against local-kms and SoftHSM2.
	byKMSRotation = docClaim{test: "TestAWSKMSKeyRotation", file: "signer_config_test.go",
		shows: []string{`map[string]any{"kms_key_id": kmsOtherKey}`}}
	byHSMRotation = docClaim{test: "TestPKCS11KeyRotation", file: "signer_pkcs11_test.go",
		shows: []string{`map[string]any{"pkcs11_key_label": hsmOtherLabel}`}}
	// TestAppPoolsPage runs every command of docs/app-pools.md, in the page's order, against three Apps of the
	// emulator installed on acme.
	byPoolsPage = docClaim{test: "TestAppPoolsPage", file: "integrationtest/app_pools_page_test.go", runs: poolsPage,
		shows: []string{"pageShellCommands(t, poolsPagePath)", "check(p.run(c.text))"}}
)

// docsRunElsewhere: the documented commands that other tests run.
var docsRunElsewhere = map[string][]docClaim{
	// README: Two commands. CI runs both; make test cannot run inside the tests it runs.
	"make demo": {byCI},
	"make test": {byCI},

	// README: Install.
	"URL=https://github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/releases/download/v0.4.0": {byInstall},
	`curl -fsSLO "$URL/vault-plugin-secrets-github-app_0.4.0_linux_amd64.zip"`:                                        {byInstall},
	`curl -fsSLO "$URL/vault-plugin-secrets-github-app_0.4.0_SHA256SUMS"`:                                             {byInstall},
	"sha256sum -c --ignore-missing vault-plugin-secrets-github-app_0.4.0_SHA256SUMS":                                  {byInstall},
	"unzip vault-plugin-secrets-github-app_0.4.0_linux_amd64.zip":                                                     {byInstall},
	"./vault-plugin-secrets-github-app -version":                                                                      {byInstall},
	"cp vault-plugin-secrets-github-app /etc/vault/plugins/":                                                          {byInstall},
	"SHA256=$(sha256sum /etc/vault/plugins/vault-plugin-secrets-github-app | cut -d' ' -f1)":                          {byInstall},
	// Also in docs/production.md.
	`vault plugin register -sha256="$SHA256" -version=v0.4.0 secret vault-plugin-secrets-github-app`: {byInstall, byCluster},

	// docs/agent.md.
	"vault agent -config=examples/agent.hcl": {byAgent},

	// docs/github-actions.md (examples/github-actions-setup.sh and github-actions-deploy.sh, shown verbatim).
	"vault auth enable jwt": {byActionsSetup},
	"vault write auth/jwt/config oidc_discovery_url=https://token.actions.githubusercontent.com bound_issuer=https://token.actions.githubusercontent.com": {byActionsSetup},
	"vault write auth/jwt/role/ci @github-actions-jwt-role.json":                                                                                          {byActionsSetup},
	"vault policy write github-ci policy-ci-read.hcl":                                                                                                     {byActionsSetup},
	"ACCESSOR=$(vault read -field=accessor sys/auth/jwt)":                                                                                                 {byActionsSetup, byActionsDeploy},
	`vault write github/roles/ci templated=true owner=acme repositories="{{identity.entity.aliases.$ACCESSOR.metadata.repository}}" permissions=contents=read,pull_requests=write ttl=30m`: {byActionsSetup},
	"vault write github/roles/deploy-production owner=acme repositories=infra permissions=contents=write ttl=30m":                                                                          {byActionsDeploy},
	`sed "s/auth_jwt_XXXXXXXX/$ACCESSOR/" policy-github-deploy.hcl | vault policy write github-deploy -`:                                                                                   {byActionsDeploy},

	// docs/production.md. A cluster on integrated storage, and a second build of the plugin.
	"vault server -config=/etc/vault.d/vault.hcl":        {byCluster},
	"vault operator init -key-shares=1 -key-threshold=1": {byCluster},
	"vault operator unseal":                              {byCluster},
	"vault operator raft list-peers":                     {byCluster},
	"vault operator raft autopilot state":                {byCluster},
	"vault operator step-down":                           {byCluster},
	"cp vault-plugin-secrets-github-app /etc/vault/plugins/vault-plugin-secrets-github-app_v0.4.1":                                                   {byClusterUpgrade},
	`vault plugin register -sha256="$SHA256" -version=v0.4.1 -command=vault-plugin-secrets-github-app_v0.4.1 secret vault-plugin-secrets-github-app`: {byCluster},
	"vault secrets tune -plugin-version=v0.4.1 github/":                                                                                              {byCluster},
	"vault plugin reload -type=secret -plugin=vault-plugin-secrets-github-app -scope=global":                                                         {byCluster},
	"vault secrets tune -plugin-version=v0.4.0 github/":                                                                                              {byCluster},
	"vault write sys/plugins/reload/backend mounts=github/ scope=global":                                                                             {byCluster},
	"vault plugin deregister -version=v0.4.1 secret vault-plugin-secrets-github-app":                                                                 {byCluster},
	"vault operator raft snapshot save backup.snap":                                                                                                  {byCluster},
	"vault operator raft snapshot restore backup.snap":                                                                                               {byCluster},

	// docs/recipes.md: committing as the App (examples/agent-commit.hcl and git-commit-as-app.sh, shown verbatim).
	"vault agent -config=examples/agent-commit.hcl":            {byAgentCommit},
	"identity=${GIT_IDENTITY_FILE:-/run/secrets/git-identity}": {byCommitScript},
	`git config include.path "$identity"`:                      {byCommitScript},
	"git add -A":                                               {byCommitScript},
	`git commit -m "$1"`:                                       {byCommitScript},
	"git push":                                                 {byCommitScript},

	// docs/recipes.md: the git credential helper (examples/git-credential-github-app.sh, shown verbatim), and the
	// commit script, which starts the same way.
	"set -eu": {byGitHelper, byCommitScript},
	"token_file=${GITHUB_TOKEN_FILE:-/run/secrets/github-token}": {byGitHelper},
	`[ "${1:-}" = get ] || exit 0`:                               {byGitHelper},
	`printf 'username=x-access-token\n'`:                         {byGitHelper},
	`printf 'password=%s\n' "$(cat "$token_file")"`:              {byGitHelper},

	// docs/signers.md.
	"vault write github/config app_id=123456 signer=awskms kms_key_id=alias/github-app aws_region=eu-west-1 aws_access_key_id=AKIAIOSFODNN7EXAMPLE aws_secret_access_key=@aws-secret-access-key.txt": {byAWSKMSSigner},
	"vault write github/config kms_key_id=alias/github-app-2":                                    {byKMSRotation},
	`softhsm2-util --init-token --free --label github-app --so-pin "$SO_PIN" --pin "$PIN"`:       {bySoftHSMSetup, bySoftHSMUtil},
	`softhsm2-util --import app-key.pk8 --token github-app --label app-key --id a1 --pin "$PIN"`: {bySoftHSMSetup, bySoftHSMUtil},
	`vault plugin register -sha256="$SHA256" -version=v0.4.0 -command=vault-plugin-secrets-github-app-pkcs11 -env=GITHUB_APP_PKCS11_LIBRARIES=/usr/lib/softhsm/libsofthsm2.so secret vault-plugin-secrets-github-app`: {byPKCS11Signer},
	"vault write github/config app_id=123456 signer=pkcs11 pkcs11_library=/usr/lib/softhsm/libsofthsm2.so pkcs11_token_label=github-app pkcs11_key_label=app-key pkcs11_pin=@hsm-pin.txt":                             {byPKCS11Signer},
	"vault write github/config pkcs11_key_label=app-key-2": {byHSMRotation},

	// docs/app-pools.md: Apps, roles over several Apps, a token and the budgets in status.
	"vault write github/apps/ci-2 app_id=234567 client_id=Iv23liGhIjKl23456789 private_key=@ci-2.private-key.pem": {byPoolsPage},
	"vault write github/apps/ci-3 app_id=345678 client_id=Iv23liMnOpQr34567890 private_key=@ci-3.private-key.pem": {byPoolsPage},
	"vault list -detailed github/apps":                   {byPoolsPage},
	"vault read github/installations list=true app=ci-2": {byPoolsPage},
	"vault write github/roles/builds owner=acme apps=default,ci-2,ci-3 repositories=api,web permissions=contents=read,pull_requests=write ttl=15m":       {byPoolsPage},
	"vault write github/roles/checks owner=acme apps=default,ci-2 app_selection=ordered repositories=api permissions=checks=write,contents=read ttl=15m": {byPoolsPage},
	"vault read github/token/builds":                      {byPoolsPage},
	"vault write github/apps/ci-2 rate_limit_refresh=15s": {byPoolsPage},
	"vault read -format=json -field=apps github/status":   {byPoolsPage},
}

// ------------------------------------------------------------------------------------------ c. not runnable here

// kmsImport is why the AWS KMS import steps of docs/signers.md run in no test.
const kmsImport = "an AWS account: the KMS emulator the tests run (local-kms) cannot import asymmetric key material as AWS does"

// docsNotRunnable: documented commands that no test can run, and why. Their blocks say "untested example".
var docsNotRunnable = map[string]string{
	"vault write github/config app_id=12 private_key=@app.pem base_url=https://github.example.com/api/v3 ca_certificate=@corp-ca.pem": "a GitHub Enterprise Server host and its private CA, which a test machine does not have",
	"vault write github/config client_id=Iv23liEXAMPLE private_key=@app.pem base_url=https://api.octocorp.ghe.com":                    "a GHE.com enterprise, which a test machine cannot reach (ghecom_test.go runs the same base URL against the emulator)",
	// docs/signers.md: importing the App key into AWS KMS.
	`KEY_ID=$(aws kms create-key --origin EXTERNAL --key-spec RSA_2048 --key-usage SIGN_VERIFY --description "GitHub App" --query KeyMetadata.KeyId --output text)`: kmsImport,
	`aws kms create-alias --alias-name alias/github-app --target-key-id "$KEY_ID"`:                                                                                  kmsImport,
	`aws kms get-parameters-for-import --key-id "$KEY_ID" --wrapping-algorithm RSA_AES_KEY_WRAP_SHA_256 --wrapping-key-spec RSA_4096 > import-parameters.json`:      kmsImport,
	`jq -r .PublicKey import-parameters.json | base64 -d > wrapping-key.der`:                                                                                        kmsImport,
	`jq -r .ImportToken import-parameters.json | base64 -d > import-token.bin`:                                                                                      kmsImport,
	`openssl pkcs8 -topk8 -nocrypt -in my-app.private-key.pem -outform DER -out app-key.der`:                                                                        kmsImport,
	`openssl rand -out aes-key.bin 32`: kmsImport,
	`openssl enc -id-aes256-wrap-pad -iv A65959A6 -K "$(xxd -p -c 64 aes-key.bin)" -in app-key.der -out app-key-wrapped.bin`:                                                                               kmsImport,
	`openssl pkeyutl -encrypt -pubin -keyform DER -inkey wrapping-key.der -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in aes-key.bin -out aes-key-wrapped.bin`: kmsImport,
	`cat aes-key-wrapped.bin app-key-wrapped.bin > key-material.bin`:                                                                                                                                       kmsImport,
	`aws kms import-key-material --key-id "$KEY_ID" --encrypted-key-material fileb://key-material.bin --import-token fileb://import-token.bin --expiration-model KEY_MATERIAL_DOES_NOT_EXPIRE`:             kmsImport,
	`shred -u aes-key.bin app-key.der my-app.private-key.pem`:                                                                                                                                              kmsImport,
}

// ----------------------------------------------------------------------------------------------------- the checks

// checkDocClasses: every documented command is in exactly one table, and every table entry is documented.
func checkDocClasses(t *testing.T, cmds []*docCommand) {
	documented := map[string]bool{}
	counts := map[string]int{}
	for _, c := range cmds {
		documented[c.text] = true
		for _, word := range strings.Fields(c.text) {
			if strings.HasPrefix(word, "examples/") {
				if _, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(word))); err != nil {
					t.Errorf("`%s` (%v) names %s: %v", c.text, c.places, word, err)
				}
			}
		}
		var in []string
		if _, ok := docsRunHere[c.text]; ok {
			in = append(in, "docsRunHere")
		}
		if _, ok := docsRunElsewhere[c.text]; ok {
			in = append(in, "docsRunElsewhere")
		}
		if _, ok := docsNotRunnable[c.text]; ok {
			in = append(in, "docsNotRunnable")
		}
		switch len(in) {
		case 0:
			t.Errorf("a new documented command is not tested: add it to docsRunHere (this test runs it), docsRunElsewhere "+
				"(name the test that runs it) or docsNotRunnable (say why, and label its block as an untested example) in "+
				"integrationtest/docs_test.go. At %v:\n\t%s", c.places, c.text)
		case 1:
			counts[in[0]]++
		default:
			t.Errorf("`%s` (%v) is in %v: a command belongs to exactly one of them", c.text, c.places, in)
		}
	}
	stale := func(table string, texts []string) {
		for _, text := range texts {
			if !documented[text] {
				t.Errorf("stale entry in %s: no shell block of README.md, docs/*.md or SECURITY.md shows `%s` any more", table, text)
			}
		}
	}
	stale("docsRunHere", slices.Collect(maps.Keys(docsRunHere)))
	stale("docsRunElsewhere", slices.Collect(maps.Keys(docsRunElsewhere)))
	stale("docsNotRunnable", slices.Collect(maps.Keys(docsNotRunnable)))
	t.Logf("%d documented commands: %d run by this test, %d run by other tests, %d not runnable here",
		len(cmds), counts["docsRunHere"], counts["docsRunElsewhere"], counts["docsNotRunnable"])
}

// checkDocClaims checks what docsRunElsewhere says: the named test exists in the named file, which holds the code
// that runs the command, and what that code runs holds the command.
func checkDocClaims(t *testing.T, cmds []*docCommand) {
	files := map[string]string{}
	read := func(name string) (string, error) {
		if text, ok := files[name]; ok {
			return text, nil
		}
		data, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(name)))
		files[name] = string(data)
		return string(data), err
	}
	var install []string
	installCommands := func() []string {
		if install == nil {
			for _, c := range shellCommands(strings.Split(readmeInstallScript(t), "\n")) {
				install = append(install, c.text)
			}
		}
		return install
	}
	var production []string
	productionCommands := func() []string {
		if production == nil {
			for _, args := range docVaultCommands(t, "docs/production.md") {
				production = append(production, strings.Join(args, " "))
			}
		}
		return production
	}
	var pools []string
	poolsCommands := func() []string {
		if pools == nil {
			for _, c := range pageShellCommands(t, poolsPagePath) {
				pools = append(pools, c.text)
			}
		}
		return pools
	}
	checked := 0
	for _, c := range cmds {
		for _, claim := range docsRunElsewhere[c.text] {
			fail := func(format string, args ...any) {
				t.Errorf("docsRunElsewhere says %s (%s) runs `%s` (%v), but %s", claim.test, claim.file, c.text, c.places,
					fmt.Sprintf(format, args...))
			}
			code, err := read(claim.file)
			if err != nil {
				fail("%v", err)
				continue
			}
			if strings.HasPrefix(claim.test, "Test") && !strings.Contains(code, "\nfunc "+claim.test+"(t *testing.T) {") {
				fail("%s defines no %s", claim.file, claim.test)
			}
			for _, s := range claim.shows {
				if !strings.Contains(code, s) {
					fail("%s no longer holds %q", claim.file, s)
				}
			}
			switch claim.runs {
			case "":
			case readmeInstallBlock:
				if !slices.Contains(installCommands(), c.text) {
					fail("the README's install block (readmeInstallScript) does not hold it")
				}
			case productionPage:
				if !slices.Contains(productionCommands(), strings.Join(vaultArgs(c.text), " ")) {
					fail("docs/production.md (docVaultCommands) does not hold it")
				}
			case poolsPage:
				if !slices.Contains(poolsCommands(), c.text) {
					fail("%s (pageShellCommands) does not hold it", poolsPagePath)
				}
			default:
				script, err := read(claim.runs)
				if err != nil {
					fail("%v", err)
					continue
				}
				found := false
				for _, sc := range shellCommands(strings.Split(script, "\n")) {
					found = found || sc.text == c.text
				}
				if !found {
					fail("%s, which it runs, does not hold the command", claim.runs)
				}
			}
			checked++
		}
	}
	t.Logf("checked %d claims of docsRunElsewhere", checked)
}

// vaultArgs returns a vault command's arguments the way docVaultCommands reads them (quotes dropped, words split
// at white space, leading variable assignments skipped), without "vault"; nil for another command.
func vaultArgs(text string) []string {
	fields := strings.Fields(strings.NewReplacer(`"`, "", `'`, "").Replace(text))
	for len(fields) > 0 && strings.Contains(fields[0], "=") && !strings.HasPrefix(fields[0], "-") {
		fields = fields[1:]
	}
	if len(fields) < 2 || fields[0] != "vault" {
		return nil
	}
	return fields[1:]
}

// untestedLabel is how the documentation says that a block is not run by any test.
const untestedLabel = "untested example"

// checkUntestedLabels: the blocks of docsNotRunnable's commands say that they are untested examples, and no block
// that a test runs says so.
func checkUntestedLabels(t *testing.T, cmds []*docCommand) {
	for _, c := range cmds {
		reason, untested := docsNotRunnable[c.text]
		for _, p := range c.places {
			labelled := strings.Contains(strings.ToLower(p.label), untestedLabel)
			switch {
			case untested && !labelled:
				t.Errorf("%s (section %q): `%s` is run by no test (%s), and its block does not say so: write %q in its "+
					"section heading, in the text before the block or in a comment in it", p, p.section, c.text, reason, untestedLabel)
			case !untested && labelled:
				t.Errorf("%s (section %q): `%s` is run by a test, but its block is labelled %q", p, p.section, c.text, untestedLabel)
			}
		}
	}
}

// runDocCommands runs docsRunHere's commands in document order.
func runDocCommands(t *testing.T, cmds []*docCommand) {
	s := requireStack(t)
	start := time.Now()
	r := newDocsRun(t, s)
	ran := 0
	for _, c := range cmds {
		spec, ok := docsRunHere[c.text]
		if !ok {
			continue
		}
		r.run(c, spec)
		ran++
	}
	for _, sub := range r.subs {
		if !r.used[sub.doc] {
			t.Errorf("docsSubstitutions replaces %q, which no command of docsRunHere holds any more", sub.doc)
		}
	}
	t.Logf("ran %d documented commands in %s", ran, time.Since(start).Round(time.Millisecond))
}

// ------------------------------------------------------------------------------------------------- the test's run

// docsRun is the state of one run of the documented commands.
type docsRun struct {
	t      *testing.T
	s      *shared
	dir    string // the commands' working directory and HOME
	binDir string // vault, on the commands' PATH
	subs   []docSub
	used   map[string]bool // the substitutions used

	policies    []string // written by the commands, deleted at the end
	vaultTokens []string // created by the commands, revoked at the end
	ghTokens    []string // minted by the commands
}

// docsMount is where the documentation mounts the engine; the shared server's other tests use gh-* mounts.
const docsMount = "github"

func newDocsRun(t *testing.T, s *shared) *docsRun {
	t.Helper()
	dir := t.TempDir()
	r := &docsRun{t: t, s: s, dir: dir, binDir: filepath.Join(dir, "bin"), subs: docsSubstitutions(s, dir),
		used: map[string]bool{}}
	if err := os.Mkdir(r.binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(s.vault.bin, filepath.Join(r.binDir, "vault")); err != nil {
		t.Fatal(err)
	}
	v := s.vault
	root := v.client(t, v.rootToken)
	mounts, err := root.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if _, taken := mounts[docsMount+"/"]; taken {
		t.Fatalf("%s/ is already mounted on the shared server: a test that ran before left it", docsMount)
	}
	for text := range docsRunHere {
		if f := strings.Fields(text); len(f) > 3 && strings.Join(f[:3], " ") == "vault policy write" {
			if policy, err := root.Sys().GetPolicy(f[3]); err != nil || policy != "" {
				t.Fatalf("the policy %s, which the documented commands write, is already on the shared server (%v)", f[3], err)
			}
		}
	}
	t.Cleanup(func() {
		// Disabling the mount revokes what leases are left, and their tokens at the emulator.
		if mounts, err := root.Sys().ListMounts(); err == nil && mounts[docsMount+"/"] != nil {
			if r := v.run(v.rootToken, "", "secrets", "disable", docsMount); r.err != nil {
				t.Errorf("%s", r)
			}
		}
	})
	t.Cleanup(func() {
		for _, name := range r.policies {
			if r := v.run(v.rootToken, "", "policy", "delete", name); r.err != nil {
				t.Errorf("%s", r)
			}
		}
		for _, tok := range r.vaultTokens {
			if r := v.run(v.rootToken, "", "token", "revoke", tok); r.err != nil {
				t.Errorf("%s", r)
			}
		}
		// The audit device the commands enabled (its file is in the test's directory, which goes too).
		devices, err := root.Sys().ListAudit()
		if err != nil {
			t.Errorf("listing audit devices: %v", err)
		}
		for path, d := range devices {
			if strings.HasPrefix(d.Options["file_path"], dir) {
				if err := root.Sys().DisableAudit(path); err != nil {
					t.Errorf("disabling the audit device %s: %v", path, err)
				}
			}
		}
	})
	return r
}

// run runs one documented command, with the substitutions, as root in bash, and checks what it printed.
func (r *docsRun) run(c *docCommand, spec docRunSpec) {
	t := r.t
	t.Helper()
	text := c.text
	for _, sub := range r.subs {
		if strings.Contains(text, sub.doc) {
			text = strings.ReplaceAll(text, sub.doc, sub.test)
			r.used[sub.doc] = true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", text)
	cmd.Dir = r.dir
	cmd.Env = cleanEnv(r.dir, "VAULT_ADDR="+r.s.vault.addr, "VAULT_TOKEN="+r.s.vault.rootToken,
		"PATH="+r.binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	shown := text
	if text != c.text {
		shown = c.text + "\n  ran as: " + text
	}
	t.Logf("%s: %s\n%s%s", c.places[0], shown, redact(stdout.String()), redact(stderr.String()))
	switch {
	case spec.refused == "" && err != nil:
		t.Fatalf("the documented command failed (%v): %s\n%s", err, c.text, redact(stderr.String()))
	case spec.refused != "" && err == nil:
		t.Fatalf("the documentation says `%s` is refused (%s), but it succeeded", c.text, spec.refused)
	case spec.refused != "" && !strings.Contains(stderr.String(), spec.refused):
		t.Fatalf("the documentation says `%s` is refused with %q; it failed otherwise:\n%s", c.text, spec.refused, redact(stderr.String()))
	}
	if spec.check != nil {
		spec.check(r, stdout.String())
	}
}

// ----------------------------------------------------------------------------------------- what the commands show

// vaultTable reads the Key/Value table the vault CLI prints for a read or write.
func vaultTable(out string) map[string]string {
	kv := map[string]string{}
	inTable := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case !inTable:
			inTable = len(f) == 2 && f[0] == "Key" && f[1] == "Value"
		case len(f) == 0 || strings.HasPrefix(f[0], "---"):
		default:
			kv[f[0]] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), f[0]))
		}
	}
	return kv
}

// wantValues fails the test for each key whose value in kv differs from want's.
func (r *docsRun) wantValues(what string, kv, want map[string]string) {
	r.t.Helper()
	for k, w := range want {
		if got, ok := kv[k]; !ok || got != w {
			r.t.Errorf("%s: %s is %q, want %q", what, k, got, w)
		}
	}
}

func (r *docsRun) mount() *vaultapi.MountOutput {
	r.t.Helper()
	mounts, err := r.s.vault.client(r.t, r.s.vault.rootToken).Sys().ListMounts()
	if err != nil {
		r.t.Fatal(err)
	}
	m := mounts[docsMount+"/"]
	if m == nil {
		r.t.Fatalf("nothing is mounted at %s/", docsMount)
	}
	return m
}

func (r *docsRun) mounted(string) {
	if m := r.mount(); m.Type != pluginName || m.PluginVersion != r.s.bins.pluginVersion || m.RunningSha256 != r.s.pluginSHA {
		r.t.Fatalf("%s/ is %+v, want %s %s with the registered sha256", docsMount, m, pluginName, r.s.bins.pluginVersion)
	}
}

func (r *docsRun) configRead(out string) {
	kv := vaultTable(out)
	app := fakegithub.DemoFixture().Apps[0]
	r.wantValues("vault read github/config", kv, map[string]string{
		"app_id": fmt.Sprint(appID), "client_id": app.ClientID, "base_url": r.s.gh.url, "app_slug": app.Slug,
		"app_name": app.Name, "private_key_fingerprint": keyFingerprint(r.t, r.s.gh.keyFile),
	})
	// "A read returns every field but the key and verify, plus private_key_fingerprint, app_slug and app_name."
	want := []string{"private_key_fingerprint", "app_slug", "app_name"}
	for _, f := range readmeTableFields(r.t, "## Configure") {
		if f != "private_key" && f != "verify" {
			want = append(want, f)
		}
	}
	if got := slices.Collect(maps.Keys(kv)); !sameSet(got, want) {
		r.t.Errorf("vault read github/config shows the fields %v; the README says %v", slices.Sorted(slices.Values(got)),
			slices.Sorted(slices.Values(want)))
	}
}

// readmeTableFields returns the first column of the field table of a README section.
func readmeTableFields(t *testing.T, heading string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no section %q", heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var fields []string
	for _, line := range strings.Split(section, "\n") {
		if f, ok := strings.CutPrefix(line, "| `"); ok {
			f, _, _ = strings.Cut(f, "`")
			fields = append(fields, f)
		}
	}
	if len(fields) < 5 {
		t.Fatalf("README.md's section %q has a table of %d fields", heading, len(fields))
	}
	return fields
}

func (r *docsRun) rolesListed(out string) {
	if got := listKeys(out); !sameSet(got, []string{"ci", "deploy"}) {
		r.t.Errorf("vault list github/roles lists %v, want the roles written above, ci and deploy", got)
	}
}

// listKeys reads the Keys column the vault CLI prints for a list.
func listKeys(out string) []string {
	_, rest, _ := strings.Cut(out, "Keys\n----\n")
	return strings.Fields(rest)
}

func (r *docsRun) installationsListed(out string) {
	// What the README says it shows: where the App is installed, logins and installation IDs.
	for _, in := range fakegithub.DemoFixture().Installations {
		found := false
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			found = found || (len(f) > 1 && f[0] == in.Account && slices.Contains(f, fmt.Sprint(in.ID)))
		}
		if !found {
			r.t.Errorf("vault list -detailed github/installations shows no line of %s with installation %d:\n%s", in.Account, in.ID, out)
		}
	}
}

// minted reads the token of a mint's output, remembers it, and checks that it reaches the repositories want.
func (r *docsRun) minted(what, out string, want ...string) map[string]string {
	r.t.Helper()
	kv := vaultTable(out)
	token := kv["token"]
	if !strings.HasPrefix(token, "ghs_") {
		r.t.Fatalf("%s printed no GitHub token", what)
	}
	r.ghTokens = append(r.ghTokens, token)
	r.s.gh.mustReach(r.t, token, want...)
	return kv
}

// tokenRead compares the mint's output with the output the README shows for it.
func (r *docsRun) tokenRead(out string) {
	got := r.minted("vault read github/token/ci", out, "api", "web")
	doc := readmeTokenOutput(r.t)
	if gotKeys, docKeys := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(doc)); !slices.Equal(gotKeys, docKeys) {
		r.t.Errorf("vault read github/token/ci prints the keys %v; the README shows %v", gotKeys, docKeys)
	}
	// The values the README shows as they are; the others are different for every token.
	exact := map[string]string{}
	for _, k := range []string{"lease_duration", "lease_renewable", "permissions", "repositories", "repository_selection", "role"} {
		exact[k] = doc[k]
	}
	r.wantValues("vault read github/token/ci (the README's output)", got, exact)
	sum := sha256.Sum256([]byte(got["token"]))
	if got["hashed_token"] != base64.StdEncoding.EncodeToString(sum[:]) {
		r.t.Errorf("hashed_token is not the base64 SHA-256 of the token")
	}
	if !strings.HasPrefix(got["lease_id"], docsMount+"/token/ci/") {
		r.t.Errorf("lease_id %q is not under %s/token/ci/", got["lease_id"], docsMount)
	}
	if _, err := time.Parse(time.RFC3339, got["expires_at"]); err != nil {
		r.t.Errorf("expires_at: %v", err)
	}
	if got["installation_id"] != fmt.Sprint(acmeInstallID) {
		r.t.Errorf("installation_id is %s, want acme's, %d", got["installation_id"], acmeInstallID)
	}
}

// readmeTokenOutput is the output the README shows for `vault read github/token/ci`: the plain block of the
// "Reading tokens" section.
func readmeTokenOutput(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Reading tokens\n")
	if !ok {
		t.Fatal(`README.md has no "## Reading tokens" section`)
	}
	_, block, ok := strings.Cut(section, "\n```\nKey ")
	if !ok {
		t.Fatal(`README.md's "Reading tokens" shows no output of vault read github/token/ci`)
	}
	block, _, _ = strings.Cut(block, "\n```")
	kv := vaultTable("Key " + block)
	if len(kv) < 5 {
		t.Fatalf("README.md's output of vault read github/token/ci has %d keys", len(kv))
	}
	return kv
}

func (r *docsRun) tokenNarrowed(out string) {
	kv := r.minted("vault write github/token/ci", out, "api")
	r.wantValues("vault write github/token/ci repositories=api permissions=contents=read ttl=5m", kv, map[string]string{
		"lease_duration": "5m", "repositories": "[api]", "permissions": "map[contents:read metadata:read]",
	})
}

func (r *docsRun) policyWritten(out string) {
	if !strings.Contains(out, "Success! Uploaded policy: ci-read") {
		r.t.Errorf("vault policy write printed %q", out)
	}
	r.policies = append(r.policies, "ci-read")
}

// readerCreated checks what docs/policies.md says of a token with only ci-read: it mints tokens of ci, and gets 403 on
// github/token/admin, on github/config and on a narrowing write.
func (r *docsRun) readerCreated(out string) {
	kv := vaultTable(out)
	tok := kv["token"]
	if tok == "" {
		r.t.Fatal("vault token create printed no token")
	}
	r.vaultTokens = append(r.vaultTokens, tok)
	if want := `["ci-read" "default"]`; kv["token_policies"] != want {
		r.t.Errorf("the token has the policies %s, want %s", kv["token_policies"], want)
	}
	v := r.s.vault
	mint := v.mintCLI(r.t, tok, docsMount+"/token/ci")
	r.ghTokens = append(r.ghTokens, mint.Data.Token)
	r.s.gh.mustReach(r.t, mint.Data.Token, "api", "web")
	v.cliDenied(r.t, tok, "read", docsMount+"/token/admin")
	v.cliDenied(r.t, tok, "read", docsMount+"/config")
	v.cliDenied(r.t, tok, "write", docsMount+"/token/ci", "repositories=api")
}

func (r *docsRun) retryAfterAllowed(string) {
	if m := r.mount(); !slices.Contains(m.Config.AllowedResponseHeaders, "Retry-After") {
		r.t.Errorf("the mount allows the response headers %v, want Retry-After", m.Config.AllowedResponseHeaders)
	}
}

func (r *docsRun) auditEnabled(string) {
	if _, err := os.Stat(filepath.Join(r.dir, "audit.log")); err != nil {
		r.t.Errorf("the file audit device wrote no file: %v", err)
	}
}

func (r *docsRun) hashedTokenInClear(string) {
	if m := r.mount(); !slices.Contains(m.Config.AuditNonHMACResponseKeys, "hashed_token") {
		r.t.Errorf("the mount's audit_non_hmac_response_keys are %v, want hashed_token", m.Config.AuditNonHMACResponseKeys)
	}
}

func (r *docsRun) auditListed(out string) {
	if !strings.Contains(out, "file/") || !strings.Contains(out, "file_path="+filepath.Join(r.dir, "audit.log")) {
		r.t.Errorf("vault audit list -detailed does not show the file device:\n%s", out)
	}
}

func (r *docsRun) leaseCount(out string) {
	if _, ok := vaultTable(out)["lease_count"]; !ok {
		r.t.Errorf("vault read sys/leases/count shows no lease_count:\n%s", out)
	}
}

func (r *docsRun) mountsListed(out string) {
	// docs/production.md's comment: github/ with its running_plugin_version and running_sha256.
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, docsMount+"/ ") {
			if !strings.Contains(line, r.s.bins.pluginVersion) || !strings.Contains(line, r.s.pluginSHA) {
				r.t.Errorf("vault secrets list -detailed shows %s/ without its running version %s and sha256:\n%s",
					docsMount, r.s.bins.pluginVersion, line)
			}
			return
		}
	}
	r.t.Errorf("vault secrets list -detailed shows no %s/:\n%s", docsMount, out)
}

func (r *docsRun) statusRead(out string) {
	app := fakegithub.DemoFixture().Apps[0]
	r.wantValues("vault read github/status", vaultTable(out), map[string]string{
		"app_id": fmt.Sprint(appID), "app_slug": app.Slug, "plugin_version": r.s.bins.pluginVersion,
		"private_key_fingerprint": keyFingerprint(r.t, r.s.gh.keyFile),
	})
	// docs/metrics.md's table of the fields, which troubleshooting.md calls every field: the same fields as the
	// answer, and the same fields of github and rate_limit.
	status, err := r.s.vault.client(r.t, r.s.vault.rootToken).Logical().Read(docsMount + "/status")
	if err != nil || status == nil {
		r.t.Fatalf("reading %s/status: %v", docsMount, err)
	}
	var got []string
	for k, v := range status.Data {
		if sub, ok := v.(map[string]any); ok && (k == "github" || k == "rate_limit") {
			for sk := range sub {
				got = append(got, k+"."+sk)
			}
			continue
		}
		got = append(got, k)
	}
	doc := metricsStatusFields(r.t)
	for _, f := range got {
		if !slices.Contains(doc, f) {
			r.t.Errorf("vault read github/status shows %s, which docs/metrics.md does not document", f)
		}
	}
	for _, f := range doc {
		if !slices.Contains(got, f) {
			r.t.Errorf("docs/metrics.md documents %s, which vault read github/status does not show", f)
		}
	}
}

// metricsStatusFields returns the fields that docs/metrics.md's table documents for github/status: those of the
// first column, and rate_limit's fields from its row's second.
func metricsStatusFields(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## `vault read github/status`\n")
	if !ok {
		t.Fatal("docs/metrics.md has no section on vault read github/status")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var fields []string
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		for _, f := range strings.Split(cells[1], ",") {
			fields = append(fields, strings.Trim(strings.TrimSpace(f), "`"))
		}
		if strings.TrimSpace(cells[1]) == "`rate_limit`" {
			fields = fields[:len(fields)-1]
			_, list, _ := strings.Cut(cells[2], ":")
			for i, f := range strings.Split(list, "`") {
				if i%2 == 1 { // between backticks
					fields = append(fields, "rate_limit."+f)
				}
			}
		}
	}
	if len(fields) < 10 {
		t.Fatalf("docs/metrics.md's table of github/status has %d fields: the parser must have missed some", len(fields))
	}
	return fields
}

// forceRevoked: the leases are gone from Vault, and (docs/troubleshooting.md) Vault asked the engine once more to
// revoke their tokens at GitHub, which answers here.
func (r *docsRun) forceRevoked(string) {
	if left := r.s.vault.leasesUnder(r.t, docsMount+"/token/ci/"); len(left) > 0 {
		r.t.Errorf("%d leases under %s/token/ci/ after vault lease revoke -force -prefix", len(left), docsMount)
	}
	if len(r.ghTokens) != 3 {
		r.t.Errorf("the commands minted %d tokens of role ci, want 3", len(r.ghTokens))
	}
	for _, tok := range r.ghTokens {
		r.s.gh.waitDead(r.t, tok, 10*time.Second, "a token of role ci after vault lease revoke -force")
	}
}

// ------------------------------------------------------------------------------------ commands of the documentation

// docPlace is where a documented command appears.
type docPlace struct {
	file    string // relative to the repository root
	line    int    // the line the command starts on
	section string // the nearest heading above the block
	// label is where the documentation says whether a block is tested: the text from the block's section heading
	// to its opening fence, and the block's comment lines.
	label string
}

func (p docPlace) String() string { return fmt.Sprintf("%s:%d", p.file, p.line) }

// docCommand is one command of the documentation's shell blocks: its text (continuations joined, comments dropped)
// and every place it appears.
type docCommand struct {
	text   string
	places []docPlace
}

// shellFences are the info strings of the code blocks whose lines are commands.
var shellFences = map[string]bool{"sh": true, "shell": true, "bash": true, "zsh": true, "console": true}

// docFiles are the documentation files whose shell blocks the test reads, relative to the repository root.
func docFiles(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("no docs/*.md (%v)", err)
	}
	files := []string{"README.md"}
	for _, p := range pages {
		files = append(files, filepath.ToSlash(strings.TrimPrefix(p, repoRoot+string(filepath.Separator))))
	}
	sort.Strings(files[1:])
	return append(files, "SECURITY.md")
}

// docCommands returns the commands of every shell block of the documentation, in document order (files in the
// order of docFiles), each once with all its places.
func docCommands(t *testing.T) []*docCommand {
	t.Helper()
	var cmds []*docCommand
	byText := map[string]*docCommand{}
	for _, file := range docFiles(t) {
		data, err := os.ReadFile(filepath.Join(repoRoot, file))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range markdownShellBlocks(string(data)) {
			for _, c := range shellCommands(b.lines) {
				place := docPlace{file: file, line: b.firstLine + c.line, section: b.section, label: b.label}
				if dc := byText[c.text]; dc != nil {
					dc.places = append(dc.places, place)
					continue
				}
				dc := &docCommand{text: c.text, places: []docPlace{place}}
				byText[c.text] = dc
				cmds = append(cmds, dc)
			}
		}
	}
	return cmds
}

// shellBlock is a fenced shell block of a Markdown file.
type shellBlock struct {
	firstLine int // the line number of its first line
	lines     []string
	section   string
	label     string
}

// markdownShellBlocks returns the shell blocks (shellFences) of a Markdown text.
func markdownShellBlocks(text string) []shellBlock {
	lines := strings.Split(text, "\n")
	var blocks []shellBlock
	heading := 0
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimSpace(lines[i])
		if strings.HasPrefix(trimmed, "#") && strings.HasPrefix(strings.TrimLeft(trimmed, "#"), " ") {
			heading = i
			continue
		}
		fence := ""
		for _, f := range []string{"```", "~~~"} {
			if strings.HasPrefix(trimmed, f) {
				fence = trimmed[:len(trimmed)-len(strings.TrimLeft(trimmed, f[:1]))]
			}
		}
		if fence == "" {
			continue
		}
		info, _, _ := strings.Cut(strings.TrimSpace(strings.TrimPrefix(trimmed, fence)), " ")
		start := i + 1
		end := start
		for end < len(lines) && strings.TrimSpace(lines[end]) != fence {
			end++
		}
		if shellFences[strings.ToLower(info)] {
			b := shellBlock{firstLine: start + 1, lines: lines[start:min(end, len(lines))],
				section: strings.TrimSpace(strings.TrimLeft(lines[heading], "# "))}
			label := slicesJoin(lines[heading:i])
			for _, l := range b.lines {
				if c := strings.TrimSpace(l); strings.HasPrefix(c, "#") {
					label += "\n" + c
				}
			}
			b.label = label
			blocks = append(blocks, b)
		}
		i = end
	}
	return blocks
}

func slicesJoin(lines []string) string { return strings.Join(lines, "\n") }

// shellLine is a command of a shell block or script, and its line within it (0-based).
type shellLine struct {
	text string
	line int
}

// shellCommands splits shell text into commands: comments dropped (a full-line comment, or from an unquoted # that
// starts a word to the end of the line), lines ending in a backslash joined with the next (the backslash and the
// line break become one space), and so are lines ending in |, && or ||. The text is otherwise kept as written.
func shellCommands(lines []string) []shellLine {
	var out []shellLine
	pending, start := "", 0
	for i, raw := range lines {
		line := strings.TrimSpace(stripShellComment(raw))
		if line == "" {
			continue
		}
		if pending == "" {
			start = i
		}
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			pending += strings.TrimSpace(rest) + " "
			continue
		}
		if strings.HasSuffix(line, "|") || strings.HasSuffix(line, "&&") {
			pending += line + " "
			continue
		}
		out = append(out, shellLine{text: pending + line, line: start})
		pending = ""
	}
	if pending != "" {
		out = append(out, shellLine{text: strings.TrimSpace(pending), line: start})
	}
	return out
}

// stripShellComment drops a shell comment from a line: an unquoted # at the start of a word and what follows.
func stripShellComment(line string) string {
	inSingle, inDouble := false, false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '\\' && !inSingle:
			i++
		case c == '\'' && !inDouble:
			inSingle = !inSingle
		case c == '"' && !inSingle:
			inDouble = !inDouble
		case c == '#' && !inSingle && !inDouble && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return line[:i]
		}
	}
	return line
}
