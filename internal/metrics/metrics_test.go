package metrics_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/metrics"
	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

func newMetrics(t *testing.T) (*metrics.Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatalf("new metrics: %v", err)
	}
	return m, reg
}

func TestNewNeedsRegisterer(t *testing.T) {
	t.Parallel()
	if _, err := metrics.New(nil); err == nil {
		t.Fatal("New(nil) returned no error")
	}
}

func TestNewRejectsUnknownSyncMode(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"", metrics.ModeAsync, "batched"} {
		if _, err := metrics.New(prometheus.NewRegistry(), metrics.WithSyncMode(mode)); err == nil {
			t.Errorf("New with sync mode %q returned no error", mode)
		}
	}
}

func TestWithSyncModeLabelsSynchronousCalls(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.WithSyncMode(metrics.ModeSingle))
	if err != nil {
		t.Fatalf("new metrics: %v", err)
	}
	m.CallFinished(batch.CallReport{Provider: "openai", Trigger: wire.TriggerUrgent, Size: 1, Latency: time.Second})
	m.CallFinished(batch.CallReport{Provider: "openai", Trigger: wire.TriggerSize, Size: 9, Latency: time.Second, Async: true})
	for _, w := range []struct {
		trigger, mode string
	}{{"urgent", metrics.ModeSingle}, {"size", metrics.ModeAsync}} {
		labels := map[string]string{"provider": "openai", "trigger": w.trigger, "mode": w.mode, "status": "ok"}
		if got := counterValue(t, reg, "aibatch_api_calls_total", labels); got != 1 {
			t.Errorf("aibatch_api_calls_total%v = %v, want 1", labels, got)
		}
	}
}

func TestNewTwiceOnOneRegistryFails(t *testing.T) {
	t.Parallel()
	_, reg := newMetrics(t)
	if _, err := metrics.New(reg); err == nil {
		t.Fatal("second New on the same registry returned no error")
	}
}

