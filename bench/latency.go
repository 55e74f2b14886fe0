package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/aibatch/aibatch/batch"
)

// urgentResult is what one urgent-lane run measured.
type urgentResult struct {
	Requests int `json:"requests"`
	P50MS    num `json:"p50_ms"`
	P99MS    num `json:"p99_ms"`
	MaxMS    num `json:"max_ms"`
	// QueuedP50MS and QueuedP99MS are the part of the latency before the
	// call: the results' queued_ms, from the request's arrival in the
	// stream to the start of its call.
	QueuedP50MS num `json:"queued_p50_ms"`
	QueuedP99MS num `json:"queued_p99_ms"`
	// Slowest lists the five slowest requests: when each was sent (ms after
	// the first) and its latency and queued_ms.
	Slowest []slowRequest `json:"slowest"`
	// BulkPerSec is how fast the batch lane drained meanwhile.
	BulkPerSec float64 `json:"bulk_req_per_s"`
}

// slowRequest is one of the slowest urgent requests.
type slowRequest struct {
	SentAtMS  float64 `json:"sent_at_ms"`
	LatencyMS float64 `json:"latency_ms"`
	QueuedMS  float64 `json:"queued_ms"`
}

// latencies matches results to the send times of their requests.
type latencies struct {
	mu     sync.Mutex
	sent   map[int]time.Time
	got    []time.Duration
	queued []time.Duration
	at     []time.Time // send time of got[i]
}

func (l *latencies) send(i int) {
	l.mu.Lock()
	l.sent[i] = time.Now()
	l.mu.Unlock()
}

// receive records the result in m; its id is "<prefix><n>".
func (l *latencies) receive(prefix string, m *nats.Msg) {
	at := time.Now()
	var res struct {
		ID       string `json:"id"`
		QueuedMS int64  `json:"queued_ms"`
	}
	if json.Unmarshal(m.Data, &res) != nil {
		return
	}
	i, err := strconv.Atoi(strings.TrimPrefix(res.ID, prefix))
	if err != nil {
		return
	}
	l.mu.Lock()
	if t, ok := l.sent[i]; ok {
		l.got = append(l.got, at.Sub(t))
		l.queued = append(l.queued, time.Duration(res.QueuedMS)*time.Millisecond)
		l.at = append(l.at, t)
		delete(l.sent, i)
	}
	l.mu.Unlock()
}

func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.got)
}

// feedChunk is the most requests the backlog feeder publishes at once.
const feedChunk = 500

