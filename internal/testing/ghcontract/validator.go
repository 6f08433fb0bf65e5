// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package ghcontract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// ErrNoOperation is returned (wrapped) when a request's method and path match no operation of the description.
var ErrNoOperation = errors.New("no operation in GitHub's description matches")

// ghesPrefix is where GitHub Enterprise Server serves the REST API. GitHub's GHES description puts it in the server
// URL; the Validator matches paths alone, so it strips the prefix from every request, whatever the edition.
const ghesPrefix = "/api/v3"

// basicErrorSchema names GitHub's generic error body: {"message", "documentation_url", "status"}.
const basicErrorSchema = "basic-error"

// Validator checks requests and responses against one edition of GitHub's description. ValidateRequest and
// ValidateResponse only return errors; Middleware and RoundTripper also record what they saw, for Violations and
// Checked. A Validator is safe for concurrent use.
type Validator struct {
	edition string
	*contract

	mu         sync.Mutex
	violations []string
	requests   int
	responses  int
}

// contract is the read-only part of a Validator: an edition's operations and the options to check them with.
type contract struct {
	router     routers.Router
	basicError *openapi3.Schema
	options    *openapi3filter.Options
}

// contracts holds one contract per edition, built on first use and shared by every Validator of that edition.
// Building one parses and validates the description twice (kin-openapi's router validates it again), which takes
// tens of milliseconds and several hundred under -race; tests create Validators by the dozen. Nothing changes a
// contract after it is built, so sharing it is safe.
var contracts = func() map[string]func() (*contract, error) {
	m := make(map[string]func() (*contract, error), len(Editions()))
	for _, edition := range Editions() {
		m[edition] = sync.OnceValues(func() (*contract, error) { return newContract(edition) })
	}
	return m
}()

// NewValidator returns a Validator for an edition's description, with no violations recorded.
func NewValidator(edition string) (*Validator, error) {
	build, ok := contracts[edition]
	if !ok {
		// Document's error names the known editions.
		_, err := Document(edition)
		return nil, err
	}
	c, err := build()
	if err != nil {
		return nil, err
	}
	return &Validator{edition: edition, contract: c}, nil
}

func newContract(edition string) (*contract, error) {
	doc, err := Load(edition)
	if err != nil {
		return nil, err
	}
	// GitHub's servers are https://api.github.com, or {protocol}://{hostname}/api/v3 for GHES. Tests talk to
	// httptest servers on 127.0.0.1, so the Validator matches on the path alone: without servers the legacy router
	// takes the request path as is, and stripPrefix has already removed /api/v3.
	doc.Servers = nil
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("ghcontract: building a router for the %s description: %w", edition, err)
	}
	basicError := doc.Components.Schemas[basicErrorSchema]
	if basicError == nil || basicError.Value == nil {
		return nil, fmt.Errorf("ghcontract: the %s description has no %q schema", edition, basicErrorSchema)
	}
	return &contract{
		router:     router,
		basicError: basicError.Value,
		options: &openapi3filter.Options{
			// The descriptions declare no security schemes today; should one appear, authentication is the
			// client's and the emulator's own business (JWTs and tokens are tested elsewhere), not the contract's.
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
			// A status the operation does not document is a violation, except undocumented error statuses,
			// which validateUndocumentedError handles before kin-openapi sees them.
			IncludeResponseStatus: true,
			ExcludeResponseBody:   false,
			// A body on GET or DELETE is a client bug GitHub would ignore; the contract should not.
			RejectWhenRequestBodyNotSpecified: true,
			// Validate, never rewrite: defaults must not be filled into what we check.
			SkipSettingDefaults: true,
			SchemaValidationOptions: []openapi3.SchemaValidationOption{
				// Without this a schema error quotes the whole schema and value, which is unreadable and would
				// copy installation tokens from response bodies into test logs.
				openapi3.DisableSchemaErrorDetails(),
			},
		},
	}, nil
}

// Edition returns the edition the Validator checks against.
func (v *Validator) Edition() string { return v.edition }

// ValidateRequest checks a request's method, path, parameters, headers and body against the description. body is
// the request's body (r.Body is neither read nor changed). A /api/v3 prefix is ignored.
func (v *Validator) ValidateRequest(r *http.Request, body []byte) error {
	input, err := v.requestInput(r, body)
	if err != nil {
		return err
	}
	if err := openapi3filter.ValidateRequest(r.Context(), input); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	return nil
}

