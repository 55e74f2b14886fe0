package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

// e2eResult is what one drain of scenario 9 measured: one process (the
// worker binary, or a broker loop) draining the preloaded backlog from a
// NATS server in a process of its own.
type e2eResult struct {
	Side     string `json:"side"`
	Requests int    `json:"requests"`
	// Seconds runs from the drainer's process start until the harness saw
	// the request stream empty (every request acked; a result is stored
	// before its request is acked), for every side alike.
	Seconds float64 `json:"seconds"`
	// CPUSeconds is the drainer process's user + system CPU time: the
	// worker's read from /proc/<pid>/stat when the stream was seen empty
	// (before its shutdown), a loop's from its rusage when it exited (just
	// after its last ack).
	CPUSeconds float64 `json:"cpu_seconds"`
	// ServerCPUSeconds is the NATS server process's CPU time over the same
	// span.
	ServerCPUSeconds float64 `json:"server_cpu_seconds"`
	// Calls counts the chat completion calls the fake received (worker).
	Calls int64 `json:"calls,omitempty"`
	// ChildSeconds is a loop's own clock, after its connection and set-up.
	ChildSeconds float64 `json:"child_seconds,omitempty"`
	// ResultBytes is the mean size of a stored result, headers and the
	// stream's overhead included (0 for the fetch + ack loop).
	ResultBytes float64 `json:"result_bytes"`
}

func (e e2eResult) perSec() float64   { return float64(e.Requests) / e.Seconds }
func (e e2eResult) cpuUS() float64    { return e.CPUSeconds * 1e6 / float64(e.Requests) }
func (e e2eResult) serverUS() float64 { return e.ServerCPUSeconds * 1e6 / float64(e.Requests) }
func (e e2eResult) String() string    { return e.Side }

// e2eOutputBytes is the length of the fake OpenAI server's answer to a
// request of size bytes: the pipelined loop stores results that long, so
// the results stream stores as much for it as for the worker.
func e2eOutputBytes(size int) int {
	var r wire.Request
	_ = json.Unmarshal(requestBody("b-", 0, size), &r)
	return len(openaitest.Answer(r.Input))
}

// e2eSides are the drainers of scenario 9.
var e2eSides = []string{"worker", string(loopPipelined), string(loopFetchAck)}

