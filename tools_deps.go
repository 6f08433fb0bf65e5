//go:build tools

package main

import (
	_ "github.com/getkin/kin-openapi/openapi3filter"
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/hashicorp/go-cleanhttp"
	_ "github.com/hashicorp/go-hclog"
	_ "github.com/hashicorp/go-retryablehttp"
	_ "github.com/hashicorp/vault/api"
	_ "github.com/hashicorp/vault/sdk/plugin"
)
