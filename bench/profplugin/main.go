// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

// Command profplugin is the GitHub App plugin with a CPU profile switch, for finding where the plugin process
// spends its time under load in a real Vault (Vault runs plugins as child processes, which cannot easily expose
// pprof). Register it under its own name with the profile's path in its environment, drive load, read the profile:
//
//	go build -o $PLUGIN_DIR/gh-prof ./bench/profplugin
//	vault plugin register -sha256=... -env BENCH_CPUPROFILE=/tmp/plugin.prof -env BENCH_PROFILE_SECONDS=20 secret gh-prof
//	vault secrets enable -path=ghprof gh-prof
//	... load ...
//	go tool pprof -top $PLUGIN_DIR/gh-prof /tmp/plugin.prof
//
// The profile starts when the process starts and stops after BENCH_PROFILE_SECONDS (default 30).
package main

import (
	"os"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	githubapp "github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app"
)

func main() {
	if path := os.Getenv("BENCH_CPUPROFILE"); path != "" {
		secs, err := strconv.Atoi(os.Getenv("BENCH_PROFILE_SECONDS"))
		if err != nil || secs <= 0 {
			secs = 30
		}
		f, err := os.Create(path)
		if err != nil {
			fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal(err)
		}
		time.AfterFunc(time.Duration(secs)*time.Second, func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}
	meta := &api.PluginAPIClientMeta{}
	if err := meta.FlagSet().Parse(os.Args[1:]); err != nil {
		fatal(err)
	}
	err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: githubapp.Factory,
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	})
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("plugin shutting down", "error", err)
	os.Exit(1)
}
