package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/respcache"
)

// validateCost checks the settings of what the worker does to spend less.
func (c config) validateCost() []error {
	var errs []error
	if c.ResponseCacheTTL < 0 || (c.ResponseCacheTTL > 0 && c.ResponseCacheTTL < time.Second) {
		errs = append(errs, fmt.Errorf("RESPONSE_CACHE_TTL=%s: want 0 (no response cache) or a duration of at least 1s, such as 24h", c.ResponseCacheTTL))
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
