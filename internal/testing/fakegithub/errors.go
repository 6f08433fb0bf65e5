// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"fmt"
	"net/http"
)

// docsREST is the documentation_url GitHub puts on errors that are not about one endpoint.
const docsREST = "https://docs.github.com/rest"

// GitHub's words, used by more than one endpoint.
const (
	msgNotFound            = "Not Found"
	msgJWTDecode           = "A JSON web token could not be decoded"
	msgIntegrationNotFound = "Integration not found"
	msgBadCredentials      = "Bad credentials"
	msgRequiresAuth        = "Requires authentication"
	msgSuspended           = "This installation has been suspended"
	msgIATInvalid          = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
	msgEXPInvalid          = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
	msgEXPTooFar           = "'Expiration time' claim ('exp') is too far in the future"
	msgRepoInaccessible    = "There is at least one repository that does not exist or is not accessible to the parent installation."
	msgPermNotGranted      = "The permissions requested are not granted to this installation."
	msgPermLevel           = "The level of access for permissions requested are not granted to this installation."
	msgProblemsParsingJSON = "Problems parsing JSON"
	msgUserAgentRequired   = "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes."
)

// apiError is an answer in GitHub's error shape:
// {"message": ..., "documentation_url": ..., "status": "404"}, plus "errors" on some 422s.
type apiError struct {
	status  int
	message string
	docURL  string        // empty: the route's documentation page
	details []errorDetail // 422 only
	header  http.Header   // extra response headers, e.g. Retry-After
}

// errorDetail is one item of a 422 body's "errors" (validation-error in GitHub's schema).
type errorDetail struct {
	Resource string `json:"resource,omitempty"`
	Field    string `json:"field,omitempty"`
	Code     string `json:"code"`
	Message  string `json:"message,omitempty"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.status, e.message) }

// errorBody is what goes on the wire.
type errorBody struct {
	Message          string        `json:"message"`
	Errors           []errorDetail `json:"errors,omitempty"`
	DocumentationURL string        `json:"documentation_url"`
	Status           string        `json:"status"`
}

func newError(status int, message string) *apiError {
	return &apiError{status: status, message: message}
}

// generalError is an error whose documentation_url is GitHub's general REST page
// rather than the endpoint's (authentication failures, for example).
func generalError(status int, message string) *apiError {
	return &apiError{status: status, message: message, docURL: docsREST}
}

func errNotFound() *apiError { return newError(http.StatusNotFound, msgNotFound) }

func errJWT(message string) *apiError { return generalError(http.StatusUnauthorized, message) }

func errBadCredentials() *apiError { return generalError(http.StatusUnauthorized, msgBadCredentials) }

func errUnprocessable(message string) *apiError {
	return newError(http.StatusUnprocessableEntity, message)
}

// errInvalidRequest is GitHub's answer when a body does not match the endpoint's JSON schema.
func errInvalidRequest(format string, args ...any) *apiError {
	return errUnprocessable("Invalid request.\n\n" + fmt.Sprintf(format, args...))
}
