package client_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/client"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
)

// env is a real embedded JetStream server with the worker's streams, a fake
// OpenAI server over real HTTP, and (after start) a real batching engine on
// its own connection, as a worker process would have.
type env struct {
	ns     *server.Server
	nc     *nats.Conn // the test's (and the client's) connection
	js     natsjs.JetStream
	fake   *openaitest.Server
	topo   jetstream.Topology
	engine *batch.Engine
}

// engineConfig is a fast schedule: a batch goes out when 100 requests wait
// or the oldest has waited 50ms.
func engineConfig() batch.Config {
	return batch.Config{
		MaxBatchSize:    100,
		MaxInflight:     8,
		PollInterval:    10 * time.Millisecond,
		MaxWait:         50 * time.Millisecond,
		Interval:        time.Hour,
		AckWait:         5 * time.Second,
		RetryBackoff:    20 * time.Millisecond,
		RetryMaxBackoff: 100 * time.Millisecond,
		CallTimeout:     10 * time.Second,
		ShutdownTimeout: 5 * time.Second,
		DefaultModel:    "test-model",
	}
}

// setup starts the server and creates the streams; the engine is started
// separately so that tests can publish before anything answers.
func setup(t *testing.T, topo jetstream.Topology, fakeOpts ...openaitest.Option) *env {
	t.Helper()
	e := &env{topo: topo.WithDefaults()}
	e.ns = jetstreamtest.RunServer(t, "")
	e.nc, e.js = jetstreamtest.Connect(t, e.ns)
	e.fake = openaitest.NewServer(fakeOpts...)
	t.Cleanup(e.fake.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, _, err := jetstream.Ensure(ctx, e.js, e.topo); err != nil {
		t.Fatalf("create streams: %v", err)
	}
	return e
}

// start runs an engine with cfg on a connection of its own until the test
// ends.
func (e *env) start(t *testing.T, cfg batch.Config) {
	t.Helper()
	_, js := jetstreamtest.Connect(t, e.ns)
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	eng, stop, err := runEngine(js, e.topo, e.fake.URL, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	e.engine = eng
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("engine: %v", err)
		}
	})
}

// runEngine starts a batching engine on js answering through the fake
// provider at baseURL; stop ends it and returns Run's error.
func runEngine(js natsjs.JetStream, topo jetstream.Topology, baseURL string, cfg batch.Config, log *zap.Logger) (*batch.Engine, func() error, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bq, uq, pub, err := jetstream.Ensure(ctx, js, topo)
	if err != nil {
		return nil, nil, err
	}
	p, err := openai.New(openai.Config{APIKey: "test-key", BaseURL: baseURL})
	if err != nil {
		return nil, nil, err
	}
	eng, err := batch.New(cfg, bq, pub, p, batch.WithUrgentQueue(uq), batch.WithLogger(log))
	if err != nil {
		return nil, nil, err
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(runCtx) }()
	var once sync.Once
	var runErr error
	return eng, func() error {
		once.Do(func() { stopRun(); runErr = <-done })
		return runErr
	}, nil
}

// newClient returns a client on e.nc, closed when the test ends.
func (e *env) newClient(t *testing.T, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(e.nc, opts...)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// ctx returns a context that ends with the test or after d.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
