// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// operation is what the engine was doing when a GitHub call failed; advice depends on it.
type operation int

const (
	opAny    operation = iota // in adviceTable: every operation
	opVerify                  // a config write's GET /app: every failure is the operator's to fix (400)
	opLookup                  // finding an owner's installation
	opMint                    // creating a token
	opList                    // listing installations
)

// adviceTable maps a failed GitHub call to the status Vault returns and what to check. The first row whose kind,
// operation and message fragment match wins. In check, {issuer}, {fingerprint} and {owner} are replaced by the
// values of the call (adviceArgs).
var adviceTable = []struct {
	kind   github.Kind
	op     operation
	match  string // a fragment of GitHub's message; "" matches any
	status int
	check  string
}{
	{github.KindBadCredentials, opVerify, "", http.StatusBadRequest,
		"check that {issuer} is the App's and that private_key is one of its active keys; fingerprint {fingerprint}"},
	{github.KindBadCredentials, opAny, "", http.StatusBadGateway,
		"GitHub refused the App's credentials: check app_id, client_id and private_key at config " +
			"(the key may have been deleted from the App on GitHub)"},
	{github.KindUnavailable, opVerify, "", http.StatusBadRequest,
		"check base_url, proxy_url, ca_certificate and the network from Vault to GitHub"},
	{github.KindUnavailable, opAny, "", http.StatusBadGateway,
		"GitHub could not be reached or failed: check base_url, proxy_url, ca_certificate and https://www.githubstatus.com"},
	{github.KindNotFound, opVerify, "", http.StatusBadRequest,
		"check base_url: GitHub Enterprise Server needs https://HOST/api/v3"},
	{github.KindNotFound, opLookup, "", http.StatusNotFound,
		"check that the App is installed on {owner} (LIST installations shows where it is)"},
	{github.KindNotFound, opMint, "", http.StatusNotFound,
		"check the role's installation_id (LIST installations shows the App's installations)"},
	{github.KindNotFound, opAny, "", http.StatusNotFound, "check the installation and repositories of the role"},
	{github.KindSuspended, opAny, "", http.StatusForbidden,
		"the installation is suspended: an owner of the account must unsuspend it on GitHub"},
	{github.KindForbidden, opVerify, "", http.StatusBadRequest, "check the App's settings and any IP allow list"},
	{github.KindForbidden, opAny, "", http.StatusForbidden,
		"GitHub refused the call: check the App's permissions and any IP allow list"},
	{github.KindValidation, opMint, "repository", http.StatusBadRequest,
		"check the role's repositories and repository_ids against what the installation can reach"},
	{github.KindValidation, opMint, "permissions", http.StatusBadRequest,
		"check the role's permissions against those granted to the installation in the App's settings"},
	{github.KindValidation, opAny, "", http.StatusBadRequest, ""},
	{github.KindRateLimited, opAny, "", http.StatusTooManyRequests, "GitHub's rate limit for the App is exhausted"},
	{github.KindOther, opVerify, "", http.StatusBadRequest, ""},
	{github.KindOther, opAny, "", http.StatusBadGateway, ""},
}

// adviceArgs are the values the advice of a failed call may name.
type adviceArgs struct {
	issuer, fingerprint, owner string
}

// githubError turns a failed GitHub call into an error that carries a fitting HTTP status through Vault: what was
// being done, what GitHub said, and what to check.
func githubError(err error, op operation, doing string, args adviceArgs) error {
	var gerr *github.Error
	if !errors.As(err, &gerr) {
		if f := signerFailure(err, doing); f != nil {
			if op == opVerify {
				f.status = http.StatusBadRequest
			}
			return f
		}
		return fmt.Errorf("%s: %w", doing, err)
	}
	status, check := http.StatusBadGateway, ""
	for _, row := range adviceTable {
		if row.kind == gerr.Kind && (row.op == opAny || row.op == op) && strings.Contains(gerr.Message, row.match) {
			status, check = row.status, row.check
			break
		}
	}
	check = strings.NewReplacer("{issuer}", args.issuer, "{fingerprint}", args.fingerprint,
		"{owner}", fmt.Sprintf("%q", args.owner)).Replace(check)
	if gerr.Kind == github.KindRateLimited {
		// A refusal by the mount's Gate already names the limit and its end.
		if gerr.StatusCode == 0 {
			check = ""
		} else if gerr.Limit != "" {
			check = fmt.Sprintf("GitHub's %s rate limit for the App is exhausted", gerr.Limit)
		}
		if gerr.RetryAfter > 0 {
			check = strings.TrimPrefix(check+fmt.Sprintf(": retry after %s", gerr.RetryAfter.Round(time.Second)), ": ")
		}
	}
	msg := fmt.Sprintf("%s: %s", doing, describe(gerr))
	if check != "" {
		msg += " (" + check + ")"
	}
	f := &failure{status: status, kind: kindLabel(gerr.Kind), msg: msg}
	if gerr.Kind == github.KindRateLimited {
		f.retryAfter = gerr.RetryAfter
	}
	return f
}

// failure is a failed GitHub call as the engine reports it: an HTTP status that survives the plugin boundary (it is
// a logical.HTTPCodedError), and for a rate limit, when to come back.
type failure struct {
	status     int
	kind       string // for metrics: GitHub's kind of failure, or what the engine refused (over_grant, ...)
	msg        string
	retryAfter time.Duration
}

func (f *failure) Error() string { return f.msg }
func (f *failure) Code() int     { return f.status }

// failureKind names the kind of a token request's failure, for metrics.
func failureKind(err error) string {
	var f *failure
	var coded logical.HTTPCodedError
	switch {
	case errors.As(err, &f):
		return f.kind
	case errors.As(err, &coded) && coded.Code() == http.StatusForbidden:
		return "denied"
	case errors.As(err, &coded) && coded.Code() < 500:
		return "invalid_request"
	default:
		return "internal"
	}
}

// failed returns a handler's error; a rate limit's response also carries a Retry-After header, which Vault passes to
// clients when the mount's allowed_response_headers lists it.
func failed(err error) (*logical.Response, error) {
	var f *failure
	if errors.As(err, &f) && f.retryAfter > 0 {
		secs := strconv.Itoa(int(math.Ceil(f.retryAfter.Seconds())))
		return &logical.Response{Headers: map[string][]string{"Retry-After": {secs}}}, err
	}
	return nil, err
}

// describe is GitHub's answer in a few words: its status and message, or the transport failure, and GitHub's request
// ID, which a support ticket to GitHub can name.
func describe(e *github.Error) string {
	var s string
	switch {
	case e.StatusCode != 0 && e.Message != "":
		s = fmt.Sprintf("GitHub answered %d: %s", e.StatusCode, e.Message)
	case e.StatusCode != 0:
		s = fmt.Sprintf("GitHub answered %d", e.StatusCode)
	case e.Message != "":
		s = e.Message
	case e.Err != nil:
		s = "GitHub unreachable: " + e.Err.Error()
	default:
		s = e.Kind.String()
	}
	if e.RequestID != "" {
		s += fmt.Sprintf(" [GitHub request ID %s]", e.RequestID)
	}
	return s
}
