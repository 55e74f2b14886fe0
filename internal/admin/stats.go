package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/cost"
	"github.com/aibatch/aibatch/internal/fleet"
	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/ratelimit"
	"github.com/aibatch/aibatch/wire"
)

// StatsResponse is the body of GET /admin/batch-stats.
type StatsResponse struct {
	// Worker is what this worker did since it started.
	Worker WorkerStats `json:"worker"`
	// Fleet is every worker's totals since the bucket was created, as of
	// each worker's last update (they lag by up to STATS_FLUSH_INTERVAL);
	// null when fleet totals are off or could not be read.
	Fleet *Figures `json:"fleet"`
	// FleetError says why Fleet could not be read.
	FleetError string `json:"fleet_error,omitempty"`
	// EstimatedCost and EstimatedSaving are this worker's estimated spend
	// since it started and what batching saved against one call per
	// request (see internal/cost for the method); null until a call of a
	// model with a known price (PRICES) was answered.
	EstimatedCost   *float64 `json:"estimated_cost"`
	EstimatedSaving *float64 `json:"estimated_saving"`
	// EstimatedShadowCost is what shadow calls (SHADOW_RATE) cost, counted
	// apart from EstimatedCost; null until one of a priced model was made.
	EstimatedShadowCost *float64 `json:"estimated_shadow_cost"`
	// UnpricedCalls counts calls of models missing from PRICES, so a
	// partial estimate is not taken for a whole one.
	UnpricedCalls int64 `json:"unpriced_calls"`
	// Quota is what the worker paces its provider calls by: the account's
	// limits, the fleet's share of them, what the provider's headers say
	// is left, and in async mode the provider's batch queue; null when the
	// worker does not say.
	Quota *QuotaStats `json:"quota"`
	// Models holds, per model, the requests served, provider items, prompt
	// tokens read from the provider's cache, response cache hits, and the
	// estimated cost next to what the same requests would have cost sent
	// one by one; empty before the first answer.
	Models []cost.ModelTotals `json:"models"`
	// Config is the effective settings, secrets redacted.
	Config map[string]string `json:"config"`
}

// QuotaStats is batch-stats' quota: the limiter's status and, in async
// mode, the Batch API queue's.
type QuotaStats struct {
	ratelimit.Status
	Queue *ratelimit.QueueStatus `json:"queue,omitempty"`
}

// Figures are counters with the figures derived from them.
type Figures struct {
	Requests     int64 `json:"requests"`
	ResultsOK    int64 `json:"results_ok"`
	ResultsError int64 `json:"results_error"`
	DeadLetters  int64 `json:"dead_letters"`
	APICalls     int64 `json:"api_calls"`
	Batches      int64 `json:"batches"`
	Retries      int64 `json:"retries"`
	// AvgBatchSize is Requests / Batches; 0 before the first batch.
	AvgBatchSize float64 `json:"avg_batch_size"`
	// CallReduction is 1 - APICalls/Requests: the share of calls batching
	// saved compared with one call per request; 0 before the first request.
	CallReduction float64        `json:"call_reduction"`
	Usage         provider.Usage `json:"usage"`
}

// WorkerStats is one worker's figures and schedule.
type WorkerStats struct {
	// ID identifies the worker (as in flush replies).
	ID string `json:"id"`
	Figures
	// Pending is the batch lane's never-delivered backlog at the last poll.
	Pending int `json:"pending"`
	// InFlight counts requests in provider calls now.
	InFlight int64 `json:"in_flight"`
	// FallbackFlushes counts batches sent because a request waited MAX_WAIT.
	FallbackFlushes int64 `json:"fallback_flushes"`
	// Triggers counts batches by trigger.
	Triggers map[wire.Trigger]int64 `json:"triggers"`
	// LastFlushAt is when a batch was last sent; null before the first.
	LastFlushAt *time.Time `json:"last_flush_at"`
	// NextFlushAt is when the next batch is due by the clock; null when
	// nothing waits.
	NextFlushAt *time.Time `json:"next_flush_at"`
	StartedAt   *time.Time `json:"started_at"`
	// Deferred counts requests handed back, without spending an attempt,
	// because the provider could serve no one; Probes the calls made to
	// find out whether it was back.
	Deferred int64 `json:"deferred"`
	Probes   int64 `json:"probes"`
	// Breakers holds the provider's circuit breaker (and one per model an
	// error named): state, reason, since and next probe. Empty until the
	// first provider-scope failure.
	Breakers []batch.BreakerState `json:"breakers"`
	// Groups holds each group's current call size (adaptive) and average
	// answer length.
	Groups []batch.GroupState `json:"groups"`
	// Held is the batch lane's holding window: the open groups, their
	// sizes and oldest requests; HeldRequests totals them. Holder is true
	// when this worker gathers partial groups for the fleet.
	Held         []batch.HeldGroup `json:"held"`
	HeldRequests int               `json:"held_requests"`
	Holder       bool              `json:"holder"`
	// ProviderItems counts the items sent in provider calls; Duplicates
	// the requests that shared an item's answer instead (sent once).
	ProviderItems int64 `json:"provider_items"`
	Duplicates    int64 `json:"duplicates"`
	// Cache counts the response cache's hits, misses, failures, writes
	// and bytes; zero when RESPONSE_CACHE_TTL is 0.
	Cache batch.CacheStats `json:"cache"`
	// Shadow is what shadow sampling measured: per group, the samples,
	// their agreement and mean score, by batch size and by position.
	Shadow batch.ShadowStats `json:"shadow"`
}

