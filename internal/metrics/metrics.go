// Package metrics exports what the batching engine does as Prometheus
// metrics. Metrics implements batch.Observer; register it with
// batch.WithObserver and serve the registry it was created with.
//
// Every metric is named aibatch_*. Nothing is registered on the global
// default registry: the caller passes the Registerer.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/wire"
)

// ModeCombined is the value of the mode label for calls that carry a whole
// batch in one request to the provider's ordinary API.
const ModeCombined = "combined"

// ModeSingle is the value of the mode label for calls that carry one
// request each.
const ModeSingle = "single"

// ModeAsync is the mode label of Batch API jobs.
const ModeAsync = "async"

// ModeShadow is the mode label of shadow calls: a request sent again alone
// to compare its answer with the combined call's, and the embedding calls
// that score them.
const ModeShadow = "shadow"

// Metrics holds the engine's Prometheus metrics. Create it with New; its
// methods are safe for concurrent use.
type Metrics struct {
	// syncMode is the mode label of synchronous calls.
	syncMode string

	requests       *prometheus.CounterVec
	batches        *prometheus.CounterVec
	results        *prometheus.CounterVec
	apiCalls       *prometheus.CounterVec
	retries        prometheus.Counter
	deadLetters    prometheus.Counter
	tokens         *prometheus.CounterVec
	batchSize      *prometheus.HistogramVec
	callLatency    *prometheus.HistogramVec
	queueWait      prometheus.Histogram
	attempts       prometheus.Histogram
	pending        prometheus.Gauge
	ackPending     prometheus.Gauge
	oldestPending  prometheus.Gauge
	deferred       prometheus.Counter
	probes         *prometheus.CounterVec
	providerUp     prometheus.Gauge
	breakerOpen    *prometheus.GaugeVec
	groupSize      *prometheus.GaugeVec
	shadowSamples  *prometheus.CounterVec
	shadowScore    *prometheus.HistogramVec
	qualityResizes *prometheus.CounterVec
	openBreakers   sync.Map // model -> struct{}
	reg            prometheus.Registerer
	inFlightJoined atomic.Bool
}

var _ batch.Observer = (*Metrics)(nil)

// Option configures Metrics at construction.
type Option func(*Metrics)

// WithSyncMode sets the mode label of synchronous provider calls:
// ModeCombined (the default) or ModeSingle, as the provider's BATCH_MODE
// says. In async mode the synchronous calls are the MAX_WAIT fallback's,
// which are combined. Calls the engine reports as async are labelled
// ModeAsync whatever this says.
func WithSyncMode(mode string) Option {
	return func(m *Metrics) { m.syncMode = mode }
}