// ValidateResponse checks a response's status, headers and body against the operation that r matches. Error
// statuses the operation does not document are checked against GitHub's basic-error schema, because GitHub sends
// 401, 403, 404, 422, 429 and 5xx on operations whose description lists none of them.
func (v *Validator) ValidateResponse(r *http.Request, status int, header http.Header, body []byte) error {
	input, err := v.requestInput(r, nil)
	if err != nil {
		return err
	}
	if header == nil {
		header = http.Header{}
	}
	responses := input.Route.Operation.Responses
	if responses.Status(status) == nil && responses.Default() == nil && status >= 400 {
		return v.validateUndocumentedError(status, header, body)
	}
	output := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: input,
		Status:                 status,
		Header:                 header,
		Options:                v.options,
	}
	output.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(r.Context(), output); err != nil {
		return err
	}
	return nil
}

// requestInput matches r to an operation and builds kin-openapi's input from a copy of r, so the caller's request
// keeps its URL and body.
func (v *Validator) requestInput(r *http.Request, body []byte) (*openapi3filter.RequestValidationInput, error) {
	req := r.Clone(r.Context())
	req.URL.Path = stripPrefix(req.URL.Path)
	req.URL.RawPath = ""
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	if len(body) == 0 {
		req.Body = http.NoBody
	}
	route, pathParams, err := v.router.FindRoute(req)
	if err != nil {
		return nil, fmt.Errorf("%w %s %s: %w", ErrNoOperation, r.Method, r.URL.Path, err)
	}
	return &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: pathParams,
		Route:      route,
		Options:    v.options,
	}, nil
}

// validateUndocumentedError checks an error response whose status the operation does not document. GitHub sends
// these as basic-error JSON. The one exception is a 5xx without a JSON body: GitHub's edge answers 502, 503 and 504
// with HTML or nothing, and clients must cope with that.
func (v *Validator) validateUndocumentedError(status int, header http.Header, body []byte) error {
	contentType := header.Get("Content-Type")
	mediaType, _, err := mime.ParseMediaType(contentType)
	if err != nil || mediaType != "application/json" {
		if status >= 500 {
			return nil
		}
		return fmt.Errorf("response status %d is not documented for this operation and its Content-Type %q is not "+
			"application/json, as GitHub's error bodies are", status, contentType)
	}
	var value any
	if err := json.Unmarshal(body, &value); err != nil {
		return fmt.Errorf("response status %d: body is not JSON: %w", status, err)
	}
	opts := append([]openapi3.SchemaValidationOption{openapi3.VisitAsResponse()}, v.options.SchemaValidationOptions...)
	if err := v.basicError.VisitJSON(value, opts...); err != nil {
		return fmt.Errorf("response status %d is not documented for this operation, so its body must match %s: %w",
			status, basicErrorSchema, err)
	}
	if object, _ := value.(map[string]any); object["message"] == nil {
		// basic-error requires nothing, yet every GitHub error body carries a message, and clients show it.
		return fmt.Errorf("response status %d: error body has no \"message\"", status)
	}
	return nil
}

// stripPrefix removes the GHES /api/v3 prefix from a path.
func stripPrefix(path string) string {
	if path == ghesPrefix {
		return "/"
	}
	if rest, ok := strings.CutPrefix(path, ghesPrefix+"/"); ok {
		return "/" + rest
	}
	return path
}

// Violations returns what Middleware and RoundTripper found, in order, one line each:
// "GET /app -> 200: response body doesn't match schema ...".
func (v *Validator) Violations() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.violations...)
}

// Checked returns how many requests and responses Middleware and RoundTripper have validated against an operation.
// Tests assert on it so that a contract test cannot pass by checking nothing.
func (v *Validator) Checked() (requests, responses int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.requests, v.responses
}

// record validates one exchange and keeps the outcome. status 0 means no response was delivered (a transport error,
// or a client that left before the handler answered). requireOperation makes a request that matches no operation a
// violation even when the answer is 404.
func (v *Validator) record(r *http.Request, reqBody []byte, status int, header http.Header, respBody []byte,
	requireOperation bool) {
	var found []string
	requestErr := v.ValidateRequest(r, reqBody)
	unmatched := errors.Is(requestErr, ErrNoOperation)
	switch {
	case unmatched && status == http.StatusNotFound && !requireOperation:
		// An emulator answering 404 for a route it does not know is what GitHub does.
		return
	case requestErr != nil:
		found = append(found, requestErr.Error())
	}

	checkedResponse := false
	if !unmatched && status != 0 {
		checkedResponse = true
		if err := v.ValidateResponse(r, status, header, respBody); err != nil {
			found = append(found, err.Error())
		}
	}

	where := fmt.Sprintf("%s %s -> %d", r.Method, r.URL.Path, status)
	if status == 0 {
		where = fmt.Sprintf("%s %s -> no response", r.Method, r.URL.Path)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !unmatched {
		v.requests++
	}
	if checkedResponse {
		v.responses++
	}
	for _, f := range found {
		v.violations = append(v.violations, where+": "+f)
	}
}
