package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/aibatch/aibatch/batch"
)

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

// throughputSide is one way of draining the backlog: the worker, or one of
// the broker loops (loops.go).
type throughputSide struct {
	loop  loopKind // "" for the worker
	batch int
}

func (s throughputSide) String() string {
	if s.loop == "" {
		return fmt.Sprintf("worker-%d", s.batch)
	}
	return fmt.Sprintf("%s-%d", s.loop, s.batch)
}

// scenarioThroughput is scenario 1: the worker's drain rate against the
// pipelined loop's and the fetch + ack bound's on identical copies of one
// seeded backlog, per batch size, side by side in every run.
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
		sides = append(sides, throughputSide{loopPipelined, b}, throughputSide{"", b}, throughputSide{loopFetchAck, b})
	}
	rates := make(map[string][]float64)
	cpus := make(map[string][]float64)
	ratioLoop := make(map[int][]float64)
	ratioBound := make(map[int][]float64)
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
			results := o.TPRequests
			if side.loop == "" {
				var st drainStats
				elapsed, st, err = runWorkerDrain(ctx, b.url(), o.TPRequests, batch.Config{MaxBatchSize: side.batch, MaxInflight: o.Inflight})
				workerStats[side.String()] = append(workerStats[side.String()], st)
			} else {
				elapsed, err = runLoop(ctx, b.url(), side.loop, o.TPRequests, side.batch, o.Inflight, nil)
				if !side.loop.publishes() {
					results = 0
				}
			}
			cpuPerReq := float64((processCPU() - cpu0).Microseconds()) / float64(o.TPRequests)
			stopProfile()
			if err == nil {
				err = verifyDrained(ctx, b.url(), o.TPRequests, results)
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
			if side.loop == "" {
				st := workerStats[side.String()][run]
				extra = fmt.Sprintf(", scheduler round trips per fetch: backlog %.0fus (%d reads) + fetch %.0fus, wall per fetch %.0fus",
					st.Backlog.MeanUS, st.Backlog.Calls, st.Fetch.MeanUS, float64(elapsed.Microseconds())/float64(st.Fetch.Calls))
			}
			r.progress("1 throughput: run %d %-15s %8.0f req/s (%s), %.1fus CPU per request%s", run+1, side, rate, elapsed.Round(time.Millisecond), cpuPerReq, extra)
		}
		for _, b := range o.TPBatches {
			w := perRun[throughputSide{"", b}.String()]
			ratioLoop[b] = append(ratioLoop[b], w/perRun[throughputSide{loopPipelined, b}.String()])
			ratioBound[b] = append(ratioBound[b], w/perRun[throughputSide{loopFetchAck, b}.String()])
			if w > perRun[throughputSide{loopPipelined, b}.String()] {
				r.progress("1 throughput: run %d batch %d: the worker beat the pipelined loop; the loop is not a bound on this run", run+1, b)
			}
		}
	}
	const sc = "1 throughput"
	col := func(side throughputSide) summary { return summarize(rates[side.String()]) }
	for _, b := range o.TPBatches {
		r.add(row{Scenario: sc, Measure: fmt.Sprintf("pipelined loop, fetch %d, %d in flight, %s x %d B", b, o.Inflight, countLabel(o.TPRequests), o.TPSize), Unit: "req/s", summary: col(throughputSide{loopPipelined, b})})
		r.add(row{Scenario: sc, Measure: fmt.Sprintf("fetch + ack bound (no publish), fetch %d, %d in flight", b, o.Inflight), Unit: "req/s", summary: col(throughputSide{loopFetchAck, b})})
		r.add(row{Scenario: sc, Measure: fmt.Sprintf("worker, MAX_BATCH_SIZE %d, MAX_INFLIGHT_BATCHES %d", b, o.Inflight), Unit: "req/s", summary: col(throughputSide{"", b})})
		r.add(row{Scenario: sc, Measure: fmt.Sprintf("worker / pipelined loop, batch %d", b), Unit: "ratio", summary: summarize(ratioLoop[b]), Target: atLeast(0.8)})
		r.add(row{Scenario: sc, Measure: fmt.Sprintf("worker / fetch + ack bound, batch %d (a bound: never above 1)", b), Unit: "ratio", summary: summarize(ratioBound[b]), Target: never(1)})
	}
	for _, b := range o.TPBatches {
		for _, side := range []throughputSide{{loopPipelined, b}, {loopFetchAck, b}, {"", b}} {
			name := "worker"
			if side.loop != "" {
				name = string(side.loop) + " loop"
			}
			r.add(row{Scenario: sc, Measure: fmt.Sprintf("CPU per request, %s + server, batch %d", name, b), Unit: "us", summary: summarize(cpus[side.String()])})
		}
	}
	r.detail("throughput", map[string]any{
		"requests": o.TPRequests, "request_bytes": o.TPSize, "batches": o.TPBatches, "inflight": o.Inflight,
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
