package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/admin"
	"github.com/aibatch/aibatch/internal/fleet"
	"github.com/aibatch/aibatch/internal/metrics"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

const (
	requestSubject = "ai.requests.test"
	maxBatchSize   = 50
)

// bundle is one worker on a real embedded NATS server: an engine that talks
// to a fake OpenAI server over real HTTP, its metrics, the fleet totals, and
// the admin server listening on a loopback port.
type bundle struct {
	ns     *server.Server
	nc     *nats.Conn
	js     natsjs.JetStream
	fake   *openaitest.Server
	topo   jetstream.Topology
	batch  *jetstream.Queue
	urgent *jetstream.Queue
	engine *batch.Engine
	reg    *prometheus.Registry
	fleet  *fleet.Totals
	admin  *admin.Server
	url    string // http://host:port of the admin server

	stopEngine func()
}

// options change a bundle before its admin server starts.
type options struct {
	token       string
	settings    map[string]string
	secrets     []string
	noEngineRun bool
	fleetFlush  bool
	provider    string // "" means openai, "-" none
	quota       func() admin.QuotaStats
}

func newBundle(t *testing.T, o options) *bundle {
	t.Helper()
	b := &bundle{}
	b.ns = jetstreamtest.RunServer(t, "")
	b.nc, b.js = jetstreamtest.Connect(t, b.ns)
	b.fake = openaitest.NewServer()
	t.Cleanup(b.fake.Close)
	b.topo = jetstream.Topology{AckWait: 2 * time.Second}.WithDefaults()
	b.startEngine(t, !o.noEngineRun)

	ctx := testCtx(t)
	var err error
	b.fleet, err = fleet.Open(ctx, b.js, fleet.Config{Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("open fleet stats: %v", err)
	}
	fleetCtx, stopFleet := context.WithCancel(context.Background())
	fleetDone := make(chan struct{})
	go func() {
		defer close(fleetDone)
		_ = b.fleet.Run(fleetCtx, func() fleet.Counters { return fleet.CountersOf(b.engine.Stats()) }, nil)
	}()
	t.Cleanup(func() { stopFleet(); <-fleetDone })

	prov := o.provider
	switch prov {
	case "":
		prov = "openai"
	case "-": // no provider configured
		prov = ""
	}
	cfg := admin.Config{
		Addr:     "127.0.0.1:0",
		Token:    o.token,
		Worker:   "worker-1",
		Engine:   b.engine,
		Fleet:    b.fleet,
		Gatherer: b.reg,
		Settings: o.settings,
		Secrets:  o.secrets,
		Quota:    o.quota,
		Ready: admin.Readiness{
			NATS:      b.nc,
			Consumers: []admin.Consumer{b.batch.Consumer(), b.urgent.Consumer()},
			Provider:  prov,
			// As the worker wires it: the engine's breaker decides.
			ProviderHealth: b.engine.ProviderHealth,
			Timeout:        time.Second,
		},
		Log: zaptest.NewLogger(t),
	}
	if o.fleetFlush {
		cfg.FlushFleet = func(ctx context.Context) ([]fleet.FlushReply, error) {
			return fleet.FlushAll(ctx, b.nc, "", 250*time.Millisecond)
		}
	}
	b.admin, err = admin.New(cfg)
	if err != nil {
		t.Fatalf("new admin server: %v", err)
	}
	if err := b.admin.Start(ctx); err != nil {
		t.Fatalf("start admin server: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.admin.Shutdown(ctx); err != nil {
			t.Errorf("shut down admin server: %v", err)
		}
	})
	b.url = "http://" + b.admin.Addr()
	return b
}

