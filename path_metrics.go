// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package githubapp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/vault-plugin-secrets-github-app/vault-plugin-secrets-github-app/internal/github"
)

const (
	pathMetricsHelpSynopsis    = "Read the mount's metrics: tokens minted, GitHub calls, rate limit, revocations."
	pathMetricsHelpDescription = `
Returns this mount's counters, gauges and histograms: tokens minted and mint failures by role and kind, GitHub calls
by App, endpoint template and status class with their latency, retries, calls refused or held by a rate limit or an
outage, each App's rate limit as GitHub last reported it and the least budget known of its installations, Apps
passed over by roles with several Apps and why, revocations, tokens refused as over-granted, JWT signatures,
installation-cache hits and misses, tokens returned although GitHub did not state their scope. Labels are bounded:
endpoint templates, status classes, kinds, names of the mount's Apps ("(revocation)" for calls that only revoke
tokens of a destination no App uses any more) and names of roles that exist (cut to 128 bytes; any other name is
counted as "(unknown)"), never owners, installation IDs, repositories or tokens.

With format=prometheus the answer is Prometheus' text exposition format, for a scrape job that authenticates with a
Vault token (see docs/metrics.md); otherwise JSON.
`
	metricsNamespace = "github_app"

	// unknownRoleLabel counts token requests for roles that do not exist: a caller may name any role, and one series
	// per made-up name would grow the scrape and the plugin's memory without bound. No role name can take this
	// value (names are letters, digits, '_', '-' and '.').
	unknownRoleLabel = "(unknown)"
	// revocationAppLabel labels the calls of clients that only revoke (a destination no App uses any more). No App
	// name can take this value.
	revocationAppLabel = "(revocation)"
	// maxRoleLabelBytes bounds a role label; a longer role name is cut and marked with a hash of the whole name.
	maxRoleLabelBytes = 128
)

// metrics is one mount's registry; it hears the mount's GitHub clients (observer, one per App) and the engine.
type metrics struct {
	registry *prometheus.Registry

	minted          *prometheus.CounterVec
	mintFailures    *prometheus.CounterVec
	overGrants      *prometheus.CounterVec
	unstatedScopes  *prometheus.CounterVec
	requests        *prometheus.CounterVec
	latency         *prometheus.HistogramVec
	retries         *prometheus.CounterVec
	refused         *prometheus.CounterVec
	waits           *prometheus.CounterVec
	waitSeconds     *prometheus.CounterVec
	signatures      *prometheus.CounterVec
	signerFailures  *prometheus.CounterVec
	duplicates      *prometheus.CounterVec
	appSkips        *prometheus.CounterVec
	revocations     *prometheus.CounterVec
	installationHit *prometheus.CounterVec

	// byRole are the vectors with a role label, whose series go when the role is deleted; byApp those with an app
	// label, whose series go when the App is deleted.
	byRole []*prometheus.CounterVec
	byApp  []deletablePartial
}

// deletablePartial is a vector whose series can be dropped by a subset of their labels.
type deletablePartial interface {
	DeletePartialMatch(prometheus.Labels) int
}

// appView is what the gauges of one App show: its view of GitHub and the least budget known of its installations.
type appView struct {
	name        string
	status      github.GateStatus
	budget      int
	budgetKnown bool
}

