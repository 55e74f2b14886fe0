package ratelimit

import (
	"context"
	"time"

	"golang.org/x/time/rate"

	"github.com/aibatch/aibatch/provider"
)

// TryComplete makes b's call only if the limits have room for it now,
// room no other call is waiting for, without waiting itself: it calls when
// no pause from an earlier answer holds calls back, no Complete is waiting
// for its turn, and each bucket is full (the call bucket has gone a whole
// spacing without a call, the token bucket has refilled). Then it takes
// one call and EstimateTokens(b) tokens (at most the token bucket's size),
// calls the wrapped provider and returns what it returned, with called
// true (err is the call's own). Otherwise it returns at once with called
// false, takes nothing from the buckets and calls nothing.
//
// It is for calls that matter less than the rest (shadow samples of answer
// quality): they use only the share of the limits that would go unused,
// and they never stand in line ahead of one that waits. While a backlog
// keeps the calls at the limit, they make none.
func (p *Provider) TryComplete(ctx context.Context, b provider.Batch) (results []provider.Result, called bool, err error) {
	if len(b.Requests) > 0 && !p.reserveNow(b) {
		return nil, false, nil
	}
	results, err = p.next.Complete(ctx, b)
	p.observe(results, err)
	return results, true, err
}

// reserveNow takes b's share of the buckets if every bucket is full and no
// call waits, and reports whether it did.
func (p *Provider) reserveNow(b provider.Batch) bool {
	now := p.clock.Now()
	if p.adjust(now).After(now) || p.waiting.Load() > 0 {
		return false
	}
	calls, ok := p.calls.reserveFull(now, 1)
	if !ok {
		return false
	}
	if _, ok := p.tokens.reserveFull(now, EstimateTokens(b)); !ok {
		if calls != nil {
			calls.CancelAt(now)
		}
		return false
	}
	return true
}

// reserveFull takes n (at most the bucket's size) at now if the bucket is
// full, and returns the reservation (nil while nothing is limited).
func (b *bucket) reserveFull(now time.Time, n int) (*rate.Reservation, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lim.Limit() == rate.Inf {
		return nil, true
	}
	if b.lim.TokensAt(now) < float64(b.lim.Burst()) {
		return nil, false
	}
	return b.lim.ReserveN(now, min(n, b.lim.Burst())), true
}
