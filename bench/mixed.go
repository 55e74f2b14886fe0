package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

// Scenario 10: mixed workloads. Requests over several prompt templates
// (instructions) go to worker processes (the worker binary, PROVIDER=openai
// over HTTP to a fake OpenAI server in the harness's process, which counts
// the calls), each cell on an embedded JetStream server of its own. The
// figure is the provider calls against the ideal: per template, the fewest
// calls that carry every request at most MAX_BATCH_SIZE to a call and send
// each within MAX_WAIT of its publication (idealCalls). For a burst, or a
// load where every group fills a call well within MAX_WAIT, that is the sum
// over templates of ceil(n_template / MAX_BATCH_SIZE).

// mixCell is one measurement of scenario 10.
type mixCell struct {
	name     string
	burst    int           // requests published at once; 0 for a rate
	rate     float64       // requests/s over every template
	duration time.Duration // how long arrivals last at rate
	workers  int
	// lease is the fleet bucket (STATS_BUCKET) on, so a holder lease
	// lets one worker gather partial groups; off, every worker holds.
	lease bool
	seed  uint64
	// maxWait is the workers' MAX_WAIT; 0 leaves the default (5m).
	maxWait time.Duration
}

// wait is the cell's MAX_WAIT.
func (c mixCell) wait() time.Duration {
	if c.maxWait > 0 {
		return c.maxWait
	}
	return batch.DefaultMaxWait
}

// mixResult is what one cell measured.
type mixResult struct {
	Cell     string `json:"cell"`
	Workers  int    `json:"workers"`
	Lease    bool   `json:"fleet_bucket"`
	Requests int    `json:"requests"`
	// Calls counts the chat completion calls the fake received.
	Calls int64 `json:"calls"`
	// Ideal is idealCalls over the publication times; CeilIdeal the sum
	// over templates of ceil(n / MAX_BATCH_SIZE), ignoring MAX_WAIT.
	Ideal     int `json:"ideal"`
	CeilIdeal int `json:"ceil_ideal"`
	// Inputs counts the requests the calls carried; above Requests means
	// some request was sent twice.
	Inputs int `json:"inputs_sent"`
	// CallsByTemplate and IdealByTemplate are per template, by its
	// number.
	CallsByTemplate map[int]int `json:"calls_by_template"`
	IdealByTemplate map[int]int `json:"ideal_by_template"`
	// CallsByTrigger counts calls (distinct batch ids of the results) by
	// what sent them; CallsByWorker by the worker instance that made them.
	CallsByTrigger map[string]int `json:"calls_by_trigger"`
	CallsByWorker  map[string]int `json:"calls_by_worker"`
	// CallSizes maps a call's size to how many calls had it.
	CallSizes map[int]int `json:"call_sizes"`
	// LongestQueuedMS is the longest queue wait of a request (its
	// result's queued_ms: from its arrival in the stream to its call).
	LongestQueuedMS int64   `json:"longest_queued_ms"`
	Seconds         float64 `json:"seconds"`
}

// ratio is calls over the ideal.
func (m mixResult) ratio() float64 { return float64(m.Calls) / float64(m.Ideal) }

// templateInstructions is template t's instructions. The number leads, so
// the harness can tell a call's template from its system message.
func templateInstructions(t int) string {
	return fmt.Sprintf("Template %d: classify the observation into one of the listed categories and answer with the category only.", t)
}

var templateOf = regexp.MustCompile(`^Template (\d+):`)

// mixBody is request i of a mixed load: template i mod templates, about
// size bytes.
func mixBody(prefix string, i, templates, size int) []byte {
	t := i % templates
	in := requestBody("", i, max(size-len(templateInstructions(t))-40, 64))
	body, _ := json.Marshal(wire.Request{ID: prefix + strconv.Itoa(i), Input: string(in), Instructions: templateInstructions(t)})
	return body
}

