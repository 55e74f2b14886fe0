package batch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// Engine collects requests into batches, calls the provider once per batch
// and publishes one result per request. Create it with New and run it with
// Run; it is safe for concurrent use.
//
// The engine is a pipeline of stages, each in its own file, data flowing one
// way: the lanes fetch what the scheduler's rules say is due (lanes.go,
// scheduler.go); the intake reads each message (item.go); the planner groups
// requests into calls (planner.go); the caller makes them (caller.go,
// caller_async.go); the settler stores each outcome and acks or hands back
// the message (settler.go). Engine wires the stages and owns their
// lifecycles.
type Engine struct {
	cfg      Config
	log      *zap.Logger
	observer Observer
	stats    stats

	queue    Queue
	urgent   Queue
	pub      Publisher
	provider provider.Provider
	jobs     JobStore
	attempts AttemptStore
	lease    HoldLease
	budget   Budget

	breakers *breakers
	groups   *groups
	// wake tells the prober that a breaker opened.
	wake chan struct{}

	intake  intake
	planner planner
	caller  *caller
	async   *asyncCaller // set in async mode
	settler *settler

	shadowCfg ShadowConfig
	shadow    *shadow // set when shadow sampling is on

	batchLane *batchLane
	window    *window
	flushes   chan flushRequest
	running   atomic.Bool

	// procCtx is the context calls and publishes run under: it outlives
	// Run's context by ShutdownTimeout so in-flight work can finish.
	procCtx  context.Context
	inflight sync.WaitGroup
}

// Option configures an Engine.
type Option func(*Engine)

// WithLogger sets the logger; the default discards logs.
func WithLogger(l *zap.Logger) Option { return func(e *Engine) { e.log = l } }

// WithUrgentQueue adds the urgent lane: requests from q are sent as soon as
// they arrive.
func WithUrgentQueue(q Queue) Option { return func(e *Engine) { e.urgent = q } }

// New returns an engine that reads requests from q, answers them through p
// and publishes through pub. cfg's unset fields get their defaults; New
// returns an error naming each setting that is out of range.
func New(cfg Config, q Queue, pub Publisher, p provider.Provider, opts ...Option) (*Engine, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("batch: invalid config: %w", err)
	}
	if q == nil || pub == nil || p == nil {
		return nil, errors.New("batch: New needs a queue, a publisher and a provider")
	}
	e := &Engine{
		cfg:      cfg,
		queue:    q,
		pub:      pub,
		provider: p,
		log:      zap.NewNop(),
		observer: NopObserver{},
		flushes:  make(chan flushRequest),
		wake:     make(chan struct{}, 1),
		procCtx:  context.Background(),
	}
	for _, o := range opts {
		o(e)
	}
	if err := e.wire(); err != nil {
		return nil, err
	}
	e.stats.started = time.Now()
	return e, nil
}

// wire builds the stages from the engine's settings and dependencies.
func (e *Engine) wire() error {
	cfg := e.cfg
	handBack, expiries := &handBacks{}, &handBacks{}
	ids := newBatchIDs()
	e.breakers = newBreakers(min(firstProbe, cfg.ProbeInterval), cfg.ProbeInterval, e.breakerChanged)
	e.groups = newGroups(cfg.MaxBatchSize, cfg.EmbeddingMaxInputs, e.groupResized)
	e.intake = newIntake(cfg, e.provider, e.attempts, e.budget, e.log)
	e.planner = planner{maxBatchTokens: cfg.MaxBatchTokens, defaultOutputTokens: cfg.DefaultOutputTokens,
		outputLimit: outputLimits(cfg.ModelMaxOutputTokens, e.provider), groups: e.groups}
	e.settler = &settler{
		pub:          e.pub,
		out:          outgoing{resultPrefix: cfg.ResultPrefix, deadPrefix: cfg.DeadPrefix, maxResultBytes: cfg.MaxResultBytes},
		retry:        retryPolicy{base: cfg.RetryBackoff, max: cfg.RetryMaxBackoff},
		maxDeliver:   cfg.MaxDeliver,
		attempts:     e.attempts,
		budget:       e.budget,
		ackWait:      cfg.AckWait,
		handBack:     handBack,
		expiries:     expiries,
		requestTTL:   cfg.RequestTTL,
		dedupeWindow: cfg.RedeliveryWindow(),
		stats:        &e.stats,
		observer:     e.observer,
		log:          e.log,
	}
	e.caller = &caller{provider: e.provider, timeout: cfg.CallTimeout, defaultModel: cfg.DefaultModel, breakers: e.breakers, backoff: cfg.RetryBackoff,
		groups: e.groups, planner: e.planner, ids: ids, stats: &e.stats, observer: e.observer, log: e.log}
	if cfg.Async {
		api, ok := e.provider.(provider.AsyncProvider)
		if !ok {
			return fmt.Errorf("%w: %s", ErrNoBatchAPI, e.provider.Name())
		}
		if e.jobs == nil {
			return errors.New("batch: async mode needs a JobStore (WithJobStore)")
		}
		e.async = &asyncCaller{api: api, jobs: e.jobs, sync: e.caller, settler: e.settler, poll: cfg.JobPollInterval,
			maxWait: cfg.MaxWait, ids: ids, stats: &e.stats, observer: e.observer, log: e.log}
	}
	e.shadowCfg = e.shadowCfg.WithDefaults()
	if err := e.shadowCfg.Validate(); err != nil {
		return fmt.Errorf("batch: invalid shadow config: %w", err)
	}
	if e.shadowCfg.Rate > 0 {
		e.shadow = newShadow(e.shadowCfg, e)
	}
	e.window = newWindow(cfg.HoldMaxRequests, cfg.HoldMaxBytes)
	e.batchLane = &batchLane{queue: e.queue, cfg: cfg, intake: e.intake, window: e.window, groups: e.groups,
		slots: newSemaphore(cfg.MaxInflight), dispatch: e.dispatch, abandon: e.abandon, flushes: e.flushes,
		handBack: handBack, expiries: expiries, paused: e.providerDown, lease: e.lease, stats: &e.stats, observer: e.observer,
		log: e.log, freed: make(chan struct{}, 1)}
	return nil
}

