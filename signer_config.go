// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/signer"
)

// The config's signer (SPEC 3.8): the App's key held by the engine (signer=key), or kept in AWS KMS or an HSM, where
// the engine only refers to it.

// signerFieldNames are the fields of each signer kind, in the order messages list them.
var signerFieldNames = map[string][]string{
	signer.KindAWSKMS: {"kms_key_id", "aws_region", "aws_endpoint", "aws_access_key_id", "aws_secret_access_key"},
	signer.KindPKCS11: {"pkcs11_library", "pkcs11_token_label", "pkcs11_key_label", "pkcs11_key_id", "pkcs11_pin"},
}

// signerFields are the config's fields for the signers.
func signerFields() map[string]*framework.FieldSchema {
	str := func(name, desc string, sensitive bool) *framework.FieldSchema {
		return &framework.FieldSchema{Type: framework.TypeString, Description: desc,
			DisplayAttrs: &framework.DisplayAttributes{Name: name, Sensitive: sensitive}}
	}
	return map[string]*framework.FieldSchema{
		"signer": str("Signer", "What signs the App's JWTs: key (the default: private_key, stored seal-wrapped), "+
			"awskms (the key imported into AWS KMS) or pkcs11 (the key in an HSM reached through a PKCS#11 library). "+
			"With awskms or pkcs11 the engine never holds the key, and private_key is refused.", false),
		"kms_key_id": str("KMS key ID", "With signer=awskms: the KMS key's ID, ARN, alias name (alias/NAME) or "+
			"alias ARN. The key is an asymmetric RSA key for SIGN_VERIFY holding the App's key.", false),
		"aws_region": str("AWS region", "With signer=awskms: the key's AWS region, such as eu-west-1. When unset, "+
			"the AWS SDK's default (AWS_REGION in the plugin's environment, shared config) applies.", false),
		"aws_endpoint": str("AWS endpoint", "With signer=awskms: an http(s) URL that replaces the regional KMS "+
			"endpoint, such as a VPC endpoint. Optional.", false),
		"aws_access_key_id": str("AWS access key ID", "With signer=awskms: the access key ID of static "+
			"credentials, with aws_secret_access_key. Without both, the AWS SDK's default credential chain of the "+
			"Vault server applies (environment, shared files, web identity, instance role).", false),
		"aws_secret_access_key": str("AWS secret access key", "With signer=awskms: the secret access key of "+
			"aws_access_key_id. Write-only: stored seal-wrapped, never returned. Changing base_url, proxy_url or "+
			"ca_certificate requires it in the same write.", true),
		"pkcs11_library": str("PKCS#11 library", "With signer=pkcs11: the absolute path of the PKCS#11 library. It "+
			"must be one of the paths the operator listed in the plugin's environment variable "+
			signer.LibrariesEnv+" when registering the plugin.", false),
		"pkcs11_token_label": str("PKCS#11 token label", "With signer=pkcs11: the label of the token holding the "+
			"key.", false),
		"pkcs11_key_label": str("PKCS#11 key label", "With signer=pkcs11: the label (CKA_LABEL) of the App's "+
			"private key; give it, pkcs11_key_id, or both.", false),
		"pkcs11_key_id": str("PKCS#11 key ID", "With signer=pkcs11: the ID (CKA_ID) of the App's private key, in "+
			"hexadecimal such as a1b2; give it, pkcs11_key_label, or both.", false),
		"pkcs11_pin": str("PKCS#11 PIN", "With signer=pkcs11: the token's user PIN. Write-only: stored "+
			"seal-wrapped, never returned. Changing base_url, proxy_url or ca_certificate requires it in the same "+
			"write.", true),
	}
}

// signerKind is the config's signer kind; a config saved before signers existed has none and holds a key.
func (c *githubConfig) signerKind() string {
	if c.Signer == "" {
		return signer.KindKey
	}
	return c.Signer
}