// startEngine builds the worker's engine with the metrics observer, and
// runs it when run is true; it is stopped when the test ends.
func (b *bundle) startEngine(t *testing.T, run bool) {
	t.Helper()
	ctx := testCtx(t)
	var pub *jetstream.Publisher
	var err error
	b.batch, b.urgent, pub, err = jetstream.Ensure(ctx, b.js, b.topo)
	if err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	p, err := openai.New(openai.Config{APIKey: "test-key", BaseURL: b.fake.URL})
	if err != nil {
		t.Fatalf("openai provider: %v", err)
	}
	b.reg = prometheus.NewRegistry()
	m, err := metrics.New(b.reg)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	b.engine, err = batch.New(engineConfig(), b.batch, pub, p,
		batch.WithUrgentQueue(b.urgent), batch.WithObserver(m), batch.WithLogger(zaptest.NewLogger(t)))
	if err != nil {
		t.Fatalf("new engine: %v", err)
	}
	if err := m.RegisterInFlight(func() int64 { return b.engine.Stats().InFlight }); err != nil {
		t.Fatal(err)
	}
	b.stopEngine = func() {}
	if !run {
		return
	}
	b.stopEngine = runEngine(t, b.engine)
}

// runEngine runs e until the returned function is called or the test ends.
func runEngine(t *testing.T, e *batch.Engine) func() {
	t.Helper()
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	jetstreamtest.Eventually(t, 10*time.Second, "engine running", func() bool {
		_, err := e.Flush(runCtx)
		return err == nil
	})
	var once sync.Once
	stopFn := func() {
		once.Do(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("engine Run: %v", err)
			}
		})
	}
	t.Cleanup(stopFn)
	return stopFn
}

// engineConfig sends nothing by the clock: only a forced flush (or a full
// batch) sends.
func engineConfig() batch.Config {
	return batch.Config{
		MaxBatchSize:    maxBatchSize,
		Interval:        time.Hour,
		MaxWait:         time.Hour,
		PollInterval:    20 * time.Millisecond,
		AckWait:         2 * time.Second,
		RetryBackoff:    50 * time.Millisecond,
		RetryMaxBackoff: 200 * time.Millisecond,
		CallTimeout:     5 * time.Second,
		ShutdownTimeout: 5 * time.Second,
		DefaultModel:    "test-model",
	}
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// models are the models requests ask for in turn: requests of different
// models share a batch but not a call.
var models = []string{"test-model", "other-model"}

// publish stores n requests in the request stream and waits for each
// PubAck.
func (b *bundle) publish(t *testing.T, n int) {
	t.Helper()
	ctx := testCtx(t)
	for i := range n {
		body, _ := json.Marshal(wire.Request{ID: "r-" + strconv.Itoa(i), Input: "observation " + strconv.Itoa(i), Model: models[i%len(models)]})
		if _, err := b.js.Publish(ctx, requestSubject, body); err != nil {
			t.Fatalf("publish request %d: %v", i, err)
		}
	}
}

// waitResults waits until the results stream holds n results.
func (b *bundle) waitResults(t *testing.T, n int) {
	t.Helper()
	jetstreamtest.Eventually(t, 20*time.Second, fmt.Sprintf("%d results stored", n), func() bool {
		return jetstreamtest.Count(t, b.js, b.topo.ResultStream) >= uint64(n)
	})
}

// do sends an HTTP request to the admin server and returns the status and
// body.
func (b *bundle) do(t *testing.T, method, path, token string) (int, []byte) {
	t.Helper()
	ctx := testCtx(t)
	req, err := http.NewRequestWithContext(ctx, method, b.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, body
}

// getJSON sends a request that must answer want, and decodes the body into
// v.
func (b *bundle) getJSON(t *testing.T, method, path, token string, want int, v any) {
	t.Helper()
	status, body := b.do(t, method, path, token)
	if status != want {
		t.Fatalf("%s %s = %d %s, want %d", method, path, status, body, want)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("%s %s: body is not JSON: %v: %s", method, path, err, body)
		}
	}
}

// metricValue returns the sum of the samples of the metric family name
// whose label set contains every label in labels, from Prometheus text
// exposition.
func metricValue(t *testing.T, exposition, name string, labels ...string) float64 {
	t.Helper()
	var sum float64
	var found bool
	for _, line := range strings.Split(exposition, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) {
			continue
		}
		match := true
		for _, l := range labels {
			if !strings.Contains(series, l) {
				match = false
			}
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
		found = true
	}
	if !found {
		t.Fatalf("no %s series with labels %v in:\n%s", name, labels, exposition)
	}
	return sum
}
