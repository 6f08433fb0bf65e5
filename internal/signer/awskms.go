// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package signer

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
)

// AWSKMSConfig locates an RSA key in AWS KMS (or a KMS-compatible server).
type AWSKMSConfig struct {
	// KeyID is the key's ID, ARN, alias name ("alias/github-app") or alias ARN.
	KeyID string
	// Region is the AWS region; empty takes the SDK's default (AWS_REGION, shared config).
	Region string
	// Endpoint, when set, replaces the regional endpoint: a VPC endpoint or another KMS-compatible server
	// (http:// or https://).
	Endpoint string
	// AccessKeyID and SecretAccessKey are static credentials, both or neither; without them the SDK's default chain
	// applies (environment, shared files, web identity, container and instance roles).
	AccessKeyID     string
	SecretAccessKey string
	// MaxAttempts bounds the tries of one signature when KMS throttles or fails (default 5). Waits between them
	// also end at the caller's deadline.
	MaxAttempts int
}

const defaultKMSAttempts = 5

// AWSKMS signs with an asymmetric RSA SIGN_VERIFY key in AWS KMS: the private key never leaves KMS.
type AWSKMS struct {
	client      *kms.Client
	arn         string // the key's ARN as KMS named it: signatures keep using this key even if an alias moves
	where       string // region or endpoint, for messages
	pub         *rsa.PublicKey
	desc        Description
	maxAttempts int
	closed      atomic.Bool
}

// NewAWSKMS builds a KMS client and reads the key's public half (GetPublicKey), checking that the key is RSA, of at
// least 2048 bits, for SIGN_VERIFY and allows RSASSA_PKCS1_V1_5_SHA_256. ctx bounds that first call.
func NewAWSKMS(ctx context.Context, c AWSKMSConfig) (*AWSKMS, error) {
	if strings.TrimSpace(c.KeyID) == "" {
		return nil, &Error{Signer: KindAWSKMS, Kind: KindMisconfigured, Param: ParamKeyID,
			Msg: "no KMS key given: give its key ID, key ARN, alias name (alias/NAME) or alias ARN"}
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		return nil, &Error{Signer: KindAWSKMS, Kind: KindMisconfigured, Param: ParamCredentials,
			Msg: "give both an access key ID and a secret access key, or neither to use the SDK's default " +
				"credential chain"}
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
			return nil, &Error{Signer: KindAWSKMS, Kind: KindMisconfigured, Param: ParamEndpoint,
				Msg: fmt.Sprintf("endpoint %q is not an http(s) URL without credentials: expected such as "+
					"https://vpce-0123-abcd.kms.eu-west-1.vpce.amazonaws.com", redactURL(c.Endpoint))}
		}
	}
	opts := []func(*config.LoadOptions) error{
		// One signature's retries are ours (signRetrying), bounded by the caller's deadline.
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
	}
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	if c.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, &Error{Signer: KindAWSKMS, Kind: KindMisconfigured, Param: ParamCredentials,
			Msg: "loading the AWS SDK configuration", Err: err}
	}
	if cfg.Region == "" {
		return nil, &Error{Signer: KindAWSKMS, Kind: KindMisconfigured, Param: ParamRegion,
			Msg: "no AWS region: give the key's region (such as eu-west-1)"}
	}
	// Credentials first: the SDK tells their absence from an unreachable KMS by its message only. They are cached
	// (and refreshed before they expire) by the configuration's credentials cache.
	if cfg.Credentials == nil {
		return nil, noCredentials(nil)
	}
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		return nil, noCredentials(err)
	}
	where := "region " + cfg.Region
	var kmsOpts []func(*kms.Options)
	if c.Endpoint != "" {
		kmsOpts = append(kmsOpts, func(o *kms.Options) { o.BaseEndpoint = aws.String(c.Endpoint) })
		where = fmt.Sprintf("%s (endpoint %s)", where, c.Endpoint)
	}
	s := &AWSKMS{client: kms.NewFromConfig(cfg, kmsOpts...), where: where, maxAttempts: c.MaxAttempts}
	if s.maxAttempts <= 0 {
		s.maxAttempts = defaultKMSAttempts
	}
	if err := s.loadPublicKey(ctx, c.KeyID); err != nil {
		return nil, err
	}
	return s, nil
}

