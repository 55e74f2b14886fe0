package main

import (
	"context"
	"net/http"
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aibatch/aibatch/internal/admin"
	"github.com/aibatch/aibatch/internal/fleet"
	"github.com/aibatch/aibatch/provider/ratelimit"
)

// PROVIDER_RPM and PROVIDER_TPM are the account's limits, shared by every
// worker of the fleet (QUOTA_SCOPE): each worker paces its calls at 1/N of
// them with N workers live, counted from heartbeats in STATS_BUCKET
// (internal/fleet.Quota). Every answer's rate-limit headers lower the pace
// when the account has less left; a Retry-After pauses the fleet; in async
// mode jobs wait for room in the provider's batch queue
// (PROVIDER_QUEUE_TOKENS, PROVIDER_QUEUE_REQUESTS). Without STATS_BUCKET a
// worker keeps to the whole limits alone.

// quotaScope is the scope of the fleet's quota: QUOTA_SCOPE, else
// <STREAM>-<PROVIDER>, the workers of one stream calling one provider.
func (c config) quotaScope() string {
	if c.QuotaScope != "" {
		return c.QuotaScope
	}
	return c.Stream + "-" + c.Provider
}

// fleetQuota is the limiter's ratelimit.Fleet and the queue's
// ratelimit.JobQueue: the fleet's quota once startFleet has opened it, and
// this worker alone before that or without a fleet bucket (STATS_BUCKET
// empty). The engine makes no call before startFleet has set it.
type fleetQuota struct {
	q     atomic.Pointer[fleet.Quota]
	local ratelimit.LocalJobQueue
}

var (
	_ ratelimit.Fleet    = (*fleetQuota)(nil)
	_ ratelimit.JobQueue = (*fleetQuota)(nil)
)

func (f *fleetQuota) set(q *fleet.Quota) { f.q.Store(q) }

func (f *fleetQuota) Workers() int {
	if q := f.q.Load(); q != nil {
		return q.Workers()
	}
	return 1
}

func (f *fleetQuota) PausedUntil() time.Time {
	if q := f.q.Load(); q != nil {
		return q.PausedUntil()
	}
	return time.Time{} // alone, the limiter keeps its own pause
}

func (f *fleetQuota) Pause(until time.Time) {
	if q := f.q.Load(); q != nil {
		q.Pause(until)
	}
}

func (f *fleetQuota) Report(r ratelimit.Reading) {
	if q := f.q.Load(); q != nil {
		q.Report(r)
	}
}

func (f *fleetQuota) Reading() ratelimit.Reading {
	if q := f.q.Load(); q != nil {
		return q.Reading()
	}
	return ratelimit.Reading{}
}

func (f *fleetQuota) Enqueue(ctx context.Context, id string, j ratelimit.Job) error {
	if q := f.q.Load(); q != nil {
		return q.Enqueue(ctx, id, j)
	}
	return f.local.Enqueue(ctx, id, j)
}

func (f *fleetQuota) Dequeue(ctx context.Context, id string) error {
	if q := f.q.Load(); q != nil {
		return q.Dequeue(ctx, id)
	}
	return f.local.Dequeue(ctx, id)
}

func (f *fleetQuota) Enqueued() map[string]ratelimit.Job {
	if q := f.q.Load(); q != nil {
		return q.Enqueued()
	}
	return f.local.Enqueued()
}

func (f *fleetQuota) Job(id string) (ratelimit.Job, bool) {
	if q := f.q.Load(); q != nil {
		return q.Job(id)
	}
	return f.local.Job(id)
}

// quota is what paces the provider calls: the limiter of the synchronous
// calls, the Batch API queue in async mode (nil otherwise), and the fleet
// they share.
type quota struct {
	limiter *ratelimit.Provider
	queue   *ratelimit.Queue
	fleet   *fleetQuota
}

// readingClient is an HTTP client whose answers' rate-limit headers go to
// r.
func readingClient(r *ratelimit.Readings) *http.Client {
	return &http.Client{Transport: r.Transport(nil)}
}

// stats is what batch-stats shows of the quota.
func (q *quota) stats() admin.QuotaStats {
	st := admin.QuotaStats{Status: q.limiter.Status()}
	if q.queue != nil {
		qs := q.queue.Status()
		st.Queue = &qs
	}
	return st
}

