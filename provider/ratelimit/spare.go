package ratelimit

import (
	"context"

	"golang.org/x/time/rate"

	"github.com/aibatch/aibatch/provider"
)

// TryComplete makes b's call only if the limits allow it now, without
// waiting, and leave room for the calls that matter more: it calls when
// no pause from an earlier answer holds calls back and each bucket would
// still hold at least half its size after b's share is taken. Then it
// takes that share as Complete does, calls the wrapped provider and returns
// what it returned, with called true (err is the call's own). Otherwise it
// returns at once with called false, takes nothing from the buckets and
// calls nothing.
//
// It is for calls that matter less than the rest (shadow samples of answer
// quality): they use the upper half of each bucket only, so the calls made
// with Complete always have the lower half, and they never stand in line
// ahead of one that waits.
func (p *Provider) TryComplete(ctx context.Context, b provider.Batch) (results []provider.Result, called bool, err error) {
	if len(b.Requests) > 0 && !p.reserveNow(b) {
		return nil, false, nil
	}
	results, err = p.next.Complete(ctx, b)
	p.observe(results, err)
	return results, true, err
}

// reserveNow takes b's share of the buckets if each can give it now and
// keep half its size, and reports whether they could.
func (p *Provider) reserveNow(b provider.Batch) bool {
	now := p.clock.Now()
	if p.PausedUntil().After(now) {
		return false
	}
	type take struct {
		l *rate.Limiter
		n int
	}
	var takes []take
	if p.calls != nil {
		takes = append(takes, take{p.calls, 1})
	}
	if p.tokens != nil {
		takes = append(takes, take{p.tokens, min(EstimateTokens(b), p.tokens.Burst())})
	}
	for _, t := range takes {
		if t.l.TokensAt(now)-float64(t.n) < float64(t.l.Burst())/2 {
			return false
		}
	}
	// Another call may have taken from a bucket since: then give back.
	var taken []*rate.Reservation
	for _, t := range takes {
		r := t.l.ReserveN(now, t.n)
		taken = append(taken, r)
		if r.DelayFrom(now) > 0 {
			for _, r := range taken {
				r.CancelAt(now)
			}
			return false
		}
	}
	return true
}
