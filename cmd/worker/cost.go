package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/respcache"
)

// serviceTiers are the values BATCH_SERVICE_TIER and URGENT_SERVICE_TIER
// take: OpenAI's service_tier, or empty for none.
var serviceTiers = []string{"", "auto", "default", "flex", "priority", "scale"}

// tierRejectedLogger logs, once per model and tier, that a model refused a
// service tier and its calls go to the default tier.
func tierRejectedLogger(log *zap.Logger) func(model, tier, reason string) {
	return func(model, tier, reason string) {
		log.Warn("the model refuses the service tier; its calls go to the default tier",
			zap.String("model", model), zap.String("service_tier", tier), zap.String("reason", reason))
	}
}

// validateCost checks the settings of what the worker does to spend less.
func (c config) validateCost() []error {
	var errs []error
	if c.ResponseCacheTTL < 0 || (c.ResponseCacheTTL > 0 && c.ResponseCacheTTL < time.Second) {
		errs = append(errs, fmt.Errorf("RESPONSE_CACHE_TTL=%s: want 0 (no response cache) or a duration of at least 1s, such as 24h", c.ResponseCacheTTL))
	}
	for _, v := range []struct{ name, value string }{{"BATCH_SERVICE_TIER", c.BatchServiceTier}, {"URGENT_SERVICE_TIER", c.UrgentServiceTier}} {
		if !slices.Contains(serviceTiers, v.value) {
			errs = append(errs, fmt.Errorf("%s=%q: want flex, default, priority, scale, auto, or empty for the provider's default", v.name, v.value))
		}
		if v.value != "" && c.Provider != "openai" {
			errs = append(errs, fmt.Errorf("%s=%q: service tiers are OpenAI's; PROVIDER=%s has none (leave it empty)", v.name, v.value, c.Provider))
		}
	}
	if c.AsyncCombine && (c.BatchMode != "async" || c.Provider == "http") {
		errs = append(errs, fmt.Errorf("ASYNC_COMBINE=true: needs BATCH_MODE=async and PROVIDER=openai or anthropic (have BATCH_MODE=%s, PROVIDER=%s)", c.BatchMode, c.Provider))
	}
	if !bucketName.MatchString(c.CacheBucket) {
		errs = append(errs, fmt.Errorf("CACHE_BUCKET=%q: want letters, digits, - and _ only, such as AI_CACHE", c.CacheBucket))
	}
	return errs
}

// withResponseCache opens CACHE_BUCKET with RESPONSE_CACHE_TTL and adds it
// to the engine's options; with RESPONSE_CACHE_TTL=0 the cache is off and
// opts are returned as they are.
func withResponseCache(ctx context.Context, cfg config, js jetstream.JetStream, opts []batch.Option) ([]batch.Option, error) {
	if cfg.ResponseCacheTTL <= 0 {
		return opts, nil
	}
	store, err := respcache.Open(ctx, js, respcache.Config{Bucket: cfg.CacheBucket, TTL: cfg.ResponseCacheTTL, Replicas: cfg.StreamReplicas})
	if err != nil {
		return nil, fmt.Errorf("set up CACHE_BUCKET=%s (RESPONSE_CACHE_TTL=%s): %w", cfg.CacheBucket, cfg.ResponseCacheTTL, err)
	}
	return append(opts, batch.WithResponseCache(store)), nil
}
