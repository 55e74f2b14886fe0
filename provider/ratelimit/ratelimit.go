// Package ratelimit wraps a provider.Provider so that it keeps to the API's
// rate limits: it paces calls to a number of requests and of tokens per
// minute, and when the API answers with a Retry-After (a 429 or an
// overloaded 5xx) it holds back every following call until that time, which
// slows the worker down instead of spending attempts on refusals.
//
// Limits are per wrapper, that is per worker process: with several workers,
// give each its share of the account's limits.
//
// The wrapper passes on what the wrapped provider says of itself
// (provider.Supporter, provider.FormatCombiner, provider.OutputLimiter), so
// the engine plans as it would without it.
//
// Pacing uses token buckets (golang.org/x/time/rate) that refill
// continuously at RPM/60 calls and TPM/60 tokens per second and hold at most
// a minute's worth by default (WithBurst changes that), the way the APIs
// themselves account. Tokens are estimated before the call; see
// EstimateTokens.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// Limits are the rates a Provider keeps to. A field of NoLimit (0, the
// zero value and the default) means no limit of that kind.
type Limits struct {
	// RPM is the number of calls per minute. Every Complete counts as one
	// call, whatever the wrapped provider's mode.
	RPM int
	// TPM is the number of prompt tokens per minute, as EstimateTokens
	// counts them.
	TPM int
}

// NoLimit is the value of a Limits field that sets no limit of its kind.
const NoLimit = 0

// Clock tells the time and waits. The default uses the system clock; tests
// pass a fake.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Sleep waits for d, or until ctx ends and then returns ctx.Err().
	Sleep(ctx context.Context, d time.Duration) error
}

// Option changes how New builds a Provider.
type Option func(*options)

type options struct {
	clock       Clock
	callBurst   int
	tokenBurst  int
	burstCalled bool
}

// WithClock makes the Provider read the time from c and wait with c.
func WithClock(c Clock) Option {
	return func(o *options) { o.clock = c }
}

// WithBurst sets how many calls and how many tokens the buckets hold at
// most, i.e. how much may go out at once after a quiet period. The defaults
// are RPM and TPM (a minute's worth); calls = 1 spaces calls evenly,
// 60s/RPM apart. Both must be at least 1 (a value for a limit that is 0 is
// ignored).
func WithBurst(calls, tokens int) Option {
	return func(o *options) { o.callBurst, o.tokenBurst, o.burstCalled = calls, tokens, true }
}

var _ provider.Provider = (*Provider)(nil)

// Provider is a provider.Provider that paces the calls of the one it wraps.
// It is safe for concurrent use.
type Provider struct {
	next   provider.Provider
	clock  Clock
	calls  *rate.Limiter // nil: no RPM limit
	tokens *rate.Limiter // nil: no TPM limit

	mu          sync.Mutex
	pausedUntil time.Time
}

// New wraps p so that its calls keep to l. It returns an error when p is nil,
// a limit is negative, or WithBurst was given a size below 1.
func New(p provider.Provider, l Limits, opts ...Option) (*Provider, error) {
	if p == nil {
		return nil, errors.New("ratelimit: provider is nil")
	}
	if l.RPM < 0 || l.TPM < 0 {
		return nil, fmt.Errorf("ratelimit: limits RPM %d, TPM %d must not be negative", l.RPM, l.TPM)
	}
	o := options{clock: systemClock{}, callBurst: l.RPM, tokenBurst: l.TPM}
	for _, opt := range opts {
		opt(&o)
	}
	if o.burstCalled && ((l.RPM > 0 && o.callBurst < 1) || (l.TPM > 0 && o.tokenBurst < 1)) {
		return nil, fmt.Errorf("ratelimit: burst of %d calls, %d tokens: each must be at least 1", o.callBurst, o.tokenBurst)
	}
	w := &Provider{next: p, clock: o.clock}
	if l.RPM > 0 {
		w.calls = rate.NewLimiter(rate.Limit(float64(l.RPM)/60), o.callBurst)
	}
	if l.TPM > 0 {
		w.tokens = rate.NewLimiter(rate.Limit(float64(l.TPM)/60), o.tokenBurst)
	}
	return w, nil
}

// Name returns the wrapped provider's name.
func (p *Provider) Name() string { return p.next.Name() }