// applySignerFields copies the signer fields given in a write onto cfg, and checks that they fit the signer kind. It
// returns one message per problem; none quotes a secret.
func applySignerFields(cfg *githubConfig, d *framework.FieldData) []string {
	var problems []string
	if v, ok := d.GetOk("signer"); ok {
		kind := strings.TrimSpace(v.(string))
		switch kind {
		case signer.KindKey, signer.KindAWSKMS, signer.KindPKCS11:
			if kind != cfg.signerKind() {
				// What described the previous signer names another key: it goes with it.
				clearSigner(cfg)
			}
			cfg.Signer = kind
		default:
			problems = append(problems, fmt.Sprintf("%s is not a signer: expected key (private_key), awskms (a "+
				"key in AWS KMS) or pkcs11 (a key in an HSM)", quoted("signer", kind)))
			return problems
		}
	}
	kind := cfg.signerKind()
	for k, names := range signerFieldNames {
		for _, name := range names {
			v, ok := d.GetOk(name)
			if !ok {
				continue
			}
			if k != kind {
				problems = append(problems, fmt.Sprintf("%s is only used with signer=%s, and signer is %s: give "+
					"signer=%s too, or leave %s out", name, k, kind, k, name))
				continue
			}
			*signerField(cfg, name) = strings.TrimSpace(v.(string))
		}
	}
	_, keyGiven := d.GetOk("private_key")
	switch kind {
	case signer.KindKey:
		problems = append(problems, applyPrivateKey(cfg, d)...)
	case signer.KindAWSKMS:
		if keyGiven {
			problems = append(problems, "private_key is refused with signer=awskms: the App's key stays in AWS KMS "+
				"and the engine never holds it; leave private_key out")
		}
		if cfg.KMSKeyID == "" {
			problems = append(problems, "kms_key_id is required with signer=awskms: give the KMS key's ID, ARN, "+
				"alias name (alias/NAME) or alias ARN")
		}
		if (cfg.AWSAccessKeyID == "") != (cfg.AWSSecretAccessKey == "") {
			problems = append(problems, "aws_access_key_id and aws_secret_access_key go together: give both, or "+
				"neither to use the AWS SDK's default credential chain")
		}
	case signer.KindPKCS11:
		if keyGiven {
			problems = append(problems, "private_key is refused with signer=pkcs11: the App's key stays in the HSM "+
				"and the engine never holds it; leave private_key out")
		}
		for _, f := range []struct{ name, value, want string }{
			{"pkcs11_library", cfg.PKCS11Library, "the absolute path of the PKCS#11 library, one of those listed in " +
				signer.LibrariesEnv},
			{"pkcs11_token_label", cfg.PKCS11TokenLabel, "the label of the token that holds the App's key"},
			{"pkcs11_pin", cfg.PKCS11PIN, "the token's user PIN"},
		} {
			if f.value == "" {
				problems = append(problems, fmt.Sprintf("%s is required with signer=pkcs11: give %s", f.name, f.want))
			}
		}
		if cfg.PKCS11KeyLabel == "" && cfg.PKCS11KeyID == "" {
			problems = append(problems, "pkcs11_key_label or pkcs11_key_id is required with signer=pkcs11: give the "+
				"App's private key's label, its hexadecimal ID, or both")
		}
	}
	if kind != signer.KindKey {
		cfg.PrivateKey, cfg.parsedKey = "", nil
	}
	return problems
}

// applyPrivateKey takes the private key of a write with signer=key.
func applyPrivateKey(cfg *githubConfig, d *framework.FieldData) []string {
	if v, ok := d.GetOk("private_key"); ok {
		cfg.PrivateKey = strings.TrimSpace(v.(string)) + "\n"
		key, err := github.ParsePrivateKey(cfg.PrivateKey)
		if err != nil {
			return []string{"private_key: " + err.Error()}
		}
		if fp, err := github.Fingerprint(&key.PublicKey); err == nil {
			cfg.Fingerprint, cfg.parsedKey = fp, key
		}
		return nil
	}
	if cfg.PrivateKey == "" {
		return []string{"private_key is required: give the App's PEM private key, for example " +
			"private_key=@app.private-key.pem, or use signer=awskms or signer=pkcs11"}
	}
	return nil
}

