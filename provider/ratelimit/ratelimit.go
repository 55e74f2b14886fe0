// Package ratelimit wraps a provider.Provider so that it keeps to the API's
// rate limits: it paces calls to a number of requests and of tokens per
// minute, and when the API answers with a Retry-After (a 429 or an
// overloaded 5xx) it holds back every following call until that time, which
// slows the worker down instead of spending attempts on refusals.
//
// # One account, many workers
//
// Limits are the account's. Alone, a Provider keeps to all of them. With a
// Fleet (WithFleet) it keeps to its share, 1/N of them with N workers live,
// and the share follows N as workers come and go; a Retry-After one worker
// receives pauses every worker of the fleet. internal/fleet keeps the
// fleet in a JetStream key-value bucket.
//
// # Learning from the provider
//
// With Readings (WithReadings), whose Transport reads the rate-limit
// headers of every answer (OpenAI's x-ratelimit-*, Anthropic's
// anthropic-ratelimit-*), the pace is also held to what the account has
// left: Remaining spread over the time until the reset (see Window), so
// the fleet slows before the provider refuses it, also when the limits
// set are higher than the account's or are not set at all.
//
// # Pacing
//
// Pacing uses token buckets (golang.org/x/time/rate) refilled continuously
// at the pace: RPM/60 calls and TPM/60 tokens a second, times the share.
// The call bucket holds one call, so calls are spaced evenly (60s/RPM
// apart, alone) and a worker never starts with a burst; the token bucket
// holds a second's worth, and a call of more tokens waits for them in
// bucket-sized parts. WithBurst changes the sizes. Tokens are estimated
// before the call; see EstimateTokens.
//
// The wrapper passes on what the wrapped provider says of itself
// (provider.Supporter, provider.FormatCombiner, provider.OutputLimiter), so
// the engine plans as it would without it.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
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
	fleet       Fleet
	readings    *Readings
}

// WithClock makes the Provider read the time from c and wait with c.
func WithClock(c Clock) Option {
	return func(o *options) { o.clock = c }
}

// WithBurst sets how many calls and how many tokens the buckets hold at
// most, i.e. how much may go out at once after a quiet period. The
// defaults are 1 call (calls spaced evenly) and a second's worth of
// tokens at the pace of the moment. Both must be at least 1 (a value for a
// limit that is 0 is ignored).
func WithBurst(calls, tokens int) Option {
	return func(o *options) { o.callBurst, o.tokenBurst, o.burstCalled = calls, tokens, true }
}

// WithFleet makes the Provider keep to its share of the limits in f, and
// pause with it.
func WithFleet(f Fleet) Option {
	return func(o *options) { o.fleet = f }
}

// WithReadings makes the Provider pace its calls by the rate-limit headers
// r reads (see Readings.Transport), too, and report them to its Fleet.
func WithReadings(r *Readings) Option {
	return func(o *options) { o.readings = r }
}

// recheck is the longest a waiting call sleeps before it looks at the pace
// again when the pace can change under it (a fleet, readings): a worker
// joining or leaving, or a new reading, takes effect within it.
const recheck = 250 * time.Millisecond

var (
	_ provider.Provider = (*Provider)(nil)
	_ provider.Pacer    = (*Provider)(nil)
)

