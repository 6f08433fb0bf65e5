// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewRefusesBadFixtures(t *testing.T) {
	app := App{ID: 1, ClientID: "Iv1", Slug: "a", Owner: "acme"}
	inst := func(mod func(*Installation)) Installation {
		in := Installation{ID: 10, AppID: 1, Account: "acme", Permissions: map[string]string{"contents": "read"}}
		mod(&in)
		return in
	}
	tests := []struct {
		name    string
		fixture Fixture
		wantErr string
	}{
		{"app ID zero", Fixture{Apps: []App{{Owner: "acme"}}}, "must be positive"},
		{"app ID twice", Fixture{Apps: []App{app, {ID: 1, ClientID: "Iv2", Owner: "acme"}}}, "used twice"},
		{"client ID twice", Fixture{Apps: []App{app, {ID: 2, ClientID: "Iv1", Owner: "acme"}}}, "client_id"},
		{"bad slug", Fixture{Apps: []App{{ID: 1, Slug: "Not A Slug", Owner: "acme"}}}, "slug"},
		{"no owner", Fixture{Apps: []App{{ID: 1}}}, "owner is required"},
		{"bad public key", Fixture{Apps: []App{{ID: 1, Owner: "acme", PublicKeys: []string{"nope"}}}}, "public key 0"},
		{"unknown app", Fixture{Apps: []App{app}, Installations: []Installation{inst(func(in *Installation) { in.AppID = 2 })}}, "app 2 does not exist"},
		{"installation ID twice", Fixture{Apps: []App{app, {ID: 2, Owner: "acme"}}, Installations: []Installation{
			inst(func(*Installation) {}), inst(func(in *Installation) { in.AppID = 2 })}}, "used twice"},
		{"installed twice on one account", Fixture{Apps: []App{app}, Installations: []Installation{
			inst(func(*Installation) {}), inst(func(in *Installation) { in.ID = 11; in.Account = "ACME" })}}, "one installation per account"},
		{"bad login", Fixture{Apps: []App{app}, Installations: []Installation{inst(func(in *Installation) { in.Account = "-bad" })}}, "not a valid GitHub login"},
		{"bad account type", Fixture{Apps: []App{app}, Installations: []Installation{inst(func(in *Installation) { in.AccountType = "Enterprise" })}}, "account_type"},
		{"bad selection", Fixture{Apps: []App{app}, Installations: []Installation{inst(func(in *Installation) { in.RepositorySelection = "some" })}}, "repository_selection"},
		{"owner/name repository", Fixture{Apps: []App{app}, Installations: []Installation{inst(func(in *Installation) {
			in.Repositories = []Repository{{Name: "acme/api"}}
		})}}, "not valid"},
		{"repository twice", Fixture{Apps: []App{app}, Installations: []Installation{inst(func(in *Installation) {
			in.Repositories = []Repository{{Name: "api"}, {Name: "API"}}
		})}}, "listed twice"},
		{"malformed permission name", Fixture{Apps: []App{app}, Installations: []Installation{inst(func(in *Installation) {
			in.Permissions = map[string]string{"pull-requests": "write"}
		})}}, "snake_case"},
		{"level the schema forbids", Fixture{Apps: []App{app}, Installations: []Installation{inst(func(in *Installation) {
			in.Permissions = map[string]string{"contents": "admin"}
		})}}, `level "admin"`},
		{"repository ID names two repositories", Fixture{Apps: []App{app, {ID: 2, Owner: "acme"}}, Installations: []Installation{
			inst(func(in *Installation) { in.Repositories = []Repository{{ID: 7, Name: "api"}} }),
			inst(func(in *Installation) { in.ID = 11; in.AppID = 2; in.Repositories = []Repository{{ID: 7, Name: "web"}} }),
		}}, "already names"},
		{"account ID changes", Fixture{Apps: []App{app, {ID: 2, Owner: "acme"}}, Installations: []Installation{
			inst(func(in *Installation) { in.AccountID = 5 }),
			inst(func(in *Installation) { in.ID = 11; in.AppID = 2; in.AccountID = 6 }),
		}}, "has id 5 elsewhere"},
		{"account type changes", Fixture{Apps: []App{app, {ID: 2, Owner: "acme"}}, Installations: []Installation{
			inst(func(*Installation) {}),
			inst(func(in *Installation) { in.ID = 11; in.AppID = 2; in.AccountType = "User" }),
		}}, "elsewhere"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.fixture)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestFixtureDefaults(t *testing.T) {
	srv, err := New(Fixture{
		Apps: []App{{ID: 7, Name: "My Cool App!"}, {ID: 8, Owner: "acme"}},
		Installations: []Installation{
			{ID: 70, AppID: 7, Account: "acme", Repositories: []Repository{{Name: "api"}, {Name: "web"}}},
			{ID: 80, AppID: 8, Account: "Acme", Repositories: []Repository{{Name: "API"}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := srv.st.apps[7]
	if a.Slug != "my-cool-app" || a.Name != "My Cool App!" || a.Owner != "acme" || !strings.HasPrefix(a.ClientID, "Iv23li") {
		t.Errorf("app defaults = %+v", a.App)
	}
	in70, in80 := srv.st.installations[70], srv.st.installations[80]
	if in70.AccountType != "Organization" || in70.RepositorySelection != "all" {
		t.Errorf("installation defaults = %+v", in70.Installation)
	}
	if in70.AccountID == 0 || in70.AccountID != in80.AccountID || in70.AccountID != generatedAccountID("ACME") {
		t.Errorf("account IDs %d and %d, want the same stable ID", in70.AccountID, in80.AccountID)
	}
	if id := in70.Repositories[0].ID; id == 0 || id != in80.Repositories[0].ID || id == in70.Repositories[1].ID {
		t.Errorf("repository IDs %+v and %+v", in70.Repositories, in80.Repositories)
	}
}

func TestLoadFixture(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"apps":[{"id":1,"owner":"acme"}],"installations":[{"id":2,"app_id":1,"account":"acme","permissions":{"metadata":"read"}}]}`), 0o600)
	f, err := LoadFixture(good)
	if err != nil || len(f.Apps) != 1 || f.Installations[0].Permissions["metadata"] != "read" {
		t.Errorf("LoadFixture = %+v, %v", f, err)
	}
	typo := filepath.Join(dir, "typo.json")
	os.WriteFile(typo, []byte(`{"apps":[{"id":1,"owner":"acme"}],"installations":[{"id":2,"app_id":1,"account":"acme","permisions":{}}]}`), 0o600)
	if _, err := LoadFixture(typo); err == nil || !strings.Contains(err.Error(), "permisions") {
		t.Errorf("a misspelt field loaded: %v", err)
	}
	if _, err := LoadFixture(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("a missing file loaded")
	}
}

func TestKeys(t *testing.T) {
	key, err := GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := EncodePKCS1(key)
	if !strings.HasPrefix(string(pemBytes), "-----BEGIN RSA PRIVATE KEY-----") {
		t.Errorf("PEM starts %q", pemBytes[:32])
	}
	back, err := ParsePrivateKey(pemBytes)
	if err != nil || !back.Equal(key) {
		t.Errorf("ParsePrivateKey: %v", err)
	}
	pub, err := EncodePublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := parsePublicKey(string(pub))
	if err != nil || !parsed.Equal(&key.PublicKey) {
		t.Errorf("parsePublicKey: %v", err)
	}
	if _, err := ParsePrivateKey(pub); err == nil {
		t.Error("a public key parsed as a private key")
	}
}
