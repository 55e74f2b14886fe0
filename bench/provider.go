package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/aibatch/aibatch/provider"
)

// benchProvider is an in-process provider.Provider: it answers every request
// of a call (a short echo of its input) after latency, which is zero for the
// instant provider. It counts calls and the most calls it had at once.
type benchProvider struct {
	latency time.Duration

	calls      atomic.Int64
	requests   atomic.Int64
	inCall     atomic.Int64
	mostAtOnce atomic.Int64
}

var _ provider.Provider = (*benchProvider)(nil)

// Name is the provider's short name.
func (p *benchProvider) Name() string { return "bench" }

// echoBytes is how much of the input an answer repeats: answers are short
// and of a fixed size whatever the request size.
const echoBytes = 32

// Complete answers every request of b; it fails the call as transient when
// ctx ends during the latency.
func (p *benchProvider) Complete(ctx context.Context, b provider.Batch) ([]provider.Result, error) {
	p.calls.Add(1)
	p.requests.Add(int64(len(b.Requests)))
	n := p.inCall.Add(1)
	defer p.inCall.Add(-1)
	for {
		m := p.mostAtOnce.Load()
		if n <= m || p.mostAtOnce.CompareAndSwap(m, n) {
			break
		}
	}
	if p.latency > 0 {
		t := time.NewTimer(p.latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, provider.Transient(ctx.Err())
		}
	}
	out := make([]provider.Result, len(b.Requests))
	for i, r := range b.Requests {
		in := r.Input
		if len(in) > echoBytes {
			in = in[:echoBytes]
		}
		out[i] = provider.Result{
			Key:    r.Key,
			Output: "echo: " + in,
			Usage:  provider.Usage{InputTokens: int64(len(r.Input) / 4), OutputTokens: 10},
		}
	}
	return out, nil
}