// runUrgent publishes urgent requests at o.UrgentRate while the batch lane
// drains a backlog of o.UrgentBacklog requests, which a feeder keeps topped
// up in chunks of feedChunk, so the batch lane stays busy for the whole run. It measures publish-to-result latency of the urgent requests as a
// subscriber on the result subject sees it.
func runUrgent(ctx context.Context, o *options, root string, seed uint64) (urgentResult, error) {
	b, err := freshBroker(ctx, root, "urgent")
	if err != nil {
		return urgentResult{}, err
	}
	defer b.stop(true)
	feed, err := connect(b.url(), "bench-feeder")
	if err != nil {
		return urgentResult{}, err
	}
	defer feed.close()
	if err := feed.publishMany(ctx, bulkSubject, "b-", 0, o.UrgentBacklog, o.RequestSize); err != nil {
		return urgentResult{}, fmt.Errorf("pre-load backlog: %w", err)
	}
	sub, err := connect(b.url(), "bench-subscriber")
	if err != nil {
		return urgentResult{}, err
	}
	defer sub.close()
	lat := &latencies{sent: make(map[int]time.Time)}
	if _, err := sub.nc.Subscribe(urgentResults, func(m *nats.Msg) { lat.receive("u-", m) }); err != nil {
		return urgentResult{}, fmt.Errorf("subscribe to %s: %w", urgentResults, err)
	}
	if err := sub.nc.Flush(); err != nil {
		return urgentResult{}, fmt.Errorf("subscribe to %s: %w", urgentResults, err)
	}
	uc, err := connect(b.url(), "bench-urgent-producer")
	if err != nil {
		return urgentResult{}, err
	}
	defer uc.close()

	w, err := startWorker(ctx, b.url(), batch.Config{MaxBatchSize: o.TPBatches[0]}, &benchProvider{})
	if err != nil {
		return urgentResult{}, err
	}
	defer w.stop()
	bq, _, _, err := feed.ensure(ctx)
	if err != nil {
		return urgentResult{}, err
	}
	feedCtx, stopFeed := context.WithCancel(ctx)
	feedDone := make(chan error, 1)
	go func() {
		next := o.UrgentBacklog
		for feedCtx.Err() == nil {
			bl, err := bq.Backlog(feedCtx)
			if err != nil {
				if feedCtx.Err() != nil {
					break
				}
				feedDone <- err
				return
			}
			if bl.Pending < o.UrgentBacklog-feedChunk/2 {
				// Small chunks keep the feed steady, as many producers
				// would, rather than bursts of thousands.
				k := min(o.UrgentBacklog-bl.Pending, feedChunk)
				if err := feed.publishMany(feedCtx, bulkSubject, "b-", next, k, o.RequestSize); err != nil && feedCtx.Err() == nil {
					feedDone <- fmt.Errorf("top up backlog: %w", err)
					return
				}
				next += k
				continue
			}
			select {
			case <-feedCtx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
		feedDone <- nil
	}()

	bulkBefore := w.finished()
	start := time.Now()
	n, err := uc.publishPoisson(ctx, urgentSubject, "u-", o.UrgentRate, o.UrgentDuration, o.RequestSize, seed, lat.send)
	elapsed := time.Since(start)
	bulkDone := w.finished() - bulkBefore - int64(lat.count())
	stopFeed()
	if ferr := <-feedDone; ferr != nil {
		return urgentResult{}, ferr
	}
	if err != nil {
		return urgentResult{}, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for lat.count() < n {
		if time.Now().After(deadline) {
			return urgentResult{}, fmt.Errorf("urgent lane: %d of %d results after 30s", lat.count(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	lat.mu.Lock()
	got, queued := slices.Clone(lat.got), slices.Clone(lat.queued)
	order := make([]int, len(got))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(got[b], got[a]) })
	var slowest []slowRequest
	for _, i := range order[:min(5, len(order))] {
		slowest = append(slowest, slowRequest{SentAtMS: ms(lat.at[i].Sub(start)), LatencyMS: ms(got[i]), QueuedMS: ms(queued[i])})
	}
	lat.mu.Unlock()
	slices.Sort(got)
	slices.Sort(queued)
	return urgentResult{
		Requests: n, P50MS: num(percentileMS(got, 50)), P99MS: num(percentileMS(got, 99)), MaxMS: num(percentileMS(got, 100)),
		QueuedP50MS: num(percentileMS(queued, 50)), QueuedP99MS: num(percentileMS(queued, 99)), Slowest: slowest,
		BulkPerSec: float64(bulkDone) / elapsed.Seconds(),
	}, nil
}

// laneResult is what one batch-lane max-wait run measured.
type laneResult struct {
	Requests      int              `json:"requests"`
	LongestWaitMS float64          `json:"longest_queue_wait_ms"`
	Triggers      map[string]int64 `json:"triggers"`
}

// runLaneWait sends Poisson arrivals at a rate too low to fill a batch
// within MaxWait, with an interval far beyond the run, so every batch goes
// out on max_wait; it reports the longest queue wait.
func runLaneWait(ctx context.Context, o *options, root string, seed uint64) (laneResult, error) {
	b, err := freshBroker(ctx, root, "lane")
	if err != nil {
		return laneResult{}, err
	}
	defer b.stop(true)
	cfg := batch.Config{MaxBatchSize: o.RateBatch, Interval: time.Hour, MaxWait: o.LaneMaxWait}
	w, err := startWorker(ctx, b.url(), cfg, &benchProvider{})
	if err != nil {
		return laneResult{}, err
	}
	defer w.stop()
	pc, err := connect(b.url(), "bench-producer")
	if err != nil {
		return laneResult{}, err
	}
	defer pc.close()
	n, err := pc.publishPoisson(ctx, bulkSubject, "l-", o.LaneRate, o.LaneDuration, o.RequestSize, seed, nil)
	if err != nil {
		return laneResult{}, err
	}
	if _, err := w.waitFinished(ctx, int64(n), o.LaneMaxWait+30*time.Second); err != nil {
		return laneResult{}, err
	}
	res := laneResult{Requests: n, LongestWaitMS: ms(w.obs.longestWait()), Triggers: make(map[string]int64)}
	for t, k := range w.engine.Stats().Triggers {
		res.Triggers[string(t)] = k
	}
	return res, nil
}

// scenarioLatency is scenario 3: urgent-lane latency under a draining
// backlog, and the batch lane's longest queue wait against MAX_WAIT.
func scenarioLatency(ctx context.Context, o *options, r *report) error {
	root := filepath.Join(o.TmpDir, "latency")
	defer os.RemoveAll(root)
	var urgent []urgentResult
	var lane []laneResult
	for run := range o.Runs {
		u, err := runUrgent(ctx, o, root, o.Seed+uint64(run)*7919)
		if err != nil {
			return fmt.Errorf("urgent run %d: %w", run+1, err)
		}
		urgent = append(urgent, u)
		r.progress("3 latency: run %d urgent %d requests p50 %.1fms p99 %.1fms max %.1fms (queued_ms part: p50 %.0fms p99 %.0fms), batch lane %.0f req/s meanwhile",
			run+1, u.Requests, u.P50MS, u.P99MS, u.MaxMS, u.QueuedP50MS, u.QueuedP99MS, u.BulkPerSec)
		l, err := runLaneWait(ctx, o, root, o.Seed+uint64(run)*104729)
		if err != nil {
			return fmt.Errorf("batch lane run %d: %w", run+1, err)
		}
		lane = append(lane, l)
		r.progress("3 latency: run %d batch lane %d requests, longest queue wait %.0fms, triggers %v",
			run+1, l.Requests, l.LongestWaitMS, l.Triggers)
	}
	pick := func(f func(urgentResult) float64) []float64 {
		var v []float64
		for _, u := range urgent {
			v = append(v, f(u))
		}
		return v
	}
	var waits []float64
	for _, l := range lane {
		waits = append(waits, l.LongestWaitMS)
	}
	const sc = "3 latency"
	label := fmt.Sprintf("urgent at %g req/s, %s backlog draining", o.UrgentRate, countLabel(o.UrgentBacklog))
	r.add(row{Scenario: sc, Measure: label + ": p50", Unit: "ms", summary: summarize(pick(func(u urgentResult) float64 { return float64(u.P50MS) }))})
	r.add(row{Scenario: sc, Measure: label + ": p99", Unit: "ms", summary: summarize(pick(func(u urgentResult) float64 { return float64(u.P99MS) })), Target: below(50)})
	r.add(row{Scenario: sc, Measure: "batch lane drain meanwhile", Unit: "req/s", summary: summarize(pick(func(u urgentResult) float64 { return u.BulkPerSec }))})
	r.add(row{Scenario: sc, Measure: fmt.Sprintf("batch lane longest queue wait, MAX_WAIT %s", o.LaneMaxWait), Unit: "ms",
		summary: summarize(waits), Target: never(ms(o.LaneMaxWait + time.Second))})
	r.detail("latency", map[string]any{
		"urgent_rate": o.UrgentRate, "urgent_duration_s": o.UrgentDuration.Seconds(), "backlog": o.UrgentBacklog,
		"urgent": urgent, "lane_rate": o.LaneRate, "lane_max_wait_s": o.LaneMaxWait.Seconds(),
		"lane_duration_s": o.LaneDuration.Seconds(), "lane": lane,
	})
	return nil
}
