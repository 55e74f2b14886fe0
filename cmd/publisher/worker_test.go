package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/client"
	ajs "github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
)

// workerEnv is a real worker: an embedded JetStream server with the
// worker's streams and a batching engine answering through a fake OpenAI
// server over real HTTP. Unlike startResponder, it writes real results and
// dead letters.
type workerEnv struct {
	srv    *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	topo   ajs.Topology
	fake   *openaitest.Server
	engine *batch.Engine
}

// workerConfig is a fast schedule: a batch goes out when 50 requests wait
// or the oldest has waited 30ms.
func workerConfig() batch.Config {
	return batch.Config{
		MaxBatchSize:    50,
		PollInterval:    10 * time.Millisecond,
		MaxWait:         30 * time.Millisecond,
		Interval:        time.Hour,
		AckWait:         5 * time.Second,
		RetryBackoff:    20 * time.Millisecond,
		RetryMaxBackoff: 100 * time.Millisecond,
		CallTimeout:     10 * time.Second,
		ShutdownTimeout: 5 * time.Second,
		DefaultModel:    "test-model",
	}
}

// startWorker runs a worker with cfg and opts until the test ends.
func startWorker(t *testing.T, cfg batch.Config, opts ...batch.Option) *workerEnv {
	t.Helper()
	w := &workerEnv{topo: ajs.Topology{}.WithDefaults()}
	w.srv = jetstreamtest.RunServer(t, "")
	w.nc, w.js = jetstreamtest.Connect(t, w.srv)
	w.fake = openaitest.NewServer()
	t.Cleanup(w.fake.Close)

	_, engineJS := jetstreamtest.Connect(t, w.srv)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	bq, uq, pub, err := ajs.Ensure(ctx, engineJS, w.topo)
	if err != nil {
		t.Fatalf("create streams: %v", err)
	}
	p, err := openai.New(openai.Config{APIKey: "test-key", BaseURL: w.fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]batch.Option{batch.WithUrgentQueue(uq), batch.WithLogger(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))}, opts...)
	w.engine, err = batch.New(cfg, bq, pub, p, opts...)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.engine.Run(runCtx) }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("engine: %v", err)
			}
		})
	})
	return w
}

// newClient returns a client of the worker on topic, closed when the test
// ends.
func (w *workerEnv) newClient(t *testing.T, topic string) *client.Client {
	t.Helper()
	c, err := client.New(w.nc, client.WithTopic(topic))
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// url is the worker's NATS URL.
func (w *workerEnv) url() string { return w.srv.ClientURL() }