// idealCalls is the fewest calls that carry the requests published at
// times[t] (per template, in order) with at most batch per call, each call
// of one template and each request sent within maxWait of its publication:
// per template, greedily, a call takes the oldest request left and every
// later one published within maxWait of it, up to batch (which is optimal).
func idealCalls(times map[int][]time.Time, batch int, maxWait time.Duration) (total int, byTemplate map[int]int) {
	byTemplate = make(map[int]int)
	for t, ts := range times {
		for i := 0; i < len(ts); {
			j := i
			for j < len(ts) && j-i < batch && ts[j].Sub(ts[i]) <= maxWait {
				j++
			}
			byTemplate[t]++
			total++
			i = j
		}
	}
	return total, byTemplate
}

// ceilIdeal is the sum over templates of ceil(n / batch).
func ceilIdeal(times map[int][]time.Time, batch int) int {
	total := 0
	for _, ts := range times {
		total += (len(ts) + batch - 1) / batch
	}
	return total
}

// mixEnv is the workers' environment for a cell.
func mixEnv(o *options, url, fakeURL string, cell mixCell) map[string]string {
	env := map[string]string{
		"NATS_URL":        url,
		"PROVIDER":        "openai",
		"OPENAI_BASE_URL": fakeURL,
		"OPENAI_API_KEY":  "bench-key-not-secret",
		"MAX_BATCH_SIZE":  strconv.Itoa(o.MixBatch),
		"ADMIN_ADDR":      "",
	}
	if cell.maxWait > 0 {
		env["MAX_WAIT"] = cell.maxWait.String()
	}
	if !cell.lease {
		env["STATS_BUCKET"] = "" // no fleet bucket, no holder lease
	}
	return env
}

// runMixCell runs one cell on a server of its own and counts its calls.
func runMixCell(ctx context.Context, o *options, bin, root string, cell mixCell) (mixResult, error) {
	res := mixResult{Cell: cell.name, Workers: cell.workers, Lease: cell.lease}
	b, err := freshBroker(ctx, root, cell.name)
	if err != nil {
		return res, err
	}
	defer b.stop(true)
	fake := openaitest.NewServer()
	defer fake.Close()
	var workers []*workerProcess
	defer func() {
		for _, w := range workers {
			_ = w.stop()
		}
	}()
	for k := range cell.workers {
		w, err := startWorkerProcess(bin, filepath.Join(root, cell.name+"-work"), mixEnv(o, b.url(), fake.URL, cell),
			filepath.Join(o.TmpDir, fmt.Sprintf("mixed-%s-worker-%d.log", cell.name, k+1)), "")
		if err != nil {
			return res, err
		}
		workers = append(workers, w)
	}
	pc, err := connect(b.url(), "bench-producer")
	if err != nil {
		return res, err
	}
	defer pc.close()
	if err := waitWorkersReady(ctx, pc, workers, cell.lease); err != nil {
		return res, err
	}

	times := make(map[int][]time.Time)
	prefix := "m-" + cell.name + "-"
	start := time.Now()
	if cell.burst > 0 {
		now := time.Now()
		for i := range cell.burst {
			times[i%o.MixTemplates] = append(times[i%o.MixTemplates], now)
		}
		err = pc.publishBodies(ctx, bulkSubject, 0, cell.burst, func(i int) []byte { return mixBody(prefix, i, o.MixTemplates, o.RequestSize) })
		res.Requests = cell.burst
	} else {
		res.Requests, err = pc.publishPoissonBodies(ctx, bulkSubject, cell.rate, cell.duration, cell.seed,
			func(i int) []byte {
				times[i%o.MixTemplates] = append(times[i%o.MixTemplates], time.Now())
				return mixBody(prefix, i, o.MixTemplates, o.RequestSize)
			})
	}
	if err != nil {
		return res, err
	}
	if err := waitResults(ctx, pc, res.Requests, cell.wait()+time.Minute, workers); err != nil {
		return res, fmt.Errorf("%s: %w", cell.name, err)
	}
	res.Seconds = time.Since(start).Seconds()
	for _, w := range workers {
		if err := w.stop(); err != nil {
			return res, err
		}
	}
	workers = nil
	if err := verifyDrained(ctx, b.url(), res.Requests, res.Requests); err != nil {
		return res, err
	}

	res.Calls = fake.Calls()
	res.Ideal, res.IdealByTemplate = idealCalls(times, o.MixBatch, cell.wait())
	res.CeilIdeal = ceilIdeal(times, o.MixBatch)
	res.CallsByTemplate = make(map[int]int)
	for _, req := range fake.Requests() {
		for _, m := range req.Messages {
			if m.Role != "system" {
				continue
			}
			if sub := templateOf.FindStringSubmatch(m.Content); sub != nil {
				t, _ := strconv.Atoi(sub[1])
				res.CallsByTemplate[t]++
			}
		}
	}
	res.CallSizes = make(map[int]int)
	for _, s := range fake.CallSizes() {
		res.CallSizes[s]++
		res.Inputs += s
	}
	err = readBatches(ctx, b.url(), &res)
	return res, err
}