// Provider is a provider.Provider that paces the calls of the one it wraps.
// It is safe for concurrent use.
type Provider struct {
	next     provider.Provider
	limits   Limits
	clock    Clock
	fleet    Fleet     // nil: alone
	readings *Readings // nil: headers not read
	// callBurst and tokenBurst are WithBurst's sizes; 0: the defaults.
	callBurst, tokenBurst int
	calls, tokens         *bucket

	// waiting counts the Completes waiting for their turn: TryComplete
	// never goes ahead of them.
	waiting atomic.Int64

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
	o := options{clock: systemClock{}}
	for _, opt := range opts {
		opt(&o)
	}
	if o.burstCalled && ((l.RPM > 0 && o.callBurst < 1) || (l.TPM > 0 && o.tokenBurst < 1)) {
		return nil, fmt.Errorf("ratelimit: burst of %d calls, %d tokens: each must be at least 1", o.callBurst, o.tokenBurst)
	}
	w := &Provider{next: p, limits: l, clock: o.clock, fleet: o.fleet, readings: o.readings,
		callBurst: max(o.callBurst, 0), tokenBurst: max(o.tokenBurst, 0)}
	w.calls, w.tokens = newBucket(w.callBurst), newBucket(w.tokenBurst)
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
// The wait takes one call from the call bucket and EstimateTokens(b) from
// the token bucket, in parts of the bucket's size when it holds fewer. The
// wait also lasts until any pause set by an earlier answer (this worker's,
// or its fleet's) has passed, and, with readings, until a window the
// provider reported empty has refilled by a call (see Window).
//
// When the call's error, or the error of any of its results, asks for a
// wait (provider.RetryAfter > 0), every call that starts waiting or is still
// waiting is held back until that wait has passed, on every worker of the
// fleet; a later, shorter wait never shortens the pause.
//
// If ctx ends while waiting, Complete returns a transient error wrapping
// ctx.Err() without calling the wrapped provider.
func (p *Provider) Complete(ctx context.Context, b provider.Batch) ([]provider.Result, error) {
	if len(b.Requests) > 0 {
		if err := p.wait(ctx, b); err != nil {
			return nil, err
		}
	}
	if d := provider.CallTimeoutOf(ctx); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	results, err := p.next.Complete(ctx, b)
	p.observe(results, err)
	return results, err
}

// PacesCalls reports true: Complete applies provider.CallTimeoutOf its
// context only once the call's turn has come (see provider.Pacer).
func (p *Provider) PacesCalls() bool { return true }

// PausedUntil returns the time before which calls are held back because the
// API asked for a wait (this worker's answers or, with a fleet, another
// worker's); it is in the past (or zero) when there is no pause.
func (p *Provider) PausedUntil() time.Time {
	p.mu.Lock()
	until := p.pausedUntil
	p.mu.Unlock()
	if p.fleet != nil {
		until = later(until, p.fleet.PausedUntil())
	}
	return until
}

// pace is the fleet's pace now, per second (+Inf: no limit), and until
// when the calls are paused.
type pace struct {
	calls, tokens float64
	until         time.Time
}

// paceAt is the fleet's pace at now: the limits, lowered by the newest
// reading, and the pauses. share is this worker's part of it.
func (p *Provider) paceAt(now time.Time) (fleet pace, share float64, workers int) {
	fleet = pace{calls: math.Inf(1), tokens: math.Inf(1), until: p.PausedUntil()}
	if p.limits.RPM > 0 {
		fleet.calls = float64(p.limits.RPM) / 60
	}
	if p.limits.TPM > 0 {
		fleet.tokens = float64(p.limits.TPM) / 60
	}
	if rd, ok := p.reading(); ok {
		calls, until := rd.Requests.pace(rd.At, now)
		fleet.calls, fleet.until = min(fleet.calls, calls), later(fleet.until, until)
		tokens, until := rd.Tokens.pace(rd.At, now)
		fleet.tokens, fleet.until = min(fleet.tokens, tokens), later(fleet.until, until)
	}
	workers = 1
	if p.fleet != nil {
		workers = max(p.fleet.Workers(), 1)
	}
	return fleet, 1 / float64(workers), workers
}

// reading returns the newest reading of this worker's and its fleet's.
func (p *Provider) reading() (Reading, bool) {
	var rd Reading
	if p.readings != nil {
		rd, _ = p.readings.Latest()
	}
	if p.fleet != nil {
		if f := p.fleet.Reading(); !f.IsZero() && (rd.IsZero() || f.At.After(rd.At)) {
			rd = f
		}
	}
	return rd, !rd.IsZero()
}

// adjust sets the buckets to this worker's share of the pace at now and
// returns the pause.
func (p *Provider) adjust(now time.Time) time.Time {
	fleet, share, _ := p.paceAt(now)
	p.calls.set(now, fleet.calls*share, p.callBurst)
	tokenBurst := p.tokenBurst
	if tokenBurst == 0 {
		// A second's worth: no start-up burst, and a call's tokens taken
		// in parts of at most that.
		tokenBurst = max(int(math.Ceil(fleet.tokens*share)), 1)
	}
	p.tokens.set(now, fleet.tokens*share, tokenBurst)
	return fleet.until
}

// bucket is a token bucket whose rate and size change as the pace does. A
// rate.Limiter computes tokens from the time passed at its rate, which
// for rate.Inf and no time passed is not a number: a bucket that leaves
// rate.Inf gets a new, full limiter instead, as holding no limit means
// having let everything through. It is safe for concurrent use.
type bucket struct {
	mu  sync.Mutex
	lim *rate.Limiter
}

func newBucket(burst int) *bucket { return &bucket{lim: rate.NewLimiter(rate.Inf, max(burst, 1))} }

// set sets the rate (per second; +Inf: no limit) and, for a limited rate,
// the size at now, when they changed.
func (b *bucket) set(now time.Time, perSecond float64, burst int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if math.IsInf(perSecond, 1) {
		if b.lim.Limit() != rate.Inf {
			b.lim.SetLimitAt(now, rate.Inf)
		}
		return
	}
	limit, burst := rate.Limit(perSecond), max(burst, 1)
	switch {
	case b.lim.Limit() == rate.Inf:
		b.lim = rate.NewLimiter(limit, burst)
	default:
		if b.lim.Limit() != limit {
			b.lim.SetLimitAt(now, limit)
		}
		if b.lim.Burst() != burst {
			b.lim.SetBurstAt(now, burst)
		}
	}
}

// limited reports whether the bucket limits anything.
func (b *bucket) limited() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lim.Limit() != rate.Inf
}

