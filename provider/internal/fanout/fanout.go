// Package fanout runs the plain calls of the SDK providers (provider/openai
// and provider/anthropic): one call per request of a batch (ModeSingle, or
// a batch of one request), a bounded number at once, one result per
// request, or one error when the calls' failure concerns more than their
// requests.
package fanout

import (
	"context"
	"errors"
	"sync"

	"github.com/aibatch/aibatch/provider"
)

// Complete calls one for every request of reqs, at most limit (at least 1)
// calls at once, and returns one result per request, in request order.
//
// A request still waiting for a free slot when ctx ends is not called: its
// result is {Key, Err: fail(Key, err)}, err being the transient
// ScopeProvider *provider.Error whose cause is ctx's error.
//
// When no result is free of error, the failure may concern more than the
// requests, and Complete returns no results and an error instead:
//   - when ctx has ended: whole(err), err being the transient ScopeProvider
//     *provider.Error whose cause is ctx's error;
//   - when every result's error concerns the provider (ScopeProvider: an
//     outage, a wrong key, a rate limit) or the model (it wraps
//     provider.ErrUnknownModel): the first request's error, unchanged.
//
// Otherwise its error is nil, and a result's Err may be of any scope.
func Complete(ctx context.Context, reqs []provider.Request, limit int,
	one func(provider.Request) provider.Result, fail func(key string, err error) error, whole func(err error) error,
) ([]provider.Result, error) {
	results := make([]provider.Result, len(reqs))
	if len(reqs) == 1 && ctx.Err() == nil {
		// A combined call is one request: made on this goroutine, the SDK's
		// deep stack is not grown afresh on a new goroutine for every call.
		results[0] = one(reqs[0])
	} else {
		spread(ctx, reqs, limit, results, one, fail)
	}
	if anyAnswered(results) {
		return results, nil
	}
	if ctx.Err() != nil {
		return nil, whole(interrupted(ctx))
	}
	for _, r := range results {
		if !beyondRequest(r.Err) {
			return results, nil
		}
	}
	return nil, results[0].Err
}

// interrupted is the error of a call ctx ended.
// spread makes one call per request, limit at a time, into results.
func spread(ctx context.Context, reqs []provider.Request, limit int, results []provider.Result,
	one func(provider.Request) provider.Result, fail func(key string, err error) error,
) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i, r := range reqs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			results[i] = provider.Result{Key: r.Key, Err: fail(r.Key, interrupted(ctx))}
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = one(r)
		})
	}
	wg.Wait()
}

func interrupted(ctx context.Context) error {
	return &provider.Error{Scope: provider.ScopeProvider, Err: ctx.Err()}
}

// beyondRequest reports whether err concerns more than its request: the
// provider or the model.
func beyondRequest(err error) bool {
	return provider.ScopeOf(err) == provider.ScopeProvider || errors.Is(err, provider.ErrUnknownModel)
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
