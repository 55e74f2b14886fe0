package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/anthropic"
	"github.com/aibatch/aibatch/provider/anthropictest"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/provider/ratelimit"
	"github.com/prometheus/client_golang/prometheus"
)

// Every provider goes through the rate limiter, limits set or not: it
// reads the rate-limit headers of every answer and pauses on Retry-After.
// In async mode the jobs go through the batch queue.
func TestNewProviderWrapsTheRateLimiter(t *testing.T) {
	t.Parallel()
	fake := openaitest.NewServer()
	t.Cleanup(fake.Close)
	tests := []struct {
		name      string
		mode      string
		rpm       int
		wantAsync bool
	}{
		{"combined, no limits", "combined", 0, false},
		{"combined, limited", "combined", 60, false},
		{"async, no limits", "async", 0, true},
		{"async, limited: the fallback calls are limited, jobs still async", "async", 60, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := config{Provider: "openai", BatchMode: tt.mode, OpenAIBaseURL: fake.URL, OpenAIAPIKey: "k", ProviderRPM: tt.rpm}
			p, q, err := newProvider(c, zap.NewNop(), &fleetQuota{})
			if err != nil {
				t.Fatal(err)
			}
			_, plainLimited := p.(*ratelimit.Provider)
			_, asyncLimited := p.(limitedAsync)
			_, combinedLimited := p.(limitedCombined)
			asyncLimited = asyncLimited || combinedLimited
			// The openai provider's combined jobs (ASYNC_COMBINE) go
			// through the queue too.
			if _, combines := p.(provider.CombinedJobProvider); tt.wantAsync && !combines {
				t.Fatalf("%T lost SubmitCombinedJob", p)
			}
			if tt.wantAsync != asyncLimited || tt.wantAsync == plainLimited {
				t.Fatalf("%T: async %v, limited %v; want async %v, limited", p, asyncLimited, plainLimited, tt.wantAsync)
			}
			if (q.queue != nil) != tt.wantAsync || q.limiter == nil || q.limiter.Status().RPM != tt.rpm {
				t.Errorf("quota %+v: want a limiter of RPM %d and a queue in async mode only", q, tt.rpm)
			}
		})
	}

	// The wrapped async provider's jobs reach the Batch API and are
	// counted in the queue; the headers of the answers are read.
	fake.SetRateLimit(600, 0)
	p, q, err := newProvider(config{Provider: "openai", BatchMode: "async", OpenAIBaseURL: fake.URL, OpenAIAPIKey: "k", ProviderRPM: 60}, zap.NewNop(), &fleetQuota{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := p.(provider.AsyncProvider).SubmitJob(ctx, provider.Batch{Model: "m", Requests: []provider.Request{{Key: "0", Input: "x"}}})
	if err != nil || id == "" || fake.Jobs() != 1 {
		t.Fatalf("SubmitJob through the limiter: %q, %v, jobs %d", id, err, fake.Jobs())
	}
	if st := q.stats(); st.Queue == nil || st.Queue.Enqueued["m"].Requests != 1 {
		t.Errorf("quota stats %+v: want the job in the queue", st)
	}
	if _, err := p.Complete(ctx, provider.Batch{Model: "m", Requests: []provider.Request{{Key: "0", Input: "x"}}}); err != nil {
		t.Fatal(err)
	}
	if st := q.stats(); st.Remaining == nil || st.Remaining.Requests.Limit != 600 {
		t.Errorf("quota stats %+v: want the rate-limit headers of the answer", st)
	}
}

// OPENAI_BASE_URL and ANTHROPIC_BASE_URL work with and without /v1: each
// form answers a call from the fake that speaks the provider's API.
func TestBaseURLsWithAndWithoutVersion(t *testing.T) {
	t.Parallel()
	oai := openaitest.NewServer()
	t.Cleanup(oai.Close)
	ant := anthropictest.NewServer()
	t.Cleanup(ant.Close)
	oaiRoot := strings.TrimSuffix(oai.URL, "/v1") // the fake's URL ends in /v1
	tests := []struct {
		name string
		cfg  config
	}{
		{"openai with /v1", config{Provider: "openai", OpenAIBaseURL: oaiRoot + "/v1"}},
		{"openai with /v1/", config{Provider: "openai", OpenAIBaseURL: oaiRoot + "/v1/"}},
		{"openai without /v1", config{Provider: "openai", OpenAIBaseURL: oaiRoot}},
		{"openai without /v1, trailing slash", config{Provider: "openai", OpenAIBaseURL: oaiRoot + "/"}},
		{"anthropic without /v1", config{Provider: "anthropic", AnthropicBaseURL: ant.URL}},
		{"anthropic with /v1", config{Provider: "anthropic", AnthropicBaseURL: ant.URL + "/v1"}},
		{"anthropic with /v1/", config{Provider: "anthropic", AnthropicBaseURL: ant.URL + "/v1/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.cfg.BatchMode, tt.cfg.OpenAIAPIKey, tt.cfg.AnthropicAPIKey = "combined", "k", "k"
			p, _, err := newProvider(tt.cfg, zap.NewNop(), &fleetQuota{})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := p.Complete(ctx, provider.Batch{ID: "b", Model: "m", Requests: []provider.Request{{Key: "0", Input: "hello"}, {Key: "1", Input: "again"}}})
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			if len(res) != 2 || res[0].Err != nil || res[1].Err != nil {
				t.Fatalf("results %+v, want two answers", res)
			}
		})
	}
}

func TestNormalizeBaseURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                                  "",
		"http://127.0.0.1:8089":             "http://127.0.0.1:8089/v1",
		"http://127.0.0.1:8089/":            "http://127.0.0.1:8089/v1",
		"http://127.0.0.1:8089/v1":          "http://127.0.0.1:8089/v1",
		"https://api.openai.com/v1/":        "https://api.openai.com/v1",
		"https://gateway.example/openai/v1": "https://gateway.example/openai/v1",
		"https://compat.example/api/v4/":    "https://compat.example/api/v4",
		"not a url":                         "not a url",
	} {
		if got := openai.NormalizeBaseURL(in); got != want {
			t.Errorf("openai.NormalizeBaseURL(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"":                                "",
		"https://api.anthropic.com":       "https://api.anthropic.com",
		"https://api.anthropic.com/":      "https://api.anthropic.com",
		"https://api.anthropic.com/v1":    "https://api.anthropic.com",
		"https://api.anthropic.com/v1/":   "https://api.anthropic.com",
		"https://proxy.example/claude":    "https://proxy.example/claude",
		"https://proxy.example/claude/v1": "https://proxy.example/claude",
		"not a url":                       "not a url",
	} {
		if got := anthropic.NormalizeBaseURL(in); got != want {
			t.Errorf("anthropic.NormalizeBaseURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// The cost gauges carry their unit and appear only once a priced call was
// answered, as batch-stats' estimates are null until then: without PRICES
// /metrics shows no cost rather than a cost of 0.
func TestCostGaugesAbsentUntilAPricedCall(t *testing.T) {
	t.Parallel()
	names := func(reg *prometheus.Registry) map[string]float64 {
		t.Helper()
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, f := range families {
			out[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
		}
		return out
	}
	for _, prices := range []string{"", "gpt-4o-mini=1/2"} {
		a, err := newAccountant(config{Prices: prices, BatchDiscount: 0.5})
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		if err := registerCost(reg, a); err != nil {
			t.Fatal(err)
		}
		if got := names(reg); len(got) != 0 {
			t.Errorf("PRICES=%q, no call yet: gathered %v, want no cost gauges", prices, got)
		}
		a.CallFinished(batch.CallReport{Model: "gpt-4o-mini", Usage: provider.Usage{InputTokens: 1_000_000, OutputTokens: 1_000_000}, SoloPromptTokens: 3_000_000})
		got := names(reg)
		if prices == "" {
			if len(got) != 0 {
				t.Errorf("PRICES unset, after a call: gathered %v, want no cost gauges", got)
			}
			continue
		}
		// 1M input at $1 and 1M output at $2; alone, 3M input: $5, so $2 saved.
		if got["aibatch_estimated_cost_dollars"] != 3 || got["aibatch_estimated_saving_dollars"] != 2 {
			t.Errorf("after a priced call: %v, want cost 3 and saving 2 dollars", got)
		}
		// Per model: the cost next to what one call per request would
		// have cost.
		if got["aibatch_model_estimated_cost_dollars"] != 3 || got["aibatch_model_one_by_one_cost_dollars"] != 5 {
			t.Errorf("after a priced call: %v, want the model's cost 3 and one-by-one cost 5 dollars", got)
		}
	}
}
