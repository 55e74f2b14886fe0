package batch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// ErrStopped is returned by Flush when the engine is not running.
var ErrStopped = errors.New("batch: engine is not running")

// Engine collects requests into batches, calls the provider once per batch
// and publishes one result per request. Create it with New and run it with
// Run; it is safe for concurrent use.
type Engine struct {
	cfg      Config
	queue    Queue
	urgent   Queue
	pub      Publisher
	provider provider.Provider
	async    provider.AsyncProvider // set in async mode
	jobs     JobStore
	log      *zap.Logger
	observer Observer

	batchSlots semaphore
	// batchLaneInFlight counts the batch lane's requests in calls now.
	batchLaneInFlight atomic.Int64
	urgentSlots       semaphore
	flushes           chan flushRequest
	running           atomic.Bool

	// procCtx is the context calls and publishes run under: it outlives
	// Run's context by ShutdownTimeout so in-flight work can finish.
	procCtx  context.Context
	inflight sync.WaitGroup

	instance string
	// laneFilters are the request and urgent subject filters; a request's
	// topic is what their > covers. forbiddenReplies adds the dead-letter
	// subjects: no result may be sent there.
	laneFilters      []string
	forbiddenReplies []string
	batchSeq         atomic.Uint64

	retries retrySchedule

	stats stats
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
	var id [4]byte
	_, _ = rand.Read(id[:])
	e := &Engine{
		cfg:         cfg,
		queue:       q,
		pub:         pub,
		provider:    p,
		log:         zap.NewNop(),
		observer:    nopObserver{},
		batchSlots:  newSemaphore(cfg.MaxInflight),
		urgentSlots: newSemaphore(cfg.MaxInflight),
		flushes:     make(chan flushRequest),
		procCtx:     context.Background(),
		instance:    hex.EncodeToString(id[:]),
	}
	e.laneFilters = append(append([]string{}, cfg.RequestSubjects...), cfg.UrgentSubjects...)
	e.forbiddenReplies = append(append([]string{}, e.laneFilters...), cfg.DeadPrefix+".>")
	for _, o := range opts {
		o(e)
	}
	if cfg.Async {
		ap, ok := p.(provider.AsyncProvider)
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrNoBatchAPI, p.Name())
		}
		if e.jobs == nil {
			return nil, errors.New("batch: async mode needs a JobStore (WithJobStore)")
		}
		e.async = ap
	}
	e.stats.started = time.Now()
	return e, nil
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
	lanes.Add(1)
	go func() {
		defer lanes.Done()
		if e.cfg.Immediate {
			e.runLane(ctx, e.queue, wire.TriggerImmediate, e.batchSlots)
		} else {
			e.runBatchLane(ctx)
		}
	}()
	if e.urgent != nil {
		lanes.Add(1)
		go func() {
			defer lanes.Done()
			e.runLane(ctx, e.urgent, wire.TriggerUrgent, e.urgentSlots)
		}()
	}
	<-ctx.Done()
	e.log.Info("shutting down: no more fetches; in-flight calls may finish",
		zap.Int64("in_flight", e.stats.inFlight.Load()), zap.Duration("timeout", e.cfg.ShutdownTimeout))
	lanes.Wait()
	e.running.Store(false)

	done := make(chan struct{})
	go func() { e.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(e.cfg.ShutdownTimeout):
		e.log.Warn("shutdown timeout: handing unfinished requests back", zap.Duration("timeout", e.cfg.ShutdownTimeout))
		cancelProc()
		<-done
	}
	return nil
}

// FlushReport says what a forced flush sent.
type FlushReport struct {
	// Batches counts the fetches sent to calls.
	Batches int `json:"batches"`
	// Requests counts the requests in them.
	Requests int `json:"requests"`
	// Err is set when the flush stopped early.
	Err error `json:"-"`
}

type flushRequest struct{ reply chan FlushReport }

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

// dispatch runs one fetched set of requests through calls and settlement in
// its own goroutine, releasing slot when done.
func (e *Engine) dispatch(trigger wire.Trigger, msgs []Message, slots semaphore) {
	e.inflight.Add(1)
	e.stats.inFlight.Add(int64(len(msgs)))
	if slots == e.batchSlots {
		e.batchLaneInFlight.Add(int64(len(msgs)))
	}
	go func() {
		defer e.inflight.Done()
		defer slots.release()
		defer e.stats.inFlight.Add(-int64(len(msgs)))
		if slots == e.batchSlots {
			defer e.batchLaneInFlight.Add(-int64(len(msgs)))
		}
		defer func() {
			if r := recover(); r != nil {
				// A bug must not take the worker down: hand the requests
				// back so they are retried, and say so loudly.
				e.log.Error("panic while processing batch; requests handed back", zap.Any("panic", r), zap.Int("size", len(msgs)))
				for _, m := range msgs {
					_ = m.Nak(e.cfg.RetryBackoff)
				}
				e.retries.add(time.Now().Add(e.cfg.RetryBackoff + retryGrace))
			}
		}()
		e.process(e.procCtx, trigger, msgs)
	}()
}

func (e *Engine) newBatchID() string {
	return fmt.Sprintf("%s-%d", e.instance, e.batchSeq.Add(1))
}