// Config returns the engine's effective settings.
func (e *Engine) Config() Config { return e.cfg }

// Run serves the lanes until ctx ends, then stops fetching, lets in-flight
// calls finish for up to ShutdownTimeout, and hands back to the broker what
// did not finish. It returns nil after a clean stop. Run may be called once.
func (e *Engine) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("batch: Run called twice")
	}
	procCtx, cancelProc := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelProc()
	e.procCtx = procCtx

	var lanes sync.WaitGroup
	if e.cfg.Immediate {
		lanes.Go(func() { e.eagerLane(e.queue, wire.TriggerImmediate, 1).run(ctx) })
	} else {
		lanes.Go(func() { e.batchLane.run(ctx) })
	}
	if e.urgent != nil {
		lanes.Go(func() { e.eagerLane(e.urgent, wire.TriggerUrgent, e.cfg.MaxBatchSize).run(ctx) })
	}
	lanes.Go(func() { e.probe(ctx) })
	var shadows sync.WaitGroup
	shadowCtx, stopShadows := context.WithCancel(procCtx)
	defer stopShadows()
	if e.shadow != nil {
		shadows.Go(func() { e.shadow.run(shadowCtx) })
	}
	<-ctx.Done()
	e.log.Info("shutting down: no more fetches; in-flight calls may finish",
		zap.Int64("in_flight", e.stats.inFlight.Load()), zap.Duration("timeout", e.cfg.ShutdownTimeout))
	lanes.Wait()
	e.running.Store(false)

	done := make(chan struct{})
	go func() { e.inflight.Wait(); close(done) }()
	timeout := time.NewTimer(e.cfg.ShutdownTimeout)
	defer timeout.Stop()
	select {
	case <-done:
	case <-timeout.C:
		e.log.Warn("shutdown timeout: handing unfinished requests back", zap.Duration("timeout", e.cfg.ShutdownTimeout))
		cancelProc()
		<-done
	}
	// Samples still waiting are dropped: they are worth no delay.
	stopShadows()
	shadows.Wait()
	return nil
}

func (e *Engine) eagerLane(q Queue, trigger wire.Trigger, fetchMax int) *eagerLane {
	return &eagerLane{queue: q, intake: e.intake, trigger: trigger, fetchMax: fetchMax, slots: newSemaphore(e.cfg.MaxInflight),
		dispatch: e.dispatch, pollInterval: e.cfg.PollInterval, paused: e.providerDown, log: e.log}
}

// Flush sends every request waiting in the batch lane now, whatever the
// schedule says, and reports what it sent; the calls themselves go on after
// Flush returns. It returns ErrStopped when the engine is not running and
// ctx's error when ctx ends first. In immediate mode nothing waits, and Flush
// reports nothing sent.
func (e *Engine) Flush(ctx context.Context) (FlushReport, error) {
	if !e.running.Load() {
		return FlushReport{}, ErrStopped
	}
	if e.cfg.Immediate {
		return FlushReport{}, nil
	}
	req := flushRequest{reply: make(chan FlushReport, 1)}
	select {
	case e.flushes <- req:
	case <-ctx.Done():
		return FlushReport{}, ctx.Err()
	}
	select {
	case r := <-req.reply:
		return r, r.Err
	case <-ctx.Done():
		return FlushReport{}, ctx.Err()
	}
}

