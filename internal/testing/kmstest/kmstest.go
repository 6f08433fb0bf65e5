// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

// Package kmstest serves local-kms (github.com/nsmithuk/local-kms) on 127.0.0.1 for tests: the real AWS SDK talks
// to it as to AWS KMS. Run as a program, local-kms listens on every interface and imports key material only for AES
// keys, so the tests serve its handler here and give it their keys through its seed format, which takes asymmetric
// keys with their PEM. It is test infrastructure, never imported by the plugin.
package kmstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	kmssrc "github.com/nsmithuk/local-kms/src"
	"github.com/nsmithuk/local-kms/src/cmk"
	kmsconfig "github.com/nsmithuk/local-kms/src/config"
	"github.com/nsmithuk/local-kms/src/data"
	"gopkg.in/yaml.v2"
)

// The region, account and static credentials of every local KMS.
const (
	Region          = "eu-west-2"
	Account         = "111122223333"
	AccessKeyID     = "AKIATESTSIGNER000001"
	SecretAccessKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiSIGNERTESTKEY"
)

// ARN is the ARN local-kms gives the key with ID id.
func ARN(id string) string { return "arn:aws:kms:" + Region + ":" + Account + ":key/" + id }

// Key is a key to seed: an RSA key in PKCS#8 PEM ("PRIVATE KEY") or an EC key in SEC 1 PEM ("EC PRIVATE KEY").
type Key struct {
	ID string
	// Usage is SIGN_VERIFY (the default) or ENCRYPT_DECRYPT.
	Usage    string
	PEM      []byte
	Disabled bool
}

// Seed is what a local KMS holds when it starts.
type Seed struct {
	RSA []Key
	EC  []Key
	// AES are the IDs of symmetric keys, with random material.
	AES []string
	// Aliases maps alias names (alias/NAME) to key IDs.
	Aliases map[string]string
}

// Server is local-kms's request handler on 127.0.0.1, with a database of its own in the test's temporary directory.
// It answers as real KMS does where local-kms cannot: throttling and IAM refusals.
type Server struct {
	URL string
	// ThrottleSigns answers the next this many Sign requests with ThrottlingException.
	ThrottleSigns atomic.Int64
	// Deny answers every request with AccessDeniedException.
	Deny atomic.Bool
	// Signs counts the Sign requests that arrived, throttled or not.
	Signs atomic.Int64

	db *data.Database
}

// local-kms keeps its region and account in package variables, read while seeding and serving; they are set once,
// before any local KMS exists.
var configOnce sync.Once

// New starts a local KMS holding seed; it stops when the test ends.
func New(t testing.TB, seed Seed) *Server {
	t.Helper()
	configOnce.Do(func() {
		kmsconfig.AWSRegion = Region
		kmsconfig.AWSAccountId = Account
	})
	s := &Server{db: data.NewDatabase(t.TempDir())}
	t.Cleanup(s.db.Close)
	s.Add(t, seed)
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	sign := strings.HasSuffix(target, ".Sign")
	if sign {
		s.Signs.Add(1)
	}
	switch {
	case s.Deny.Load():
		Refuse(w, "AccessDeniedException", "User: arn:aws:iam::"+Account+":user/ci is not authorized to perform: "+
			"kms:GetPublicKey because no identity-based policy allows the kms:GetPublicKey action")
	case sign && s.ThrottleSigns.Add(-1) >= 0:
		Refuse(w, "ThrottlingException", "Rate exceeded")
	default:
		kmssrc.HandleRequest(w, r, s.db)
	}
}

// Add imports more keys and aliases, as an operator importing a new key would.
func (s *Server) Add(t testing.TB, seed Seed) {
	t.Helper()
	var parsed seedFile
	if err := yaml.Unmarshal([]byte(seedYAML(t, seed)), &parsed); err != nil {
		t.Fatalf("local-kms seed: %v", err)
	}
	disabled := map[string]bool{}
	for _, k := range append(seed.RSA, seed.EC...) {
		disabled[k.ID] = k.Disabled
	}
	for i := range parsed.Keys.Asymmetric.Rsa {
		k := &parsed.Keys.Asymmetric.Rsa[i]
		if disabled[k.Metadata.KeyId] {
			k.Metadata.Enabled, k.Metadata.KeyState = false, cmk.KeyStateDisabled
		}
		s.save(t, k)
	}
	for i := range parsed.Keys.Asymmetric.Ecc {
		k := &parsed.Keys.Asymmetric.Ecc[i]
		if disabled[k.Metadata.KeyId] {
			k.Metadata.Enabled, k.Metadata.KeyState = false, cmk.KeyStateDisabled
		}
		s.save(t, k)
	}
	for i := range parsed.Keys.Symmetric.Aes {
		s.save(t, &parsed.Keys.Symmetric.Aes[i])
	}
	for _, a := range parsed.Aliases {
		a.AliasArn = kmsconfig.ArnPrefix() + a.AliasName
		if err := s.db.SaveAlias(&a); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *Server) save(t testing.TB, k cmk.Key) {
	t.Helper()
	if err := s.db.SaveKey(k); err != nil {
		t.Fatal(err)
	}
}

// Refuse answers as KMS does in its JSON protocol.
func Refuse(w http.ResponseWriter, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(http.StatusBadRequest)
	fmt.Fprintf(w, `{"__type":%q,"message":%q}`, code, msg)
}

// seedFile is local-kms's seed file format.
type seedFile struct {
	Keys struct {
		Symmetric struct {
			Aes []cmk.AesKey `yaml:"Aes"`
		} `yaml:"Symmetric"`
		Asymmetric struct {
			Rsa []cmk.RsaKey `yaml:"Rsa"`
			Ecc []cmk.EccKey `yaml:"Ecc"`
		} `yaml:"Asymmetric"`
	} `yaml:"Keys"`
	Aliases []data.Alias `yaml:"Aliases"`
}

// seedYAML is the seed file an operator would give local-kms.
func seedYAML(t testing.TB, seed Seed) string {
	t.Helper()
	key := func(k Key) string {
		usage := k.Usage
		if usage == "" {
			usage = "SIGN_VERIFY"
		}
		return fmt.Sprintf("      - Metadata:\n          KeyId: %s\n          KeyUsage: %s\n        PrivateKeyPem: |\n%s",
			k.ID, usage, indent(string(k.PEM), "          "))
	}
	var b strings.Builder
	b.WriteString("Keys:\n  Symmetric:\n    Aes:\n")
	for _, id := range seed.AES {
		backing := make([]byte, 32)
		if _, err := rand.Read(backing); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "      - Metadata:\n          KeyId: %s\n        BackingKeys:\n          - %s\n", id,
			hex.EncodeToString(backing))
	}
	b.WriteString("  Asymmetric:\n    Rsa:\n")
	for _, k := range seed.RSA {
		b.WriteString(key(k))
	}
	b.WriteString("    Ecc:\n")
	for _, k := range seed.EC {
		b.WriteString(key(k))
	}
	b.WriteString("Aliases:\n")
	for name, id := range seed.Aliases {
		fmt.Fprintf(&b, "  - AliasName: %s\n    TargetKeyId: %s\n", name, id)
	}
	return b.String()
}

func indent(s, prefix string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		b.WriteString(prefix + line)
	}
	return b.String()
}
