// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// newHTTPClient keeps one connection per worker alive, the way a fleet of long-lived clients (Vault Agents, CI
// runners with a warm client) would talk to Vault; opening a connection per request would measure the TCP stack.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns + 8,
			MaxIdleConnsPerHost: conns + 8,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// vaultClient makes the few administrative calls the harness needs; the hot loop builds its requests itself.
type vaultClient struct {
	addr  string
	token string
	http  *http.Client
}

// call sends a request to Vault's HTTP API and returns the status and body. body is JSON-encoded when not nil.
func (v *vaultClient) call(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, v.addr+"/v1/"+strings.TrimPrefix(path, "/"), rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("X-Vault-Token", v.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := v.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// listLeases counts the leases under a prefix such as github/token/storm/ (LIST sys/leases/lookup/<prefix>).
// Vault answers 404 when there are none.
func (v *vaultClient) listLeases(ctx context.Context, prefix string) (int, error) {
	status, body, err := v.call(ctx, "LIST", "sys/leases/lookup/"+strings.TrimSuffix(prefix, "/")+"/", nil)
	if err != nil {
		return 0, err
	}
	switch status {
	case http.StatusNotFound:
		return 0, nil
	case http.StatusOK:
	default:
		return 0, fmt.Errorf("listing leases under %s: HTTP %d: %s", prefix, status, trimBody(body))
	}
	var out struct {
		Data struct {
			Keys []string `json:"keys"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return 0, err
	}
	return len(out.Data.Keys), nil
}

// revokePrefix revokes every lease under prefix and waits until they are gone: sync=true makes Vault revoke them
// (calling the plugin's Revoke for each) before it answers. Vault ends any request after its max request duration
// (90 s by default), possibly half-way; the loop then goes on with what is left, so a long revocation still
// finishes, and the count checked at the end is the truth.
func (v *vaultClient) revokePrefix(ctx context.Context, prefix string, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(limit)
	for {
		status, body, err := v.call(ctx, http.MethodPut, "sys/leases/revoke-prefix/"+strings.TrimSuffix(prefix, "/"),
			map[string]any{"sync": true})
		if err == nil && status != http.StatusNoContent && status != http.StatusOK {
			err = fmt.Errorf("revoke-prefix %s: HTTP %d: %s", prefix, status, trimBody(body))
		}
		left, lerr := v.listLeases(ctx, prefix)
		if lerr == nil && left == 0 {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = lerr
			}
			return time.Since(start), fmt.Errorf("%d leases under %s still there after %s (last error: %v)",
				left, prefix, limit, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// emulator talks to fakegithub's admin API.
type emulator struct {
	url  string
	http *http.Client
}

// emuStats is the part of GET /_fake/stats the benchmark reads.
type emuStats struct {
	Calls         map[string]int `json:"calls"`
	TotalCalls    int            `json:"total_calls"`
	MaxInFlight   int            `json:"max_in_flight"`
	InFlight      int            `json:"in_flight"`
	DistinctJWTs  int            `json:"distinct_jwts"`
	TokensIssued  int            `json:"tokens_issued"`
	TokensLive    int            `json:"tokens_live"`
	TokensRevoked int            `json:"tokens_revoked"`
	TokensExpired int            `json:"tokens_expired"`
	// Apps are each App's calls, by App ID.
	Apps map[string]emuAppStats `json:"apps"`
}

// emuAppStats is one App's part of the emulator's stats.
type emuAppStats struct {
	Calls        map[string]int `json:"calls"`
	TotalCalls   int            `json:"total_calls"`
	Errors       int            `json:"errors"`
	TokensIssued int            `json:"tokens_issued"`
}

func (e *emulator) stats(ctx context.Context) (emuStats, error) {
	var s emuStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/_fake/stats", nil)
	if err != nil {
		return s, err
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return s, fmt.Errorf("emulator stats: HTTP %d: %s", resp.StatusCode, trimBody(b))
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// put sends a JSON body to one of the emulator's admin endpoints, such as /_fake/apps/1002/faults.
func (e *emulator) put(ctx context.Context, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, e.url+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("emulator PUT %s: HTTP %d: %s", path, resp.StatusCode, trimBody(data))
	}
	return nil
}

// resetStats zeroes the emulator's call counters, distinct JWTs and max_in_flight (token state stays).
func (e *emulator) resetStats(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/_fake/stats/reset", nil)
	if err != nil {
		return err
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("emulator stats reset: HTTP %d", resp.StatusCode)
	}
	return nil
}

// callsDelta subtracts two call maps.
func callsDelta(after, before map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// trimBody shortens an error body for a report line. Vault's and the emulator's error bodies carry no secrets.
func trimBody(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
