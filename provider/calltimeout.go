package provider

import (
	"context"
	"time"
)

type callTimeoutKey struct{}

// WithCallTimeout returns ctx carrying d, the time one call may take once
// it is sent. A caller hands it to a Pacer instead of a deadline, so that
// the time a call waits for its turn is not counted against it.
func WithCallTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, callTimeoutKey{}, d)
}

// CallTimeoutOf returns the call timeout WithCallTimeout put in ctx, or 0.
func CallTimeoutOf(ctx context.Context) time.Duration {
	d, _ := ctx.Value(callTimeoutKey{}).(time.Duration)
	return d
}

// Pacer is implemented by a Provider that may hold a call back before it
// sends it (a rate limiter pacing the fleet's quota). Its Complete applies
// the CallTimeoutOf its context from the moment the call goes, so a call
// queued for its turn under a small quota does not time out as if the API
// were slow (which would spend the circuit breaker's patience on our own
// pacing).
type Pacer interface {
	Provider
	// PacesCalls reports whether Complete applies the call timeout itself.
	PacesCalls() bool
}

// CallContext returns the context for one call of p that may take d once
// sent: for a Pacer, ctx carrying d; otherwise ctx with a deadline d from
// now. The cancel function must be called when the call returns.
func CallContext(ctx context.Context, p Provider, d time.Duration) (context.Context, context.CancelFunc) {
	if pacer, ok := p.(Pacer); ok && pacer.PacesCalls() && d > 0 {
		return WithCallTimeout(ctx, d), func() {}
	}
	return context.WithTimeout(ctx, d)
}