// newMetrics builds a mount's registry. apps returns, at each scrape, what the gauges of each App show.
func newMetrics(apps func() []appView) *metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Name: name, Help: help}, labels)
	}
	m := &metrics{registry: prometheus.NewRegistry()}
	// Every vector labelled by App is built here, so that deleting an App reaches all of them (forgetApp).
	byApp := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := counter(name, help, append([]string{"app"}, labels...)...)
		m.byApp = append(m.byApp, v)
		return v
	}
	m.requests = byApp("github_requests_total", "Attempts of calls to GitHub, by App, endpoint template and status class (none: no answer).", "endpoint", "status_class")
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace, Name: "github_request_duration_seconds",
		Help:    "Duration of attempts of calls to GitHub, by App and endpoint template.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"app", "endpoint"})
	m.byApp = append(m.byApp, m.latency)
	m.retries = byApp("github_retries_total", "Calls to GitHub tried again after a failed attempt, by App, endpoint template and kind of failure.", "endpoint", "kind")
	m.refused = byApp("github_refused_total", "Calls not made because GitHub had limited the App or was failing, by App, endpoint template and kind.", "endpoint", "kind")
	m.waits = byApp("github_waits_total", "Waits of calls in the App's gate before calling GitHub, by App and reason (rate_limit, outage, concurrency).", "reason")
	m.waitSeconds = byApp("github_wait_seconds_total", "Time calls waited in the App's gate, by App and reason.", "reason")
	m.signatures = byApp("jwt_signatures_total", "App JWTs signed, by App and signer (key, awskms, pkcs11).", "signer")
	m.duplicates = byApp("possible_duplicate_tokens_total", "Token requests retried after GitHub may have handled them, by App; each may have left a token nobody holds, which expires within the hour.")
	m.appSkips = byApp("app_skips_total", "Apps of a role with several Apps passed over for a mint, by App and reason (rate_limited, unavailable, not_configured, not_installed, failed).", "reason")
	m.revocations = counter("revocations_total", "Lease revocations, by outcome: succeeded, failed (Vault retries), skipped (the token had expired).", "outcome")
	m.installationHit = counter("installation_cache_total", "Installation lookups of owner-bound roles, by result: hit or miss.", "result")
	m.signerFailures = counter("signer_failures_total", "Signers that could not be opened or could not sign, by signer (key, awskms, pkcs11) and kind (misconfigured, unavailable).", "signer", "kind")
	// Every vector labelled by role is built here, so that deleting a role reaches all of them (forgetRole).
	byRole := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := counter(name, help, append([]string{"role"}, labels...)...)
		m.byRole = append(m.byRole, v)
		return v
	}
	m.minted = byRole("tokens_minted_total", "Installation tokens minted and returned, by role and App.", "app")
	m.byApp = append(m.byApp, m.minted)
	m.mintFailures = byRole("mint_failures_total", "Token requests that failed, by role and kind of failure.", "kind")
	m.overGrants = byRole("over_grants_total", "Tokens GitHub granted more broadly than asked, revoked and not returned, by role.")
	m.unstatedScopes = byRole("unstated_scope_tokens_total", "Tokens returned although GitHub's answer did not state their "+
		"permissions, repository selection or repositories (GitHub enforces what was asked), by role.")
	m.registry.MustRegister(m.minted, m.mintFailures, m.overGrants, m.unstatedScopes, m.requests, m.latency, m.retries, m.refused,
		m.waits, m.waitSeconds, m.signatures, m.signerFailures, m.duplicates, m.appSkips, m.revocations, m.installationHit,
		appGauges{apps: apps})
	return m
}

// appGauges collects the gauges of every App the mount has a client for, at each scrape.
type appGauges struct {
	apps func() []appView
}

