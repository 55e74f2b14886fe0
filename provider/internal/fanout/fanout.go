// Package fanout runs the single mode of the SDK providers (provider/openai
// and provider/anthropic): one call per request of a batch, a bounded number
// at once, one result per request.
package fanout

import (
	"context"
	"sync"

	"github.com/aibatch/aibatch/provider"
)

// Complete calls one for every request of reqs, at most limit (at least 1)
// calls at once, and returns one result per request, in request order.
//
// A request still waiting for a free slot when ctx ends is not called: its
// result is {Key, Err: fail(Key, err)}, err being the transient
// *provider.Error whose cause is ctx's error.
//
// When ctx has ended and no result is free of error, Complete returns no
// results and the transient *provider.Error whose cause is ctx's error;
// otherwise its error is nil.
func Complete(ctx context.Context, reqs []provider.Request, limit int,
	one func(provider.Request) provider.Result, fail func(key string, err error) error,
) ([]provider.Result, error) {
	results := make([]provider.Result, len(reqs))
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i, r := range reqs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			results[i] = provider.Result{Key: r.Key, Err: fail(r.Key, provider.Transient(ctx.Err()))}
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = one(r)
		})
	}
	wg.Wait()
	if ctxErr := ctx.Err(); ctxErr != nil && !anyAnswered(results) {
		return nil, provider.Transient(ctxErr)
	}
	return results, nil
}

// anyAnswered reports whether some result has no error.
func anyAnswered(results []provider.Result) bool {
	for _, r := range results {
		if r.Err == nil {
			return true
		}
	}
	return false
}