func TestCounters(t *testing.T) {
	t.Parallel()
	type want struct {
		name   string
		labels map[string]string // nil for a counter without labels
		value  float64
	}
	tests := []struct {
		name    string
		observe func(m *metrics.Metrics)
		want    []want
	}{
		{
			name: "batches and requests by trigger",
			observe: func(m *metrics.Metrics) {
				m.BatchFetched(wire.TriggerSize, 50)
				m.BatchFetched(wire.TriggerSize, 50)
				m.BatchFetched(wire.TriggerInterval, 7)
			},
			want: []want{
				{"batches", map[string]string{"trigger": "size"}, 2},
				{"requests", map[string]string{"trigger": "size"}, 100},
				{"batches", map[string]string{"trigger": "interval"}, 1},
				{"requests", map[string]string{"trigger": "interval"}, 7},
			},
		},
		{
			name: "results, dead letters and retries",
			observe: func(m *metrics.Metrics) {
				m.RequestFinished(batch.RequestReport{Status: wire.StatusOK, Attempts: 1})
				m.RequestFinished(batch.RequestReport{Status: wire.StatusOK, Attempts: 2})
				m.RequestFinished(batch.RequestReport{Status: wire.StatusError, DeadLettered: true, Attempts: 5})
				m.RequestRetried()
				m.RequestRetried()
				m.RequestRetried()
			},
			want: []want{
				{"results", map[string]string{"status": "ok"}, 2},
				{"results", map[string]string{"status": "error"}, 1},
				{"dead_letters", nil, 1},
				{"retries", nil, 3},
			},
		},
		{
			name: "calls by provider, trigger and status, and tokens",
			observe: func(m *metrics.Metrics) {
				u := provider.Usage{InputTokens: 120, OutputTokens: 45}
				m.CallFinished(batch.CallReport{Provider: "openai", Model: "m1", Trigger: wire.TriggerSize, Size: 50, Latency: time.Second, Usage: u})
				m.CallFinished(batch.CallReport{Provider: "openai", Model: "m1", Trigger: wire.TriggerSize, Size: 50, Latency: time.Second, Usage: u})
				m.CallFinished(batch.CallReport{Provider: "openai", Model: "m2", Trigger: wire.TriggerUrgent, Size: 3, Latency: time.Second, Err: errors.New("503")})
			},
			want: []want{
				{"api_calls", map[string]string{"provider": "openai", "trigger": "size", "mode": metrics.ModeCombined, "status": "ok"}, 2},
				{"api_calls", map[string]string{"provider": "openai", "trigger": "urgent", "mode": metrics.ModeCombined, "status": "error"}, 1},
				{"tokens", map[string]string{"provider": "openai", "model": "m1", "direction": "input"}, 240},
				{"tokens", map[string]string{"provider": "openai", "model": "m1", "direction": "output"}, 90},
			},
		},
		{
			name: "cached tokens, items, requests served and the response cache",
			observe: func(m *metrics.Metrics) {
				u := provider.Usage{InputTokens: 2000, CachedInputTokens: 1536, CacheWriteTokens: 100, OutputTokens: 45}
				// 10 items answering 100 requests (duplicates).
				m.CallFinished(batch.CallReport{Provider: "openai", Model: "m1", Trigger: wire.TriggerSize, Size: 10, Served: 100, Usage: u})
				m.CallFinished(batch.CallReport{Provider: "openai", Model: "m1", Trigger: wire.TriggerSize, Size: 5, Err: errors.New("503")})
				m.CacheUsed(batch.CacheReport{Model: "m1", Event: batch.CacheHit, Bytes: 300})
				m.CacheUsed(batch.CacheReport{Model: "m1", Event: batch.CacheHit, Bytes: 200})
				m.CacheUsed(batch.CacheReport{Model: "m1", Event: batch.CacheMiss})
				m.CacheUsed(batch.CacheReport{Model: "m1", Event: batch.CacheStored, Bytes: 250})
				m.CacheUsed(batch.CacheReport{Model: "m1", Event: batch.CacheFailed})
			},
			want: []want{
				{"tokens", map[string]string{"provider": "openai", "model": "m1", "direction": "cached_input"}, 1536},
				{"tokens", map[string]string{"provider": "openai", "model": "m1", "direction": "cache_write"}, 100},
				{"provider_items", map[string]string{"provider": "openai", "model": "m1"}, 10},
				{"requests_served", map[string]string{"model": "m1", "source": "call"}, 100},
				{"requests_served", map[string]string{"model": "m1", "source": "cache"}, 2},
				{"response_cache", map[string]string{"model": "m1", "event": "hit"}, 2},
				{"response_cache", map[string]string{"model": "m1", "event": "miss"}, 1},
				{"response_cache", map[string]string{"model": "m1", "event": "stored"}, 1},
				{"response_cache", map[string]string{"model": "m1", "event": "failed"}, 1},
				{"response_cache_bytes", map[string]string{"direction": "read"}, 500},
				{"response_cache_bytes", map[string]string{"direction": "written"}, 250},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, reg := newMetrics(t)
			tt.observe(m)
			for _, w := range tt.want {
				got := counterValue(t, reg, "aibatch_"+w.name+"_total", w.labels)
				if got != w.value {
					t.Errorf("aibatch_%s_total%v = %v, want %v", w.name, w.labels, got, w.value)
				}
			}
		})
	}
}

