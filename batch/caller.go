package batch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// errMissing is the cause recorded for a request the provider's answer left out.
var errMissing = errors.New("the provider's answer has no item for this request")

// caller makes the provider calls the planner asked for and records on each
// item what came back. It spends a request's attempts only on failures of
// its own; every failure has one of three scopes:
//
//   - provider: the provider cannot serve anyone now (5xx, 429, timeouts,
//     401/403, the default model unknown). The breaker opens, and the call's
//     requests are deferred: they wait in the stream without spending an
//     attempt until a probe finds the provider back.
//   - batch: the call's shape failed (cut off at the output limit, not the
//     expected JSON, a refusal of a combined call, items left out, a prompt
//     too long). The call is split and its halves are called at once, within
//     the same delivery, down to one-request calls; a cut-off also shrinks
//     the group's size.
//   - request: the request failed alone (a one-request call refused or
//     rejected, a model the request named is unknown). It spends an attempt,
//     or ends the request when retrying cannot help.
type caller struct {
	provider     provider.Provider
	timeout      time.Duration
	defaultModel string
	breakers     *breakers
	// backoff is how long a call's requests wait after a provider-scope
	// failure that did not open the breaker.
	backoff  time.Duration
	groups   *groups
	planner  planner
	tiers    laneTiers
	ids      *batchIDs
	stats    *stats
	observer Observer
	log      *zap.Logger
}

// callAll makes the calls concurrently and returns when every one is done.
func (c *caller) callAll(ctx context.Context, trigger wire.Trigger, calls []call) {
	together(calls, func(cl call) { c.callAndSplit(ctx, trigger, cl) })
}

// callAndSplit makes one call and follows up on what its scope says.
func (c *caller) callAndSplit(ctx context.Context, trigger wire.Trigger, cl call) {
	group := cl.items
	model := group[0].req.Model
	if st, open := c.breakers.open(model); open {
		c.deferAll(group, st, nil)
		return
	}
	answered, err := c.call(ctx, trigger, cl)
	if ctx.Err() != nil {
		return // shutting down: whatever has no outcome is handed back
	}
	if err == nil {
		c.breakers.succeed(model, time.Now())
		c.followUpMissing(ctx, trigger, cl)
		return
	}
	switch scope, modelScoped := c.scopeOf(err, model, len(group)); scope {
	case provider.ScopeProvider:
		st := c.breakers.fail(model, modelScoped, false, err, time.Now())
		c.deferAll(group, st, err)
	case provider.ScopeBatch:
		c.breakers.succeed(model, time.Now())
		cutOff := errors.Is(err, provider.ErrCutOff)
		if cutOff {
			c.groups.cutOff(keyOf(group[0]), len(group), answered)
		}
		if answered > 0 {
			// The answers completed before the cut are kept; the rest go
			// again, in calls of the size that fitted.
			c.followUpMissing(ctx, trigger, cl)
			return
		}
		c.split(ctx, trigger, cl, cutOff)
	default:
		c.breakers.succeed(model, time.Now())
		for _, it := range group {
			it.failed(err)
		}
	}
}

// split calls the items of a call whose shape failed again, in smaller
// calls: planned anew at the group's new size after a cut-off, else in
// halves. A single request has nothing to split: its failure is its own.
func (c *caller) split(ctx context.Context, trigger wire.Trigger, cl call, cutOff bool) {
	group := cl.items
	if len(group) == 1 {
		group[0].failed(group[0].err)
		return
	}
	var parts []call
	if cutOff {
		parts = c.planner.planGroup(group)
	}
	if len(parts) < 2 {
		half := len(group) / 2
		parts = []call{{items: group[:half], maxOutputTokens: cl.maxOutputTokens}, {items: group[half:], maxOutputTokens: cl.maxOutputTokens}}
	}
	c.log.Info("batch split after a failed call", zap.String("trigger", string(trigger)), zap.Int("size", len(group)),
		zap.Int("parts", len(parts)), zap.Bool("cut_off", cutOff))
	c.callAll(ctx, trigger, parts)
}

// followUpMissing calls again the requests an answer left out: together
// when the answer gave some, in halves when it gave none, alone at the end.
func (c *caller) followUpMissing(ctx context.Context, trigger wire.Trigger, cl call) {
	var missing []*item
	for _, it := range cl.items {
		if it.outcome == outcomeNone {
			missing = append(missing, it)
		}
	}
	switch {
	case len(missing) == 0:
	case len(cl.items) == 1:
		missing[0].failed(errMissing)
	case len(missing) < len(cl.items):
		c.callAll(ctx, trigger, c.planner.planGroup(missing))
	default:
		for _, it := range missing {
			it.err = errMissing
		}
		c.split(ctx, trigger, cl, false)
	}
}

// scopeOf is whose failure err is, for a call of n requests to model, and
// whether it concerns that model only.
func (c *caller) scopeOf(err error, model string, n int) (provider.Scope, bool) {
	if errors.Is(err, provider.ErrUnknownModel) {
		if model == c.defaultModel {
			return provider.ScopeProvider, true
		}
		return provider.ScopeRequest, false
	}
	switch s := provider.ScopeOf(err); {
	case s != provider.ScopeUnknown:
		return s, false
	case provider.IsPermanent(err) && n > 1:
		return provider.ScopeBatch, false
	case provider.IsPermanent(err):
		return provider.ScopeRequest, false
	default:
		return provider.ScopeProvider, false
	}
}

