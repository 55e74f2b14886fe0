package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap/zaptest"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/admin"
	"github.com/aibatch/aibatch/internal/fleet"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/ratelimit"
	"github.com/aibatch/aibatch/wire"
)

func TestBatchStatsReflectForcedFlush(t *testing.T) {
	t.Parallel()
	b := newBundle(t, options{})
	const n = 25
	b.publish(t, n)

	var flushed admin.FlushResponse
	b.getJSON(t, http.MethodPost, "/admin/batch-process", "", http.StatusOK, &flushed)
	// The requests alternate between two models: two groups, each sent in
	// calls of at most maxBatchSize.
	perModel := (n + len(models) - 1) / len(models)
	wantBatches := len(models) * ((perModel + maxBatchSize - 1) / maxBatchSize)
	if flushed.Requests != n || flushed.Batches != wantBatches {
		t.Fatalf("flush = %+v, want %d requests in %d batches", flushed, n, wantBatches)
	}
	b.waitResults(t, n)

	var st admin.StatsResponse
	jetstreamtest.Eventually(t, 10*time.Second, "every result counted", func() bool {
		b.getJSON(t, http.MethodGet, "/admin/batch-stats", "", http.StatusOK, &st)
		return st.Worker.ResultsOK == n && st.Worker.InFlight == 0
	})
	w := st.Worker
	calls := b.fake.Calls()
	// Each model is its own group and call.
	if calls != int64(len(models)) {
		t.Errorf("the fake AI server got %d calls, want %d (one per model)", calls, len(models))
	}
	if w.ID != "worker-1" {
		t.Errorf("worker id = %q, want worker-1", w.ID)
	}
	if w.Requests != n || w.APICalls != calls || w.Batches != int64(wantBatches) || w.ResultsError != 0 || w.DeadLetters != 0 {
		t.Errorf("worker figures = %+v, want %d requests, %d api calls, %d batches, no errors", w.Figures, n, calls, wantBatches)
	}
	if want := float64(w.Requests) / float64(w.Batches); w.AvgBatchSize != want {
		t.Errorf("avg_batch_size = %v, want %v", w.AvgBatchSize, want)
	}
	if want := 1 - float64(calls)/float64(n); math.Abs(w.CallReduction-want) > 1e-9 {
		t.Errorf("call_reduction = %v, want 1 - %d/%d = %v", w.CallReduction, calls, n, want)
	}
	if w.Triggers[wire.TriggerForced] != int64(wantBatches) {
		t.Errorf("triggers = %v, want forced: %d", w.Triggers, wantBatches)
	}
	if w.LastFlushAt == nil || w.StartedAt == nil || w.LastFlushAt.Before(*w.StartedAt) {
		t.Errorf("last_flush_at = %v, started_at = %v; want a flush after the start", w.LastFlushAt, w.StartedAt)
	}
	if w.Usage.InputTokens <= 0 || w.Usage.OutputTokens <= 0 {
		t.Errorf("usage = %+v, want tokens counted", w.Usage)
	}

	// The fleet totals catch up within the fleet interval.
	jetstreamtest.Eventually(t, 10*time.Second, "fleet totals updated", func() bool {
		b.getJSON(t, http.MethodGet, "/admin/batch-stats", "", http.StatusOK, &st)
		return st.Fleet != nil && st.Fleet.ResultsOK == n
	})
	if f := st.Fleet; f.Requests != n || f.APICalls != calls || f.CallReduction != w.CallReduction || f.Usage != w.Usage {
		t.Errorf("fleet = %+v, want this worker's figures %+v", *f, w.Figures)
	}

	var raw map[string]json.RawMessage
	b.getJSON(t, http.MethodGet, "/admin/batch-stats", "", http.StatusOK, &raw)
	for _, k := range []string{"estimated_cost", "estimated_saving", "estimated_shadow_cost"} {
		if string(raw[k]) != "null" {
			t.Errorf("%s = %s, want null", k, raw[k])
		}
	}
	// Shadow sampling is off: its settings, no figures, and a list.
	if sh := w.Shadow; sh.Rate != 0 || sh.AgreeAt != batch.DefaultShadowAgreeAt || sh.Window != batch.DefaultShadowWindow || sh.Groups == nil || len(sh.Groups) != 0 {
		t.Errorf("shadow = %+v, want it off with its defaults and no groups", sh)
	}
}