// waitWorkersReady waits until every worker logged that it started and,
// with the fleet bucket on, one of them holds the holder lease.
func waitWorkersReady(ctx context.Context, c *client, workers []*workerProcess, lease bool) error {
	deadline := time.Now().Add(60 * time.Second)
	for _, w := range workers {
		for {
			b, _ := os.ReadFile(w.log.Name())
			if strings.Contains(string(b), `"worker started"`) {
				break
			}
			if w.exited() || time.Now().After(deadline) {
				return fmt.Errorf("worker did not start; log %s:\n%s", w.log.Name(), b)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	if !lease {
		return nil
	}
	for {
		kv, err := c.js.KeyValue(ctx, "AI_STATS")
		if err == nil {
			// The workers' lease of one stream and consumer (cmd/worker).
			if _, err = kv.Get(ctx, "holder."+topology().RequestStream+"."+topology().Consumer); err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no worker took the holder lease: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitResults waits until the results stream holds n results.
func waitResults(ctx context.Context, c *client, n int, timeout time.Duration, workers []*workerProcess) error {
	t := topology()
	deadline := time.Now().Add(timeout)
	for {
		got, err := c.streamMsgs(ctx, t.ResultStream)
		if err != nil {
			return err
		}
		if got >= uint64(n) {
			return nil
		}
		for _, w := range workers {
			if w.exited() {
				return fmt.Errorf("a worker exited; log %s", w.log.Name())
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d results after %s", got, n, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// readBatches reads the cell's results (every one must be ok), counts the
// distinct calls (batch ids) by trigger and by worker instance (the batch
// id's first part), and finds the longest queue wait.
func readBatches(ctx context.Context, url string, res *mixResult) error {
	c, err := connect(url, "bench-results")
	if err != nil {
		return err
	}
	defer c.close()
	cons, err := c.js.OrderedConsumer(ctx, topology().ResultStream, natsjs.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("read results: %w", err)
	}
	seen := make(map[string]bool)
	res.CallsByTrigger, res.CallsByWorker = make(map[string]int), make(map[string]int)
	for got, n := 0, res.Requests; got < n; {
		mb, err := cons.Fetch(min(n-got, 500), natsjs.FetchMaxWait(10*time.Second))
		if err != nil {
			return fmt.Errorf("read results: %w", err)
		}
		k := 0
		for m := range mb.Messages() {
			k++
			var r wire.Result
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				return fmt.Errorf("read result: %w", err)
			}
			if r.Status != wire.StatusOK {
				return fmt.Errorf("result %s: status %s: %s", r.ID, r.Status, r.Error)
			}
			res.LongestQueuedMS = max(res.LongestQueuedMS, r.QueuedMS)
			if !seen[r.Batch.ID] {
				seen[r.Batch.ID] = true
				res.CallsByTrigger[string(r.Batch.Trigger)]++
				instance, _, _ := strings.Cut(r.Batch.ID, "-")
				res.CallsByWorker[instance]++
			}
		}
		if k == 0 {
			return fmt.Errorf("read results: %d of %d", got, n)
		}
		got += k
	}
	return nil
}

// publishPoissonBodies publishes body(i) to subject at the arrival times of
// a Poisson process with the given rate, for d, and waits until the server
// stored them. It returns how many it published.
func (c *client) publishPoissonBodies(ctx context.Context, subject string, rate float64, d time.Duration, seed uint64, body func(i int) []byte) (int, error) {
	p := newPoisson(rate, seed)
	before := c.pubErrs.Load()
	start := time.Now()
	next := start
	timer := time.NewTimer(0)
	<-timer.C
	n := 0
	for {
		next = next.Add(p.next())
		if next.Sub(start) >= d {
			break
		}
		if wait := time.Until(next); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return n, ctx.Err()
			}
		}
		if _, err := c.js.PublishAsync(subject, body(n)); err != nil {
			return n, fmt.Errorf("publish request %d: %w", n, err)
		}
		n++
	}
	if err := c.waitPublished(ctx); err != nil {
		return n, err
	}
	if failed := c.pubErrs.Load() - before; failed > 0 {
		return n, fmt.Errorf("publish requests to %s: the server refused %d of %d", subject, failed, n)
	}
	return n, nil
}

// scenarioMixedBurst is scenario 10's burst: o.MixBurst requests round-robin
// over o.MixTemplates templates published at once to one running worker,
// MAX_BATCH_SIZE o.MixBatch, other settings default.
func scenarioMixedBurst(ctx context.Context, o *options, r *report) error {
	root := filepath.Join(o.TmpDir, "mixed-burst")
	defer os.RemoveAll(root)
	bin, err := buildWorker(ctx, o.TmpDir, false)
	if err != nil {
		return err
	}
	var results []mixResult
	var calls, ratio []float64
	for run := range o.Runs {
		cell := mixCell{name: fmt.Sprintf("burst-%d", run+1), burst: o.MixBurst, workers: 1, lease: true}
		// MAX_WAIT is the default (5m): nothing in a burst should wait
		// for it.
		res, err := runMixCell(ctx, o, bin, root, cell)
		if err != nil {
			return fmt.Errorf("run %d: %w", run+1, err)
		}
		results = append(results, res)
		calls = append(calls, float64(res.Calls))
		ratio = append(ratio, res.ratio())
		r.progress("10 mixed: run %d burst of %d over %d templates: %d calls (ideal %d), sizes %v, triggers %v, longest queue wait %s",
			run+1, res.Requests, o.MixTemplates, res.Calls, res.Ideal, res.CallSizes, res.CallsByTrigger, time.Duration(res.LongestQueuedMS)*time.Millisecond)
	}
	ideal := results[0].Ideal
	const sc = "10 mixed"
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("burst of %s over %d templates, batch %d, 1 worker: calls (ideal %d)", countLabel(o.MixBurst), o.MixTemplates, o.MixBatch, ideal),
		Unit: "count", summary: summarize(calls), Target: never(float64(o.MixBurstTarget))})
	r.add(row{Scenario: sc, Measure: "  of ideal", Unit: "ratio", summary: summarize(ratio)})
	r.detail("mixed_burst", map[string]any{
		"requests": o.MixBurst, "templates": o.MixTemplates, "max_batch_size": o.MixBatch, "runs": results,
	})
	return nil
}

// scenarioMixedRates is scenario 10's steady load and low rate, each with
// one worker and with o.MixWorkers workers sharing the stream (fleet bucket
// on, so the holder lease works), and at the low rate also o.MixWorkers
// without the fleet bucket (no coordination). Every cell runs at once on a
// server of its own; cells of one rate publish the same arrivals (seed).
// Meanwhile the burst goes to 1 worker and to o.MixWorkers, o.Runs times
// each, one cell after another. MAX_WAIT is o.MixMaxWait in every cell.
func scenarioMixedRates(ctx context.Context, o *options, r *report) error {
	root := filepath.Join(o.TmpDir, "mixed-rates")
	defer os.RemoveAll(root)
	bin, err := buildWorker(ctx, o.TmpDir, false)
	if err != nil {
		return err
	}
	n := o.MixWorkers
	cells := []mixCell{
		{name: "steady-1", rate: o.MixSteadyRate, duration: o.MixSteadyDuration, workers: 1, lease: true, seed: o.Seed},
		{name: fmt.Sprintf("steady-%d", n), rate: o.MixSteadyRate, duration: o.MixSteadyDuration, workers: n, lease: true, seed: o.Seed},
		{name: "low-1", rate: o.MixLowRate, duration: o.MixLowDuration, workers: 1, lease: true, seed: o.Seed + 1},
		{name: fmt.Sprintf("low-%d", n), rate: o.MixLowRate, duration: o.MixLowDuration, workers: n, lease: true, seed: o.Seed + 1},
		{name: fmt.Sprintf("low-%d-no-fleet-bucket", n), rate: o.MixLowRate, duration: o.MixLowDuration, workers: n, lease: false, seed: o.Seed + 1},
	}
	r.progress("10 mixed: %d cells at once: %g req/s for %s and %g req/s for %s over %d templates, MAX_WAIT %s, 1 and %d workers; meanwhile %d bursts of %d to 1 and to %d workers, one after another",
		len(cells), o.MixSteadyRate, o.MixSteadyDuration, o.MixLowRate, o.MixLowDuration, o.MixTemplates, o.MixMaxWait, n, o.Runs, o.MixBurst, n)
	results := make([]mixResult, len(cells))
	errs := make([]error, len(cells)+1)
	var wg sync.WaitGroup
	for i, cell := range cells {
		cell.maxWait = o.MixMaxWait
		wg.Go(func() { results[i], errs[i] = runMixCell(ctx, o, bin, root, cell) })
	}
	// The bursts take seconds each (MAX_WAIT at worst): they run one after
	// another, o.Runs of each, beside the rate cells.
	var bursts1, burstsN []mixResult
	wg.Go(func() {
		for run := range o.Runs {
			for k := range 2 {
				workers := []int{1, n}[(k+run)%2]
				cell := mixCell{name: fmt.Sprintf("burst-%d-run-%d", workers, run+1), burst: o.MixBurst, workers: workers, lease: true, maxWait: o.MixMaxWait}
				res, err := runMixCell(ctx, o, bin, root, cell)
				if err != nil {
					errs[len(cells)] = err
					return
				}
				if workers == 1 {
					bursts1 = append(bursts1, res)
				} else {
					burstsN = append(burstsN, res)
				}
				r.progress("10 mixed: %-22s %5d requests, %4d calls (ideal %d), longest queue wait %s, triggers %v, calls by worker %v",
					res.Cell, res.Requests, res.Calls, res.Ideal, time.Duration(res.LongestQueuedMS)*time.Millisecond,
					res.CallsByTrigger, slices.Sorted(maps.Values(res.CallsByWorker)))
			}
		}
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	by := make(map[string]mixResult)
	for _, res := range results {
		by[res.Cell] = res
		r.progress("10 mixed: %-22s %5d requests, %4d calls (ideal %d, ceil ideal %d), inputs sent %d, longest queue wait %s, triggers %v, calls by worker %v",
			res.Cell, res.Requests, res.Calls, res.Ideal, res.CeilIdeal, res.Inputs, time.Duration(res.LongestQueuedMS)*time.Millisecond,
			res.CallsByTrigger, slices.Sorted(maps.Values(res.CallsByWorker)))
	}
	const sc = "10 mixed"
	one := func(v float64) summary { return summarize([]float64{v}) }
	s1, sn := by["steady-1"], by[fmt.Sprintf("steady-%d", n)]
	l1, ln, lx := by["low-1"], by[fmt.Sprintf("low-%d", n)], by[fmt.Sprintf("low-%d-no-fleet-bucket", n)]
	steady := fmt.Sprintf("%g req/s over %d templates for %s", o.MixSteadyRate, o.MixTemplates, o.MixSteadyDuration)
	low := fmt.Sprintf("%g req/s over %d templates for %s", o.MixLowRate, o.MixTemplates, o.MixLowDuration)
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("steady %s, 1 worker: calls (ideal %d)", steady, s1.Ideal), Unit: "count", summary: one(float64(s1.Calls))})
	r.add(row{Scenario: sc, Measure: "  of ideal", Unit: "ratio", summary: one(s1.ratio()), Target: &target{op: "<=", value: 1.15}})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("steady, %d workers, fleet bucket on: calls (ideal %d)", n, sn.Ideal), Unit: "count", summary: one(float64(sn.Calls))})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("  %d workers / 1 worker", n), Unit: "ratio", summary: one(float64(sn.Calls) / float64(s1.Calls)), Target: &target{op: "<=", value: 1.5}})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("low %s, 1 worker: calls (ideal %d)", low, l1.Ideal), Unit: "count", summary: one(float64(l1.Calls))})
	r.add(row{Scenario: sc, Measure: "  of ideal", Unit: "ratio", summary: one(l1.ratio())})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("low, %d workers, fleet bucket on: calls", n), Unit: "count", summary: one(float64(ln.Calls))})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("  %d workers / 1 worker", n), Unit: "ratio", summary: one(float64(ln.Calls) / float64(l1.Calls)), Target: &target{op: "<=", value: 1.5}})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("low, %d workers, no fleet bucket (no lease): calls", n), Unit: "count", summary: one(float64(lx.Calls))})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("  %d workers / 1 worker", n), Unit: "ratio", summary: one(float64(lx.Calls) / float64(l1.Calls))})
	waited := func(m mixResult) float64 { return float64(m.CallsByTrigger[string(wire.TriggerMaxWait)]) }
	col := func(rs []mixResult, f func(mixResult) float64) summary {
		var v []float64
		for _, m := range rs {
			v = append(v, f(m))
		}
		return summarize(v)
	}
	calls := func(m mixResult) float64 { return float64(m.Calls) }
	longest := func(m mixResult) float64 { return float64(m.LongestQueuedMS) }
	var burstRatio []float64
	for k := range min(len(bursts1), len(burstsN)) {
		burstRatio = append(burstRatio, float64(burstsN[k].Calls)/float64(bursts1[k].Calls))
	}
	burstIdeal := 0
	if len(bursts1) > 0 {
		burstIdeal = bursts1[0].Ideal
	}
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("burst of %s over %d templates, 1 worker: calls (ideal %d)", countLabel(o.MixBurst), o.MixTemplates, burstIdeal), Unit: "count", summary: col(bursts1, calls)})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("burst, %d workers, fleet bucket on: calls", n), Unit: "count", summary: col(burstsN, calls)})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("  %d workers / 1 worker", n), Unit: "ratio", summary: summarize(burstRatio), Target: &target{op: "<=", value: 1.5}})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("  calls sent at MAX_WAIT (%s), 1 worker", o.MixMaxWait), Unit: "count", summary: col(bursts1, waited)})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("  calls sent at MAX_WAIT, %d workers", n), Unit: "count", summary: col(burstsN, waited)})
	r.add(row{Scenario: sc, Measure: "  longest queue wait, 1 worker", Unit: "ms", summary: col(bursts1, longest)})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("  longest queue wait, %d workers", n), Unit: "ms", summary: col(burstsN, longest)})
	r.detail("mixed_rates", map[string]any{
		"templates": o.MixTemplates, "max_batch_size": o.MixBatch, "max_wait": o.MixMaxWait.String(),
		"steady_rate": o.MixSteadyRate, "steady_duration": o.MixSteadyDuration.String(),
		"low_rate": o.MixLowRate, "low_duration": o.MixLowDuration.String(), "cells": results,
		"bursts_1_worker": bursts1, "bursts_fleet": burstsN,
	})
	return nil
}