// New creates the metrics and registers them on reg. It returns an error
// when reg is nil, the sync mode is neither ModeCombined nor ModeSingle, or
// a metric of the same name is registered already.
func New(reg prometheus.Registerer, opts ...Option) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("metrics: New needs a Registerer")
	}
	m := &Metrics{
		syncMode: ModeCombined,
		reg:      reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aibatch_requests_total",
			Help: "Requests taken from the stream into batches, by trigger (a retried request counts once per delivery).",
		}, []string{"trigger"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aibatch_batches_total",
			Help: "Fetched batches sent to provider calls, by trigger.",
		}, []string{"trigger"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aibatch_results_total",
			Help: "Requests whose result was stored and acknowledged, by status (ok or error).",
		}, []string{"status"}),
		apiCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aibatch_api_calls_total",
			Help: "Provider API calls, by provider, trigger, mode and status (ok, or error when the whole call failed).",
		}, []string{"provider", "trigger", "mode", "status"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aibatch_retries_total",
			Help: "Requests handed back to the broker for a later attempt.",
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aibatch_dead_letters_total",
			Help: "Requests that failed for good and were dead-lettered.",
		}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aibatch_tokens_total",
			Help: "Tokens the provider reported, by provider, model and direction (input or output).",
		}, []string{"provider", "model", "direction"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aibatch_batch_size",
			Help:    "Requests per provider call, by trigger.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000},
		}, []string{"trigger"}),
		callLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aibatch_api_call_duration_seconds",
			Help:    "Time one provider call took, by provider and mode.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"provider", "mode"}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "aibatch_queue_wait_seconds",
			Help: "Time from a request's arrival in the stream to the call that answered it.",
			// From urgent requests (milliseconds) to the longest intervals
			// (hours).
			Buckets: []float64{0.01, 0.05, 0.25, 1, 5, 15, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600},
		}),
		attempts: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "aibatch_request_attempts",
			Help:    "Deliveries a request took until its outcome was stored.",
			Buckets: []float64{1, 2, 3, 5, 10},
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aibatch_pending_requests",
			Help: "Requests in the batch lane never delivered yet, at the last poll.",
		}),
		ackPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aibatch_ack_pending_requests",
			Help: "Requests of the batch lane delivered to a worker and not yet acknowledged, at the last poll.",
		}),
		oldestPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aibatch_oldest_pending_timestamp_seconds",
			Help: "Unix time the oldest never-delivered request of the batch lane was published, at the last poll; 0 when none waits.",
		}),
		deferred: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aibatch_deferred_total",
			Help: "Requests handed back without spending an attempt because the provider could serve no one.",
		}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aibatch_probes_total",
			Help: "Probe calls made while a circuit breaker was open, by provider and status (ok: the provider served it).",
		}, []string{"provider", "status"}),
		providerUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aibatch_provider_up",
			Help: "1 while the provider serves calls, 0 while a circuit breaker is open.",
		}),
		breakerOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "aibatch_breaker_open",
			Help: "1 while the circuit breaker is open, 0 when closed; model is empty for the provider's own breaker.",
		}, []string{"model"}),
		groupSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "aibatch_group_batch_size",
			Help: "Most requests one call of a group may carry now (adaptive: halves on a cut-off answer, grows back while calls succeed); instructions is a short hash.",
		}, []string{"model", "instructions"}),
		shadowSamples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aibatch_shadow_samples_total",
			Help: "Requests answered in a combined call and again alone (SHADOW_RATE), by model and whether the two answers agree (score at least SHADOW_AGREE_AT).",
		}, []string{"model", "agree"}),
		shadowScore: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aibatch_shadow_score",
			Help:    "How alike a combined call's answer and the same request's answer alone are (1: the same), by the combined call's size bucket.",
			Buckets: []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1},
		}, []string{"batch_size"}),
		qualityResizes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aibatch_quality_resizes_total",
			Help: "Changes the quality guard (QUALITY_FLOOR) made to a group's call size, by model and direction (shrink, grow).",
		}, []string{"model", "direction"}),
	}
	for _, o := range opts {
		o(m)
	}
	if m.syncMode != ModeCombined && m.syncMode != ModeSingle {
		return nil, fmt.Errorf("metrics: sync mode %q: want %s or %s", m.syncMode, ModeCombined, ModeSingle)
	}
	for _, c := range []prometheus.Collector{
		m.requests, m.batches, m.results, m.apiCalls, m.retries, m.deadLetters, m.tokens,
		m.batchSize, m.callLatency, m.queueWait, m.attempts, m.pending, m.ackPending, m.oldestPending,
		m.deferred, m.probes, m.providerUp, m.breakerOpen, m.groupSize,
		m.shadowSamples, m.shadowScore, m.qualityResizes,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	m.providerUp.Set(1)
	// Series that exist from the start, so a dashboard or an alert sees 0
	// rather than nothing: both result statuses, and the provider's own
	// breaker (model ""), closed.
	m.results.WithLabelValues(wire.StatusOK)
	m.results.WithLabelValues(wire.StatusError)
	m.breakerOpen.WithLabelValues("").Set(0)
	return m, nil
}

// RegisterInFlight adds the gauge aibatch_in_flight_requests, read from
// inFlight at every scrape (pass the engine's Stats().InFlight). Call it once,
// after the engine exists; a second call returns an error.
func (m *Metrics) RegisterInFlight(inFlight func() int64) error {
	if !m.inFlightJoined.CompareAndSwap(false, true) {
		return errors.New("metrics: in-flight gauge registered already")
	}
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "aibatch_in_flight_requests",
		Help: "Requests in provider calls now.",
	}, func() float64 { return float64(inFlight()) })
	if err := m.reg.Register(g); err != nil {
		m.inFlightJoined.Store(false)
		return fmt.Errorf("metrics: register in-flight gauge: %w", err)
	}
	return nil
}