// scenarioE2E is scenario 9: the worker process end to end (the worker
// binary, PROVIDER=openai over real HTTP to the fake OpenAI server in the
// harness's process) against the pipelined loop and the fetch + ack loop,
// each in a process of its own, on copies of one preloaded backlog served
// by a NATS server process. The figure that matters is CPU per request of
// each drainer process, which holds on a noisy machine where rates do not.
func scenarioE2E(ctx context.Context, o *options, r *report) error {
	root := filepath.Join(o.TmpDir, "e2e")
	defer os.RemoveAll(root)
	bin, err := buildWorker(ctx, o.TmpDir, o.ProfileDir != "")
	if err != nil {
		return err
	}
	seed := filepath.Join(root, "seed")
	r.progress("9 end to end: seeding %d requests of %d bytes", o.E2ERequests, o.E2ESize)
	t0 := time.Now()
	if err := seedStore(ctx, seed, o.E2ERequests, o.E2ESize); err != nil {
		return err
	}
	r.progress("9 end to end: seeded in %s", time.Since(t0).Round(time.Millisecond))
	all := make(map[string][]e2eResult)
	var ratios []float64
	for run := range o.Runs {
		perRun := make(map[string]e2eResult)
		for k := range e2eSides {
			side := e2eSides[(k+run)%len(e2eSides)]
			dir := filepath.Join(root, "run")
			_ = os.RemoveAll(dir)
			if err := copyDir(seed, dir); err != nil {
				return fmt.Errorf("copy seeded store: %w", err)
			}
			srvProfile := ""
			if o.ProfileDir != "" {
				srvProfile = filepath.Join(o.ProfileDir, fmt.Sprintf("e2e-server-%s-%d.cpu.pprof", side, run+1))
			}
			srv, err := startServerProcess(dir, srvProfile)
			if err != nil {
				return err
			}
			res, err := runE2ESide(ctx, o, bin, srv, side, run)
			if perr := srv.stopProfile(); err == nil {
				err = perr
			}
			if err == nil {
				res.ResultBytes, err = resultBytes(ctx, srv.url)
			}
			if err == nil {
				want := o.E2ERequests
				if side == string(loopFetchAck) {
					want = 0
				}
				err = verifyDrained(ctx, srv.url, o.E2ERequests, want)
			}
			srv.stop()
			_ = os.RemoveAll(dir)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", side, run+1, err)
			}
			perRun[side] = res
			all[side] = append(all[side], res)
			extra := ""
			if res.Calls > 0 {
				extra = fmt.Sprintf(", %d provider calls", res.Calls)
			}
			r.progress("9 end to end: run %d %-9s %8.0f req/s (%.2fs), CPU per request: drainer %.1fus, server %.1fus, %.0f B stored per result%s",
				run+1, side, res.perSec(), res.Seconds, res.cpuUS(), res.serverUS(), res.ResultBytes, extra)
		}
		ratio := perRun["worker"].cpuUS() / perRun[string(loopPipelined)].cpuUS()
		ratios = append(ratios, ratio)
		r.progress("9 end to end: run %d worker CPU per request / pipelined loop's = %.2f", run+1, ratio)
	}
	const sc = "9 end to end"
	col := func(side string, f func(e2eResult) float64) summary {
		var v []float64
		for _, res := range all[side] {
			v = append(v, f(res))
		}
		return summarize(v)
	}
	rate := func(e e2eResult) float64 { return e.perSec() }
	cpu := func(e e2eResult) float64 { return e.cpuUS() }
	srvCPU := func(e e2eResult) float64 { return e.serverUS() }
	label := fmt.Sprintf("%s x %d B", countLabel(o.E2ERequests), o.E2ESize)
	b := o.TPBatches[0]
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("worker process, openai over HTTP to the fake, batch %d, %s", b, label), Unit: "req/s", summary: col("worker", rate)})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("pipelined loop process, fetch %d, %d in flight", b, o.Inflight), Unit: "req/s", summary: col(string(loopPipelined), rate)})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("fetch + ack loop process, fetch %d, %d in flight", b, o.Inflight), Unit: "req/s", summary: col(string(loopFetchAck), rate)})
	r.add(row{Scenario: sc, Measure: "worker process CPU per request", Unit: "us", summary: col("worker", cpu)})
	r.add(row{Scenario: sc, Measure: "pipelined loop process CPU per request", Unit: "us", summary: col(string(loopPipelined), cpu)})
	r.add(row{Scenario: sc, Measure: "fetch + ack loop process CPU per request", Unit: "us", summary: col(string(loopFetchAck), cpu)})
	r.add(row{Scenario: sc, Measure: "worker CPU / pipelined loop CPU, per request, same run", Unit: "ratio", summary: summarize(ratios), Target: &target{op: "<=", value: 2.5}})
	r.add(row{Scenario: sc, Measure: "server process CPU per request, worker draining", Unit: "us", summary: col("worker", srvCPU)})
	r.add(row{Scenario: sc, Measure: "server process CPU per request, pipelined loop draining", Unit: "us", summary: col(string(loopPipelined), srvCPU)})
	r.add(row{Scenario: sc, Measure: "server process CPU per request, fetch + ack loop draining", Unit: "us", summary: col(string(loopFetchAck), srvCPU)})
	r.detail("e2e", map[string]any{
		"requests": o.E2ERequests, "request_bytes": o.E2ESize, "batch": b, "inflight": o.Inflight,
		"runs": all, "cpu_ratio_worker_to_pipelined": ratios,
	})
	return nil
}

