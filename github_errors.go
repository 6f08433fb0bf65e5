package githubapp

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

// githubError turns a failed GitHub call into an error that carries a fitting HTTP status through Vault: what was
// being done, what GitHub said, and what to check. hint, when not empty, replaces the generic advice.
func githubError(err error, doing, hint string) error {
	var gerr *github.Error
	if !errors.As(err, &gerr) {
		return fmt.Errorf("%s: %w", doing, err)
	}
	status, advice := http.StatusBadGateway, ""
	switch gerr.Kind {
	case github.KindBadCredentials:
		advice = "GitHub refused the App's credentials: check app_id, client_id and private_key at config " +
			"(the key may have been deleted from the App on GitHub)"
	case github.KindNotFound:
		status, advice = http.StatusNotFound, "check the installation and repositories of the role"
	case github.KindSuspended:
		status, advice = http.StatusForbidden, "the installation is suspended: an owner of the account must "+
			"unsuspend it on GitHub"
	case github.KindForbidden:
		status, advice = http.StatusForbidden, "GitHub refused the call: check the App's permissions and any IP allow list"
	case github.KindValidation:
		status = http.StatusBadRequest
	case github.KindRateLimited:
		status = http.StatusTooManyRequests
		advice = "GitHub's rate limit for the App is exhausted"
		if gerr.RetryAfter > 0 {
			advice += fmt.Sprintf(": retry after %s", gerr.RetryAfter.Round(time.Second))
		}
	case github.KindUnavailable:
		advice = "GitHub could not be reached or failed: check base_url, proxy_url, ca_certificate and " +
			"https://www.githubstatus.com"
	}
	if hint != "" {
		advice = hint
	}
	msg := fmt.Sprintf("%s: %s", doing, describe(gerr))
	if advice != "" {
		msg += " (" + advice + ")"
	}
	return logical.CodedError(status, msg)
}

// describe is GitHub's answer in a few words: its status and message, or the transport failure.
func describe(e *github.Error) string {
	switch {
	case e.StatusCode != 0 && e.Message != "":
		return fmt.Sprintf("GitHub answered %d: %s", e.StatusCode, e.Message)
	case e.StatusCode != 0:
		return fmt.Sprintf("GitHub answered %d", e.StatusCode)
	case e.Err != nil:
		return "GitHub unreachable: " + e.Err.Error()
	}
	return e.Kind.String()
}