// loadPublicKey reads and checks the key, and remembers its ARN.
func (s *AWSKMS) loadPublicKey(ctx context.Context, keyID string) error {
	var out *kms.GetPublicKeyOutput
	err := s.retrying(ctx, func(ctx context.Context) error {
		var err error
		out, err = s.client.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(keyID)})
		return err
	}, fmt.Sprintf("reading the public key of KMS key %q", keyID), keyID)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("KMS key %q", keyID)
	if out.KeyUsage != types.KeyUsageTypeSignVerify {
		return &Error{Signer: KindAWSKMS, Kind: KindMisconfigured, Param: ParamKeyID,
			Msg: fmt.Sprintf("%s has key usage %s: it must be an RSA key for SIGN_VERIFY", name, out.KeyUsage)}
	}
	if !strings.HasPrefix(string(out.KeySpec), "RSA_") {
		return &Error{Signer: KindAWSKMS, Kind: KindMisconfigured, Param: ParamKeyID,
			Msg: fmt.Sprintf("%s has key spec %s: GitHub App keys are RSA (RSA_2048 or larger)", name, out.KeySpec)}
	}
	if !slices.Contains(out.SigningAlgorithms, types.SigningAlgorithmSpecRsassaPkcs1V15Sha256) {
		return &Error{Signer: KindAWSKMS, Kind: KindMisconfigured, Param: ParamKeyID,
			Msg: fmt.Sprintf("%s does not allow RSASSA_PKCS1_V1_5_SHA_256, which GitHub's RS256 JWTs need", name)}
	}
	parsed, err := x509.ParsePKIXPublicKey(out.PublicKey)
	if err != nil {
		return &Error{Signer: KindAWSKMS, Kind: KindMisconfigured, Param: ParamKeyID,
			Msg: fmt.Sprintf("%s returned a public key that is not PKIX DER", name), Err: err}
	}
	pub, err := checkRSAPublic(KindAWSKMS, ParamKeyID, name, parsed)
	if err != nil {
		return err
	}
	fp, err := Fingerprint(pub)
	if err != nil {
		return &Error{Signer: KindAWSKMS, Kind: KindMisconfigured, Param: ParamKeyID, Msg: "unusable public key",
			Err: err}
	}
	s.arn = keyID
	if out.KeyId != nil && *out.KeyId != "" {
		s.arn = *out.KeyId
	}
	s.pub = pub
	s.desc = Description{Kind: KindAWSKMS, Key: s.arn, Fingerprint: fp}
	return nil
}

// Public implements Signer.
func (s *AWSKMS) Public() *rsa.PublicKey { return s.pub }

// Describe implements Signer.
func (s *AWSKMS) Describe() Description { return s.desc }

// Close implements Signer. The SDK's client holds only pooled connections, which the garbage collector reclaims.
func (s *AWSKMS) Close() error {
	s.closed.Store(true)
	return nil
}

// SignRS256 implements Signer with KMS's Sign over the digest (MessageType DIGEST), retrying throttling and
// transient failures with backoff until MaxAttempts or the caller's deadline, and checks the signature against the
// public key.
func (s *AWSKMS) SignRS256(ctx context.Context, digest []byte) ([]byte, error) {
	if s.closed.Load() {
		return nil, errClosed(KindAWSKMS)
	}
	if err := checkDigest(KindAWSKMS, digest); err != nil {
		return nil, err
	}
	var out *kms.SignOutput
	err := s.retrying(ctx, func(ctx context.Context) error {
		var err error
		out, err = s.client.Sign(ctx, &kms.SignInput{
			KeyId:            aws.String(s.arn),
			Message:          digest,
			MessageType:      types.MessageTypeDigest,
			SigningAlgorithm: types.SigningAlgorithmSpecRsassaPkcs1V15Sha256,
		})
		return err
	}, fmt.Sprintf("signing with KMS key %q", s.arn), s.arn)
	if err != nil {
		return nil, err
	}
	if err := checkSignature(KindAWSKMS, s.pub, digest, out.Signature); err != nil {
		return nil, err
	}
	return out.Signature, nil
}

// retrying runs one KMS call until it succeeds, fails for good, runs out of attempts or would wait past ctx's
// deadline. Every failure comes back as an *Error saying what was done.
func (s *AWSKMS) retrying(ctx context.Context, call func(context.Context) error, doing, keyID string) error {
	for attempt := 1; ; attempt++ {
		err := call(ctx)
		if err == nil {
			return nil
		}
		e, retry := s.classify(ctx, err, doing, keyID)
		if !retry {
			return e
		}
		if attempt >= s.maxAttempts {
			e.Msg += fmt.Sprintf(" (gave up after %s)", attempts(attempt))
			return e
		}
		wait := kmsBackoff(attempt)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			e.Msg += fmt.Sprintf(" (gave up after %s: the next would start past the caller's deadline)",
				attempts(attempt))
			return e
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			e.Msg += fmt.Sprintf(" (gave up after %s: %v)", attempts(attempt), ctx.Err())
			return e
		case <-t.C:
		}
	}
}

