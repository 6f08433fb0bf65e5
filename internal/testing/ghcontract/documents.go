// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

// Package ghcontract holds GitHub's OpenAPI descriptions of the REST operations this project uses and checks HTTP
// traffic against them. It is test infrastructure: the GitHub emulator and the API client are tested through it so
// that both stay faithful to what GitHub documents, and the plugin binary never imports it.
package ghcontract

import (
	"embed"
	"fmt"
	"slices"

	"github.com/getkin/kin-openapi/openapi3"
)

// Editions of GitHub whose descriptions are embedded. Each names the file openapi/<edition>.openapi.json.
const (
	EditionDotcom = "api.github.com"
	EditionGHEC   = "ghec"
	EditionGHES   = "ghes-3.19"
)

//go:embed openapi/*.openapi.json
var documents embed.FS

// Editions returns every embedded edition, github.com first.
func Editions() []string {
	return []string{EditionDotcom, EditionGHEC, EditionGHES}
}

// Document returns the raw JSON of an edition's description.
func Document(edition string) ([]byte, error) {
	if !slices.Contains(Editions(), edition) {
		return nil, fmt.Errorf("ghcontract: unknown edition %q (known: %q)", edition, Editions())
	}
	data, err := documents.ReadFile("openapi/" + edition + ".openapi.json")
	if err != nil {
		return nil, fmt.Errorf("ghcontract: reading the %s description: %w", edition, err)
	}
	return data, nil
}

// Load parses and validates an edition's description. Every call returns a new document that the caller owns and
// may change (the Validator drops its servers, for one), so nothing is shared between callers; parsing takes a few
// milliseconds, which tests can afford.
func Load(edition string) (*openapi3.T, error) {
	data, err := Document(edition)
	if err != nil {
		return nil, err
	}
	loader := openapi3.NewLoader()
	// The extracts are self-contained; refusing external references keeps loading hermetic.
	loader.IsExternalRefsAllowed = false
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("ghcontract: parsing the %s description: %w", edition, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("ghcontract: the %s description is not valid OpenAPI: %w", edition, err)
	}
	return doc, nil
}
