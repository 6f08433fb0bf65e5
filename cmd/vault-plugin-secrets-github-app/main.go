// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

// Command vault-plugin-secrets-github-app is the plugin binary Vault runs.
package main

import (
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	githubapp "github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app"
)

func main() {
	meta := &api.PluginAPIClientMeta{}
	flags := meta.FlagSet()
	// -version lets an operator read the version to register (vault plugin register -version=...) off the binary
	// itself, without Vault.
	version := flags.Bool("version", false, "print the plugin's version and exit")
	if err := flags.Parse(os.Args[1:]); err != nil {
		fatal(err)
	}
	if *version {
		// An unstamped build (plain go build) reports no version to Vault; say so the way Go does.
		v := githubapp.Version
		if v == "" {
			v = "(devel)"
		}
		fmt.Println(v)
		return
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