func TestHistograms(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	m.CallFinished(batch.CallReport{Provider: "openai", Trigger: wire.TriggerSize, Size: 50, Latency: 1500 * time.Millisecond})
	m.CallFinished(batch.CallReport{Provider: "openai", Trigger: wire.TriggerSize, Size: 30, Latency: 500 * time.Millisecond})
	m.RequestFinished(batch.RequestReport{Status: wire.StatusOK, QueueWait: 2 * time.Second, Attempts: 1})
	m.RequestFinished(batch.RequestReport{Status: wire.StatusOK, QueueWait: 4 * time.Second, Attempts: 3})

	tests := []struct {
		name      string
		wantCount uint64
		wantSum   float64
		labels    map[string]string
	}{
		{"aibatch_batch_size", 2, 80, map[string]string{"trigger": "size"}},
		{"aibatch_api_call_duration_seconds", 2, 2, map[string]string{"provider": "openai", "mode": metrics.ModeCombined}},
		{"aibatch_queue_wait_seconds", 2, 6, nil},
		{"aibatch_request_attempts", 2, 4, nil},
	}
	families := gather(t, reg)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ok := families[tt.name]
			if !ok {
				t.Fatalf("%s not gathered", tt.name)
			}
			if len(f.GetMetric()) != 1 {
				t.Fatalf("%s has %d series, want 1", tt.name, len(f.GetMetric()))
			}
			series := f.GetMetric()[0]
			if got := labelMap(series); !maps.Equal(got, tt.labels) && len(got)+len(tt.labels) > 0 {
				t.Errorf("%s labels = %v, want %v", tt.name, got, tt.labels)
			}
			h := series.GetHistogram()
			if h.GetSampleCount() != tt.wantCount || h.GetSampleSum() != tt.wantSum {
				t.Errorf("%s count/sum = %d/%v, want %d/%v", tt.name, h.GetSampleCount(), h.GetSampleSum(), tt.wantCount, tt.wantSum)
			}
		})
	}
}

