// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"cmp"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/signer"
)

const (
	configStoragePath = "config"

	// maxRequestTimeout bounds request_timeout: Vault itself gives a request 90 seconds by default.
	maxRequestTimeout = 5 * time.Minute
	// verifyTimeout bounds the GET /app made by a verified config write.
	verifyTimeout = 30 * time.Second
	// maxConcurrentRequests is GitHub's limit on an App's concurrent requests.
	maxConcurrentRequests = 100
)

// clientIDPattern matches GitHub App client IDs such as Iv1.0123456789abcdef and Iv23liAbCdEf0123456789.
var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$`)

// githubConfig is the stored config. PrivateKey is the PEM as written; the storage entry is seal-wrapped.
type githubConfig struct {
	AppID int64 `json:"app_id,omitempty"`
	// AppIDLearned marks an App ID learned from GitHub rather than written by the operator: it is not held against
	// a new client_id, which may name another App.
	AppIDLearned      bool          `json:"app_id_learned,omitempty"`
	ClientID          string        `json:"client_id,omitempty"`
	PrivateKey        string        `json:"private_key"`
	BaseURL           string        `json:"base_url"`
	AllowInsecureHTTP bool          `json:"allow_insecure_http,omitempty"`
	CACertificate     string        `json:"ca_certificate,omitempty"`
	ProxyURL          string        `json:"proxy_url,omitempty"`
	RequestTimeout    time.Duration `json:"request_timeout"`
	// MaxConcurrentRequests bounds the mount's calls in flight at GitHub; 0 means github.DefaultMaxConcurrent.
	MaxConcurrentRequests int    `json:"max_concurrent_requests,omitempty"`
	Fingerprint           string `json:"private_key_fingerprint"`
	AppSlug               string `json:"app_slug,omitempty"`
	AppName               string `json:"app_name,omitempty"`
	// NoreplyDomain overrides the domain of the App's commit email (bot_identity.go); "" means GitHub's for BaseURL.
	NoreplyDomain string `json:"noreply_domain,omitempty"`
	// RepositoryListTTL is how long an installation's repository list is used (repository_cache.go); 0 means
	// defaultRepositoryListTTL.
	RepositoryListTTL time.Duration `json:"repository_list_ttl,omitempty"`
	// RateLimitRefresh is how often, at most, an installation's budget is read (installation_budget.go); 0 means
	// defaultRateLimitRefresh.
	RateLimitRefresh time.Duration `json:"rate_limit_refresh,omitempty"`

	// Signer is what signs the App JWT (signer_config.go): "" or key (PrivateKey), awskms or pkcs11.
	Signer             string `json:"signer,omitempty"`
	KMSKeyID           string `json:"kms_key_id,omitempty"`
	AWSRegion          string `json:"aws_region,omitempty"`
	AWSEndpoint        string `json:"aws_endpoint,omitempty"`
	AWSAccessKeyID     string `json:"aws_access_key_id,omitempty"`
	AWSSecretAccessKey string `json:"aws_secret_access_key,omitempty"`
	PKCS11Library      string `json:"pkcs11_library,omitempty"`
	PKCS11TokenLabel   string `json:"pkcs11_token_label,omitempty"`
	PKCS11KeyLabel     string `json:"pkcs11_key_label,omitempty"`
	PKCS11KeyID        string `json:"pkcs11_key_id,omitempty"`
	PKCS11PIN          string `json:"pkcs11_pin,omitempty"`

	// parsedKey is PrivateKey as checked by the write that gave it, so that the write parses it once. Never stored.
	parsedKey *rsa.PrivateKey
	// signer is the KMS or HSM signer opened for this config by its write or its client. Never stored.
	signer signer.Signer
}

// issuer names what the JWT's issuer is, for messages.
func (c *githubConfig) issuer() string {
	if c.ClientID != "" {
		return fmt.Sprintf("client_id %q", c.ClientID)
	}
	return fmt.Sprintf("app_id %d", c.AppID)
}

const (
	pathConfigHelpSynopsis    = "Configure the GitHub App whose installation tokens this engine mints."
	pathConfigHelpDescription = `
Write the App's ID or client ID and its private key here. The key is stored seal-wrapped and never returned; a read
shows its fingerprint, which GitHub shows beside the App's keys. By default a write first calls GitHub (GET /app)
with the new key and saves nothing if GitHub refuses it.

