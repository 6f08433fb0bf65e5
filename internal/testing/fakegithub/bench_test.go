// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkMintAndRevoke measures the emulator's own cost per token, so that plugin
// benchmarks can tell it apart from the plugin's.
func BenchmarkMintAndRevoke(b *testing.B) {
	srv, err := New(DemoFixture())
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.AddPublicKey(demoAppID, &testKey().PublicKey); err != nil {
		b.Fatal(err)
	}
	auth := "Bearer " + signJWT(b, testKey(), appClaims(demoClientID))
	body := []byte(`{"repositories":["api"],"permissions":{"contents":"read"}}`)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/app/installations/2001/access_tokens", bytes.NewReader(body))
		req.Header.Set("Authorization", auth)
		req.Header.Set("User-Agent", "bench")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			b.Fatalf("mint: %d %s", rec.Code, rec.Body)
		}
		var tok struct {
			Token string `json:"token"`
		}
		decodeInto(b, rec.Body.Bytes(), &tok)
		req = httptest.NewRequest(http.MethodDelete, "/installation/token", nil)
		req.Header.Set("Authorization", "token "+tok.Token)
		req.Header.Set("User-Agent", "bench")
		rec = httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			b.Fatalf("revoke: %d", rec.Code)
		}
	}
}

func decodeInto(tb testing.TB, data []byte, v any) {
	tb.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		tb.Fatalf("decode %s: %v", data, err)
	}
}