// BatchFetched counts a fetched batch and its requests.
func (m *Metrics) BatchFetched(trigger wire.Trigger, size int) {
	m.batches.WithLabelValues(string(trigger)).Inc()
	m.requests.WithLabelValues(string(trigger)).Add(float64(size))
}

// CallFinished counts a provider call, its size, latency and tokens; a
// probe call counts as a probe only (and its tokens).
func (m *Metrics) CallFinished(c batch.CallReport) {
	status := wire.StatusOK
	if c.Err != nil {
		status = wire.StatusError
	}
	if c.Probe {
		m.probes.WithLabelValues(c.Provider, status).Inc()
		m.countTokens(c)
		return
	}
	mode := m.syncMode
	switch {
	case c.Shadow:
		// A shadow call is no batch: it is counted, its size is not.
		m.apiCalls.WithLabelValues(c.Provider, string(c.Trigger), ModeShadow, status).Inc()
		m.callLatency.WithLabelValues(c.Provider, ModeShadow).Observe(c.Latency.Seconds())
		m.countTokens(c)
		return
	case c.Async:
		mode = ModeAsync
	}
	if !c.Resumed {
		// A resumed job was counted when it was submitted.
		m.apiCalls.WithLabelValues(c.Provider, string(c.Trigger), mode, status).Inc()
		m.batchSize.WithLabelValues(string(c.Trigger)).Observe(float64(c.Size))
	}
	m.callLatency.WithLabelValues(c.Provider, mode).Observe(c.Latency.Seconds())
	m.countTokens(c)
}

func (m *Metrics) countTokens(c batch.CallReport) {
	if c.Usage.InputTokens > 0 {
		m.tokens.WithLabelValues(c.Provider, c.Model, "input").Add(float64(c.Usage.InputTokens))
	}
	if c.Usage.OutputTokens > 0 {
		m.tokens.WithLabelValues(c.Provider, c.Model, "output").Add(float64(c.Usage.OutputTokens))
	}
}

// RequestFinished counts a stored result, and its dead letter if it has one.
func (m *Metrics) RequestFinished(r batch.RequestReport) {
	m.results.WithLabelValues(r.Status).Inc()
	if r.DeadLettered {
		m.deadLetters.Inc()
	}
	if r.QueueWait > 0 {
		m.queueWait.Observe(r.QueueWait.Seconds())
	}
	if r.Attempts > 0 {
		m.attempts.Observe(float64(r.Attempts))
	}
}

// RequestRetried counts a request handed back for a later attempt.
func (m *Metrics) RequestRetried() { m.retries.Inc() }

// BacklogRead sets the backlog gauges.
func (m *Metrics) BacklogRead(b batch.Backlog) {
	m.pending.Set(float64(b.Pending))
	m.ackPending.Set(float64(b.AckPending))
	if b.Oldest.IsZero() {
		m.oldestPending.Set(0)
		return
	}
	m.oldestPending.Set(float64(b.Oldest.UnixNano()) / float64(time.Second))
}

// RequestDeferred counts a request handed back because the provider could
// serve no one.
func (m *Metrics) RequestDeferred() { m.deferred.Inc() }

// BreakerChanged sets aibatch_breaker_open for the breaker, and
// aibatch_provider_up to 0 while any breaker is open.
func (m *Metrics) BreakerChanged(b batch.BreakerState) {
	if b.State == batch.BreakerOpen {
		m.breakerOpen.WithLabelValues(b.Model).Set(1)
		m.openBreakers.Store(b.Model, struct{}{})
	} else {
		m.breakerOpen.WithLabelValues(b.Model).Set(0)
		m.openBreakers.Delete(b.Model)
	}
	up := 1.0
	m.openBreakers.Range(func(any, any) bool { up = 0; return false })
	m.providerUp.Set(up)
}

