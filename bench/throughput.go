package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/batch"
)

// ceilingResult is what the ceiling loop publishes for every request: a body
// the size of a typical worker result. The loop spends nothing on building
// it, so the ceiling is what the broker allows.
var ceilingResult = []byte(`{"id":"b-123456","status":"ok","output":"echo: {\"id\":\"b-123456\",\"input\":\"observ","model":"bench-model","usage":{"input_tokens":125,"output_tokens":10},"batch":{"id":"0123abcd-42","size":50,"trigger":"size"},"queued_ms":1234,"attempts":1}`)

// drainCeiling is the simplest loop the broker allows for the worker's job:
// fetch a batch, publish one result per request into the results stream with
// async publish (with the same Nats-Msg-Id the worker sets, so the stream
// does the same deduplication work), wait for the PubAcks, ack each request.
// It returns when n requests are acked.
func drainCeiling(ctx context.Context, c *client, cons natsjs.Consumer, n, size int) (time.Duration, error) {
	start := time.Now()
	futures := make([]natsjs.PubAckFuture, 0, size)
	msgs := make([]natsjs.Msg, 0, size)
	for done := 0; done < n; {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		mb, err := cons.FetchNoWait(size)
		if err != nil {
			return 0, fmt.Errorf("ceiling: fetch: %w", err)
		}
		msgs = msgs[:0]
		for m := range mb.Messages() {
			msgs = append(msgs, m)
		}
		if err := mb.Error(); err != nil && !errors.Is(err, natsjs.ErrNoMessages) {
			return 0, fmt.Errorf("ceiling: fetch: %w", err)
		}
		futures = futures[:0]
		for _, m := range msgs {
			meta, err := m.Metadata()
			if err != nil {
				return 0, fmt.Errorf("ceiling: read metadata: %w", err)
			}
			subject := "ai.results." + strings.TrimPrefix(m.Subject(), "ai.requests.")
			id := "result:" + meta.Stream + ":" + strconv.FormatUint(meta.Sequence.Stream, 10)
			f, err := c.js.PublishAsync(subject, ceilingResult, natsjs.WithMsgID(id))
			if err != nil {
				return 0, fmt.Errorf("ceiling: publish result: %w", err)
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return 0, fmt.Errorf("ceiling: store result: %w", err)
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		for _, m := range msgs {
			if err := m.Ack(); err != nil {
				return 0, fmt.Errorf("ceiling: ack: %w", err)
			}
		}
		done += len(msgs)
	}
	return time.Since(start), nil
}

// runCeiling drains n requests from the server at url with the ceiling loop.
func runCeiling(ctx context.Context, url string, n, size int) (time.Duration, error) {
	c, err := connect(url, "bench-ceiling")
	if err != nil {
		return 0, err
	}
	defer c.close()
	bq, _, _, err := c.ensure(ctx)
	if err != nil {
		return 0, err
	}
	elapsed, err := drainCeiling(ctx, c, bq.Consumer(), n, size)
	if err != nil {
		return 0, err
	}
	// The acks are buffered like the worker's; make sure they left.
	if err := c.nc.FlushTimeout(10 * time.Second); err != nil {
		return 0, fmt.Errorf("ceiling: flush acks: %w", err)
	}
	return elapsed, nil
}

// runWorkerDrain drains n requests from the server at url with the real
// engine in combined mode and an instant provider, timing from Run to the
// n-th stored result.
func runWorkerDrain(ctx context.Context, url string, n int, cfg batch.Config) (time.Duration, drainStats, error) {
	w, err := startWorker(ctx, url, cfg, &benchProvider{})
	if err != nil {
		return 0, drainStats{}, err
	}
	// Ensure ran inside startWorker; the clock starts at Run, as the
	// ceiling's starts after its own Ensure.
	start := time.Now()
	end, err := w.waitFinished(ctx, int64(n), 10*time.Minute)
	stats := drainStats{Engine: w.engine.Stats(), Backlog: w.lane.backlog.report(), Fetch: w.lane.fetch.report()}
	if serr := w.stop(); err == nil && serr != nil {
		err = fmt.Errorf("stop worker: %w", serr)
	}
	if err != nil {
		return 0, stats, err
	}
	return end.Sub(start), stats, nil
}

// drainStats is what the worker reports about one drain: the engine's
// counters and the scheduler's round trips to the broker.
type drainStats struct {
	Engine  batch.Stats    `json:"engine"`
	Backlog queueTimesJSON `json:"backlog_reads"`
	Fetch   queueTimesJSON `json:"fetches"`
}

// throughputSide is one way of draining the backlog.
type throughputSide struct {
	worker bool
	batch  int
}

func (s throughputSide) String() string {
	if s.worker {
		return fmt.Sprintf("worker-%d", s.batch)
	}
	return fmt.Sprintf("ceiling-%d", s.batch)
}

// scenarioThroughput is scenario 1: the worker's drain rate against the
// ceiling loop's on identical copies of one seeded backlog, per batch size,
// side by side in every run.
func scenarioThroughput(ctx context.Context, o *options, r *report) error {
	root := filepath.Join(o.TmpDir, "throughput")
	defer os.RemoveAll(root)
	seed := filepath.Join(root, "seed")
	r.progress("1 throughput: seeding %d requests of %d bytes", o.TPRequests, o.TPSize)
	t0 := time.Now()
	if err := seedStore(ctx, seed, o.TPRequests, o.TPSize); err != nil {
		return err
	}
	r.progress("1 throughput: seeded in %s", time.Since(t0).Round(time.Millisecond))

	var sides []throughputSide
	for _, b := range o.TPBatches {
		sides = append(sides, throughputSide{false, b}, throughputSide{true, b})
	}
	rates := make(map[string][]float64)
	ratios := make(map[int][]float64)
	cpus := make(map[string][]float64)
	workerStats := make(map[string][]drainStats)
	for run := range o.Runs {
		perRun := make(map[string]float64)
		// Rotate the order every run so no side always goes first.
		for k := range sides {
			side := sides[(k+run)%len(sides)]
			b, err := fromSeed(root, seed, "run")
			if err != nil {
				return err
			}
			stopProfile, err := startProfile(o, fmt.Sprintf("throughput-%s-%d", side, run+1))
			if err != nil {
				b.stop(true)
				return err
			}
			cpu0 := processCPU()
			var elapsed time.Duration
			if side.worker {
				var st drainStats
				elapsed, st, err = runWorkerDrain(ctx, b.url(), o.TPRequests, batch.Config{MaxBatchSize: side.batch})
				workerStats[side.String()] = append(workerStats[side.String()], st)
			} else {
				elapsed, err = runCeiling(ctx, b.url(), o.TPRequests, side.batch)
			}
			cpuPerReq := float64((processCPU() - cpu0).Microseconds()) / float64(o.TPRequests)
			stopProfile()
			if err == nil {
				err = verifyDrained(ctx, b.url(), o.TPRequests)
			}
			b.stop(true)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", side, run+1, err)
			}
			rate := float64(o.TPRequests) / elapsed.Seconds()
			perRun[side.String()] = rate
			rates[side.String()] = append(rates[side.String()], rate)
			cpus[side.String()] = append(cpus[side.String()], cpuPerReq)
			extra := ""
			if side.worker {
				st := workerStats[side.String()][run]
				extra = fmt.Sprintf(", scheduler round trips per batch: backlog %.0fus + fetch %.0fus, wall per batch %.0fus",
					st.Backlog.MeanUS, st.Fetch.MeanUS, float64(elapsed.Microseconds())/float64(st.Fetch.Calls))
			}
			r.progress("1 throughput: run %d %-12s %8.0f req/s (%s), %.1fus CPU per request%s", run+1, side, rate, elapsed.Round(time.Millisecond), cpuPerReq, extra)
		}
		for _, b := range o.TPBatches {
			ratios[b] = append(ratios[b], perRun[fmt.Sprintf("worker-%d", b)]/perRun[fmt.Sprintf("ceiling-%d", b)])
		}
	}
	const sc = "1 throughput"
	for _, b := range o.TPBatches {
		r.add(row{Scenario: sc, Measure: fmt.Sprintf("ceiling loop, fetch %d, %s x %d B", b, countLabel(o.TPRequests), o.TPSize), Unit: "req/s", summary: summarize(rates[fmt.Sprintf("ceiling-%d", b)])})
		r.add(row{Scenario: sc, Measure: fmt.Sprintf("worker, MAX_BATCH_SIZE %d", b), Unit: "req/s", summary: summarize(rates[fmt.Sprintf("worker-%d", b)])})
		r.add(row{Scenario: sc, Measure: fmt.Sprintf("worker / ceiling, batch %d", b), Unit: "ratio", summary: summarize(ratios[b]), Target: atLeast(0.8)})
	}
	for _, b := range o.TPBatches {
		c, w := cpus[fmt.Sprintf("ceiling-%d", b)], cpus[fmt.Sprintf("worker-%d", b)]
		r.add(row{Scenario: sc, Measure: fmt.Sprintf("CPU per request, ceiling + server, batch %d", b), Unit: "us", summary: summarize(c)})
		r.add(row{Scenario: sc, Measure: fmt.Sprintf("CPU per request, worker + server, batch %d", b), Unit: "us", summary: summarize(w)})
	}
	r.detail("throughput", map[string]any{
		"requests": o.TPRequests, "request_bytes": o.TPSize, "batches": o.TPBatches,
		"req_per_s": rates, "cpu_us_per_request": cpus, "worker_stats": workerStats,
	})
	return nil
}

// startProfile starts a CPU profile of this process (server, worker or
// ceiling loop, and harness) named name in o.ProfileDir, when one is set.
// The returned function stops it.
func startProfile(o *options, name string) (func(), error) {
	if o.ProfileDir == "" {
		return func() {}, nil
	}
	f, err := os.Create(filepath.Join(o.ProfileDir, name+".cpu.pprof"))
	if err != nil {
		return nil, fmt.Errorf("create CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
