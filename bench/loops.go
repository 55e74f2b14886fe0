package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aibatch/aibatch/wire"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// The broker loops the worker is measured against. Each does the broker's
// part of the worker's job and nothing else, with as many batches in flight
// as the worker (MAX_INFLIGHT_BATCHES): inflight goroutines, each fetching
// a batch without waiting (FetchNoWait), then, for the pipelined loop,
// publishing one result per request into the results stream with async
// publish and waiting for the PubAcks, then acking every request. The
// fetch + ack loop publishes nothing: it is an upper bound for any worker,
// which must at least fetch and ack. The goroutines fetch concurrently, so
// the loops also overlap the fetch round trips that the worker's single
// fetcher makes one after the other: they are bounds, not replicas.

// loopKind names a broker loop.
type loopKind string

const (
	// loopPipelined fetches, publishes results (async PubAcks), acks.
	loopPipelined loopKind = "pipelined"
	// loopFetchAck fetches and acks, publishing nothing.
	loopFetchAck loopKind = "fetch-ack"
)

// publishes reports whether the loop stores a result per request.
func (k loopKind) publishes() bool { return k == loopPipelined }

// loopResult is what the pipelined loop publishes for every request in
// scenarios 1 and 5: a body the size of the in-process worker's result (its
// provider echoes 32 bytes of the input). The loop spends nothing on
// building it, so the loop is what the broker allows. Scenario 9 publishes
// resultBody of the size the fake OpenAI server's answers make instead.
var loopResult = []byte(`{"id":"b-123456","status":"ok","output":"echo: {\"id\":\"b-123456\",\"input\":\"observ","model":"bench-model","usage":{"input_tokens":125,"output_tokens":10},"batch":{"id":"0123abcd-42","size":50,"trigger":"size"},"queued_ms":1234,"attempts":1}`)

// resultBody is a result as the worker stores it, its output outputBytes
// long.
func resultBody(outputBytes int) []byte {
	b, _ := json.Marshal(wire.Result{
		ID: "b-123456", Status: wire.StatusOK, Output: strings.Repeat("x", outputBytes), Model: "gpt-4o-mini",
		Usage: wire.Usage{InputTokens: 125, OutputTokens: 10},
		Batch: wire.BatchInfo{ID: "0123abcd-42", Size: 50, Trigger: wire.TriggerSize}, QueuedMS: 1234, Attempts: 1,
	})
	return b
}

// drainLoop drains n requests from cons with the loop kind, size requests
// per fetch and inflight batches at once, publishing result for each
// (pipelined loop), and returns when all n are acked (the acks are
// buffered; the caller flushes the connection).
func drainLoop(ctx context.Context, c *client, cons natsjs.Consumer, kind loopKind, n, size, inflight int, result []byte) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	// claimed counts requests fetched so far; a goroutine stops fetching
	// once all n are claimed.
	var claimed atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, inflight)
	for g := range inflight {
		wg.Go(func() {
			if err := loopBatches(ctx, c, cons, kind, int64(n), size, result, &claimed); err != nil {
				errs[g] = err
				cancel()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("%s loop: %w", kind, err)
	}
	return time.Since(start), nil
}

// loopBatches is one goroutine of drainLoop: one batch in flight at a time.
func loopBatches(ctx context.Context, c *client, cons natsjs.Consumer, kind loopKind, n int64, size int, result []byte, claimed *atomic.Int64) error {
	futures := make([]natsjs.PubAckFuture, 0, size)
	msgs := make([]natsjs.Msg, 0, size)
	for claimed.Load() < n {
		if err := ctx.Err(); err != nil {
			return err
		}
		mb, err := cons.FetchNoWait(size)
		if err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		msgs = msgs[:0]
		for m := range mb.Messages() {
			msgs = append(msgs, m)
		}
		if err := mb.Error(); err != nil && !errors.Is(err, natsjs.ErrNoMessages) {
			return fmt.Errorf("fetch: %w", err)
		}
		if len(msgs) == 0 {
			// The other goroutines hold the rest between their fetch and
			// their count; look again shortly.
			time.Sleep(100 * time.Microsecond)
			continue
		}
		claimed.Add(int64(len(msgs)))
		if kind.publishes() {
			futures = futures[:0]
			for _, m := range msgs {
				meta, err := m.Metadata()
				if err != nil {
					return fmt.Errorf("read metadata: %w", err)
				}
				// The same subject and Nats-Msg-Id the worker sets, so the
				// results stream does the same deduplication work.
				subject := "ai.results." + strings.TrimPrefix(m.Subject(), "ai.requests.")
				id := "result:" + meta.Stream + ":" + strconv.FormatUint(meta.Sequence.Stream, 10)
				f, err := c.js.PublishAsync(subject, result, natsjs.WithMsgID(id))
				if err != nil {
					return fmt.Errorf("publish result: %w", err)
				}
				futures = append(futures, f)
			}
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					return fmt.Errorf("store result: %w", err)
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		for _, m := range msgs {
			if err := m.Ack(); err != nil {
				return fmt.Errorf("ack: %w", err)
			}
		}
	}
	return nil
}

// runLoop drains n requests from the server at url with the loop kind,
// publishing result for each (nil: loopResult).
func runLoop(ctx context.Context, url string, kind loopKind, n, size, inflight int, result []byte) (time.Duration, error) {
	if result == nil {
		result = loopResult
	}
	c, err := connect(url, "bench-"+string(kind))
	if err != nil {
		return 0, err
	}
	defer c.close()
	bq, _, _, err := c.ensure(ctx)
	if err != nil {
		return 0, err
	}
	elapsed, err := drainLoop(ctx, c, bq.Consumer(), kind, n, size, inflight, result)
	if err != nil {
		return 0, err
	}
	// The acks are buffered like the worker's; make sure they left.
	if err := c.nc.FlushTimeout(10 * time.Second); err != nil {
		return 0, fmt.Errorf("%s loop: flush acks: %w", kind, err)
	}
	return elapsed, nil
}
