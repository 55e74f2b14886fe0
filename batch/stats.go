package batch

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// Stats is a snapshot of what this engine did since it started.
type Stats struct {
	// Pending is the batch lane's never-delivered backlog at the last poll.
	Pending int `json:"pending"`
	// InFlight counts requests in calls now.
	InFlight int64 `json:"in_flight"`
	// Requests counts deliveries taken from the stream (a retried request
	// counts once per delivery).
	Requests int64 `json:"requests"`
	// ResultsOK and ResultsError count results stored.
	ResultsOK    int64 `json:"results_ok"`
	ResultsError int64 `json:"results_error"`
	// DeadLetters counts dead letters stored.
	DeadLetters int64 `json:"dead_letters"`
	// Retries counts requests handed back for a later attempt.
	Retries int64 `json:"retries"`
	// Deferred counts requests handed back, without spending an attempt,
	// because the provider could serve no one.
	Deferred int64 `json:"deferred"`
	// Probes counts the probe calls made while a breaker was open.
	Probes int64 `json:"probes"`
	// JobsFailed counts Batch API jobs that ended failed or expired.
	JobsFailed int64 `json:"jobs_failed"`
	// APICalls counts provider calls; Batches counts fetched sets sent.
	APICalls int64 `json:"api_calls"`
	Batches  int64 `json:"batches"`
	// FallbackFlushes counts batches sent because a request waited MaxWait.
	FallbackFlushes int64 `json:"fallback_flushes"`
	// Triggers counts batches by trigger.
	Triggers map[wire.Trigger]int64 `json:"triggers"`
	// Usage sums the tokens providers reported.
	Usage provider.Usage `json:"usage"`
	// Breakers holds the provider's circuit breaker, and one per model an
	// error named; empty until the first provider-scope failure.
	Breakers []BreakerState `json:"breakers"`
	// Groups holds each group's current call size and average answer.
	Groups []GroupState `json:"groups"`
	// Held is the batch lane's holding window: the groups of fetched
	// requests waiting for their group to fill a call, with their sizes and
	// oldest requests. HeldRequests totals them.
	Held         []HeldGroup `json:"held"`
	HeldRequests int         `json:"held_requests"`
	// Shadow is what shadow sampling measured (WithShadow); its Rate is 0
	// when sampling is off.
	Shadow ShadowStats `json:"shadow"`
	// Holder is true when this worker gathers partial groups for the
	// fleet (WithHoldLease), or has no fleet.
	Holder    bool      `json:"holder"`
	LastFlush time.Time `json:"last_flush_at"`
	NextFlush time.Time `json:"next_flush_at"`
	Started   time.Time `json:"started_at"`
}

type stats struct {
	inFlight, requests, resultsOK, resultsError, deadLetters, retries, apiCalls, batches atomic.Int64
	deferred, probes, jobsFailed                                                         atomic.Int64
	inputTokens, outputTokens                                                            atomic.Int64

	mu        sync.Mutex
	pending   int
	triggers  map[wire.Trigger]int64
	lastFlush time.Time
	nextFlush time.Time
	started   time.Time
}

func (s *stats) setSchedule(b Backlog, next time.Time) {
	s.mu.Lock()
	s.pending = b.Pending
	s.nextFlush = next
	s.mu.Unlock()
}

func (s *stats) batchSent(t wire.Trigger, n int, at time.Time) {
	s.batches.Add(1)
	s.requests.Add(int64(n))
	s.mu.Lock()
	if s.triggers == nil {
		s.triggers = make(map[wire.Trigger]int64)
	}
	s.triggers[t]++
	s.lastFlush = at
	s.mu.Unlock()
}

func (s *stats) usage(u provider.Usage) {
	s.inputTokens.Add(u.InputTokens)
	s.outputTokens.Add(u.OutputTokens)
}

// Stats returns a snapshot of the engine's counters.
func (e *Engine) Stats() Stats {
	s := &e.stats
	out := Stats{
		InFlight:     s.inFlight.Load(),
		Requests:     s.requests.Load(),
		ResultsOK:    s.resultsOK.Load(),
		ResultsError: s.resultsError.Load(),
		DeadLetters:  s.deadLetters.Load(),
		Retries:      s.retries.Load(),
		Deferred:     s.deferred.Load(),
		Probes:       s.probes.Load(),
		JobsFailed:   s.jobsFailed.Load(),
		Breakers:     e.breakers.states(),
		Groups:       e.groups.states(),
		Held:         e.window.states(),
		Holder:       e.lease == nil || e.lease.Held(),
		APICalls:     s.apiCalls.Load(),
		Batches:      s.batches.Load(),
		Usage:        provider.Usage{InputTokens: s.inputTokens.Load(), OutputTokens: s.outputTokens.Load()},
		Triggers:     make(map[wire.Trigger]int64),
	}
	s.mu.Lock()
	out.Pending = s.pending
	out.LastFlush = s.lastFlush
	out.NextFlush = s.nextFlush
	out.Started = s.started
	for k, v := range s.triggers {
		out.Triggers[k] = v
	}
	s.mu.Unlock()
	out.FallbackFlushes = out.Triggers[wire.TriggerMaxWait]
	out.Shadow = e.shadowStats()
	for _, g := range out.Held {
		out.HeldRequests += g.Requests
	}
	return out
}
