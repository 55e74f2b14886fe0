package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/aibatch/aibatch/batch"
)

// inflightResult is what one MAX_INFLIGHT_BATCHES setting measured.
type inflightResult struct {
	Inflight  int     `json:"inflight"`
	Requests  int     `json:"requests"`
	PerSec    float64 `json:"req_per_s"`
	Ideal     float64 `json:"ideal_req_per_s"`
	MostCalls int64   `json:"most_calls_at_once"`
}

// runInflight drains rounds full waves of k batches through a provider that
// takes o.SlowLatency per call.
func runInflight(ctx context.Context, o *options, root string, k int) (inflightResult, error) {
	size := o.RateBatch
	n := k * size * o.Rounds
	b, err := freshBroker(ctx, root, fmt.Sprintf("inflight-%d", k))
	if err != nil {
		return inflightResult{}, err
	}
	defer b.stop(true)
	pc, err := connect(b.url(), "bench-producer")
	if err != nil {
		return inflightResult{}, err
	}
	defer pc.close()
	if err := pc.publishMany(ctx, bulkSubject, "s-", 0, n, o.RequestSize); err != nil {
		return inflightResult{}, err
	}
	prov := &benchProvider{latency: o.SlowLatency}
	w, err := startWorker(ctx, b.url(), batch.Config{MaxBatchSize: size, MaxInflight: k}, prov)
	if err != nil {
		return inflightResult{}, err
	}
	defer w.stop()
	start := time.Now()
	end, err := w.waitFinished(ctx, int64(n), time.Duration(o.Rounds+1)*o.SlowLatency*4+time.Minute)
	if err != nil {
		return inflightResult{}, err
	}
	return inflightResult{
		Inflight: k, Requests: n, PerSec: float64(n) / end.Sub(start).Seconds(),
		Ideal:     float64(k*size) / o.SlowLatency.Seconds(),
		MostCalls: prov.mostAtOnce.Load(),
	}, nil
}

// scenarioInflight is scenario 4: hiding provider latency with calls in
// flight at once.
func scenarioInflight(ctx context.Context, o *options, r *report) error {
	root := filepath.Join(o.TmpDir, "inflight")
	defer os.RemoveAll(root)
	all := make(map[int][]inflightResult)
	for run := range o.Runs {
		for _, k := range o.Inflights {
			res, err := runInflight(ctx, o, root, k)
			if err != nil {
				return fmt.Errorf("MAX_INFLIGHT_BATCHES %d run %d: %w", k, run+1, err)
			}
			all[k] = append(all[k], res)
			r.progress("4 inflight: run %d MAX_INFLIGHT_BATCHES %-2d %7.1f req/s of ideal %7.1f (%.2f), at most %d calls at once",
				run+1, k, res.PerSec, res.Ideal, res.PerSec/res.Ideal, res.MostCalls)
		}
	}
	const sc = "4 provider latency"
	for _, k := range o.Inflights {
		var rate, ratio []float64
		for _, res := range all[k] {
			rate = append(rate, res.PerSec)
			ratio = append(ratio, res.PerSec/res.Ideal)
		}
		ideal := float64(k*o.RateBatch) / o.SlowLatency.Seconds()
		r.add(row{Scenario: sc, Measure: fmt.Sprintf("MAX_INFLIGHT_BATCHES %d, %s calls", k, o.SlowLatency), Unit: "req/s", summary: summarize(rate)})
		r.add(row{Scenario: sc, Measure: fmt.Sprintf("  of ideal %d x %d / %s = %.0f req/s", k, o.RateBatch, o.SlowLatency, ideal), Unit: "ratio", summary: summarize(ratio)})
	}
	r.detail("inflight", map[string]any{
		"latency_ms": ms(o.SlowLatency), "batch": o.RateBatch, "rounds": o.Rounds, "runs": all,
	})
	return nil
}