func TestBatchStatsBeforeAnyWork(t *testing.T) {
	t.Parallel()
	b := newBundle(t, options{noEngineRun: true})
	var st admin.StatsResponse
	b.getJSON(t, http.MethodGet, "/admin/batch-stats", "", http.StatusOK, &st)
	if st.Worker.CallReduction != 0 || st.Worker.AvgBatchSize != 0 || st.Worker.LastFlushAt != nil || st.Worker.NextFlushAt != nil {
		t.Errorf("worker before any work = %+v, want zero ratios and null times", st.Worker)
	}
}

// batch-stats shows what the worker paces its provider calls by under
// "quota", as the worker reports it; null when it reports nothing.
func TestBatchStatsQuota(t *testing.T) {
	t.Parallel()
	var none admin.StatsResponse
	newBundle(t, options{noEngineRun: true}).getJSON(t, http.MethodGet, "/admin/batch-stats", "", http.StatusOK, &none)
	if none.Quota != nil {
		t.Errorf("quota = %+v without a reporter, want null", none.Quota)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	perMinute, fleetPerMinute := 10.0, 30.0
	b := newBundle(t, options{noEngineRun: true, quota: func() admin.QuotaStats {
		return admin.QuotaStats{Status: ratelimit.Status{RPM: 30, Workers: 3, Share: 1.0 / 3,
			RequestsPerMinute: &perMinute, FleetRequestsPerMinute: &fleetPerMinute,
			Remaining: &ratelimit.Reading{At: at, Requests: ratelimit.Window{Limit: 30, Remaining: 12, Reset: at.Add(36 * time.Second)}}}}
	}})
	var raw struct {
		Quota map[string]json.RawMessage `json:"quota"`
	}
	b.getJSON(t, http.MethodGet, "/admin/batch-stats", "", http.StatusOK, &raw)
	for k, want := range map[string]string{
		"rpm": "30", "tpm": "0", "workers": "3", "requests_per_minute": "10", "fleet_requests_per_minute": "30",
		"tokens_per_minute": "null", "paused_until": "null",
		"remaining": `{"at":"2026-01-02T03:04:05Z","requests":{"limit":30,"remaining":12,"reset":"2026-01-02T03:04:41Z"}}`,
	} {
		var got bytes.Buffer
		if err := json.Compact(&got, raw.Quota[k]); err != nil || got.String() != want {
			t.Errorf("quota.%s = %s (%v), want %s", k, raw.Quota[k], err, want)
		}
	}
}

func TestMetricsAfterWork(t *testing.T) {
	t.Parallel()
	b := newBundle(t, options{})
	const n = 12
	b.publish(t, n)
	b.getJSON(t, http.MethodPost, "/admin/batch-process", "", http.StatusOK, nil)
	b.waitResults(t, n)

	var text string
	jetstreamtest.Eventually(t, 10*time.Second, "every result in the metrics", func() bool {
		status, body := b.do(t, http.MethodGet, "/metrics", "")
		text = string(body)
		return status == http.StatusOK && strings.Contains(text, `aibatch_results_total{status="ok"} 12`)
	})
	calls := float64(b.fake.Calls())
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"aibatch_requests_total", []string{`trigger="forced"`}, n},
		{"aibatch_batches_total", []string{`trigger="forced"`}, float64(len(models))}, // a batch per group
		{"aibatch_results_total", []string{`status="ok"`}, n},
		{"aibatch_api_calls_total", []string{`provider="openai"`, `trigger="forced"`, `mode="combined"`, `status="ok"`}, calls},
		{"aibatch_batch_size_sum", nil, n},
		{"aibatch_queue_wait_seconds_count", nil, n},
		{"aibatch_api_call_duration_seconds_count", nil, calls},
		{"aibatch_in_flight_requests", nil, 0},
	}
	for _, tt := range tests {
		if got := metricValue(t, text, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	if got := metricValue(t, text, "aibatch_tokens_total", `direction="input"`); got <= 0 {
		t.Errorf("input tokens = %v, want > 0", got)
	}
}

func TestAdminRoutesNeedTheToken(t *testing.T) {
	t.Parallel()
	const token = "s3cret-admin-token-value"
	b := newBundle(t, options{token: token})
	tests := []struct {
		name   string
		method string
		path   string
		auth   string
		want   int
	}{
		{"stats without a token", http.MethodGet, "/admin/batch-stats", "", http.StatusUnauthorized},
		{"stats with a wrong token", http.MethodGet, "/admin/batch-stats", "Bearer not-the-token", http.StatusUnauthorized},
		{"stats with a token prefix", http.MethodGet, "/admin/batch-stats", "Bearer " + token[:5], http.StatusUnauthorized},
		{"stats with the token but no scheme", http.MethodGet, "/admin/batch-stats", token, http.StatusUnauthorized},
		{"stats with basic auth", http.MethodGet, "/admin/batch-stats", "Basic " + token, http.StatusUnauthorized},
		{"stats with the token", http.MethodGet, "/admin/batch-stats", "Bearer " + token, http.StatusOK},
		{"stats with a lowercase scheme", http.MethodGet, "/admin/batch-stats", "bearer " + token, http.StatusOK},
		{"flush without a token", http.MethodPost, "/admin/batch-process", "", http.StatusUnauthorized},
		{"flush with the token", http.MethodPost, "/admin/batch-process", "Bearer " + token, http.StatusOK},
		{"unknown admin path without a token", http.MethodGet, "/admin/nothing-here", "", http.StatusUnauthorized},
		{"unknown admin path with the token", http.MethodGet, "/admin/nothing-here", "Bearer " + token, http.StatusNotFound},
		{"healthz stays open", http.MethodGet, "/healthz", "", http.StatusOK},
		{"readyz stays open", http.MethodGet, "/readyz", "", http.StatusOK},
		{"metrics stay open", http.MethodGet, "/metrics", "", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, body := b.do(t, tt.method, tt.path, tt.auth)
			if status != tt.want {
				t.Errorf("%s %s = %d %s, want %d", tt.method, tt.path, status, body, tt.want)
			}
			if strings.Contains(string(body), token) {
				t.Errorf("response to %s %s contains the token", tt.method, tt.path)
			}
		})
	}
}

