// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestJWTRefused(t *testing.T) {
	e := newEnv(t)
	now := time.Now().Unix()
	sign := func(claims jwt.MapClaims) string { return "Bearer " + signJWT(t, testKey(), claims) }
	good := signJWT(t, testKey(), appClaims(demoClientID))
	hmac, err := jwt.NewWithClaims(jwt.SigningMethodHS256, appClaims(demoClientID)).SignedString([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		auth    string
		status  int
		message string
	}{
		{"no Authorization", "", 401, msgJWTDecode},
		{"garbage", "Bearer not-a-jwt", 401, msgJWTDecode},
		{"token scheme", "token " + good, 401, msgJWTDecode},
		{"bad signature", "Bearer " + tamper(good), 401, msgJWTDecode},
		{"key not registered", "Bearer " + signJWT(t, otherKey(), appClaims(demoClientID)), 401, msgJWTDecode},
		{"HS256", "Bearer " + hmac, 401, msgJWTDecode},
		{"unknown app ID", sign(appClaims("9999")), 404, msgIntegrationNotFound},
		{"unknown client ID", sign(appClaims("Iv23liNOPE")), 404, msgIntegrationNotFound},
		{"no iss", sign(jwt.MapClaims{"iat": now - 60, "exp": now + 540}), 404, msgIntegrationNotFound},
		{"iat in the future", sign(jwt.MapClaims{"iss": demoClientID, "iat": now + 120, "exp": now + 300}), 401, msgIATInvalid},
		{"iat missing", sign(jwt.MapClaims{"iss": demoClientID, "exp": now + 300}), 401, msgIATInvalid},
		{"iat a string", sign(jwt.MapClaims{"iss": demoClientID, "iat": "123", "exp": now + 300}), 401, msgIATInvalid},
		{"expired", sign(jwt.MapClaims{"iss": demoClientID, "iat": now - 300, "exp": now - 10}), 401, msgEXPInvalid},
		{"exp missing", sign(jwt.MapClaims{"iss": demoClientID, "iat": now - 60}), 401, msgEXPInvalid},
		{"exp too far", sign(jwt.MapClaims{"iss": demoClientID, "iat": now - 60, "exp": now + 660}), 401, msgEXPTooFar},
		{"lifetime over 10 minutes", sign(jwt.MapClaims{"iss": demoClientID, "iat": now - 400, "exp": now + 300}), 401, msgEXPTooFar},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.do(http.MethodGet, "/app", tt.auth, nil).wantError(t, tt.status, tt.message)
			// Token creation authenticates the same way.
			e.do(http.MethodPost, "/app/installations/2001/access_tokens", tt.auth, nil).wantError(t, tt.status, tt.message)
		})
	}
}

// tamper flips a character in the signature.
func tamper(token string) string {
	i := strings.LastIndexByte(token, '.') + 5
	c := byte('A')
	if token[i] == 'A' {
		c = 'B'
	}
	return token[:i] + string(c) + token[i+1:]
}

func TestJWTAccepted(t *testing.T) {
	e := newEnv(t)
	if err := e.srv.AddPublicKey(demoAppID, &secondKey().PublicKey); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	tests := []struct {
		name   string
		key    func() *rsa.PrivateKey
		claims jwt.MapClaims
	}{
		{"iss as a number", testKey, appClaims(demoAppID)},
		{"iss as a string", testKey, appClaims("1001")},
		{"iss as the client ID", testKey, appClaims(demoClientID)},
		{"second registered key", secondKey, appClaims(demoClientID)},
		{"iat exactly now", testKey, jwt.MapClaims{"iss": demoClientID, "iat": now, "exp": now + 600}},
		{"exp as a fraction", testKey, jwt.MapClaims{"iss": demoClientID, "iat": now - 60, "exp": float64(now) + 300.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(http.MethodGet, "/app", "Bearer "+signJWT(t, tt.key(), tt.claims), nil)
			if resp.status != http.StatusOK {
				t.Fatalf("status %d, body %s", resp.status, resp.body)
			}
			var app integrationObject
			resp.decode(t, &app)
			if app.ID != demoAppID || app.Slug != "vault-demo" || app.Name != "Vault Demo" || app.ClientID != demoClientID {
				t.Errorf("app = %+v", app)
			}
			if app.Owner.Login != "acme" || app.Owner.Type != "Organization" {
				t.Errorf("owner = %+v", app.Owner)
			}
		})
	}
}

// TestJWTKeysFromFixture registers keys the way a fixture file does, in both PEM forms.
func TestJWTKeysFromFixture(t *testing.T) {
	pkix, err := EncodePublicKey(&testKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&secondKey().PublicKey)})
	f := DemoFixture()
	f.Apps[0].PublicKeys = []string{string(pkix), string(pkcs1)}
	srv, err := New(f)
	if err != nil {
		t.Fatal(err)
	}
	e := serve(t, srv)
	for _, key := range []*rsa.PrivateKey{testKey(), secondKey()} {
		if resp := e.do(http.MethodGet, "/app", "Bearer "+signJWT(t, key, appClaims(demoAppID)), nil); resp.status != 200 {
			t.Errorf("status %d, body %s", resp.status, resp.body)
		}
	}
	e.do(http.MethodGet, "/app", "Bearer "+signJWT(t, otherKey(), appClaims(demoAppID)), nil).wantError(t, 401, msgJWTDecode)
}

// TestJWTClockSkew checks a well-behaved client's JWT against an emulator clock that is off.
// Like GitHub, the emulator accepts a client 5 minutes behind (exp is still 4 minutes ahead),
// but not one 5 minutes ahead (exp is 14 minutes ahead), nor one 10 minutes behind (expired).
func TestJWTClockSkew(t *testing.T) {
	tests := []struct {
		offset  time.Duration // emulator clock minus client clock
		status  int
		message string
	}{
		{0, 200, ""},
		{5 * time.Minute, 200, ""},
		{-5 * time.Minute, 401, msgEXPTooFar},
		{10 * time.Minute, 401, msgEXPInvalid},
		{-2 * time.Minute, 401, msgEXPTooFar},
	}
	for _, tt := range tests {
		t.Run(tt.offset.String(), func(t *testing.T) {
			e := newEnv(t)
			e.srv.SetFaults(Faults{ClockOffset: tt.offset})
			resp := e.do(http.MethodGet, "/app", e.bearer(), nil)
			if tt.status == 200 {
				if resp.status != 200 {
					t.Fatalf("status %d, body %s", resp.status, resp.body)
				}
				return
			}
			resp.wantError(t, tt.status, tt.message)
		})
	}

	// A client that backdates nothing is refused when the emulator is behind, with the iat message.
	e := newEnv(t)
	e.srv.SetFaults(Faults{ClockOffset: -30 * time.Second})
	now := time.Now().Unix()
	auth := "Bearer " + signJWT(t, testKey(), jwt.MapClaims{"iss": demoAppID, "iat": now, "exp": now + 300})
	e.do(http.MethodGet, "/app", auth, nil).wantError(t, 401, msgIATInvalid)
}