// size is the most the bucket holds.
func (b *bucket) size() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lim.Burst()
}

// take takes n at now if the bucket holds them, and otherwise returns how
// long it takes to hold them: rounded up to the microsecond, so that the
// wait is never a hair short.
func (b *bucket) take(now time.Time, n int) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lim.AllowN(now, n) {
		return true, 0
	}
	missing := float64(n) - b.lim.TokensAt(now)
	d := time.Duration(math.Ceil(missing / float64(b.lim.Limit()) * 1e6))
	return false, max(d*time.Microsecond, time.Microsecond)
}

// wait blocks until b may be sent.
func (p *Provider) wait(ctx context.Context, b provider.Batch) error {
	p.waiting.Add(1)
	defer p.waiting.Add(-1)
	needCall, needTokens := true, EstimateTokens(b)
	for {
		now := p.clock.Now()
		until := p.adjust(now)
		var d time.Duration
		if until.After(now) {
			d = until.Sub(now)
		} else if needCall {
			var ok bool
			ok, d = p.calls.take(now, 1)
			needCall = !ok
		}
		for d == 0 && needTokens > 0 && p.tokens.limited() {
			part := min(needTokens, p.tokens.size())
			var ok bool
			if ok, d = p.tokens.take(now, part); ok {
				needTokens -= part
			}
		}
		if d == 0 {
			return nil
		}
		if p.fleet != nil || p.readings != nil {
			d = min(d, recheck)
		}
		if err := p.clock.Sleep(ctx, d); err != nil {
			return fmt.Errorf("ratelimit: wait to call %s: %w", p.next.Name(), provider.Transient(err))
		}
	}
}

// observe starts or extends the pause an answer asks for, on this worker
// and its fleet, and hands the fleet the newest reading.
func (p *Provider) observe(results []provider.Result, err error) {
	if p.fleet != nil && p.readings != nil {
		if rd, ok := p.readings.Latest(); ok {
			p.fleet.Report(rd)
		}
	}
	wait := provider.RetryAfter(err)
	for _, r := range results {
		wait = max(wait, provider.RetryAfter(r.Err))
	}
	if wait <= 0 {
		return
	}
	until := p.clock.Now().Add(wait)
	p.mu.Lock()
	p.pausedUntil = later(p.pausedUntil, until)
	p.mu.Unlock()
	if p.fleet != nil {
		p.fleet.Pause(until)
	}
}

// Status returns what the Provider paces its calls by now.
func (p *Provider) Status() Status {
	now := p.clock.Now()
	fleet, share, workers := p.paceAt(now)
	st := Status{RPM: p.limits.RPM, TPM: p.limits.TPM, Workers: workers, Share: share,
		RequestsPerMinute: perMinute(fleet.calls * share), TokensPerMinute: perMinute(fleet.tokens * share),
		FleetRequestsPerMinute: perMinute(fleet.calls), FleetTokensPerMinute: perMinute(fleet.tokens)}
	if fleet.until.After(now) {
		st.PausedUntil = &fleet.until
	}
	if rd, ok := p.reading(); ok {
		st.Remaining = &rd
	}
	return st
}

// perMinute is a pace per second as a pace per minute; nil for no limit.
func perMinute(perSecond float64) *float64 {
	if math.IsInf(perSecond, 1) {
		return nil
	}
	v := perSecond * 60
	return &v
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