func TestRefusesExposedAddressWithoutToken(t *testing.T) {
	t.Parallel()
	b := newBundle(t, options{noEngineRun: true})
	tests := []struct {
		addr, token string
		refused     bool
	}{
		{"0.0.0.0:8080", "", true},
		{":8080", "", true},
		{"[::]:8080", "", true},
		{"192.0.2.10:8080", "", true},
		{"admin.example:8080", "", true},
		{"0.0.0.0:8080", "tok", false},
		{"127.0.0.1:8080", "", false},
		{"127.0.0.2:0", "", false},
		{"[::1]:8080", "", false},
		{"localhost:8080", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr+"/token="+tt.token, func(t *testing.T) {
			t.Parallel()
			_, err := admin.New(admin.Config{Addr: tt.addr, Token: tt.token, Engine: b.engine})
			if !tt.refused {
				if err != nil {
					t.Fatalf("New(%q) = %v, want no error", tt.addr, err)
				}
				return
			}
			if !errors.Is(err, admin.ErrExposed) {
				t.Fatalf("New(%q) without a token = %v, want ErrExposed", tt.addr, err)
			}
			for _, name := range []string{"ADMIN_ADDR", "ADMIN_TOKEN", tt.addr} {
				if !strings.Contains(err.Error(), name) {
					t.Errorf("error %q does not name %s", err, name)
				}
			}
		})
	}
	if err := admin.CheckExposure("no-port", ""); err == nil || !strings.Contains(err.Error(), "ADMIN_ADDR") {
		t.Errorf("CheckExposure(no-port) = %v, want an error naming ADMIN_ADDR", err)
	}
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		opts       options
		breakIt    func(t *testing.T, b *bundle)
		wantFailed string
	}{
		{name: "ready", breakIt: func(*testing.T, *bundle) {}},
		{name: "NATS server down", wantFailed: admin.CheckNATS, breakIt: func(_ *testing.T, b *bundle) {
			b.ns.Shutdown()
			b.ns.WaitForShutdown()
		}},
		{name: "consumer deleted", wantFailed: admin.CheckConsumer, breakIt: func(t *testing.T, b *bundle) {
			if err := b.js.DeleteConsumer(testCtx(t), b.topo.RequestStream, b.topo.UrgentConsumer()); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "request stream deleted", wantFailed: admin.CheckStream, breakIt: func(t *testing.T, b *bundle) {
			if err := b.js.DeleteStream(testCtx(t), b.topo.RequestStream); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "no provider", opts: options{provider: "-"}, wantFailed: admin.CheckProvider, breakIt: func(*testing.T, *bundle) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.opts.noEngineRun = true
			b := newBundle(t, tt.opts)
			if tt.opts.provider == "" {
				var ok admin.ReadyResponse
				b.getJSON(t, http.MethodGet, "/readyz", "", http.StatusOK, &ok)
				if want := []string{admin.CheckNATS, admin.CheckStream, admin.CheckConsumer, admin.CheckProvider}; ok.Status != "ready" || !slices.Equal(ok.Passed, want) {
					t.Fatalf("readyz before breaking = %+v, want ready after %v", ok, want)
				}
			}
			tt.breakIt(t, b)
			want := http.StatusServiceUnavailable
			if tt.wantFailed == "" {
				want = http.StatusOK
			}
			var got admin.ReadyResponse
			// A dropped connection may first show as a consumer timeout,
			// until the client notices; the named check must follow.
			jetstreamtest.Eventually(t, 10*time.Second, "readyz answers "+http.StatusText(want)+" naming "+tt.wantFailed, func() bool {
				status, body := b.do(t, http.MethodGet, "/readyz", "")
				return status == want && json.Unmarshal(body, &got) == nil && got.Failed == tt.wantFailed
			})
			if tt.wantFailed != "" && got.Error == "" {
				t.Error("readyz names no reason")
			}
			// Liveness does not depend on NATS.
			if status, _ := b.do(t, http.MethodGet, "/healthz", ""); status != http.StatusOK {
				t.Errorf("healthz = %d, want 200", status)
			}
		})
	}
}