// deferAll makes group wait for the provider: until the breaker's next
// probe when it is open, else for RetryBackoff (or the provider's
// Retry-After); no attempt is spent either way.
func (c *caller) deferAll(group []*item, st BreakerState, err error) {
	cause := fmt.Errorf("%w: %s", errBreakerOpen, st.Reason)
	wait := max(time.Until(st.NextProbe), 0)
	if st.State != BreakerOpen {
		cause = fmt.Errorf("the provider failed the call; the request waits in the stream: %w", err)
		wait = max(c.backoff, provider.RetryAfter(err))
	}
	for _, it := range group {
		it.deferUntil(cause, wait)
	}
}

// call makes one provider call and records each answer and each failure of
// a single request on its item. It returns how many items it recorded and
// the whole-call error, if any, leaving the other items without an outcome
// for the caller to act on. An answer cut off at the output limit keeps the
// answers it completed.
func (c *caller) call(ctx context.Context, trigger wire.Trigger, cl call) (int, error) {
	group := cl.items
	b, waiting := newBatch(c.ids.next(), group, cl.maxOutputTokens)
	b.ServiceTier = c.tiers.of(trigger)
	start := time.Now()
	for i, it := range group {
		it.batch = wire.BatchInfo{ID: b.ID, Size: len(group), Trigger: trigger}
		it.position = i
		it.queued = start.Sub(it.d.Published)
		it.err = nil
	}
	callCtx, cancel := provider.CallContext(ctx, c.provider, c.timeout)
	results, err := c.provider.Complete(callCtx, b)
	cancel()
	c.stats.apiCalls.Add(1)
	c.stats.providerItems.Add(int64(len(group)))
	latency := time.Since(start)
	report := CallReport{Provider: c.provider.Name(), Model: b.Model, Trigger: trigger, Size: len(group), Served: served(group),
		Latency: latency, Err: err, SoloPromptTokens: soloPromptTokensOf(group)}
	defer func() { c.observer.CallFinished(report) }()

	var recorded int
	if err != nil && errors.Is(err, provider.ErrCutOff) {
		var usage provider.Usage
		recorded, _, usage = c.record(waiting, results)
		report.Usage = usage
	}
	if err != nil {
		for _, it := range waiting {
			it.err = err
		}
		c.log.Warn("batch call failed",
			zap.String("batch", b.ID), zap.String("trigger", string(trigger)), zap.Int("size", len(group)),
			zap.String("model", b.Model), zap.Duration("latency", latency), zap.Int("answered", recorded),
			zap.Stringer("scope", provider.ScopeOf(err)), zap.Bool("permanent", provider.IsPermanent(err)), zap.Error(err))
		return recorded, err
	}
	answered, ignored, usage := c.record(waiting, results)
	report.Usage, report.ServiceTier = usage, tierOf(results)
	if len(waiting) == 0 {
		c.groups.answered(keyOf(group[0]), len(group), usage.OutputTokens)
	}
	c.log.Info("batch sent",
		zap.String("batch", b.ID), zap.String("trigger", string(trigger)), zap.Int("size", len(group)),
		zap.String("model", b.Model), zap.Duration("latency", latency),
		zap.Int("answered", answered), zap.Int("missing", len(waiting)), zap.Int("ignored", ignored))
	return answered, nil
}

// record sets each result's outcome on the item waiting for it and removes
// that item from waiting. Results for unknown or already answered keys are
// ignored and counted. It returns how many items it recorded, the ignored
// count, and the usage the results reported.
func (c *caller) record(waiting map[string]*item, results []provider.Result) (recorded, ignored int, usage provider.Usage) {
	for _, r := range results {
		it, ok := waiting[r.Key]
		if !ok {
			ignored++
			continue
		}
		delete(waiting, r.Key)
		recorded++
		c.stats.usage(r.Usage)
		usage = usage.Add(r.Usage)
		if r.Err == nil {
			it.answered(r)
			continue
		}
		// A request's own error is its own unless it says otherwise: one
		// call of a fan-out may find the provider down.
		if scope, modelScoped := c.scopeOf(r.Err, it.req.Model, 1); scope == provider.ScopeProvider &&
			(provider.ScopeOf(r.Err) == provider.ScopeProvider || modelScoped) {
			c.deferAll([]*item{it}, c.breakers.fail(it.req.Model, modelScoped, false, r.Err, time.Now()), r.Err)
			continue
		}
		it.failed(r.Err)
	}
	return recorded, ignored, usage
}

// batchIDs names the batches of one engine: a random instance id and a
// sequence, so ids from a fleet's workers do not collide.
type batchIDs struct {
	instance string
	seq      atomic.Uint64
}

func newBatchIDs() *batchIDs {
	var id [4]byte
	_, _ = rand.Read(id[:])
	return &batchIDs{instance: hex.EncodeToString(id[:])}
}

func (b *batchIDs) next() string { return fmt.Sprintf("%s-%d", b.instance, b.seq.Add(1)) }
