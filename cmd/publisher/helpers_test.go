package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibatch/aibatch/wire"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// testBundle is what most tests need: a server, a client of it and the
// streams the worker would have created.
type testBundle struct {
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

// startServer starts an embedded JetStream server, shut down at cleanup.
func startServer(t *testing.T) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// connect opens a client connection closed at cleanup.
func connect(t *testing.T, srv *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// createStreams creates the streams the worker creates in production.
func createStreams(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	for _, cfg := range []jetstream.StreamConfig{
		{Name: "AI_REQUESTS", Subjects: []string{"ai.requests.>", "ai.urgent.>"}, Retention: jetstream.WorkQueuePolicy},
		{Name: "AI_RESULTS", Subjects: []string{"ai.results.>"}},
	} {
		if _, err := js.CreateStream(t.Context(), cfg); err != nil {
			t.Fatalf("create stream %s: %v", cfg.Name, err)
		}
	}
}

// setup starts a server with both streams.
func setup(t *testing.T) *testBundle {
	t.Helper()
	srv := startServer(t)
	nc, js := connect(t, srv)
	createStreams(t, js)
	return &testBundle{srv: srv, nc: nc, js: js}
}

// answerFunc returns the results a responder publishes for one request; the
// responder fills in Batch and wire.Usage where they are zero.
type answerFunc func(req wire.Request) []wire.Result

// answerOK answers every request once with status ok.
func answerOK(req wire.Request) []wire.Result {
	return []wire.Result{{ID: req.ID, Status: wire.StatusOK, Output: "echo: " + req.Input}}
}

// seqOf returns n of an id "<run-id>-<n>", or 0.
func seqOf(id string) int {
	i := strings.LastIndex(id, "-")
	n, _ := strconv.Atoi(id[i+1:])
	return n
}

// testBatchSize is the largest batch the responder handles at once.
const testBatchSize = 50

// startResponder plays the worker: it pull-consumes AI_REQUESTS in batches
// of up to testBatchSize and publishes answer's results to each request's
// Batch-Reply-To subject. It stops at cleanup.
func startResponder(t *testing.T, b *testBundle, answer answerFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cons, err := b.js.CreateOrUpdateConsumer(ctx, "AI_REQUESTS", jetstream.ConsumerConfig{
		Durable:   "test-worker",
		AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		cancel()
		t.Fatalf("create consumer: %v", err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		for ctx.Err() == nil {
			batch, err := cons.Fetch(testBatchSize, jetstream.FetchMaxWait(100*time.Millisecond))
			if err != nil {
				continue
			}
			var msgs []jetstream.Msg
			for m := range batch.Messages() {
				msgs = append(msgs, m)
			}
			if len(msgs) == 0 {
				continue
			}
			info := wire.BatchInfo{ID: nuid.Next(), Size: len(msgs), Trigger: "interval"}
			if len(msgs) == testBatchSize {
				info.Trigger = "size"
			}
			for _, m := range msgs {
				var req wire.Request
				if err := json.Unmarshal(m.Data(), &req); err != nil {
					t.Errorf("responder: decode request: %v", err)
					continue
				}
				for _, r := range answer(req) {
					if r.Batch == (wire.BatchInfo{}) {
						r.Batch = info
					}
					if r.Usage == (wire.Usage{}) {
						r.Usage = wire.Usage{InputTokens: int64(len(req.Input)), OutputTokens: 3}
					}
					data, err := json.Marshal(r)
					if err != nil {
						t.Errorf("responder: encode result: %v", err)
						continue
					}
					if err := b.nc.Publish(m.Headers().Get(wire.HeaderReplyTo), data); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
						t.Errorf("responder: publish result: %v", err)
					}
				}
				_ = m.Ack()
			}
		}
	})
}

// runCLI runs the command line and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(t.Context(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// decodeSummary decodes the --json output.
func decodeSummary(t *testing.T, stdout string) Summary {
	t.Helper()
	var s Summary
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("decode summary %q: %v", stdout, err)
	}
	return s
}

// checkFor calls check until it returns nil or timeout passes.
func checkFor(t *testing.T, timeout, every time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(every)
	}
}
