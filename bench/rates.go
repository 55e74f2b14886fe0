package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/aibatch/aibatch/batch"
)

// rateCell is one arrival rate in one mode.
type rateCell struct {
	rate      float64
	immediate bool
}

func (c rateCell) name() string {
	mode := "batched"
	if c.immediate {
		mode = "immediate"
	}
	return fmt.Sprintf("%s-%g", mode, c.rate)
}

// rateResult is what one cell measured.
type rateResult struct {
	Requests    int   `json:"requests"`
	Calls       int64 `json:"calls"`
	CallsPerReq num   `json:"calls_per_request"`
	// LongestWaitMS is the longest queue wait of a request, in ms.
	LongestWaitMS float64          `json:"longest_queue_wait_ms"`
	Triggers      map[string]int64 `json:"triggers"`
}

// runRateCell publishes Poisson arrivals at the cell's rate to a worker on a
// server of its own, waits for every result and counts the provider calls.
func runRateCell(ctx context.Context, o *options, root string, cell rateCell, seed uint64) (rateResult, error) {
	b, err := freshBroker(ctx, root, cell.name())
	if err != nil {
		return rateResult{}, err
	}
	defer b.stop(true)
	prov := &benchProvider{}
	cfg := batch.Config{
		MaxBatchSize: o.RateBatch, Interval: o.RateInterval, MaxWait: o.RateMaxWait,
		Immediate: cell.immediate,
	}
	w, err := startWorker(ctx, b.url(), cfg, prov)
	if err != nil {
		return rateResult{}, err
	}
	defer w.stop()
	pc, err := connect(b.url(), "bench-producer")
	if err != nil {
		return rateResult{}, err
	}
	defer pc.close()
	n, err := pc.publishPoisson(ctx, bulkSubject, "r-", cell.rate, o.RateDuration, o.RequestSize, seed, nil)
	if err != nil {
		return rateResult{}, err
	}
	if _, err := w.waitFinished(ctx, int64(n), o.RateMaxWait+o.RateInterval+30*time.Second); err != nil {
		return rateResult{}, err
	}
	res := rateResult{Requests: n, Calls: prov.calls.Load(), CallsPerReq: num(nan),
		LongestWaitMS: ms(w.obs.longestWait()), Triggers: make(map[string]int64)}
	if n > 0 {
		res.CallsPerReq = num(float64(res.Calls) / float64(n))
	}
	for t, k := range w.engine.Stats().Triggers {
		res.Triggers[string(t)] = k
	}
	return res, nil
}

// scenarioRates is scenario 2: API calls per request at Poisson arrival
// rates, batched against immediate mode on the same arrival sequence. Every
// cell runs on a server of its own, all cells of a run at once: the figure
// is a count, which the machine's speed barely moves.
func scenarioRates(ctx context.Context, o *options, r *report) error {
	root := filepath.Join(o.TmpDir, "rates")
	defer os.RemoveAll(root)
	var cells []rateCell
	for _, rate := range o.Rates {
		cells = append(cells, rateCell{rate, false}, rateCell{rate, true})
	}
	perCell := make(map[string][]rateResult)
	for run := range o.Runs {
		results := make([]rateResult, len(cells))
		errs := make([]error, len(cells))
		var wg sync.WaitGroup
		for i, cell := range cells {
			// The batched and immediate cells of a rate share a seed: the
			// same arrivals.
			seed := o.Seed + uint64(run)*1000 + uint64(i/2)
			wg.Go(func() {
				results[i], errs[i] = runRateCell(ctx, o, root, cell, seed)
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("run %d: %w", run+1, err)
		}
		for i, cell := range cells {
			perCell[cell.name()] = append(perCell[cell.name()], results[i])
			r.progress("2 rates: run %d %-16s %6d requests, %6d calls, %.4f calls/req, longest wait %s",
				run+1, cell.name(), results[i].Requests, results[i].Calls, results[i].CallsPerReq,
				time.Duration(results[i].LongestWaitMS*float64(time.Millisecond)).Round(time.Millisecond))
		}
	}
	const sc = "2 call reduction"
	limit := 1 / float64(o.RateBatch)
	for _, rate := range o.Rates {
		bat := perCell[rateCell{rate, false}.name()]
		imm := perCell[rateCell{rate, true}.name()]
		var bv, iv, cut []float64
		for k := range bat {
			b, i := float64(bat[k].CallsPerReq), float64(imm[k].CallsPerReq)
			bv = append(bv, b)
			iv = append(iv, i)
			cut = append(cut, 100*(1-b/i))
		}
		r.add(row{Scenario: sc, Measure: fmt.Sprintf("%g req/s batched (limit %.4f)", rate, limit), Unit: "calls/req", summary: summarize(bv)})
		r.add(row{Scenario: sc, Measure: fmt.Sprintf("%g req/s immediate", rate), Unit: "calls/req", summary: summarize(iv)})
		var t *target
		if rate >= 100 {
			t = atLeast(97)
		}
		r.add(row{Scenario: sc, Measure: fmt.Sprintf("%g req/s calls cut vs immediate", rate), Unit: "%", summary: summarize(cut), Target: t})
	}
	r.detail("rates", map[string]any{
		"duration_s": o.RateDuration.Seconds(), "batch_interval_s": o.RateInterval.Seconds(),
		"max_wait_s": o.RateMaxWait.Seconds(), "max_batch_size": o.RateBatch, "cells": perCell,
	})
	return nil
}