// clearSigner forgets every signer's settings.
func clearSigner(cfg *githubConfig) {
	for _, names := range signerFieldNames {
		for _, name := range names {
			*signerField(cfg, name) = ""
		}
	}
	cfg.PrivateKey, cfg.parsedKey, cfg.Fingerprint = "", nil, ""
}

// signerField is where a signer field is kept in the config.
func signerField(cfg *githubConfig, name string) *string {
	switch name {
	case "kms_key_id":
		return &cfg.KMSKeyID
	case "aws_region":
		return &cfg.AWSRegion
	case "aws_endpoint":
		return &cfg.AWSEndpoint
	case "aws_access_key_id":
		return &cfg.AWSAccessKeyID
	case "aws_secret_access_key":
		return &cfg.AWSSecretAccessKey
	case "pkcs11_library":
		return &cfg.PKCS11Library
	case "pkcs11_token_label":
		return &cfg.PKCS11TokenLabel
	case "pkcs11_key_label":
		return &cfg.PKCS11KeyLabel
	case "pkcs11_key_id":
		return &cfg.PKCS11KeyID
	case "pkcs11_pin":
		return &cfg.PKCS11PIN
	}
	panic("unknown signer field " + name)
}

// signerSecret names the field that carries the stored signer's secret, which a write moving the destination must
// give again; "" when the signer has none (awskms with the SDK's default credentials).
func (c *githubConfig) signerSecret() string {
	switch c.signerKind() {
	case signer.KindAWSKMS:
		if c.AWSAccessKeyID == "" {
			return ""
		}
		return "aws_secret_access_key"
	case signer.KindPKCS11:
		return "pkcs11_pin"
	default:
		return "private_key"
	}
}

// signerReadData is what a config read shows of the signer: never a secret.
func (c *githubConfig) signerReadData() map[string]any {
	data := map[string]any{"signer": c.signerKind()}
	switch c.signerKind() {
	case signer.KindAWSKMS:
		data["kms_key_id"], data["aws_region"], data["aws_endpoint"] = c.KMSKeyID, c.AWSRegion, c.AWSEndpoint
		data["aws_access_key_id"] = c.AWSAccessKeyID
	case signer.KindPKCS11:
		data["pkcs11_library"], data["pkcs11_token_label"] = c.PKCS11Library, c.PKCS11TokenLabel
		data["pkcs11_key_label"], data["pkcs11_key_id"] = c.PKCS11KeyLabel, c.PKCS11KeyID
	}
	return data
}

// signerDescription describes the config's signer for status without asking the KMS or HSM.
func (c *githubConfig) signerDescription() signer.Description {
	d := signer.Description{Kind: c.signerKind(), Fingerprint: c.Fingerprint}
	switch d.Kind {
	case signer.KindAWSKMS:
		d.Key = c.KMSKeyID
	case signer.KindPKCS11:
		d.Key = fmt.Sprintf("token %q", c.PKCS11TokenLabel)
		if c.PKCS11KeyLabel != "" {
			d.Key += fmt.Sprintf(", key label %q", c.PKCS11KeyLabel)
		}
		if c.PKCS11KeyID != "" {
			d.Key += fmt.Sprintf(", key ID %s", c.PKCS11KeyID)
		}
	}
	return d
}