// figures derives the ratios from c.
func figures(c fleet.Counters) Figures {
	f := Figures{
		Requests: c.Requests, ResultsOK: c.ResultsOK, ResultsError: c.ResultsError,
		DeadLetters: c.DeadLetters, APICalls: c.APICalls, Batches: c.Batches, Retries: c.Retries,
		Usage: provider.Usage{InputTokens: c.InputTokens, OutputTokens: c.OutputTokens},
	}
	if c.Batches > 0 {
		f.AvgBatchSize = float64(c.Requests) / float64(c.Batches)
	}
	if c.Requests > 0 {
		f.CallReduction = 1 - float64(c.APICalls)/float64(c.Requests)
	}
	return f
}

func timeOrNull(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (s *Server) batchStats(w http.ResponseWriter, r *http.Request) {
	v := s.view.Load()
	st := v.cfg.Engine.Stats()
	resp := StatsResponse{
		Worker: WorkerStats{
			ID:              v.cfg.Worker,
			Figures:         figures(fleet.CountersOf(st)),
			Pending:         st.Pending,
			InFlight:        st.InFlight,
			FallbackFlushes: st.FallbackFlushes,
			Triggers:        st.Triggers,
			LastFlushAt:     timeOrNull(st.LastFlush),
			NextFlushAt:     timeOrNull(st.NextFlush),
			StartedAt:       timeOrNull(st.Started),
			Deferred:        st.Deferred,
			Probes:          st.Probes,
			Breakers:        nonNil(st.Breakers),
			Groups:          nonNil(st.Groups),
			Held:            nonNil(st.Held),
			HeldRequests:    st.HeldRequests,
			Holder:          st.Holder,
			ProviderItems:   st.ProviderItems,
			Duplicates:      st.Duplicates,
			Cache:           st.Cache,
			Shadow:          st.Shadow,
		},
		Config: v.settings,
		Models: []cost.ModelTotals{},
	}
	if v.cfg.Cost != nil {
		t := v.cfg.Cost.Totals()
		resp.UnpricedCalls = t.Unpriced
		if t.Estimated() {
			resp.EstimatedCost, resp.EstimatedSaving = &t.Spend, &t.Saving
		}
		resp.Models = nonNil(t.ByModel)
		if t.ShadowCalls > 0 {
			resp.EstimatedShadowCost = &t.Shadow
		}
	}
	if v.cfg.Quota != nil {
		q := v.cfg.Quota()
		resp.Quota = &q
	}
	if v.cfg.Fleet != nil {
		ctx, cancel := context.WithTimeout(r.Context(), v.cfg.Ready.Timeout)
		defer cancel()
		totals, err := v.cfg.Fleet.Read(ctx)
		if err != nil {
			resp.FleetError = err.Error()
		} else {
			f := figures(totals)
			resp.Fleet = &f
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// FlushResponse is the body of POST /admin/batch-process.
type FlushResponse struct {
	Batches  int `json:"batches"`
	Requests int `json:"requests"`
	// Workers holds each worker's reply when scope=all.
	Workers []fleet.FlushReply `json:"workers,omitzero"`
}

func (s *Server) batchProcess(w http.ResponseWriter, r *http.Request) {
	v := s.view.Load()
	ctx, cancel := context.WithTimeout(r.Context(), v.cfg.FlushTimeout)
	defer cancel()
	switch scope := r.URL.Query().Get("scope"); scope {
	case "", "worker":
		report, err := v.cfg.Engine.Flush(ctx)
		if err != nil {
			status := http.StatusInternalServerError
			switch {
			case errors.Is(err, batch.ErrStopped):
				status = http.StatusServiceUnavailable
			case errors.Is(err, context.DeadlineExceeded):
				status = http.StatusGatewayTimeout
			}
			s.log.Warn("forced flush failed", zap.Error(err))
			writeJSON(w, status, errorBody{Error: "flush: " + err.Error(), Batches: report.Batches, Requests: report.Requests})
			return
		}
		s.log.Info("forced flush", zap.Int("batches", report.Batches), zap.Int("requests", report.Requests), zap.String("remote", r.RemoteAddr))
		writeJSON(w, http.StatusOK, FlushResponse{Batches: report.Batches, Requests: report.Requests})
	case "all":
		if v.cfg.FlushFleet == nil {
			writeJSON(w, http.StatusNotImplemented, errorBody{Error: "scope=all is not available on this worker"})
			return
		}
		replies, err := v.cfg.FlushFleet(ctx)
		if err != nil {
			s.log.Warn("fleet flush failed", zap.Error(err))
			writeJSON(w, http.StatusBadGateway, errorBody{Error: "flush every worker: " + err.Error()})
			return
		}
		resp := FlushResponse{Workers: replies}
		if resp.Workers == nil {
			resp.Workers = []fleet.FlushReply{}
		}
		for _, rep := range replies {
			resp.Batches += rep.Batches
			resp.Requests += rep.Requests
		}
		s.log.Info("forced fleet flush", zap.Int("workers", len(replies)), zap.Int("batches", resp.Batches), zap.Int("requests", resp.Requests), zap.String("remote", r.RemoteAddr))
		writeJSON(w, http.StatusOK, resp)
	default:
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "scope=" + scope + ": want all, or none for this worker"})
	}
}

type errorBody struct {
	Error    string `json:"error"`
	Batches  int    `json:"batches,omitempty"`
	Requests int    `json:"requests,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // subjects such as ai.requests.> stay readable
	_ = enc.Encode(v)
}

// nonNil keeps an empty list a list in JSON.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