func TestFlushEveryWorker(t *testing.T) {
	t.Parallel()
	b := newBundle(t, options{fleetFlush: true})
	// A second worker on the same streams, with its own connection.
	nc2, js2 := jetstreamtest.Connect(t, b.ns)
	ctx := testCtx(t)
	bq, uq, pub, err := jetstream.Ensure(ctx, js2, b.topo)
	if err != nil {
		t.Fatal(err)
	}
	p, err := openai.New(openai.Config{APIKey: "test-key", BaseURL: b.fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	e2, err := batch.New(engineConfig(), bq, pub, p, batch.WithUrgentQueue(uq), batch.WithLogger(zaptest.NewLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	runEngine(t, e2)
	for _, w := range []struct {
		id string
		f  fleet.Flusher
		nc *nats.Conn
	}{{"worker-1", b.engine, b.nc}, {"worker-2", e2, nc2}} {
		r, err := fleet.ServeFlush(w.nc, "", w.id, w.f, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Stop() })
		if err := w.nc.Flush(); err != nil { // the subscription reached the server
			t.Fatal(err)
		}
	}

	const n = 25
	b.publish(t, n)
	var resp admin.FlushResponse
	b.getJSON(t, http.MethodPost, "/admin/batch-process?scope=all", "", http.StatusOK, &resp)
	var ids []string
	var sum int
	for _, r := range resp.Workers {
		ids = append(ids, r.Worker)
		sum += r.Requests
		if r.Error != "" {
			t.Errorf("worker %s: %s", r.Worker, r.Error)
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"worker-1", "worker-2"}) {
		t.Fatalf("replies from %v, want worker-1 and worker-2", ids)
	}
	// Each request is delivered to one worker only.
	if sum != n || resp.Requests != n {
		t.Errorf("workers flushed %d requests (total field %d), want %d", sum, resp.Requests, n)
	}
	b.waitResults(t, n)
	jetstreamtest.Eventually(t, 10*time.Second, "both engines counted every request", func() bool {
		return b.engine.Stats().ResultsOK+e2.Stats().ResultsOK == n
	})
}

func TestBatchProcessErrors(t *testing.T) {
	t.Parallel()
	b := newBundle(t, options{noEngineRun: true})
	tests := []struct {
		name   string
		method string
		path   string
		want   int
	}{
		{"engine not running", http.MethodPost, "/admin/batch-process", http.StatusServiceUnavailable},
		{"unknown scope", http.MethodPost, "/admin/batch-process?scope=galaxy", http.StatusBadRequest},
		{"scope all without the control subject", http.MethodPost, "/admin/batch-process?scope=all", http.StatusNotImplemented},
		{"GET is not allowed", http.MethodGet, "/admin/batch-process", http.StatusMethodNotAllowed},
		{"POST stats is not allowed", http.MethodPost, "/admin/batch-stats", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if status, body := b.do(t, tt.method, tt.path, ""); status != tt.want {
				t.Errorf("%s %s = %d %s, want %d", tt.method, tt.path, status, body, tt.want)
			}
		})
	}
}

func TestConfigIsServedWithoutSecrets(t *testing.T) {
	t.Parallel()
	const (
		apiKey     = "sk-live-abc123def456"
		adminToken = "tok-xyz789-admin"
		natsPass   = "nats-pw-42"
	)
	b := newBundle(t, options{token: adminToken, settings: map[string]string{
		"OPENAI_API_KEY":   apiKey,
		"ADMIN_TOKEN":      adminToken,
		"NATS_URL":         "nats://worker:" + natsPass + "@127.0.0.1:4222,nats://127.0.0.1:4223",
		"OPENAI_BASE_URL":  "http://127.0.0.1:8089/v1?api_key=" + apiKey,
		"MODEL":            "gpt-4o-mini",
		"MAX_BATCH_SIZE":   "50",
		"MAX_BATCH_TOKENS": "100000",
	}, secrets: []string{"OPENAI_API_KEY", "ADMIN_TOKEN"}})
	status, body := b.do(t, http.MethodGet, "/admin/batch-stats", "Bearer "+adminToken)
	if status != http.StatusOK {
		t.Fatalf("batch-stats = %d %s", status, body)
	}
	for _, secret := range []string{apiKey, adminToken, natsPass} {
		if strings.Contains(string(body), secret) {
			t.Errorf("batch-stats shows the secret %q:\n%s", secret, body)
		}
	}
	var st admin.StatsResponse
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"OPENAI_API_KEY": admin.Redacted,
		"ADMIN_TOKEN":    admin.Redacted,
		"MODEL":          "gpt-4o-mini",
		"MAX_BATCH_SIZE": "50",
		// Named like a secret, but a count: shown.
		"MAX_BATCH_TOKENS": "100000",
	}
	for k, v := range want {
		if st.Config[k] != v {
			t.Errorf("config %s = %q, want %q", k, st.Config[k], v)
		}
	}
	if !strings.Contains(st.Config["NATS_URL"], "127.0.0.1:4222") || !strings.Contains(st.Config["NATS_URL"], "127.0.0.1:4223") {
		t.Errorf("NATS_URL = %q, want the hosts kept", st.Config["NATS_URL"])
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	secrets := []string{"OPENAI_API_KEY", "ADMIN_TOKEN", "DB_PASSWORD", "ANTHROPIC_API_KEY", "MY_CREDENTIAL"}
	tests := []struct {
		name, value, want string
	}{
		{"OPENAI_API_KEY", "sk-long-secret-1", admin.Redacted},
		{"OPENAI_BASE_URL", "http://h/v1?k=sk-long-secret-1", "http://h/v1?k=" + admin.Redacted},
		{"ADMIN_TOKEN", "t", admin.Redacted},
		{"DB_PASSWORD", "p", admin.Redacted},
		{"MY_CREDENTIAL", "c", admin.Redacted},
		{"ANTHROPIC_API_KEY", "", ""},
		{"MODEL", "gpt-4o-mini", "gpt-4o-mini"},
		{"NATS_URL", "nats://u:p@h:4222", "nats://REDACTED@h:4222"},
		{"NATS_URL_PLAIN", "nats://h:4222", "nats://h:4222"},
		// Only the named settings are secrets, whatever the others are
		// called.
		{"MAX_BATCH_TOKENS", "100000", "100000"},
		{"SOME_API_KEY_PATH", "/etc/keys/k.pem", "/etc/keys/k.pem"},
		{"PASSWORD_MIN_LENGTH", "12", "12"},
	}
	in := make(map[string]string)
	for _, tt := range tests {
		in[tt.name] = tt.value
	}
	out := admin.Redact(in, secrets)
	for _, tt := range tests {
		if out[tt.name] != tt.want {
			t.Errorf("Redact %s=%q = %q, want %q", tt.name, tt.value, out[tt.name], tt.want)
		}
	}
	if in["OPENAI_API_KEY"] != "sk-long-secret-1" {
		t.Error("Redact changed its input")
	}
	if got := admin.Redact(in, nil); got["OPENAI_API_KEY"] != "sk-long-secret-1" || got["NATS_URL"] != "nats://REDACTED@h:4222" {
		t.Errorf("with no secrets named: %v; want only URL credentials redacted", got)
	}
}

func TestShutdownStopsServing(t *testing.T) {
	t.Parallel()
	b := newBundle(t, options{noEngineRun: true})
	if status, _ := b.do(t, http.MethodGet, "/healthz", ""); status != http.StatusOK {
		t.Fatalf("healthz = %d, want 200", status)
	}
	// Start twice, or on a port in use, fails.
	if err := b.admin.Start(testCtx(t)); err == nil {
		t.Error("second Start returned no error")
	}
	other, err := admin.New(admin.Config{Addr: b.admin.Addr(), Engine: b.engine})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(testCtx(t)); err == nil || !strings.Contains(err.Error(), "ADMIN_ADDR") {
		t.Errorf("Start on a port in use = %v, want an error naming ADMIN_ADDR", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.admin.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.url+"/healthz", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("healthz after Shutdown = %d, want the connection refused", resp.StatusCode)
	}
	if err := b.admin.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

// TestReadyzFollowsTheProviderBreaker: while the provider fails every call
// the pod is unready with the reason and still live; it is ready again,
// with nobody restarting anything, once a probe gets through.
func TestReadyzFollowsTheProviderBreaker(t *testing.T) {
	t.Parallel()
	b := newBundle(t, options{})
	b.fake.FailNext(1_000_000, http.StatusInternalServerError)
	if err := b.nc.Publish("ai.urgent.readyz", []byte(`{"id":"r-1","input":"hello"}`)); err != nil {
		t.Fatal(err)
	}
	var got admin.ReadyResponse
	jetstreamtest.Eventually(t, 10*time.Second, "readyz 503 naming the provider", func() bool {
		status, body := b.do(t, http.MethodGet, "/readyz", "")
		return status == http.StatusServiceUnavailable && json.Unmarshal(body, &got) == nil && got.Failed == admin.CheckProvider
	})
	if !strings.Contains(got.Error, "provider failing: HTTP 500") || !strings.Contains(got.Error, "next probe") {
		t.Fatalf("readyz reason %q", got.Error)
	}
	if status, _ := b.do(t, http.MethodGet, "/healthz", ""); status != http.StatusOK {
		t.Fatalf("healthz = %d during an outage, want 200", status)
	}
	var stats struct {
		Worker struct {
			Breakers []batch.BreakerState `json:"breakers"`
		} `json:"worker"`
	}
	b.getJSON(t, http.MethodGet, "/admin/batch-stats", "", http.StatusOK, &stats)
	if br := stats.Worker.Breakers; len(br) != 1 || br[0].State != batch.BreakerOpen || br[0].Reason == "" || br[0].NextProbe.IsZero() {
		t.Fatalf("batch-stats breakers %+v", br)
	}
	_, exposition := b.do(t, http.MethodGet, "/metrics", "")
	if up := metricValue(t, string(exposition), "aibatch_provider_up"); up != 0 {
		t.Fatalf("aibatch_provider_up = %v during the outage", up)
	}

	b.fake.FailNext(0, 0)
	jetstreamtest.Eventually(t, 10*time.Second, "readyz 200 after the outage", func() bool {
		status, _ := b.do(t, http.MethodGet, "/readyz", "")
		return status == http.StatusOK
	})
	b.waitResults(t, 1)
	_, exposition = b.do(t, http.MethodGet, "/metrics", "")
	if up := metricValue(t, string(exposition), "aibatch_provider_up"); up != 1 {
		t.Fatalf("aibatch_provider_up = %v after the outage", up)
	}
}

// A worker starts its admin server before it connects to NATS: the probes
// answer at once, /readyz says what the worker waits for, and the rest
// answers 503 until Attach hands the server the engine.
func TestStartingServerAnswersProbes(t *testing.T) {
	t.Parallel()
	const token = "starting-token"
	srv, err := admin.New(admin.Config{Addr: "127.0.0.1:0", Token: token, Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	base := "http://" + srv.Addr()
	get := func(path, auth string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	if status, _ := get("/healthz", ""); status != http.StatusOK {
		t.Errorf("/healthz = %d while starting, want 200", status)
	}
	const waiting = "waiting for NATS at nats://127.0.0.1:4222"
	srv.SetStarting(admin.CheckNATS, waiting)
	status, body := get("/readyz", "")
	var ready admin.ReadyResponse
	if err := json.Unmarshal([]byte(body), &ready); err != nil {
		t.Fatalf("/readyz body %s: %v", body, err)
	}
	if status != http.StatusServiceUnavailable || ready.Failed != admin.CheckNATS || ready.Error != waiting {
		t.Errorf("/readyz = %d %s, want 503 failing nats with %q", status, body, waiting)
	}
	if status, _ := get("/admin/batch-stats", ""); status != http.StatusUnauthorized {
		t.Errorf("/admin/batch-stats without the token = %d while starting, want 401", status)
	}
	for _, path := range []string{"/admin/batch-stats", "/metrics"} {
		if status, body := get(path, token); status != http.StatusServiceUnavailable || !strings.Contains(body, waiting) {
			t.Errorf("%s = %d %s while starting, want 503 saying %q", path, status, body, waiting)
		}
	}
	srv.SetStarting(admin.CheckStream, "setting up streams")
	if _, body := get("/readyz", ""); !strings.Contains(body, `"failed": "stream"`) || !strings.Contains(body, "setting up streams") {
		t.Errorf("/readyz after SetStarting(stream) = %s", body)
	}

	if err := srv.Attach(admin.Config{}); err == nil {
		t.Error("Attach without an engine: no error")
	}
	b := newBundle(t, options{noEngineRun: true})
	cfg := admin.Config{
		Engine: b.engine, Gatherer: b.reg, Worker: "worker-early",
		Ready: admin.Readiness{NATS: b.nc, Consumers: []admin.Consumer{b.batch.Consumer(), b.urgent.Consumer()}, Provider: "openai"},
		Token: "ignored", Addr: "ignored",
	}
	if err := srv.Attach(cfg); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if err := srv.Attach(cfg); err == nil {
		t.Error("a second Attach: no error")
	}
	srv.SetStarting(admin.CheckNATS, "too late") // no effect now
	if status, body := get("/readyz", ""); status != http.StatusOK {
		t.Errorf("/readyz after Attach = %d %s, want 200", status, body)
	}
	if status, body := get("/admin/batch-stats", token); status != http.StatusOK || !strings.Contains(body, "worker-early") {
		t.Errorf("/admin/batch-stats after Attach = %d %s, want 200 with the worker's id", status, body)
	}
	if status, _ := get("/admin/batch-stats", "ignored"); status != http.StatusUnauthorized {
		t.Errorf("/admin/batch-stats with Attach's token = %d, want 401: the server keeps New's token", status)
	}
	if status, body := get("/metrics", ""); status != http.StatusOK || !strings.Contains(body, "aibatch_in_flight_requests") {
		t.Errorf("/metrics after Attach = %d, want 200 with the registry", status)
	}
}