// EstimateTokens is the prompt tokens charged for b against TPM: the bytes
// of its Instructions (counted once, as a combined call sends them) and of
// every request's Input, divided by 4 and rounded up, at least 1. Four bytes
// per token is the usual rule of thumb for English text with OpenAI's and
// Anthropic's tokenizers; the answer's tokens are not known before the call
// and are not counted.
func EstimateTokens(b provider.Batch) int {
	n := len(b.Instructions)
	for _, r := range b.Requests {
		n += len(r.Input)
	}
	return max((n+3)/4, 1)
}

// Complete waits until the limits allow a call, then calls the wrapped
// provider and returns what it returned.
//
// The wait takes one call from the RPM bucket and EstimateTokens(b) from
// the TPM bucket. A batch whose estimate exceeds the TPM bucket's size is
// charged the bucket's size instead: it waits for a full bucket and then
// goes out, rather than waiting for ever. The wait also lasts until any
// pause set by an earlier answer has passed.
//
// When the call's error, or the error of any of its results, asks for a
// wait (provider.RetryAfter > 0), every call that starts waiting or is still
// waiting is held back until that wait has passed; a later, shorter wait
// never shortens the pause.
//
// If ctx ends while waiting, Complete returns a transient error wrapping
// ctx.Err() without calling the wrapped provider, and gives back the
// tokens it had taken.
func (p *Provider) Complete(ctx context.Context, b provider.Batch) ([]provider.Result, error) {
	if len(b.Requests) > 0 {
		if err := p.wait(ctx, b); err != nil {
			return nil, err
		}
	}
	results, err := p.next.Complete(ctx, b)
	p.observe(results, err)
	return results, err
}

// PausedUntil returns the time before which calls are held back because the
// API asked for a wait; it is in the past (or zero) when there is no pause.
func (p *Provider) PausedUntil() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pausedUntil
}

// wait blocks until b may be sent.
func (p *Provider) wait(ctx context.Context, b provider.Batch) error {
	now := p.clock.Now()
	var reservations []*rate.Reservation
	if p.calls != nil {
		reservations = append(reservations, p.calls.ReserveN(now, 1))
	}
	if p.tokens != nil {
		n := min(EstimateTokens(b), p.tokens.Burst())
		reservations = append(reservations, p.tokens.ReserveN(now, n))
	}
	until := now
	for _, r := range reservations {
		// n never exceeds the burst, so every reservation is OK.
		until = later(until, now.Add(r.DelayFrom(now)))
	}
	for {
		until = later(until, p.PausedUntil())
		now = p.clock.Now()
		if !until.After(now) {
			return nil
		}
		if err := p.clock.Sleep(ctx, until.Sub(now)); err != nil {
			at := p.clock.Now()
			for _, r := range reservations {
				r.CancelAt(at)
			}
			return fmt.Errorf("ratelimit: wait to call %s: %w", p.next.Name(), provider.Transient(err))
		}
	}
}

// observe starts or extends the pause an answer asks for.
func (p *Provider) observe(results []provider.Result, err error) {
	wait := provider.RetryAfter(err)
	for _, r := range results {
		wait = max(wait, provider.RetryAfter(r.Err))
	}
	if wait <= 0 {
		return
	}
	until := p.clock.Now().Add(wait)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pausedUntil = later(p.pausedUntil, until)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// systemClock is the real clock.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

var (
	_ provider.Supporter      = (*Provider)(nil)
	_ provider.FormatCombiner = (*Provider)(nil)
	_ provider.OutputLimiter  = (*Provider)(nil)
)

// Supports asks the wrapped provider, when it implements
// provider.Supporter; otherwise every kind is served.
func (p *Provider) Supports(kind string) error {
	if s, ok := p.next.(provider.Supporter); ok {
		return s.Supports(kind)
	}
	return nil
}

// CombinesFormat asks the wrapped provider, when it implements
// provider.FormatCombiner; otherwise every format may be combined.
func (p *Provider) CombinesFormat(f wire.ResponseFormat) error {
	if c, ok := p.next.(provider.FormatCombiner); ok {
		return c.CombinesFormat(f)
	}
	return nil
}

// MaxOutputTokens asks the wrapped provider, when it implements
// provider.OutputLimiter; otherwise it is 0 (unknown).
func (p *Provider) MaxOutputTokens(model string) int {
	if l, ok := p.next.(provider.OutputLimiter); ok {
		return l.MaxOutputTokens(model)
	}
	return 0
}