func TestBacklogGauges(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	oldest := time.Unix(1_700_000_000, 500_000_000)
	m.BacklogRead(batch.Backlog{Pending: 42, AckPending: 7, Oldest: oldest})
	checks := map[string]float64{
		"aibatch_pending_requests":                 42,
		"aibatch_ack_pending_requests":             7,
		"aibatch_oldest_pending_timestamp_seconds": 1_700_000_000.5,
	}
	for name, want := range checks {
		if got := gaugeValue(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	m.BacklogRead(batch.Backlog{})
	for name := range checks {
		if got := gaugeValue(t, reg, name); got != 0 {
			t.Errorf("after an empty backlog %s = %v, want 0", name, got)
		}
	}
}

func TestInFlightGauge(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	var n int64 = 17
	if err := m.RegisterInFlight(func() int64 { return n }); err != nil {
		t.Fatalf("RegisterInFlight: %v", err)
	}
	if got := gaugeValue(t, reg, "aibatch_in_flight_requests"); got != 17 {
		t.Errorf("in-flight = %v, want 17", got)
	}
	if err := m.RegisterInFlight(func() int64 { return 0 }); err == nil {
		t.Error("second RegisterInFlight returned no error")
	}
}

func TestEveryMetricIsNamedAibatch(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	if err := m.RegisterInFlight(func() int64 { return 0 }); err != nil {
		t.Fatal(err)
	}
	// Touch every vector so it has a series to gather.
	m.BatchFetched(wire.TriggerForced, 1)
	m.CallFinished(batch.CallReport{Provider: "p", Model: "m", Trigger: wire.TriggerForced, Size: 1, Usage: provider.Usage{InputTokens: 1, OutputTokens: 1}})
	m.RequestFinished(batch.RequestReport{Status: wire.StatusOK, QueueWait: time.Millisecond, Attempts: 1})
	n, err := testutil.GatherAndCount(reg)
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	if n == 0 {
		t.Fatal("nothing gathered")
	}
	for name := range gather(t, reg) {
		if !strings.HasPrefix(name, "aibatch_") {
			t.Errorf("metric %q is not prefixed aibatch_", name)
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP aibatch_requests_total Requests taken from the stream into batches, by trigger (a retried request counts once per delivery).
# TYPE aibatch_requests_total counter
aibatch_requests_total{trigger="forced"} 1
`), "aibatch_requests_total"); err != nil {
		t.Errorf("exposition of aibatch_requests_total: %v", err)
	}
}

// gather reads every metric family reg holds, by name.
func gather(t *testing.T, reg prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := make(map[string]*dto.MetricFamily, len(families))
	for _, f := range families {
		out[f.GetName()] = f
	}
	return out
}

func labelMap(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// series returns the series of family name whose labels are exactly
// labels, failing the test when there is none.
func series(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	f, ok := gather(t, reg)[name]
	if !ok {
		t.Fatalf("%s not gathered", name)
	}
	for _, m := range f.GetMetric() {
		got := labelMap(m)
		if maps.Equal(got, labels) || (len(got) == 0 && len(labels) == 0) {
			return m
		}
	}
	t.Fatalf("%s has no series with labels %v", name, labels)
	return nil
}

func counterValue(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	return series(t, reg, name, labels).GetCounter().GetValue()
}

func gaugeValue(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	return series(t, reg, name, nil).GetGauge().GetValue()
}

func TestBuildInfo(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.BuildInfo("v1.2.0", "abc123", "go1.26.8"))
	want := map[string]string{"version": "v1.2.0", "commit": "abc123", "go_version": "go1.26.8"}
	if got := series(t, reg, "aibatch_build_info", want).GetGauge().GetValue(); got != 1 {
		t.Errorf("aibatch_build_info%v = %v, want 1", want, got)
	}
}

// Both result statuses and the provider's own breaker exist from the start,
// at 0, so a dashboard or an alert sees 0 rather than nothing.
func TestSeriesThatExistFromTheStart(t *testing.T) {
	t.Parallel()
	_, reg := newMetrics(t)
	for _, status := range []string{wire.StatusOK, wire.StatusError} {
		if got := counterValue(t, reg, "aibatch_results_total", map[string]string{"status": status}); got != 0 {
			t.Errorf("aibatch_results_total{status=%q} = %v at the start, want 0", status, got)
		}
	}
	if got := series(t, reg, "aibatch_breaker_open", map[string]string{"model": ""}).GetGauge().GetValue(); got != 0 {
		t.Errorf(`aibatch_breaker_open{model=""} = %v at the start, want 0`, got)
	}
	if got := gaugeValue(t, reg, "aibatch_provider_up"); got != 1 {
		t.Errorf("aibatch_provider_up = %v at the start, want 1", got)
	}
}

func TestUrgentBacklogIsReadAtScrapeTime(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	var (
		reads int
		next  = batch.Backlog{Pending: 3, AckPending: 2, Oldest: time.Unix(1_700_000_000, 0)}
		fail  error
	)
	read := func(ctx context.Context) (batch.Backlog, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the urgent backlog is read without a deadline")
		}
		reads++
		return next, fail
	}
	if err := m.RegisterUrgentBacklog(read, time.Hour); err != nil {
		t.Fatal(err)
	}
	checks := map[string]float64{
		"aibatch_urgent_pending_requests":                 3,
		"aibatch_urgent_ack_pending_requests":             2,
		"aibatch_urgent_oldest_pending_timestamp_seconds": 1_700_000_000,
	}
	for name, want := range checks {
		if got := gaugeValue(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	// Within the TTL the reading is reused: three scrapes above, one read.
	next = batch.Backlog{Pending: 99}
	if got := gaugeValue(t, reg, "aibatch_urgent_pending_requests"); got != 3 || reads != 1 {
		t.Errorf("within the TTL: pending %v after %d reads, want the cached 3 after 1 read", got, reads)
	}

	// A failed read leaves the gauges out instead of showing stale values.
	m2, reg2 := newMetrics(t)
	if err := m2.RegisterUrgentBacklog(func(context.Context) (batch.Backlog, error) {
		return batch.Backlog{}, errors.New("no answer")
	}, time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	for name := range checks {
		if _, ok := gather(t, reg2)[name]; ok {
			t.Errorf("%s gathered after a failed read", name)
		}
	}
	// No oldest request: 0, as for the batch lane.
	m3, reg3 := newMetrics(t)
	if err := m3.RegisterUrgentBacklog(func(context.Context) (batch.Backlog, error) { return batch.Backlog{}, nil }, 0); err != nil {
		t.Fatal(err)
	}
	if got := gaugeValue(t, reg3, "aibatch_urgent_oldest_pending_timestamp_seconds"); got != 0 {
		t.Errorf("oldest with nothing waiting = %v, want 0", got)
	}
	if err := m3.RegisterUrgentBacklog(func(context.Context) (batch.Backlog, error) { return batch.Backlog{}, nil }, 0); err == nil {
		t.Error("a second RegisterUrgentBacklog: no error")
	}
}