// dispatch runs one set of requests (read by the intake) through the
// stages in its own goroutine and calls release when done. A panic (a bug)
// must not take the worker down: the settler hands the requests back, and
// it is logged loudly.
func (e *Engine) dispatch(trigger wire.Trigger, items []*item, release func()) {
	e.inflight.Add(1)
	e.stats.inFlight.Add(int64(len(items)))
	go func() {
		defer e.inflight.Done()
		defer release()
		defer e.stats.inFlight.Add(-int64(len(items)))
		defer func() {
			if r := recover(); r != nil {
				e.log.Error("panic while processing batch; requests handed back", zap.Any("panic", r), zap.Int("size", len(items)))
				e.settler.handBackAll(items, e.cfg.RetryBackoff)
			}
		}()
		e.process(e.procCtx, trigger, items)
	}()
}

// abandon hands requests the batch lane held back to the broker at once.
func (e *Engine) abandon(items []*item) {
	e.settler.settle(e.procCtx, items)
}

// process takes one set of requests through the stages.
func (e *Engine) process(ctx context.Context, trigger wire.Trigger, items []*item) {
	e.stats.batchSent(trigger, len(items), time.Now())
	e.observer.BatchFetched(trigger, len(items))
	msgs := make([]Message, len(items))
	for i, it := range items {
		msgs[i] = it.msg
	}
	stop := keepAlive(msgs, e.cfg.AckWait/3)
	defer stop()

	if e.async != nil && trigger != wire.TriggerUrgent {
		var rejected, now, jobs []*item
		for _, it := range items {
			switch {
			case it.outcome != outcomeNone:
				rejected = append(rejected, it)
			case !jobCarries(it):
				now = append(now, it)
			default:
				jobs = append(jobs, it)
			}
		}
		e.settler.settle(ctx, rejected)
		if len(now) > 0 {
			e.caller.callAll(ctx, trigger, e.planner.plan(now))
			e.settler.settle(ctx, now)
		}
		e.async.callAll(ctx, trigger, jobs)
		return
	}
	e.caller.callAll(ctx, trigger, e.planner.plan(items))
	e.settler.settle(ctx, items)
	if e.shadow != nil {
		e.shadow.offer(items)
	}
}

// ProviderHealth returns nil while the provider serves calls, and an error
// saying why while a circuit breaker is open ("provider rejected the API
// key (HTTP 401)"). Readiness checks report it.
func (e *Engine) ProviderHealth() error {
	if st, open := e.breakers.anyOpen(); open {
		return fmt.Errorf("%s; next probe at %s", st.Reason, st.NextProbe.UTC().Format(time.RFC3339))
	}
	return nil
}

// providerDown reports whether the provider as a whole can serve no one.
func (e *Engine) providerDown() bool {
	_, open := e.breakers.open("")
	return open
}

// breakerChanged logs a breaker's change of state, once per change, and
// wakes the prober.
func (e *Engine) breakerChanged(st BreakerState) {
	fields := []zap.Field{zap.String("model", st.Model), zap.String("state", st.State)}
	if st.State == BreakerOpen {
		e.log.Warn("provider unavailable: requests wait in the stream, attempts unspent, until a probe succeeds",
			append(fields, zap.String("reason", st.Reason), zap.Time("next_probe", st.NextProbe))...)
	} else {
		e.log.Info("provider available again: lanes resume", fields...)
	}
	e.observer.BreakerChanged(st)
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *Engine) groupResized(g GroupState) {
	e.log.Info("group call size changed", zap.String("model", g.Model), zap.String("instructions", g.Instructions), zap.Int("size", g.Size))
	e.observer.GroupResized(g)
}

// qualityLimited logs a change the quality guard made to a group's call
// size, once, and reports it.
func (e *Engine) qualityLimited(c QualityChange, st GroupState) {
	e.log.Info("group call size changed for answer quality",
		zap.String("model", c.Model), zap.String("instructions", c.Instructions), zap.String("topic", c.Topic),
		zap.Int("from", c.From), zap.Int("to", c.To), zap.Int("limit", c.Limit),
		zap.Float64("agreement", c.Agreement), zap.Float64("floor", c.Floor), zap.Int("window", c.Window))
	e.observer.GroupResized(st)
	e.observer.QualityLimited(c)
}

// outputLimits is a model's output limit per call: the configured one, else
// the provider's built-in one, else 0 (unknown).
func outputLimits(configured map[string]int, p provider.Provider) func(string) int {
	limiter, _ := p.(provider.OutputLimiter)
	return func(model string) int {
		if n, ok := configured[model]; ok {
			return n
		}
		if limiter != nil {
			return limiter.MaxOutputTokens(model)
		}
		return 0
	}
}