var appGaugeDescs = []struct {
	desc  *prometheus.Desc
	value func(v appView) (float64, bool)
}{
	{gaugeDesc("rate_limit_limit", "The App's hourly request limit as GitHub last reported it (0: not seen yet)."),
		func(v appView) (float64, bool) { return float64(v.status.Rate.Limit), true }},
	{gaugeDesc("rate_limit_remaining", "Requests left in the App's hourly limit as GitHub last reported it."),
		func(v appView) (float64, bool) { return float64(v.status.Rate.Remaining), true }},
	{gaugeDesc("rate_limit_reset_timestamp_seconds", "When the App's hourly limit resets (Unix time), as GitHub last reported it."),
		func(v appView) (float64, bool) { return unixSeconds(v.status.Rate.Reset), true }},
	{gaugeDesc("rate_limited_until_timestamp_seconds", "Until when GitHub has limited the App (Unix time; 0: not limited)."),
		func(v appView) (float64, bool) { return unixSeconds(v.status.LimitedUntil), true }},
	{gaugeDesc("github_failing_since_timestamp_seconds", "Since when GitHub has been failing for the App (Unix time; 0: it answers)."),
		func(v appView) (float64, bool) { return unixSeconds(v.status.FailingSince), true }},
	{gaugeDesc("github_in_flight", "Calls to GitHub in flight, by App."),
		func(v appView) (float64, bool) { return float64(v.status.InFlight), true }},
	{gaugeDesc("github_max_in_flight", "The App's max_concurrent_requests."),
		func(v appView) (float64, bool) { return float64(v.status.Capacity), true }},
	{gaugeDesc("installation_budget_remaining", "The fewest requests left, as last seen, among the App's installations "+
		"whose budget the engine follows (roles with several Apps under app_selection=budget); absent when none is known."),
		func(v appView) (float64, bool) { return float64(v.budget), v.budgetKnown }},
}

func gaugeDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, "", name), help, []string{"app"}, nil)
}

func (g appGauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range appGaugeDescs {
		ch <- d.desc
	}
}

func (g appGauges) Collect(ch chan<- prometheus.Metric) {
	for _, v := range g.apps() {
		for _, d := range appGaugeDescs {
			if value, ok := d.value(v); ok {
				ch <- prometheus.MustNewConstMetric(d.desc, prometheus.GaugeValue, value, v.name)
			}
		}
	}
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// observer returns what hears the Gate and the clients of one App (github.Observer); signerKind labels its
// signatures.
func (m *metrics) observer(app, signerKind string) github.Observer {
	return appObserver{m: m, app: app, signer: signerKind}
}

// appObserver counts what one App's Gate and clients do.
type appObserver struct {
	m           *metrics
	app, signer string
}

func (o appObserver) Attempt(endpoint string, status int, d time.Duration) {
	class := "none"
	if status != 0 {
		class = strconv.Itoa(status/100) + "xx"
	}
	o.m.requests.WithLabelValues(o.app, endpoint, class).Inc()
	o.m.latency.WithLabelValues(o.app, endpoint).Observe(d.Seconds())
}

func (o appObserver) Retry(endpoint string, kind github.Kind) {
	o.m.retries.WithLabelValues(o.app, endpoint, kindLabel(kind)).Inc()
}

func (o appObserver) Refused(endpoint string, kind github.Kind) {
	o.m.refused.WithLabelValues(o.app, endpoint, kindLabel(kind)).Inc()
}

func (o appObserver) Waited(reason string, d time.Duration) {
	o.m.waits.WithLabelValues(o.app, reason).Inc()
	o.m.waitSeconds.WithLabelValues(o.app, reason).Add(d.Seconds())
}

func (o appObserver) Signed()            { o.m.signatures.WithLabelValues(o.app, o.signer).Inc() }
func (o appObserver) PossibleDuplicate() { o.m.duplicates.WithLabelValues(o.app).Inc() }

// forgetApp drops the series of a deleted App from every vector labelled by App.
func (m *metrics) forgetApp(app string) {
	for _, v := range m.byApp {
		v.DeletePartialMatch(prometheus.Labels{"app": app})
	}
}

// mintOutcome counts a token request's outcome. exists says whether the role was found: the handler reads it to mint
// anyway, so telling made-up names apart costs no storage read.
func (m *metrics) mintOutcome(role string, exists bool, err error, resp *logical.Response) {
	label := roleLabel(role, exists)
	switch {
	case err == nil && resp != nil && resp.Secret != nil:
		app, _ := resp.Data["app"].(string)
		m.minted.WithLabelValues(label, app).Inc()
	case err != nil:
		m.mintFailures.WithLabelValues(label, failureKind(err)).Inc()
	case resp != nil && resp.IsError():
		m.mintFailures.WithLabelValues(label, "invalid_request").Inc()
	}
}

// forgetRole drops the series of a deleted role from every vector labelled by role.
func (m *metrics) forgetRole(role string) {
	match := prometheus.Labels{"role": roleLabel(role, true)}
	for _, v := range m.byRole {
		v.DeletePartialMatch(match)
	}
}

// roleLabel is a role's label value: the name of a role that exists, cut to maxRoleLabelBytes when longer (the cut
// ends in '~' and a hash of the whole name, which keeps two long names with a common start apart, and which no role
// name can take); unknownRoleLabel for any other name.
func roleLabel(role string, exists bool) string {
	if !exists {
		return unknownRoleLabel
	}
	if len(role) <= maxRoleLabelBytes {
		return role
	}
	sum := sha256.Sum256([]byte(role))
	suffix := "~" + hex.EncodeToString(sum[:8])
	cut := maxRoleLabelBytes - len(suffix)
	for cut > 0 && !utf8.RuneStart(role[cut]) {
		cut--
	}
	return role[:cut] + suffix
}

// kindLabel is a github.Kind as a label value.
func kindLabel(k github.Kind) string { return strings.ReplaceAll(k.String(), " ", "_") }

// --------------------------------------------------------------------------------------------------- the path

func pathMetrics(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "metrics",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
		},
		Fields: map[string]*framework.FieldSchema{
			"format": {
				Type:        framework.TypeString,
				Description: "The format of the answer: prometheus for Prometheus' text exposition format, or empty for JSON.",
				Query:       true,
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.pathMetricsRead,
				DisplayAttrs: &framework.DisplayAttributes{
					OperationSuffix: "metrics",
				},
			},
		},
		HelpSynopsis:    pathMetricsHelpSynopsis,
		HelpDescription: strings.TrimSpace(pathMetricsHelpDescription),
	}
}

