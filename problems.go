// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"fmt"
	"net/http"

	"github.com/hashicorp/vault/sdk/logical"
)

// problems collects what a role or token write found wrong, so that one answer names all of it: malformed input
// (400), items outside the role (403), and warnings, which refuse nothing.
type problems struct {
	malformed, denied, warnings []string
}

// reject records malformed input.
func (p *problems) reject(msg string) { p.malformed = append(p.malformed, msg) }

// deny records an item the role does not allow.
func (p *problems) deny(item string) { p.denied = append(p.denied, item) }

// warn records a warning.
func (p *problems) warn(msg string) { p.warnings = append(p.warnings, msg) }

// add records everything q holds.
func (p *problems) add(q problems) {
	p.malformed = append(p.malformed, q.malformed...)
	p.denied = append(p.denied, q.denied...)
	p.warnings = append(p.warnings, q.warnings...)
}

// empty reports whether nothing is refused; warnings refuse nothing.
func (p *problems) empty() bool { return len(p.malformed) == 0 && len(p.denied) == 0 }

// response answers a refused write: 400 naming the malformed input when there is any, else 403 naming what the role
// does not allow.
func (p *problems) response(roleName string) (*logical.Response, error) {
	if len(p.malformed) > 0 {
		return logical.ErrorResponse("role %q: %s", roleName, joinItems(p.malformed)), nil
	}
	return nil, logical.CodedError(http.StatusForbidden, fmt.Sprintf("role %q does not allow: %s", roleName, joinItems(p.denied)))
}