// openSigner opens the KMS or HSM signer of a config; nil for signer=key, whose key the client holds itself. A
// failure is a *signer.Error.
func (b *backend) openSigner(ctx context.Context, cfg *githubConfig) (signer.Signer, error) {
	switch cfg.signerKind() {
	case signer.KindAWSKMS:
		return signer.NewAWSKMS(ctx, signer.AWSKMSConfig{
			KeyID:           cfg.KMSKeyID,
			Region:          cfg.AWSRegion,
			Endpoint:        cfg.AWSEndpoint,
			AccessKeyID:     cfg.AWSAccessKeyID,
			SecretAccessKey: cfg.AWSSecretAccessKey,
		})
	case signer.KindPKCS11:
		return signer.OpenPKCS11(ctx, signer.PKCS11Config{
			Library:          cfg.PKCS11Library,
			AllowedLibraries: b.pkcs11Libraries,
			TokenLabel:       cfg.PKCS11TokenLabel,
			KeyLabel:         cfg.PKCS11KeyLabel,
			KeyID:            cfg.PKCS11KeyID,
			PIN:              cfg.PKCS11PIN,
		})
	}
	return nil, nil
}

// signerParamField names the config field a signer's failure is about.
func signerParamField(kind string, p signer.Param) string {
	aws := map[signer.Param]string{
		signer.ParamKeyID: "kms_key_id", signer.ParamRegion: "aws_region", signer.ParamEndpoint: "aws_endpoint",
		signer.ParamCredentials: "aws_access_key_id and aws_secret_access_key",
	}
	hsm := map[signer.Param]string{
		signer.ParamLibrary: "pkcs11_library", signer.ParamTokenLabel: "pkcs11_token_label",
		signer.ParamKeyLabel: "pkcs11_key_label", signer.ParamKeyID: "pkcs11_key_id", signer.ParamPIN: "pkcs11_pin",
	}
	switch kind {
	case signer.KindAWSKMS:
		return aws[p]
	case signer.KindPKCS11:
		return hsm[p]
	case signer.KindKey:
		if p == signer.ParamKey {
			return "private_key"
		}
	}
	return ""
}

// signerRefusal explains why a config write's signer could not be opened: a misconfigured signer is the writer's to
// fix (400, with the field to check), a KMS or HSM that cannot answer now is a 502.
func signerRefusal(err error) (refusal string, _ error) {
	e, ok := signer.AsError(err)
	if !ok {
		return "", fmt.Errorf("opening the signer: %w", err)
	}
	msg := e.Error()
	if field := signerParamField(e.Signer, e.Param); field != "" {
		msg = field + ": " + msg
	}
	msg += "; nothing was saved"
	if e.Kind == signer.KindUnavailable {
		return "", &failure{status: http.StatusBadGateway, kind: signerFailureKind, msg: msg}
	}
	return msg, nil
}

// signerFailureKind is the mint failure kind (metrics) of a signer that could not sign.
const signerFailureKind = "signer"

// signerFailure turns a signer's failure while minting into a 502 that names the signer; nil when err holds none.
func signerFailure(err error, doing string) *failure {
	e, ok := signer.AsError(err)
	if !ok {
		return nil
	}
	check := "check the signer's settings at config"
	if e.Kind == signer.KindUnavailable {
		check = "the KMS or HSM could not sign now; retry later"
	}
	if field := signerParamField(e.Signer, e.Param); field != "" {
		check += " (" + field + ")"
	}
	return &failure{status: http.StatusBadGateway, kind: signerFailureKind,
		msg: fmt.Sprintf("%s: the App JWT could not be signed: %v: %s", doing, e, check)}
}

// errNoSigner is a stored config of a KMS or HSM signer whose client was built without it: a bug.
var errNoSigner = errors.New("the config's signer was not opened")

// signerFailed counts a signer's failure to open or to sign; err without a *signer.Error counts nothing.
func (m *metrics) signerFailed(kind string, err error) {
	if e, ok := signer.AsError(err); ok {
		m.signerFailures.WithLabelValues(kind, e.Kind.String()).Inc()
	}
}

// observedSigner counts its signer's failures in the mount's metrics.
type observedSigner struct {
	signer.Signer
	m *metrics
}

func (o observedSigner) SignRS256(ctx context.Context, digest []byte) ([]byte, error) {
	sig, err := o.Signer.SignRS256(ctx, digest)
	if err != nil {
		o.m.signerFailed(o.Describe().Kind, err)
	}
	return sig, err
}