// runE2ESide drains the backlog of the server srv with one side, in a
// process of its own.
func runE2ESide(ctx context.Context, o *options, bin string, srv *serverProcess, side string, run int) (e2eResult, error) {
	n := o.E2ERequests
	res := e2eResult{Side: side, Requests: n}
	poller, err := connect(srv.url, "bench-poller")
	if err != nil {
		return res, err
	}
	defer poller.close()
	srvCPU0, err := srv.cpu()
	if err != nil {
		return res, err
	}
	profile := ""
	if o.ProfileDir != "" {
		profile = filepath.Join(o.ProfileDir, fmt.Sprintf("e2e-%s-%d.cpu.pprof", side, run+1))
	}
	if side != "worker" {
		var rep childReport
		var childErr error
		finished := make(chan struct{})
		start := time.Now()
		go func() {
			defer close(finished)
			rep, childErr = runChild(ctx, side, srv.url, n, o.TPBatches[0], o.Inflight, e2eOutputBytes(o.E2ESize), profile)
		}()
		end, err := waitStreamEmpty(ctx, poller, 10*time.Minute, finished)
		srvCPU1, _ := srv.cpu()
		<-finished
		if err := errors.Join(err, childErr); err != nil {
			return res, err
		}
		res.Seconds = end.Sub(start).Seconds()
		res.CPUSeconds = rep.CPUSeconds
		res.ChildSeconds = rep.Seconds
		res.ServerCPUSeconds = (srvCPU1 - srvCPU0).Seconds()
		return res, nil
	}

	fake := openaitest.NewServer()
	defer fake.Close()
	work := filepath.Join(o.TmpDir, "e2e-worker")
	w, err := startWorkerProcess(bin, work, map[string]string{
		"NATS_URL":             srv.url,
		"PROVIDER":             "openai",
		"OPENAI_BASE_URL":      fake.URL,
		"OPENAI_API_KEY":       "bench-key-not-secret",
		"MAX_BATCH_SIZE":       strconv.Itoa(o.TPBatches[0]),
		"MAX_INFLIGHT_BATCHES": strconv.Itoa(o.Inflight),
		"ADMIN_ADDR":           "",
	}, filepath.Join(o.TmpDir, fmt.Sprintf("e2e-worker-%d.log", run+1)), profile)
	if err != nil {
		return res, err
	}
	end, err := waitStreamEmpty(ctx, poller, 10*time.Minute, w.done)
	if err != nil {
		_ = w.stop()
		return res, fmt.Errorf("worker: %w (log %s)", err, w.log.Name())
	}
	cpu, cerr := w.cpu()
	srvCPU1, _ := srv.cpu()
	perr := w.stopProfile()
	if err := errors.Join(cerr, perr, w.stop()); err != nil {
		return res, err
	}
	res.Seconds = end.Sub(w.started).Seconds()
	res.CPUSeconds = cpu.Seconds()
	res.ServerCPUSeconds = (srvCPU1 - srvCPU0).Seconds()
	res.Calls = fake.Calls()
	return res, nil
}

// resultBytes is the mean stored size of a result in the results stream.
func resultBytes(ctx context.Context, url string) (float64, error) {
	c, err := connect(url, "bench-sizes")
	if err != nil {
		return 0, err
	}
	defer c.close()
	s, err := c.js.Stream(ctx, topology().ResultStream)
	if err != nil {
		return 0, fmt.Errorf("open results stream: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("read results stream: %w", err)
	}
	if info.State.Msgs == 0 {
		return 0, nil
	}
	return float64(info.State.Bytes) / float64(info.State.Msgs), nil
}

// waitStreamEmpty polls the request stream every 20ms until it holds no
// request, and returns when it saw that. It fails 5s after the drainer
// ended (gone is closed) if requests are still left, or after timeout.
func waitStreamEmpty(ctx context.Context, c *client, timeout time.Duration, gone <-chan struct{}) (time.Time, error) {
	t := topology()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		left, err := c.streamMsgs(ctx, t.RequestStream)
		if err != nil {
			return time.Time{}, err
		}
		if left == 0 {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%d requests left after %s", left, timeout)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-tick.C:
		case <-gone:
			// Its last acks may still be on the way: a little longer.
			gone = nil
			deadline = time.Now().Add(5 * time.Second)
		}
	}
}
