package openai_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
)

// longInstructions is about 1,500 tokens: a prefix OpenAI caches.
var longInstructions = strings.Repeat("Answer as a careful reviewer would. ", 170)

func costBatch(n int, instructions, tier string) provider.Batch {
	b := provider.Batch{ID: "b", Model: "gpt-test", Instructions: instructions, ServiceTier: tier}
	for i := range n {
		b.Requests = append(b.Requests, provider.Request{Key: fmt.Sprint(i), Input: fmt.Sprintf("obs %d", i)})
	}
	return b
}

func complete(t *testing.T, p *openai.Provider, b provider.Batch) []provider.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	results, err := p.Complete(ctx, b)
	if err != nil || len(results) != len(b.Requests) {
		t.Fatalf("Complete: %d results, %v", len(results), err)
	}
	return results
}

func sum(results []provider.Result) provider.Usage {
	var u provider.Usage
	for _, r := range results {
		u = u.Add(r.Usage)
	}
	return u
}

func TestPromptCacheKeyIsSentAndCachedTokensReadBack(t *testing.T) {
	t.Parallel()
	for _, n := range []int{3, 1} { // a combined call, a plain call
		t.Run(fmt.Sprintf("%d requests", n), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			first := sum(complete(t, b.p, costBatch(n, longInstructions, "")))
			second := sum(complete(t, b.p, costBatch(n, longInstructions, "")))
			complete(t, b.p, costBatch(n, "Other instructions.", ""))
			reqs := b.srv.Requests()
			if len(reqs) != 3 {
				t.Fatalf("%d requests", len(reqs))
			}
			key := reqs[0].PromptCacheKey
			if !strings.HasPrefix(key, "aibatch-") || reqs[1].PromptCacheKey != key || reqs[2].PromptCacheKey == key {
				t.Fatalf("prompt_cache_key %q, %q, %q: want one per group (model and instructions)", key, reqs[1].PromptCacheKey, reqs[2].PromptCacheKey)
			}
			if first.CachedInputTokens != 0 || second.CachedInputTokens < 1024 || second.CachedInputTokens > second.InputTokens {
				t.Fatalf("cached tokens %d then %d of %d, want 0, then the repeated prefix", first.CachedInputTokens, second.CachedInputTokens, second.InputTokens)
			}
		})
	}
}

func TestServiceTierIsSentAndReadBack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, r := range complete(t, b.p, costBatch(3, "", "flex")) {
		if r.ServiceTier != "flex" {
			t.Fatalf("result %+v, want answered by flex", r)
		}
	}
	for _, r := range complete(t, b.p, costBatch(1, "", "")) {
		if r.ServiceTier != "default" {
			t.Fatalf("result %+v, want the default tier", r)
		}
	}
	if reqs := b.srv.Requests(); reqs[0].ServiceTier != "flex" || reqs[1].ServiceTier != "" {
		t.Fatalf("service_tier sent %q then %q", reqs[0].ServiceTier, reqs[1].ServiceTier)
	}
}

func TestARefusedTierFallsBackToTheDefaultOnce(t *testing.T) {
	t.Parallel()
	for _, n := range []int{3, 1} {
		t.Run(fmt.Sprintf("%d requests", n), func(t *testing.T) {
			t.Parallel()
			srv := openaitest.NewServer()
			t.Cleanup(srv.Close)
			srv.RejectTier("flex")
			var mu sync.Mutex
			var told []string
			p, err := openai.New(openai.Config{APIKey: testKey, BaseURL: srv.URL, TierRejected: func(model, tier, reason string) {
				mu.Lock()
				defer mu.Unlock()
				told = append(told, model+"/"+tier+": "+reason)
			}})
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				for _, r := range complete(t, p, costBatch(n, "", "flex")) {
					if r.ServiceTier != "default" || r.Err != nil {
						t.Fatalf("result %+v, want an answer of the default tier", r)
					}
				}
			}
			// flex refused, default; then default at once.
			var tiers []string
			for _, r := range srv.Requests() {
				tiers = append(tiers, r.ServiceTier)
			}
			if strings.Join(tiers, ",") != "flex,," {
				t.Fatalf("service_tier of the requests: %q, want flex, then the default twice", tiers)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(told) != 1 || !strings.HasPrefix(told[0], "gpt-test/flex") {
				t.Fatalf("TierRejected told %q, want once", told)
			}
		})
	}
}

func TestFlexResourceUnavailableIsProviderScope(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.FlexUnavailableNext(1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := b.p.Complete(ctx, costBatch(3, "", "flex"))
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Scope != provider.ScopeProvider || pe.Permanent || pe.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("error %v, want a transient provider-scope 429", err)
	}
	if !strings.Contains(err.Error(), "resource_unavailable") {
		t.Errorf("error %q does not name resource_unavailable", err)
	}
	// Capacity back: the next call is served by flex.
	if r := complete(t, b.p, costBatch(3, "", "flex")); r[0].ServiceTier != "flex" {
		t.Fatalf("after the 429: %+v", r[0])
	}
}