func (b *backend) pathMetricsRead(_ context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	families, err := b.metrics.registry.Gather()
	if err != nil {
		return nil, fmt.Errorf("gathering metrics: %w", err)
	}
	switch format := d.Get("format").(string); format {
	case "prometheus":
		var buf bytes.Buffer
		enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, f := range families {
			if err := enc.Encode(f); err != nil {
				return nil, fmt.Errorf("encoding metrics: %w", err)
			}
		}
		return &logical.Response{Data: map[string]any{
			logical.HTTPContentType: string(expfmt.NewFormat(expfmt.TypeTextPlain)),
			logical.HTTPRawBody:     buf.Bytes(),
			logical.HTTPStatusCode:  200,
		}}, nil
	case "", "json":
		return &logical.Response{Data: map[string]any{"metrics": metricsJSON(families)}}, nil
	default:
		return logical.ErrorResponse("format %q is not known: expected prometheus, or nothing for JSON", format), nil
	}
}

// metricsJSON turns gathered metric families into plain JSON: per metric its help, type and samples, each sample
// with its labels and its value (histograms: count, sum and cumulative buckets).
func metricsJSON(families []*dto.MetricFamily) map[string]any {
	out := make(map[string]any, len(families))
	for _, f := range families {
		samples := make([]map[string]any, 0, len(f.GetMetric()))
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			sample := map[string]any{"labels": labels}
			switch {
			case m.Counter != nil:
				sample["value"] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				sample["value"] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				h := m.GetHistogram()
				buckets := map[string]uint64{}
				for _, bk := range h.GetBucket() {
					buckets[formatBound(bk.GetUpperBound())] = bk.GetCumulativeCount()
				}
				sample["count"], sample["sum"], sample["buckets"] = h.GetSampleCount(), h.GetSampleSum(), buckets
			}
			samples = append(samples, sample)
		}
		out[f.GetName()] = map[string]any{
			"help":    f.GetHelp(),
			"type":    strings.ToLower(f.GetType().String()),
			"samples": samples,
		}
	}
	return out
}

func formatBound(v float64) string {
	if math.IsInf(v, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
