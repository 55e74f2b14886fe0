package client

import (
	"context"
	"fmt"
	"sync"

	"github.com/aibatch/aibatch/wire"
	"github.com/nats-io/nats.go"
)

// Pending is a submitted request whose result has not been collected yet.
// Its methods are safe for concurrent use.
type Pending struct {
	c    *Client
	id   string
	msg  *nats.Msg
	done chan struct{}
	once sync.Once
	res  wire.Result
	err  error
}

// ID is the request's id, which its result carries.
func (p *Pending) ID() string { return p.id }

// Done is closed once Wait would return without blocking.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Wait returns the request's result once it arrives. A result whose Status
// is "error" comes with an error wrapping ErrFailed; a request the broker did
// not confirm storing gives ErrNotConfirmed; a closed client gives
// ErrClosed.
//
// If ctx ends first, Wait returns ctx's error (wrapped) and the handle keeps
// waiting: call Wait again later, or Discard. Ending ctx does not cancel the
// request, which is answered and stored in AI_RESULTS either way.
func (p *Pending) Wait(ctx context.Context) (wire.Result, error) {
	select {
	case <-p.done:
		return p.res, p.err
	case <-ctx.Done():
		return wire.Result{}, fmt.Errorf("client: wait for the result of request %q (it stays queued; Fetch reads its result later): %w", p.id, ctx.Err())
	}
}

// Discard stops waiting: a result that arrives later is dropped, and Wait
// returns ErrDiscarded. The request itself is not cancelled.
func (p *Pending) Discard() {
	if p.c.remove(p) {
		p.finish(wire.Result{}, ErrDiscarded)
	}
}

// waitOrDiscard is Wait that discards the handle when ctx ends first.
func (p *Pending) waitOrDiscard(ctx context.Context) (wire.Result, error) {
	res, err := p.Wait(ctx)
	select {
	case <-p.done:
		return p.res, p.err // the result won the race with ctx
	default:
		p.Discard()
		return res, err
	}
}

// finish records the outcome once.
func (p *Pending) finish(res wire.Result, err error) {
	p.once.Do(func() {
		p.res, p.err = res, err
		close(p.done)
	})
}
