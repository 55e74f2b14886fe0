package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/cost"
	"github.com/aibatch/aibatch/internal/jobstore"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
)

// Scenario 11 compares the two ways async mode lays out a Batch API job,
// through the real openai provider in ModeAsync against the fake OpenAI
// server's Batch API (jobs complete at their first poll):
//
//   - plain: one request per line, each line repeating the instructions;
//   - ASYNC_COMBINE: one combined call of up to MAX_BATCH_SIZE requests per
//     line, the instructions once per line.
//
// It reports the lines (what the Batch API bills per request), the jobs,
// and the estimated cost of each, priced like gpt-4o-mini (0.15/0.60 per
// million tokens, cached input 0.075) with the Batch API's 50% off. The
// fake caches a repeated prefix of 1,024 tokens or more in both layouts, as
// OpenAI's prompt caching would; the tokens are the fake's (4 bytes each).

// asyncInstructions are the shared instructions of scenario 11: about 1,500
// tokens, long enough for a provider to cache.
var asyncInstructions = strings.Repeat("Classify the observation as normal, degraded or failed, and say why in one sentence. ", 70)

// asyncPrices are scenario 11's prices, per million tokens.
var asyncPrices = cost.Prices{defaultModel: {Input: 0.15, Output: 0.60, CachedInput: 0.075, CacheWrite: 0.15}}

// asyncResult is one drain of scenario 11.
type asyncResult struct {
	Combined bool  `json:"combined"`
	Requests int   `json:"requests"`
	Jobs     int64 `json:"jobs"`
	Lines    int   `json:"lines"`
	// SyncCalls counts synchronous calls (lines called again, fallbacks).
	SyncCalls    int     `json:"sync_calls"`
	InputTokens  int64   `json:"input_tokens"`
	CachedTokens int64   `json:"cached_input_tokens"`
	OutputTokens int64   `json:"output_tokens"`
	Cost         float64 `json:"estimated_cost"`
	OK           int     `json:"ok"`
	DeadLetters  uint64  `json:"dead_letters"`
	Seconds      float64 `json:"seconds"`
}

// accountantObserver feeds the engine's reports to a cost accountant.
type accountantObserver struct {
	batch.NopObserver
	a *cost.Accountant
}

func (o accountantObserver) CallFinished(c batch.CallReport) { o.a.CallFinished(c) }

// runAsyncCell drains o.FaultRequests requests of one group through async
// mode, combined or plain.
func runAsyncCell(ctx context.Context, o *options, root string, combined bool) (asyncResult, error) {
	n, size := o.FaultRequests, faultInputBytes(o)
	name := "async-plain"
	if combined {
		name = "async-combined"
	}
	b, err := freshBroker(ctx, root, name)
	if err != nil {
		return asyncResult{}, err
	}
	defer b.stop(true)
	fake := openaitest.NewServer(openaitest.WithCompleteAfter(1))
	defer fake.Close()
	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	defer transport.CloseIdleConnections()
	prov, err := openai.New(openai.Config{APIKey: "bench-key-not-secret", BaseURL: fake.URL, Mode: openai.ModeAsync,
		HTTPClient: &http.Client{Transport: transport}})
	if err != nil {
		return asyncResult{}, err
	}
	pc, err := connect(b.url(), "bench-producer")
	if err != nil {
		return asyncResult{}, err
	}
	defer pc.close()
	jobs, err := jobstore.Open(ctx, pc.js, jobstore.Config{})
	if err != nil {
		return asyncResult{}, err
	}
	inputs := make([]string, n)
	err = pc.publishBodies(ctx, bulkSubject, 0, n, func(i int) []byte {
		inputs[i] = faultInput(i, size)
		body, _ := json.Marshal(struct {
			ID           string `json:"id"`
			Input        string `json:"input"`
			Instructions string `json:"instructions"`
		}{"f-" + strconv.Itoa(i), inputs[i], asyncInstructions})
		return body
	})
	if err != nil {
		return asyncResult{}, err
	}
	acct, err := cost.NewAccountant(asyncPrices, cost.DefaultBatchDiscount)
	if err != nil {
		return asyncResult{}, err
	}
	cfg := batch.Config{Async: true, AsyncCombine: combined, MaxBatchSize: o.FaultBatch, MaxWait: 10 * time.Minute,
		JobPollInterval: 50 * time.Millisecond, MaxRequestBytes: 64 << 10}
	w, err := startWorker(ctx, b.url(), cfg, prov, batch.WithJobStore(jobs), batch.WithObserver(accountantObserver{a: acct}))
	if err != nil {
		return asyncResult{}, err
	}
	start := time.Now()
	end, err := w.waitFinished(ctx, int64(n), 2*time.Minute)
	st := w.engine.Stats()
	if serr := w.stop(); err == nil && serr != nil {
		err = fmt.Errorf("stop worker: %w", serr)
	}
	if err == nil {
		err = verifyDrained(ctx, b.url(), n, n)
	}
	if err != nil {
		return asyncResult{}, err
	}
	var outcomes faultResult
	if err := readOutcomes(ctx, b.url(), inputs, &outcomes); err != nil {
		return asyncResult{}, err
	}
	return asyncResult{Combined: combined, Requests: n, Jobs: fake.Jobs(), Lines: fake.JobLines(), SyncCalls: len(fake.CallSizes()),
		InputTokens: st.Usage.InputTokens, CachedTokens: st.Usage.CachedInputTokens, OutputTokens: st.Usage.OutputTokens,
		Cost: acct.Totals().Spend, OK: outcomes.OK, DeadLetters: outcomes.DeadLetters, Seconds: end.Sub(start).Seconds()}, nil
}

