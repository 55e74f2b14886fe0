package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/provider"
)

// worker is the real engine (batch.New on jetstream.Ensure's queues and
// publisher) with a provider (the in-process benchProvider, or the real
// openai provider calling a fake server), on its own connection, as the
// worker binary wires it.
type worker struct {
	c      *client
	engine *batch.Engine
	prov   provider.Provider
	obs    *waitObserver
	lane   *timedQueue
	cancel context.CancelFunc
	done   chan error
}

// startWorker connects to url and runs an engine with cfg (DefaultModel is
// filled in) until stop.
func startWorker(ctx context.Context, url string, cfg batch.Config, prov provider.Provider, opts ...batch.Option) (*worker, error) {
	c, err := connect(url, "bench-worker")
	if err != nil {
		return nil, err
	}
	bq, uq, pub, err := c.ensure(ctx)
	if err != nil {
		c.close()
		return nil, err
	}
	if cfg.DefaultModel == "" {
		cfg.DefaultModel = defaultModel
	}
	obs := &waitObserver{}
	lane := &timedQueue{q: bq}
	e, err := batch.New(cfg, lane, pub, prov, append([]batch.Option{batch.WithUrgentQueue(uq), batch.WithObserver(obs)}, opts...)...)
	if err != nil {
		c.close()
		return nil, fmt.Errorf("create engine: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &worker{c: c, engine: e, prov: prov, obs: obs, lane: lane, cancel: cancel, done: make(chan error, 1)}
	go func() { w.done <- e.Run(runCtx) }()
	return w, nil
}

// finished counts requests whose outcome the engine stored.
func (w *worker) finished() int64 {
	s := w.engine.Stats()
	return s.ResultsOK + s.ResultsError
}

// waitFinished polls until n outcomes are stored, and returns when that was
// seen; it fails after timeout.
func (w *worker) waitFinished(ctx context.Context, n int64, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		if w.finished() >= n {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			s := w.engine.Stats()
			return time.Time{}, fmt.Errorf("worker: %d of %d results stored after %s (retries %d, dead letters %d)",
				s.ResultsOK+s.ResultsError, n, timeout, s.Retries, s.DeadLetters)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-t.C:
		}
	}
}

// stop ends Run, waits for it and closes the connection.
func (w *worker) stop() error {
	w.cancel()
	err := <-w.done
	if derr := w.c.nc.Drain(); derr != nil && err == nil {
		err = derr
	}
	w.c.close()
	return err
}

// waitObserver records the longest queue wait (arrival to call) of a
// finished request. The report does not name the lane, so the harness reads
// queue waits from runs where only the batch lane carries requests.
type waitObserver struct {
	batch.NopObserver
	longest atomic.Int64 // nanoseconds
}

var _ batch.Observer = (*waitObserver)(nil)

// RequestFinished records the request's queue wait if it is the longest yet.
func (o *waitObserver) RequestFinished(r batch.RequestReport) {
	w := int64(r.QueueWait)
	for {
		cur := o.longest.Load()
		if w <= cur || o.longest.CompareAndSwap(cur, w) {
			return
		}
	}
}

// RequestRetried is not needed by the harness.
func (o *waitObserver) RequestRetried() {}

// BacklogRead is not needed by the harness.
func (o *waitObserver) BacklogRead(batch.Backlog) {}

// longestWait is the longest queue wait seen.
func (o *waitObserver) longestWait() time.Duration { return time.Duration(o.longest.Load()) }

// timedQueue passes the batch lane through and adds up the time the
// scheduler spends in each of its round trips to the broker: reading the
// backlog and fetching. The scheduler makes them one after the other, so
// their sum per batch bounds how fast batches can start.
type timedQueue struct {
	q       batch.Queue
	backlog queueTimes
	fetch   queueTimes
	wait    queueTimes
}

var _ batch.Queue = (*timedQueue)(nil)

// queueTimes counts calls of one Queue method and their total duration.
type queueTimes struct {
	calls atomic.Int64
	nanos atomic.Int64
}

func (t *queueTimes) since(start time.Time) {
	t.calls.Add(1)
	t.nanos.Add(int64(time.Since(start)))
}

// queueTimesJSON is queueTimes as reported.
type queueTimesJSON struct {
	Calls   int64   `json:"calls"`
	TotalMS float64 `json:"total_ms"`
	MeanUS  float64 `json:"mean_us"`
}

func (t *queueTimes) report() queueTimesJSON {
	n, d := t.calls.Load(), time.Duration(t.nanos.Load())
	r := queueTimesJSON{Calls: n, TotalMS: ms(d)}
	if n > 0 {
		r.MeanUS = float64(d) / float64(n) / float64(time.Microsecond)
	}
	return r
}

// Backlog reads the lane's backlog.
func (t *timedQueue) Backlog(ctx context.Context) (batch.Backlog, error) {
	defer t.backlog.since(time.Now())
	return t.q.Backlog(ctx)
}

// Fetch takes up to max requests without waiting.
func (t *timedQueue) Fetch(ctx context.Context, max int) ([]batch.Message, error) {
	defer t.fetch.since(time.Now())
	return t.q.Fetch(ctx, max)
}

// Wait waits for requests.
func (t *timedQueue) Wait(ctx context.Context, max int) ([]batch.Message, error) {
	defer t.wait.since(time.Now())
	return t.q.Wait(ctx, max)
}