To rotate the key: generate a new key in the App's settings on GitHub, write it here, then delete the old key on
GitHub. GitHub accepts several keys at once, so no token request fails in between.

For GitHub Enterprise Server, set base_url to https://HOST/api/v3 and, with a private CA, ca_certificate.

The stored key is only used toward the destination it was saved with: a write that changes base_url, proxy_url or
ca_certificate must give private_key too (with signer=awskms, aws_secret_access_key; with signer=pkcs11,
pkcs11_pin).

With signer=awskms or signer=pkcs11 the App's key stays in AWS KMS or an HSM and the engine never holds it; see the
signer and kms_*, aws_* and pkcs11_* fields.
`
)

// appFields are the fields of an App's config, at config and at apps/<name>.
func appFields() map[string]*framework.FieldSchema {
	fields := map[string]*framework.FieldSchema{
		"app_id": {
			Type:        framework.TypeInt64,
			Description: "The App's numeric ID, shown on the App's settings page. At least one of app_id and client_id is required.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "App ID",
			},
		},
		"client_id": {
			Type:        framework.TypeString,
			Description: "The App's client ID (Iv1.… or Iv23…). When set, it is the JWT issuer, as GitHub recommends; otherwise app_id is.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Client ID",
			},
		},
		"private_key": {
			Type:        framework.TypeString,
			Description: "The App's RSA private key in PEM, PKCS#1 (RSA PRIVATE KEY) or PKCS#8 (PRIVATE KEY). It is write-only: it is never returned or logged.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name:      "Private key",
				Sensitive: true,
			},
		},
		"base_url": {
			Type:        framework.TypeString,
			Default:     github.DefaultBaseURL,
			Description: "The GitHub API's base URL: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server. A trailing slash is optional. Only https:// is accepted, except on a loopback host or with allow_insecure_http. Changing it requires private_key in the same write (with signer=awskms, aws_secret_access_key; with signer=pkcs11, pkcs11_pin).",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Base URL",
			},
		},
		"allow_insecure_http": {
			Type:        framework.TypeBool,
			Description: "Whether to accept an http:// base_url on a host other than a loopback address. The App JWT and every token then travel in cleartext; use it only on a network you trust.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Allow insecure HTTP",
			},
		},
		"ca_certificate": {
			Type:        framework.TypeString,
			Description: "A PEM bundle of CA certificates to trust for TLS to GitHub, for GitHub Enterprise Server behind a private CA. When set, only these CAs are trusted. Changing it requires private_key in the same write (with signer=awskms, aws_secret_access_key; with signer=pkcs11, pkcs11_pin).",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "CA certificate",
			},
		},
		"proxy_url": {
			Type:        framework.TypeString,
			Description: "An HTTP(S) proxy for calls to GitHub. When unset, the standard proxy environment variables of the Vault server apply. Changing it requires private_key in the same write (with signer=awskms, aws_secret_access_key; with signer=pkcs11, pkcs11_pin).",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Proxy URL",
			},
		},
		"request_timeout": {
			Type:        framework.TypeDurationSecond,
			Default:     int(github.DefaultRequestTimeout.Seconds()),
			Description: "How long one attempt of a call to GitHub may take before it is abandoned and retried, from 1s to 5m.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Request timeout",
			},
		},
		"max_concurrent_requests": {
			Type:        framework.TypeInt,
			Default:     github.DefaultMaxConcurrent,
			Description: "The most calls to GitHub this mount has in flight at once (mints, lookups and revocations together), from 1 to 100. Further calls wait in arrival order, no longer than their request's deadline. GitHub allows an App 100 concurrent requests, shared with its other users.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Max concurrent requests",
			},
		},
		"noreply_domain": {
			Type:        framework.TypeString,
			Description: "The domain of the App's commit email in token responses (commit_email, <bot_user_id>+<slug>[bot]@<noreply_domain>). Leave it empty for GitHub's: users.noreply.github.com on github.com, users.noreply.SUBDOMAIN.ghe.com on GHE.com, users.noreply.HOST on GitHub Enterprise Server. Set it when your GitHub Enterprise Server uses another no-reply domain.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "No-reply domain",
			},
		},
		"repository_list_ttl": {
			Type:        framework.TypeDurationSecond,
			Default:     int(defaultRepositoryListTTL.Seconds()),
			Description: "How long the engine uses an installation's repository list (read from GitHub for roles with repository_patterns, and to hold token writes on roles without a repository limit to GitHub's spelling) before reading it again, at least 1s. A repository created at GitHub is covered by matching patterns after at most this long.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Repository list TTL",
			},
		},
		"rate_limit_refresh": {
			Type:        framework.TypeDurationSecond,
			Default:     int(defaultRateLimitRefresh.Seconds()),
			Description: "How often, at most, the engine reads the rate limit left to each of the App's installations (GET /rate_limit, which GitHub does not count), for roles with several Apps that pick by budget; at least 1s. It is read in the background with a token the engine minted, never on a mint's path.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Rate limit refresh",
			},
		},
		"verify": {
			Type:        framework.TypeBool,
			Default:     true,
			Description: "Whether to call GitHub (GET /app) with the new settings before saving them. When GitHub refuses them, nothing is saved.",
			DisplayAttrs: &framework.DisplayAttributes{
				Name: "Verify",
			},
		},
	}
	maps.Copy(fields, signerFields())
	return fields
}

func pathConfig(b *backend) *framework.Path {
	p := &framework.Path{
		Pattern: "config",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
		},
		Fields:         appFields(),
		ExistenceCheck: b.pathConfigExists,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.pathConfigRead,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationSuffix: "configuration",
				},
			},
			logical.CreateOperation: &framework.PathOperation{
				Callback:                    b.pathConfigWrite,
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationVerb: "configure",
				},
			},
			logical.UpdateOperation: &framework.PathOperation{
				Callback:                    b.pathConfigWrite,
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationVerb: "configure",
				},
			},
			logical.DeleteOperation: &framework.PathOperation{
				Callback: b.pathConfigDelete,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationSuffix: "configuration",
				},
			},
		},
		HelpSynopsis:    pathConfigHelpSynopsis,
		HelpDescription: strings.TrimSpace(pathConfigHelpDescription),
	}
	return p
}

func (b *backend) pathConfigExists(ctx context.Context, req *logical.Request, _ *framework.FieldData) (bool, error) {
	cfg, err := getConfig(ctx, req.Storage)
	return cfg != nil, err
}

func (b *backend) pathConfigRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	return b.readApp(ctx, req.Storage, defaultAppName)
}

func (b *backend) pathConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return b.writeApp(ctx, req.Storage, defaultAppName, d)
}

func (b *backend) pathConfigDelete(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	return b.deleteApp(ctx, req.Storage, defaultAppName)
}

// readApp answers a read of an App's config: every field but its secrets; nil when the App is not configured.
func (b *backend) readApp(ctx context.Context, s logical.Storage, name string) (*logical.Response, error) {
	cfg, err := getAppConfig(ctx, s, name)
	if err != nil || cfg == nil {
		return nil, err
	}
	data := map[string]any{
		"app_id":                  cfg.AppID,
		"client_id":               cfg.ClientID,
		"base_url":                cfg.BaseURL,
		"allow_insecure_http":     cfg.AllowInsecureHTTP,
		"ca_certificate":          cfg.CACertificate,
		"proxy_url":               redactURL(cfg.ProxyURL),
		"request_timeout":         int64(cfg.RequestTimeout.Seconds()),
		"max_concurrent_requests": cmp.Or(cfg.MaxConcurrentRequests, github.DefaultMaxConcurrent),
		"private_key_fingerprint": cfg.Fingerprint,
		"app_slug":                cfg.AppSlug,
		"app_name":                cfg.AppName,
		"noreply_domain":          cfg.NoreplyDomain,
		"repository_list_ttl":     int64(cfg.repositoryListTTL().Seconds()),
		"rate_limit_refresh":      int64(cfg.rateLimitRefresh().Seconds()),
	}
	maps.Copy(data, cfg.signerReadData())
	return &logical.Response{Data: data}, nil
}

// writeApp creates or updates an App's config from the fields a write gave.
func (b *backend) writeApp(ctx context.Context, s logical.Storage, name string, d *framework.FieldData) (*logical.Response, error) {
	// App writes are serialised so that two partial updates cannot lose each other's fields. Mints go on with the
	// old client meanwhile, even while GitHub is asked about the new config.
	b.configMu.Lock()
	defer b.configMu.Unlock()

	old, err := getAppConfig(ctx, s, name)
	if err != nil {
		return nil, err
	}
	cfg := &githubConfig{BaseURL: github.DefaultBaseURL, RequestTimeout: github.DefaultRequestTimeout}
	if old != nil {
		c := *old
		cfg = &c
	}
	problems := applyConfigFields(cfg, d)
	if secret := cfg.signerSecret(); secret == "" || !given(d, secret) {
		problems = append(problems, movedDestination(old, cfg)...)
	}
	if len(problems) > 0 {
		return logical.ErrorResponse(strings.Join(problems, "; ")), nil
	}

	resp := &logical.Response{}
	sg, err := b.openSigner(ctx, cfg)
	if err != nil {
		refusal, err := signerRefusal(err)
		if refusal != "" {
			return logical.ErrorResponse(refusal), nil
		}
		return failed(err)
	}
	if sg != nil {
		// Whatever opened for this write is released with it; the client opens its own (getClient).
		defer sg.Close()
		fp, err := signer.Fingerprint(sg.Public())
		if err != nil {
			return nil, fmt.Errorf("fingerprint of the signer's key: %w", err)
		}
		cfg.Fingerprint, cfg.signer = fp, sg
	}
	if cfg.signerKind() == signer.KindAWSKMS && cfg.AWSAccessKeyID == "" {
		resp.AddWarning("signer=awskms without aws_access_key_id: the AWS SDK's default credentials of the Vault " +
			"server sign, and a change of base_url, proxy_url or ca_certificate needs no secret")
	}
	if cfg.insecure() {
		resp.AddWarning(fmt.Sprintf("allow_insecure_http: %s is not https://: the App JWT and every token "+
			"travel to it in cleartext", quoted("base_url", cfg.BaseURL)))
	}
	if d.Get("verify").(bool) {
		if refusal := b.verify(ctx, cfg); refusal != "" {
			return logical.ErrorResponse(refusal), nil
		}
	} else {
		if old == nil || old.ClientID != cfg.ClientID || old.AppID != cfg.AppID || old.Fingerprint != cfg.Fingerprint || old.BaseURL != cfg.BaseURL {
			cfg.AppSlug, cfg.AppName = "", ""
		}
		resp.AddWarning("verify=false: the config was saved without asking GitHub whether it accepts it")
	}

	if err := b.storeApp(ctx, s, name, cfg); err != nil {
		return nil, err
	}
	if len(resp.Warnings) == 0 {
		return nil, nil
	}
	return resp, nil
}

// verify asks GitHub (GET /app) whether it accepts the config, and learns the App's ID, slug and name. It returns
// why the config is refused, for the operator; "" when GitHub accepted it.
func (b *backend) verify(ctx context.Context, cfg *githubConfig) string {
	client, err := b.newClient(cfg, nil)
	if err != nil {
		return "invalid config: " + err.Error()
	}
	defer client.CloseIdleConnections()
	vctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	app, err := client.App(vctx)
	if err != nil {
		doing := fmt.Sprintf("GitHub refused the config at %s, nothing was saved", shown(cfg.BaseURL))
		return githubError(err, opVerify, doing, adviceArgs{issuer: cfg.issuer(), fingerprint: cfg.Fingerprint}).Error()
	}
	// An App ID the operator wrote must be the App's; one learned from GitHub before belongs to the previous
	// identity and is replaced.
	if cfg.AppID != 0 && !cfg.AppIDLearned && app.ID != cfg.AppID {
		return fmt.Sprintf("app_id %d does not match the App that %s and the key authenticate as (ID %d, %q): "+
			"correct app_id or leave it out; nothing was saved", cfg.AppID, cfg.issuer(), app.ID, app.Slug)
	}
	cfg.AppIDLearned = cfg.AppIDLearned || cfg.AppID == 0
	cfg.AppID, cfg.AppSlug, cfg.AppName = app.ID, app.Slug, app.Name
	return ""
}

// storeApp saves an App's config with its revocation target and replaces the App's client. The target is written
// first: an extra target is harmless, a config whose tokens could not be revoked after a restart is not.
func (b *backend) storeApp(ctx context.Context, s logical.Storage, name string, cfg *githubConfig) error {
	if err := b.putRevocationTarget(ctx, s, cfg); err != nil {
		return err
	}
	entry, err := logical.StorageEntryJSON(appStoragePath(name), cfg)
	if err != nil {
		return fmt.Errorf("encoding the config of App %q: %w", name, err)
	}
	b.lock.Lock()
	defer b.lock.Unlock()
	err = s.Put(ctx, entry)
	b.resetLocked(name)
	if err != nil {
		return fmt.Errorf("storing the config of App %q: %w", name, err)
	}
	return nil
}

// applyConfigFields copies the fields given in a write onto cfg and validates the result. It returns one message
// per problem, each naming the field, what was given and what is accepted.
func applyConfigFields(cfg *githubConfig, d *framework.FieldData) []string {
	var problems []string
	if v, ok := d.GetOk("app_id"); ok {
		id := v.(int64)
		if id < 0 {
			problems = append(problems, fmt.Sprintf("app_id %d is invalid: expected the App's positive numeric ID, or 0 to unset it", id))
		}
		cfg.AppID, cfg.AppIDLearned = id, false
	}
	if v, ok := d.GetOk("client_id"); ok {
		id := strings.TrimSpace(v.(string))
		if id != "" && !clientIDPattern.MatchString(id) {
			problems = append(problems, fmt.Sprintf("%s is invalid: expected the App's client ID, such as Iv1.0123456789abcdef or Iv23li0123456789abcd", quoted("client_id", id)))
		}
		// A new client ID may name another App: an App ID learned for the old one no longer holds.
		if id != cfg.ClientID && cfg.AppIDLearned {
			cfg.AppID, cfg.AppIDLearned = 0, false
		}
		cfg.ClientID = id
	}
	if cfg.AppID == 0 && cfg.ClientID == "" {
		problems = append(problems, "app_id or client_id is required: give the App's numeric ID, its client ID, or both")
	}
	problems = append(problems, applySignerFields(cfg, d)...)
	if v, ok := d.GetOk("base_url"); ok {
		raw := v.(string)
		u, err := github.NormalizeBaseURL(raw)
		switch {
		case err != nil && quotable(raw):
			problems = append(problems, err.Error())
		case err != nil:
			// The error may quote the value.
			problems = append(problems, fmt.Sprintf("%s is not an http(s) URL: expected %s or https://HOST/api/v3 "+
				"for GitHub Enterprise Server", quoted("base_url", raw), github.DefaultBaseURL))
		}
		cfg.BaseURL = u
	}
	if v, ok := d.GetOk("allow_insecure_http"); ok {
		cfg.AllowInsecureHTTP = v.(bool)
	}
	if cfg.BaseURL != "" && !cfg.AllowInsecureHTTP && cfg.insecure() {
		problems = append(problems, fmt.Sprintf("%s is not https://: the App JWT and every token would travel "+
			"in cleartext; use https://, or set allow_insecure_http=true on a network you trust", quoted("base_url", cfg.BaseURL)))
	}
	if v, ok := d.GetOk("ca_certificate"); ok {
		pemText := strings.TrimSpace(v.(string))
		if pemText != "" {
			if err := checkCABundle(pemText); err != nil {
				problems = append(problems, "ca_certificate: "+err.Error())
			}
			pemText += "\n"
		}
		cfg.CACertificate = pemText
	}
	if v, ok := d.GetOk("proxy_url"); ok {
		p := strings.TrimSpace(v.(string))
		if p != "" {
			if _, err := github.ParseProxyURL(p); err != nil {
				problems = append(problems, fmt.Sprintf("%s is invalid: expected http://HOST:PORT, https://HOST:PORT or socks5://HOST:PORT", quoted("proxy_url", redactURL(p))))
			}
		}
		cfg.ProxyURL = p
	}
	if v, ok := d.GetOk("max_concurrent_requests"); ok {
		n := v.(int)
		if n < 1 || n > maxConcurrentRequests {
			problems = append(problems, fmt.Sprintf("max_concurrent_requests %d is out of range: expected 1 to %d (GitHub allows an App %d concurrent requests)", n, maxConcurrentRequests, maxConcurrentRequests))
		}
		cfg.MaxConcurrentRequests = n
	}
	if v, ok := d.GetOk("noreply_domain"); ok {
		domain, problem := checkNoreplyDomain(v.(string))
		if problem != "" {
			problems = append(problems, problem)
		}
		cfg.NoreplyDomain = domain
	}
	if v, ok := d.GetOk("request_timeout"); ok {
		t := time.Duration(v.(int)) * time.Second
		if t < time.Second || t > maxRequestTimeout {
			problems = append(problems, fmt.Sprintf("request_timeout %s is out of range: expected 1s to %s", t, maxRequestTimeout))
		}
		cfg.RequestTimeout = t
	}
	if v, ok := d.GetOk("repository_list_ttl"); ok {
		t := time.Duration(v.(int)) * time.Second
		if t < time.Second {
			problems = append(problems, fmt.Sprintf("repository_list_ttl %s is too short: expected at least 1s, such as 5m", t))
		}
		cfg.RepositoryListTTL = t
	}
	if v, ok := d.GetOk("rate_limit_refresh"); ok {
		t := time.Duration(v.(int)) * time.Second
		if t < time.Second {
			problems = append(problems, fmt.Sprintf("rate_limit_refresh %s is too short: expected at least 1s, such as 60s", t))
		}
		cfg.RateLimitRefresh = t
	}
	return problems
}

// rateLimitRefresh is how often, at most, an installation's budget is read.
func (c *githubConfig) rateLimitRefresh() time.Duration {
	return cmp.Or(c.RateLimitRefresh, defaultRateLimitRefresh)
}

// repositoryListTTL is how long an installation's repository list is used.
func (c *githubConfig) repositoryListTTL() time.Duration {
	return cmp.Or(c.RepositoryListTTL, defaultRepositoryListTTL)
}

// checkCABundle accepts PEM holding only certificates, at least one.
func checkCABundle(pemText string) error {
	rest := []byte(pemText)
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("holds a %q PEM block: expected only CERTIFICATE blocks", block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("certificate %d cannot be parsed: %w", n+1, err)
		}
		n++
	}
	if n == 0 || strings.TrimSpace(string(rest)) != "" {
		return errors.New("expected one or more PEM CERTIFICATE blocks and nothing else")
	}
	return nil
}

// movedDestination lists the fields of a write that change where the stored key would be used. Such a write must
// carry the key: whoever may update config must not be able to make the engine sign an App JWT for a server of their
// choosing without knowing the key.
func movedDestination(old, cfg *githubConfig) []string {
	secret := cfg.signerSecret()
	if secret == "" {
		// The SDK's default AWS credentials sign: there is no secret a writer could be asked for.
		return nil
	}
	if old == nil {
		return nil
	}
	var problems []string
	for _, f := range []struct {
		name     string
		old, new string
	}{
		{"base_url", old.BaseURL, cfg.BaseURL},
		{"proxy_url", old.ProxyURL, cfg.ProxyURL},
		{"ca_certificate", old.CACertificate, cfg.CACertificate},
	} {
		if f.old != f.new {
			problems = append(problems, fmt.Sprintf("%s changes where the App's key is used: give %s in the "+
				"same write (the stored key is only used toward the destination it was saved with)", f.name, secret))
		}
	}
	return problems
}

// insecure reports an http:// base URL on a host other than a loopback address (the emulator, tests), or one that
// cannot be parsed: what cannot be read is not known to be safe.
func (c *githubConfig) insecure() bool {
	u, err := url.Parse(c.BaseURL)
	if err != nil {
		return true
	}
	if u.Scheme != "http" {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// redactURL hides a password in a proxy URL. A URL whose user info the parser did not find (user:password@host
// without a scheme parses as scheme "user") is not shown at all when it holds an '@'.
func redactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	switch {
	case err == nil && u.User != nil && u.Host != "":
		return u.Redacted()
	case strings.Contains(raw, "@"):
		return "(a URL with user info, not shown)"
	case err != nil:
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// given reports whether a write gave a field.
func given(d *framework.FieldData, name string) bool {
	_, ok := d.GetOk(name)
	return ok
}

// getConfig reads the stored config of the default App; nil when there is none.
func getConfig(ctx context.Context, s logical.Storage) (*githubConfig, error) {
	return getAppConfig(ctx, s, defaultAppName)
}

// getAppConfig reads an App's stored config; nil when there is none.
func getAppConfig(ctx context.Context, s logical.Storage, name string) (*githubConfig, error) {
	entry, err := s.Get(ctx, appStoragePath(name))
	if err != nil {
		return nil, fmt.Errorf("reading the config of App %q: %w", name, err)
	}
	if entry == nil {
		return nil, nil
	}
	var cfg githubConfig
	if err := entry.DecodeJSON(&cfg); err != nil {
		return nil, fmt.Errorf("decoding the config of App %q: %w", name, err)
	}
	return &cfg, nil
}
