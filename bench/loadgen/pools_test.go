// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package main

import (
	"bytes"
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestBudgetAnalyse reads settling and following off made-up buckets of 100 ms.
func TestBudgetAnalyse(t *testing.T) {
	b := func(a3, a2, other int) map[string]int { return map[string]int{"a3": a3, "a2": a2, "default": other} }
	tests := []struct {
		name                    string
		buckets                 []map[string]int
		changeAt                float64
		settle, follow, lastOld float64
		before, after           map[string]float64
	}{
		{
			name: "settles, then follows",
			// 0–0.2 s round robin, a3 from 0.2 s; change at 0.45 s; a3 still serves in bucket 5, a2 from bucket 6.
			buckets:  []map[string]int{b(3, 3, 3), b(4, 3, 3), b(10, 0, 0), b(10, 0, 0), b(9, 1, 0), b(5, 5, 0), b(0, 10, 0), b(0, 10, 0)},
			changeAt: 0.45,
			settle:   0.3, follow: 0.25, lastOld: 0.15,
			before: map[string]float64{"a3": 1, "a2": 0, "default": 0}, // bucket 4 holds the change: in neither
			after:  map[string]float64{"a2": 1, "a3": 0, "default": 0},
		},
		{
			name:     "never follows",
			buckets:  []map[string]int{b(10, 0, 0), b(10, 0, 0), b(10, 0, 0), b(10, 0, 0)},
			changeAt: 0.2,
			settle:   0.1, follow: -1, lastOld: 0.2,
			before: map[string]float64{"a3": 1, "a2": 0, "default": 0},
		},
		{
			name:     "empty buckets do not break a run",
			buckets:  []map[string]int{b(1, 1, 1), {}, b(10, 0, 0), b(0, 0, 0), b(0, 9, 1)},
			changeAt: 0.3,
			settle:   0.3, follow: 0.2, lastOld: -1,
			before: map[string]float64{"a3": 1, "a2": 0, "default": 0},
			after:  map[string]float64{"a2": 0.9, "a3": 0, "default": 0.1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bb := &budgetBench{Leader: "a3", NewLeader: "a2", BucketMs: 100, Buckets: tt.buckets, ChangeAt: tt.changeAt}
			bb.analyse()
			if bb.SettleS != tt.settle || bb.FollowS != tt.follow || bb.LastOldS != tt.lastOld {
				t.Errorf("settle %v, follow %v, last old %v; want %v, %v, %v", bb.SettleS, bb.FollowS, bb.LastOldS,
					tt.settle, tt.follow, tt.lastOld)
			}
			if !maps.Equal(bb.SharesBefore, tt.before) || !maps.Equal(bb.SharesAfter, tt.after) {
				t.Errorf("shares before %v, after %v; want %v, %v", bb.SharesBefore, bb.SharesAfter, tt.before, tt.after)
			}
		})
	}
}

// TestReadApp takes the App's name from an answer and nothing else of it.
func TestReadApp(t *testing.T) {
	tests := []struct {
		name, body  string
		status      int
		app, kind   string
		wantMessage bool
	}{
		{"pool answer", `{"lease_id":"pool/token/pool/x","data":{"token":"ghs_x","app":"a2","app_id":1002}}`, 200, "a2", "", false},
		{"no app field", `{"lease_id":"github/token/bench/x","data":{"token":"ghs_x"}}`, 200, "?", "", false},
		{"not an App name", `{"lease_id":"l","data":{"app":"ghs_SECRET with spaces"}}`, 200, "?", "", false},
		{"no lease", `{"lease_id":"","data":{"app":"a2"}}`, 200, "", "no lease", true},
		{"refused", `{"errors":["all Apps limited"]}`, 429, "", "HTTP 429", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			var buf bytes.Buffer
			app, kind, msg := readApp(context.Background(), srv.Client(), srv.URL, "root", &buf)
			if app != tt.app || kind != tt.kind || (msg != "") != tt.wantMessage {
				t.Errorf("readApp = %q, %q, %q; want %q, %q, message %v", app, kind, msg, tt.app, tt.kind, tt.wantMessage)
			}
		})
	}
}

func TestParsePoolApps(t *testing.T) {
	apps, err := parsePoolApps("default=1001=2001, a2=1002=2102")
	if err != nil || len(apps) != 2 || apps[1] != (poolApp{Name: "a2", AppID: 1002, InstallationID: 2102}) {
		t.Errorf("parsePoolApps = %+v, %v", apps, err)
	}
	for _, bad := range []string{"a2=1002", "=1002=2102", "a2=x=2102", ""} {
		if _, err := parsePoolApps(bad); err == nil {
			t.Errorf("parsePoolApps(%q) accepted", bad)
		}
	}
}
