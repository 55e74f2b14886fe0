package ratelimit

import (
	"context"

	"golang.org/x/time/rate"

	"github.com/aibatch/aibatch/provider"
)

// TryComplete makes b's call only if the limits allow it now, without
// waiting: with room in both buckets and no pause from an earlier answer,
// it takes b's share as Complete does, calls the wrapped provider and
// returns what it returned, with called true. Otherwise it returns at once
// with called false, takes nothing from the buckets and calls nothing.
//
// It is for calls that matter less than the rest (shadow samples of answer
// quality): they use capacity that is free, and never stand in line ahead of
// a call that waits in Complete.
func (p *Provider) TryComplete(ctx context.Context, b provider.Batch) (results []provider.Result, called bool, err error) {
	if len(b.Requests) > 0 && !p.reserveNow(b) {
		return nil, false, nil
	}
	results, err = p.next.Complete(ctx, b)
	p.observe(results, err)
	return results, true, err
}

// reserveNow takes b's share of the buckets if both can give it now, and
// reports whether they could.
func (p *Provider) reserveNow(b provider.Batch) bool {
	now := p.clock.Now()
	if p.PausedUntil().After(now) {
		return false
	}
	var taken []*rate.Reservation
	ok := true
	if p.calls != nil {
		r := p.calls.ReserveN(now, 1)
		taken = append(taken, r)
		ok = r.DelayFrom(now) == 0
	}
	if ok && p.tokens != nil {
		r := p.tokens.ReserveN(now, min(EstimateTokens(b), p.tokens.Burst()))
		taken = append(taken, r)
		ok = r.DelayFrom(now) == 0
	}
	if !ok {
		for _, r := range taken {
			r.CancelAt(now)
		}
	}
	return ok
}