// scenarioAsyncCombine is scenario 11: Batch API lines and estimated cost
// of ASYNC_COMBINE against plain async mode.
func scenarioAsyncCombine(ctx context.Context, o *options, r *report) error {
	const sc = "11 async combine"
	root := filepath.Join(o.TmpDir, "async-combine")
	defer os.RemoveAll(root)
	var plain, combined []asyncResult
	for run := range o.Runs {
		order := []bool{false, true}
		if run%2 == 1 {
			order[0], order[1] = true, false
		}
		for _, c := range order {
			res, err := runAsyncCell(ctx, o, root, c)
			if err != nil {
				return fmt.Errorf("run %d (combined %v): %w", run+1, c, err)
			}
			if c {
				combined = append(combined, res)
			} else {
				plain = append(plain, res)
			}
			r.progress("%s: run %d combined=%-5v %d requests, %d jobs, %d lines, %d sync calls, %d input tokens (%d cached), $%.6f, ok %d, dead %d, %.1fs",
				sc, run+1, c, res.Requests, res.Jobs, res.Lines, res.SyncCalls, res.InputTokens, res.CachedTokens, res.Cost, res.OK, res.DeadLetters, res.Seconds)
		}
	}
	per1k := func(v float64, res asyncResult) float64 { return v * 1000 / float64(res.Requests) }
	var pl, cl, pc, cc, ratio, cok, cdead, pcached, ccached []float64
	for i := range plain {
		p, c := plain[i], combined[i]
		pl = append(pl, per1k(float64(p.Lines), p))
		cl = append(cl, per1k(float64(c.Lines), c))
		pc = append(pc, per1k(p.Cost, p))
		cc = append(cc, per1k(c.Cost, c))
		ratio = append(ratio, c.Cost/p.Cost)
		cok = append(cok, float64(c.OK))
		cdead = append(cdead, float64(c.DeadLetters))
		pcached = append(pcached, float64(p.CachedTokens)/float64(max(p.InputTokens, 1)))
		ccached = append(ccached, float64(c.CachedTokens)/float64(max(c.InputTokens, 1)))
	}
	n := o.FaultRequests
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("plain async: Batch API lines, MAX_BATCH_SIZE %d, %s backlog, ~1.5k-token instructions", o.FaultBatch, countLabel(n)), Unit: "lines/1k req", summary: summarize(pl)})
	r.add(row{Scenario: sc, Measure: "ASYNC_COMBINE: Batch API lines", Unit: "lines/1k req", summary: summarize(cl)})
	r.add(row{Scenario: sc, Measure: "plain async: estimated cost (gpt-4o-mini prices, 50% off)", Unit: "$/1k req", summary: summarize(pc)})
	r.add(row{Scenario: sc, Measure: "ASYNC_COMBINE: estimated cost", Unit: "$/1k req", summary: summarize(cc)})
	r.add(row{Scenario: sc, Measure: "  ASYNC_COMBINE cost of plain async's", Unit: "ratio", summary: summarize(ratio)})
	r.add(row{Scenario: sc, Measure: "  plain async: share of input tokens cached", Unit: "ratio", summary: summarize(pcached)})
	r.add(row{Scenario: sc, Measure: "  ASYNC_COMBINE: share of input tokens cached", Unit: "ratio", summary: summarize(ccached)})
	r.add(row{Scenario: sc, Measure: "  ASYNC_COMBINE ok results, each its own input's answer", Unit: "count", summary: summarize(cok), Target: exactly(float64(n))})
	r.add(row{Scenario: sc, Measure: "  ASYNC_COMBINE dead letters", Unit: "count", summary: summarize(cdead), Target: exactly(0)})
	r.detail("async_combine", map[string]any{"requests": n, "max_batch_size": o.FaultBatch, "prices": asyncPrices.String(),
		"plain": plain, "combined": combined})
	return nil
}