// registerQuota exposes the quota as gauges read at scrape time:
// aibatch_quota_workers, aibatch_quota_share, the pace of this worker and
// of the fleet (absent while nothing limits it), what the provider's
// headers say is left (absent until an answer carried them), the pause,
// and in async mode the fleet's jobs in the provider's queue.
func registerQuota(reg prometheus.Registerer, q *quota) error {
	return reg.Register(quotaCollector{q: q})
}

var (
	quotaWorkersDesc = prometheus.NewDesc("aibatch_quota_workers",
		"Workers sharing the provider account's limits (PROVIDER_RPM, PROVIDER_TPM), this one included.", nil, nil)
	quotaShareDesc = prometheus.NewDesc("aibatch_quota_share",
		"This worker's share of the provider account's limits: 1/aibatch_quota_workers.", nil, nil)
	quotaRequestsDesc = prometheus.NewDesc("aibatch_quota_requests_per_minute",
		"Calls per minute the worker (scope=worker) and the fleet (scope=fleet) keep to now: the limits, lowered by what the provider's headers say is left; absent while nothing limits them.", []string{"scope"}, nil)
	quotaTokensDesc = prometheus.NewDesc("aibatch_quota_tokens_per_minute",
		"Estimated prompt tokens per minute the worker (scope=worker) and the fleet (scope=fleet) keep to now; absent while nothing limits them.", []string{"scope"}, nil)
	quotaRemainingDesc = prometheus.NewDesc("aibatch_quota_remaining",
		"What the provider's newest rate-limit headers say is left of the account's limit (limit=requests or tokens); absent until an answer carried them.", []string{"limit"}, nil)
	quotaPausedDesc = prometheus.NewDesc("aibatch_quota_paused_until_timestamp_seconds",
		"When the pause a Retry-After asked the fleet for ends, as a Unix time; 0 when there is none.", nil, nil)
	queueTokensDesc = prometheus.NewDesc("aibatch_queue_enqueued_tokens",
		"Estimated prompt tokens of the fleet's Batch API jobs in the provider's queue, by model (BATCH_MODE=async).", []string{"model"}, nil)
	queueRequestsDesc = prometheus.NewDesc("aibatch_queue_enqueued_requests",
		"Requests of the fleet's Batch API jobs in the provider's queue, by model (BATCH_MODE=async).", []string{"model"}, nil)
	queueWaitingDesc = prometheus.NewDesc("aibatch_queue_waiting_jobs",
		"Jobs this worker holds back until the provider's batch queue has room for them (BATCH_MODE=async).", nil, nil)
)

// quotaCollector reads the quota at scrape time.
type quotaCollector struct{ q *quota }

func (c quotaCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{quotaWorkersDesc, quotaShareDesc, quotaRequestsDesc, quotaTokensDesc,
		quotaRemainingDesc, quotaPausedDesc, queueTokensDesc, queueRequestsDesc, queueWaitingDesc} {
		ch <- d
	}
}

func (c quotaCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.q.limiter.Status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(quotaWorkersDesc, float64(st.Workers))
	gauge(quotaShareDesc, st.Share)
	for _, p := range []struct {
		d             *prometheus.Desc
		worker, fleet *float64
	}{{quotaRequestsDesc, st.RequestsPerMinute, st.FleetRequestsPerMinute}, {quotaTokensDesc, st.TokensPerMinute, st.FleetTokensPerMinute}} {
		if p.worker != nil {
			gauge(p.d, *p.worker, "worker")
		}
		if p.fleet != nil {
			gauge(p.d, *p.fleet, "fleet")
		}
	}
	if r := st.Remaining; r != nil {
		if !r.Requests.IsZero() {
			gauge(quotaRemainingDesc, float64(r.Requests.Remaining), "requests")
		}
		if !r.Tokens.IsZero() {
			gauge(quotaRemainingDesc, float64(r.Tokens.Remaining), "tokens")
		}
	}
	var paused float64
	if st.PausedUntil != nil {
		paused = float64(st.PausedUntil.UnixNano()) / 1e9
	}
	gauge(quotaPausedDesc, paused)
	if c.q.queue == nil {
		return
	}
	qs := c.q.queue.Status()
	models := make([]string, 0, len(qs.Enqueued))
	for m := range qs.Enqueued {
		models = append(models, m)
	}
	sort.Strings(models)
	for _, m := range models {
		gauge(queueTokensDesc, float64(qs.Enqueued[m].Tokens), m)
		gauge(queueRequestsDesc, float64(qs.Enqueued[m].Requests), m)
	}
	gauge(queueWaitingDesc, float64(qs.Waiting))
}
