package batch

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/aibatch/aibatch/provider"
)

// probeInput is the prompt of a probe call: small, and answered by any model.
const probeInput = "Reply with the single word OK."

// probe makes one small real call for each open breaker when its next probe
// is due, until ctx ends. The first call the provider serves closes the
// breaker; a provider-scope failure keeps it open and doubles the wait, up
// to ProbeInterval.
func (e *Engine) probe(ctx context.Context) {
	for {
		var due <-chan time.Time
		var timer *time.Timer
		if next := e.breakers.nextProbe(); !next.IsZero() {
			timer = time.NewTimer(time.Until(next))
			due = timer.C
		}
		woken := false
		select {
		case <-ctx.Done():
		case <-e.wake:
			woken = true
		case <-due:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
		if woken {
			continue
		}
		for _, st := range e.breakers.due(time.Now()) {
			e.probeOnce(ctx, st)
		}
	}
}

func (e *Engine) probeOnce(ctx context.Context, st BreakerState) {
	model := st.probeModel
	if model == "" {
		model = e.cfg.DefaultModel
	}
	b := provider.Batch{
		ID:              "probe-" + e.caller.ids.next(),
		Model:           model,
		Requests:        []provider.Request{{Key: "probe", Input: probeInput, MaxOutputTokens: 5}},
		MaxOutputTokens: 5,
	}
	callCtx, cancel := provider.CallContext(ctx, e.provider, e.cfg.CallTimeout)
	start := time.Now()
	results, err := e.provider.Complete(callCtx, b)
	cancel()
	if ctx.Err() != nil {
		return
	}
	e.stats.probes.Add(1)
	var usage provider.Usage
	for _, r := range results {
		usage = usage.Add(r.Usage)
		if err == nil && r.Err != nil {
			err = r.Err
		}
	}
	e.observer.CallFinished(CallReport{Provider: e.provider.Name(), Model: model, Size: 1, Latency: time.Since(start), Err: err, Usage: usage, Probe: true})
	if scope, modelScoped := e.caller.scopeOf(err, model, 1); err != nil && scope == provider.ScopeProvider {
		next := e.breakers.fail(model, modelScoped || st.Model != "", true, err, time.Now())
		e.log.Debug("probe failed: provider still unavailable", zap.String("model", model), zap.Time("next_probe", next.NextProbe), zap.Error(err))
		return
	}
	e.breakers.succeed(model, time.Now())
}
