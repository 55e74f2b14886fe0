package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"go.uber.org/zap"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/cost"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/anthropic"
	"github.com/aibatch/aibatch/provider/httpapi"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/ratelimit"
)

// modesOf lists the BATCH_MODE values each PROVIDER supports.
var modesOf = map[string][]string{
	"openai":    {"combined", "single", "async"},
	"anthropic": {"combined", "single", "async"},
	"http":      {"combined"},
}

// validateProvider checks the provider settings: the provider and its mode,
// its credentials, its limits and the price table.
func (c config) validateProvider() []error {
	var errs []error
	modes, ok := modesOf[c.Provider]
	if !ok {
		return []error{fmt.Errorf("PROVIDER=%s: want openai, anthropic or http", c.Provider)}
	}
	if !contains(modes, c.BatchMode) {
		errs = append(errs, fmt.Errorf("BATCH_MODE=%s: PROVIDER=%s supports %s", c.BatchMode, c.Provider, strings.Join(modes, ", ")))
	}
	if c.BatchMode == "async" && !c.UseBatchedClient {
		errs = append(errs, errors.New("BATCH_MODE=async and USE_BATCHED_CLIENT=false exclude each other: a Batch API job is a batch"))
	}
	switch c.Provider {
	case "openai":
		if c.EmbeddingMaxInputs > openai.MaxEmbeddingInputs {
			errs = append(errs, fmt.Errorf("EMBEDDING_MAX_INPUTS=%d: PROVIDER=openai takes at most %d inputs per embeddings call", c.EmbeddingMaxInputs, openai.MaxEmbeddingInputs))
		}
		if c.OpenAIAPIKey == "" && c.OpenAIBaseURL == "" {
			errs = append(errs, errors.New("OPENAI_API_KEY is empty: PROVIDER=openai needs it (or OPENAI_BASE_URL for an OpenAI-compatible server that needs no key)"))
		}
	case "anthropic":
		if c.AnthropicAPIKey == "" && c.AnthropicBaseURL == "" {
			errs = append(errs, errors.New("ANTHROPIC_API_KEY is empty: PROVIDER=anthropic needs it"))
		}
	case "http":
		if c.HTTPProviderURL == "" {
			errs = append(errs, errors.New("HTTP_PROVIDER_URL is empty: PROVIDER=http needs the URL of your bulk endpoint"))
		}
	}
	if _, err := cost.ParsePrices(c.Prices); err != nil {
		errs = append(errs, fmt.Errorf("PRICES: %w", err))
	}
	if c.BatchDiscount < 0 || c.BatchDiscount >= 1 || math.IsNaN(c.BatchDiscount) {
		errs = append(errs, fmt.Errorf("BATCH_DISCOUNT=%g: want a fraction from 0 to below 1, such as 0.5", c.BatchDiscount))
	}
	return errs
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// auth returns the NATS credentials settings.
func (c config) auth() jetstream.AuthConfig {
	return jetstream.AuthConfig{
		CredsFile: c.NATSCreds, NKeySeedFile: c.NATSNKeySeed,
		User: c.NATSUser, Password: c.NATSPassword, Token: c.NATSToken,
		TLSCA: c.NATSTLSCA, TLSCert: c.NATSTLSCert, TLSKey: c.NATSTLSKey,
	}
}

// newProvider builds the configured provider, its HTTP client reading the
// rate-limit headers of every answer, wrapped in the rate limiter: the
// limiter keeps to this worker's share of PROVIDER_RPM and PROVIDER_TPM in
// fq's fleet (the whole limits while it has none), slows down when the
// headers say the account has little left, and pauses the fleet on a
// Retry-After. In async mode the limits apply to the synchronous calls
// (the MAX_WAIT fallback); Batch API jobs wait for room in the provider's
// batch queue instead (PROVIDER_QUEUE_TOKENS, PROVIDER_QUEUE_REQUESTS).
//
// A service tier a model refuses (BATCH_SERVICE_TIER, URGENT_SERVICE_TIER)
// is logged once; its calls go to the default tier.
func newProvider(c config, log *zap.Logger, fq *fleetQuota) (provider.Provider, *quota, error) {
	var (
		p        provider.Provider
		err      error
		readings = &ratelimit.Readings{}
		client   = readingClient(readings)
	)
	switch c.Provider {
	case "openai":
		key := c.OpenAIAPIKey
		if key == "" {
			// An OpenAI-compatible server that needs no key still gets a
			// bearer header.
			key = "unused"
		}
		// The base URLs may be written with or without /v1.
		p, err = openai.New(openai.Config{APIKey: key, BaseURL: openai.NormalizeBaseURL(c.OpenAIBaseURL), Mode: openai.Mode(c.BatchMode),
			HTTPClient: client, TierRejected: tierRejectedLogger(log)})
	case "anthropic":
		key := c.AnthropicAPIKey
		if key == "" {
			key = "unused"
		}
		p, err = anthropic.New(anthropic.Config{APIKey: key, BaseURL: anthropic.NormalizeBaseURL(c.AnthropicBaseURL), Mode: anthropic.Mode(c.BatchMode), HTTPClient: client})
	case "http":
		p, err = httpapi.New(httpapi.Config{URL: c.HTTPProviderURL, Token: c.HTTPProviderToken, Mode: httpapi.Mode(c.BatchMode), HTTPClient: client})
	default:
		err = fmt.Errorf("PROVIDER=%s: want openai, anthropic or http", c.Provider)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("set up provider %s: %w", c.Provider, err)
	}
	limited, err := ratelimit.New(p, ratelimit.Limits{RPM: c.ProviderRPM, TPM: c.ProviderTPM},
		ratelimit.WithFleet(fq), ratelimit.WithReadings(readings))
	if err != nil {
		return nil, nil, fmt.Errorf("set up PROVIDER_RPM/PROVIDER_TPM: %w", err)
	}
	q := &quota{limiter: limited, fleet: fq}
	ap, ok := p.(provider.AsyncProvider)
	if !ok || c.BatchMode != "async" {
		return limited, q, nil
	}
	q.queue, err = ratelimit.NewQueue(ap, ratelimit.QueueLimits{Tokens: int64(c.ProviderQueueTokens), Requests: int64(c.ProviderQueueRequests)},
		ratelimit.WithJobQueue(fq))
	if err != nil {
		return nil, nil, fmt.Errorf("set up PROVIDER_QUEUE_TOKENS/PROVIDER_QUEUE_REQUESTS: %w", err)
	}
	async := limitedAsync{Provider: limited, jobs: q.queue}
	if _, ok := p.(provider.CombinedJobProvider); ok {
		return limitedCombined{async, q.queue}, q, nil
	}
	return async, q, nil
}

// limitedAsync is an async provider whose synchronous calls are rate
// limited and whose Batch API jobs wait for room in the provider's queue.
type limitedAsync struct {
	*ratelimit.Provider
	jobs provider.AsyncProvider
}

func (l limitedAsync) SubmitJob(ctx context.Context, b provider.Batch) (string, error) {
	return l.jobs.SubmitJob(ctx, b)
}

func (l limitedAsync) PollJob(ctx context.Context, id string) (provider.JobStatus, error) {
	return l.jobs.PollJob(ctx, id)
}

func (l limitedAsync) CancelJob(ctx context.Context, id string) error {
	return l.jobs.CancelJob(ctx, id)
}

// limitedCombined is limitedAsync for a provider that can combine requests
// in a Batch API line (ASYNC_COMBINE).
type limitedCombined struct {
	limitedAsync
	combined provider.CombinedJobProvider
}

func (l limitedCombined) SubmitCombinedJob(ctx context.Context, lines []provider.Batch) (string, error) {
	return l.combined.SubmitCombinedJob(ctx, lines)
}

// newAccountant prices calls with PRICES; calls in async mode get
// BATCH_DISCOUNT.
func newAccountant(c config) (*cost.Accountant, error) {
	prices, err := cost.ParsePrices(c.Prices)
	if err != nil {
		return nil, fmt.Errorf("PRICES: %w", err)
	}
	return cost.NewAccountant(prices, c.BatchDiscount)
}

// costObserver feeds the engine's call reports to the accountant.
type costObserver struct {
	batch.NopObserver
	a *cost.Accountant
}

func (o costObserver) CallFinished(c batch.CallReport) { o.a.CallFinished(c) }

func (o costObserver) CacheUsed(r batch.CacheReport) { o.a.CacheUsed(r) }

// registerCost exposes the estimated spend and saving as gauges, in
// dollars (PRICES are dollars per million tokens):
// aibatch_estimated_cost_dollars and aibatch_estimated_saving_dollars.
// Like batch-stats' estimated_cost and estimated_saving, which are null
// until then, the gauges are absent until a call of a model priced in
// PRICES was answered: without PRICES they never appear, rather than show
// a cost of 0 that nobody computed.
func registerCost(reg prometheus.Registerer, a *cost.Accountant) error {
	if err := reg.Register(costCollector{a: a}); err != nil {
		return fmt.Errorf("register cost metrics: %w", err)
	}
	return nil
}

var (
	costDesc = prometheus.NewDesc("aibatch_estimated_cost_dollars",
		"Estimated spend on provider calls since the worker started, in dollars, from PRICES; absent until a call of a priced model was answered.", nil, nil)
	savingDesc = prometheus.NewDesc("aibatch_estimated_saving_dollars",
		"Estimated saving of batching, the response cache and prompt caching against one call per request since the worker started, in dollars; absent until a call of a priced model was answered.", nil, nil)
	modelCostDesc = prometheus.NewDesc("aibatch_model_estimated_cost_dollars",
		"Estimated spend on a model's calls since the worker started, in dollars, from PRICES; absent for models not in PRICES.", []string{"model"}, nil)
	modelSoloDesc = prometheus.NewDesc("aibatch_model_one_by_one_cost_dollars",
		"Estimated cost of the same requests of a model sent one per call at the standard rate with no cache, in dollars; absent for models not in PRICES.", []string{"model"}, nil)
	shadowCostDesc = prometheus.NewDesc("aibatch_estimated_shadow_cost_dollars",
		"Estimated spend on shadow calls (SHADOW_RATE) since the worker started, in dollars, apart from aibatch_estimated_cost_dollars; absent until one of a priced model was answered.", nil, nil)
)

// costCollector reads the accountant's totals at scrape time.
type costCollector struct{ a *cost.Accountant }

func (c costCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- costDesc
	ch <- savingDesc
	ch <- modelCostDesc
	ch <- modelSoloDesc
	ch <- shadowCostDesc
}

func (c costCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.a.Totals()
	if t.ShadowCalls > 0 {
		ch <- prometheus.MustNewConstMetric(shadowCostDesc, prometheus.GaugeValue, t.Shadow)
	}
	if !t.Estimated() {
		return
	}
	ch <- prometheus.MustNewConstMetric(costDesc, prometheus.GaugeValue, t.Spend)
	ch <- prometheus.MustNewConstMetric(savingDesc, prometheus.GaugeValue, t.Saving)
	for _, m := range t.ByModel {
		if m.Priced {
			ch <- prometheus.MustNewConstMetric(modelCostDesc, prometheus.GaugeValue, m.Cost, m.Model)
			ch <- prometheus.MustNewConstMetric(modelSoloDesc, prometheus.GaugeValue, m.OneByOne, m.Model)
		}
	}
}