// GroupResized sets aibatch_group_batch_size for the group.
func (m *Metrics) GroupResized(g batch.GroupState) {
	m.groupSize.WithLabelValues(g.Model, g.Instructions).Set(float64(g.Size))
}

// ShadowSampled counts a shadow sample by model and agreement, and
// observes its score by batch-size bucket.
func (m *Metrics) ShadowSampled(s batch.ShadowSample) {
	m.shadowSamples.WithLabelValues(s.Model, strconv.FormatBool(s.Agree)).Inc()
	m.shadowScore.WithLabelValues(s.SizeBucket).Observe(s.Score)
}

// QualityLimited counts a change the quality guard made; GroupResized sets
// the group's size gauge.
func (m *Metrics) QualityLimited(c batch.QualityChange) {
	direction := "grow"
	if c.Shrinks() {
		direction = "shrink"
	}
	m.qualityResizes.WithLabelValues(c.Model, direction).Inc()
}

// BuildInfo returns the gauge aibatch_build_info, always 1, whose labels
// say which build runs: version, commit and go_version (see
// internal/buildinfo). Register it on the same registry as the rest.
func BuildInfo(version, commit, goVersion string) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "aibatch_build_info",
		Help:        "Always 1; the labels say which build of the worker runs.",
		ConstLabels: prometheus.Labels{"version": version, "commit": commit, "go_version": goVersion},
	}, func() float64 { return 1 })
}

// DefaultUrgentBacklogTTL is how long RegisterUrgentBacklog keeps a reading
// of the urgent lane's backlog: scrapes within it ask the server nothing.
const DefaultUrgentBacklogTTL = 5 * time.Second

// RegisterUrgentBacklog adds the urgent lane's backlog, which the engine
// does not poll (the urgent lane long-polls instead):
// aibatch_urgent_pending_requests, aibatch_urgent_ack_pending_requests and
// aibatch_urgent_oldest_pending_timestamp_seconds, the counterparts of the
// batch lane's gauges. read is called at scrape time (pass the urgent
// queue's Backlog, which reads the consumer's Info), at most once per ttl
// (DefaultUrgentBacklogTTL when 0) and for at most 2s; when it fails the
// gauges are left out of that scrape rather than shown stale. Call it once.
func (m *Metrics) RegisterUrgentBacklog(read func(context.Context) (batch.Backlog, error), ttl time.Duration) error {
	if ttl <= 0 {
		ttl = DefaultUrgentBacklogTTL
	}
	c := &backlogCollector{
		read: read, ttl: ttl,
		pending: prometheus.NewDesc("aibatch_urgent_pending_requests",
			"Requests in the urgent lane never delivered yet, read from its consumer at scrape time (cached briefly).", nil, nil),
		ackPending: prometheus.NewDesc("aibatch_urgent_ack_pending_requests",
			"Requests of the urgent lane delivered to a worker and not yet acknowledged, read at scrape time (cached briefly).", nil, nil),
		oldest: prometheus.NewDesc("aibatch_urgent_oldest_pending_timestamp_seconds",
			"Unix time the oldest never-delivered request of the urgent lane was published, read at scrape time (cached briefly); 0 when none waits.", nil, nil),
	}
	if err := m.reg.Register(c); err != nil {
		return fmt.Errorf("metrics: register urgent backlog: %w", err)
	}
	return nil
}

// backlogCollector reads a lane's backlog when scraped, keeping a reading
// for ttl.
type backlogCollector struct {
	read                        func(context.Context) (batch.Backlog, error)
	ttl                         time.Duration
	pending, ackPending, oldest *prometheus.Desc

	mu     sync.Mutex
	readAt time.Time
	last   batch.Backlog
	ok     bool
}

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPending
	ch <- c.oldest
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if time.Since(c.readAt) >= c.ttl {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		b, err := c.read(ctx)
		cancel()
		c.last, c.ok, c.readAt = b, err == nil, time.Now()
	}
	b, ok := c.last, c.ok
	c.mu.Unlock()
	if !ok {
		return
	}
	oldest := 0.0
	if !b.Oldest.IsZero() {
		oldest = float64(b.Oldest.UnixNano()) / float64(time.Second)
	}
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(b.Pending))
	ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(b.AckPending))
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, oldest)
}