// kmsBackoff is exponential with full jitter: a random wait in [0, min(2s, 100ms·2^(attempt-1))], at least 20ms.
func kmsBackoff(attempt int) time.Duration {
	const base, limit = 100 * time.Millisecond, 2 * time.Second
	d := base << (attempt - 1)
	if d > limit || d <= 0 {
		d = limit
	}
	return 20*time.Millisecond + rand.N(d)
}

// classify turns an SDK error into an *Error and says whether another attempt may succeed.
func (s *AWSKMS) classify(ctx context.Context, err error, doing, keyID string) (*Error, bool) {
	e := &Error{Signer: KindAWSKMS, Kind: KindUnavailable, Err: err}
	if ctx.Err() != nil {
		e.Msg = fmt.Sprintf("%s in %s: %v", doing, s.where, ctx.Err())
		return e, false
	}
	var api smithy.APIError
	if !errors.As(err, &api) {
		var signing *v4.SigningError
		if errors.As(err, &signing) {
			e.Kind, e.Param = KindMisconfigured, ParamCredentials
			e.Msg = doing + ": " + noCredentials(nil).Msg
			return e, false
		}
		// No answer from KMS: a refused or timed-out connection, a DNS failure.
		e.Msg = fmt.Sprintf("%s: AWS KMS in %s could not be reached", doing, s.where)
		return e, true
	}
	code := api.ErrorCode()
	switch code {
	case "NotFoundException":
		e.Kind, e.Param = KindMisconfigured, ParamKeyID
		e.Msg = fmt.Sprintf("%s: KMS has no key %q in %s", doing, keyID, s.where)
		return e, false
	case "AccessDeniedException":
		e.Kind, e.Param = KindMisconfigured, ParamCredentials
		e.Msg = fmt.Sprintf("%s: access denied: the credentials' IAM policy and the key's policy must allow "+
			"kms:GetPublicKey and kms:Sign on the key", doing)
		return e, false
	case "UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignature",
		"InvalidClientTokenId", "ExpiredTokenException", "MissingAuthenticationToken":
		e.Kind, e.Param = KindMisconfigured, ParamCredentials
		e.Msg = fmt.Sprintf("%s: KMS refused the credentials (%s)", doing, code)
		return e, false
	case "DisabledException", "KMSInvalidStateException", "KeyUnavailableException":
		e.Kind, e.Param = KindMisconfigured, ParamKeyID
		e.Msg = fmt.Sprintf("%s: the key cannot be used in its current state (%s): enable it, or finish its "+
			"import", doing, code)
		return e, false
	case "InvalidKeyUsageException", "UnsupportedOperationException":
		e.Kind, e.Param = KindMisconfigured, ParamKeyID
		e.Msg = fmt.Sprintf("%s: the key is not an asymmetric RSA key for SIGN_VERIFY (%s)", doing, code)
		return e, false
	case "InvalidArnException", "ValidationException":
		e.Kind, e.Param = KindMisconfigured, ParamKeyID
		e.Msg = fmt.Sprintf("%s: KMS refused the request (%s): check the key ID %q", doing, code, keyID)
		return e, false
	case "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded", "LimitExceededException":
		e.Msg = fmt.Sprintf("%s: AWS KMS is throttling requests (%s)", doing, code)
		return e, true
	case "KMSInternalException", "DependencyTimeoutException", "InternalFailure", "ServiceUnavailable",
		"InternalFailureException", "ServiceUnavailableException":
		e.Msg = fmt.Sprintf("%s: AWS KMS failed (%s)", doing, code)
		return e, true
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
		e.Msg = fmt.Sprintf("%s: AWS KMS failed (%s, HTTP %d)", doing, code, re.HTTPStatusCode())
		return e, true
	}
	e.Kind = KindMisconfigured
	e.Msg = fmt.Sprintf("%s: AWS KMS refused the request (%s)", doing, code)
	return e, false
}

// noCredentials says that the SDK found no credentials.
func noCredentials(err error) *Error {
	return &Error{Signer: KindAWSKMS, Kind: KindMisconfigured, Param: ParamCredentials, Err: err,
		Msg: "no usable AWS credentials: give an access key ID and secret access key, or provide credentials to " +
			"the process (environment, shared credentials file, web identity, container or instance role)"}
}

// attempts is "1 attempt" or "N attempts".
func attempts(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

// redactURL quotes a URL without its password; an unparsable one not at all.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}
