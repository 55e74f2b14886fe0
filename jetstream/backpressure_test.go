package jetstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

// errCodeStoreFailed is the JetStream API error code of a publish the
// stream could not store (JSStreamStoreFailedF); a full stream with discard
// policy new answers it with "maximum messages exceeded" or "maximum bytes
// exceeded". nats.go has no constant for it.
const errCodeStoreFailed natsjs.ErrorCode = 10077

// streamFull reports whether err is the publish error of a full request
// stream, and which limit it hit.
func streamFull(err error) (string, bool) {
	var apiErr *natsjs.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != errCodeStoreFailed {
		return "", false
	}
	return apiErr.Description, true
}

// TestBackpressure fills a bounded request stream and checks that the
// broker, not the worker, holds the backlog: a publisher to a full stream
// gets the "maximum ... exceeded" error at once while everything accepted
// before stays stored (nothing old dropped, even when the limit is lowered
// under the backlog); a slow provider then drains it while a producer keeps
// publishing faster than the provider answers, the engine never holds more
// than MaxInflight × MaxBatchSize requests, the stream never more than its
// limit, and every accepted request ends with exactly one result.
func TestBackpressure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		topo  jetstream.Topology
		limit string // the error's description
	}{
		{"max messages", jetstream.Topology{MaxMsgs: 100}, "maximum messages exceeded"},
		{"max bytes", jetstream.Topology{MaxBytes: 12_000}, "maximum bytes exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := jetstreamtest.RunServer(t, "")
			_, js := jetstreamtest.Connect(t, ns)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			t.Cleanup(cancel)
			topo := tt.topo
			topo.AckWait = 5 * time.Second
			topo = topo.WithDefaults()
			if _, _, _, err := jetstream.Ensure(ctx, js, topo); err != nil {
				t.Fatalf("ensure topology: %v", err)
			}
			p := &producer{js: js}

			// Fill the stream until it refuses a request.
			for {
				err := p.publish(ctx, "ai.requests.bp")
				if err == nil {
					if p.accepted() > 10_000 {
						t.Fatal("the stream took 10000 requests: its limit is not applied")
					}
					continue
				}
				desc, full := streamFull(err)
				if !full || desc != tt.limit {
					t.Fatalf("after %d requests: publish error %v, want the JetStream API error %d %q", p.accepted(), err, errCodeStoreFailed, tt.limit)
				}
				break
			}
			filled := p.accepted()
			if tt.topo.MaxMsgs > 0 && filled != int(tt.topo.MaxMsgs) {
				t.Fatalf("the stream took %d requests, want its MaxMsgs %d", filled, tt.topo.MaxMsgs)
			}
			if filled < 20 {
				t.Fatalf("the stream took only %d requests", filled)
			}
			// Every further request is refused, urgent ones too: they share
			// the stream.
			for _, subject := range []string{"ai.requests.bp", "ai.urgent.bp"} {
				if _, full := streamFull(p.publish(ctx, subject)); !full {
					t.Fatalf("publish to %s on a full stream was not refused as full", subject)
				}
			}
			checkStored(t, js, topo, filled)

			// Lowering the limit under the backlog drops nothing either.
			lower := topo
			if lower.MaxMsgs > 0 {
				lower.MaxMsgs /= 2
			} else {
				lower.MaxBytes /= 2
			}
			if _, _, _, err := jetstream.Ensure(ctx, js, lower); err != nil {
				t.Fatalf("ensure lowered limits: %v", err)
			}
			checkStored(t, js, topo, filled)
			if _, full := streamFull(p.publish(ctx, "ai.requests.bp")); !full {
				t.Fatal("publish over a lowered limit was not refused as full")
			}

			// A slow provider drains the backlog while a producer publishes
			// faster than it answers.
			fake := openaitest.NewServer()
			t.Cleanup(fake.Close)
			fake.SetDelay(100 * time.Millisecond)
			cfg := batch.Config{
				MaxBatchSize:    10,
				MaxInflight:     2,
				Interval:        time.Hour,
				MaxWait:         200 * time.Millisecond,
				PollInterval:    20 * time.Millisecond,
				AckWait:         topo.AckWait,
				RetryBackoff:    50 * time.Millisecond,
				RetryMaxBackoff: 200 * time.Millisecond,
				CallTimeout:     10 * time.Second,
				ShutdownTimeout: 5 * time.Second,
				DefaultModel:    "test-model",
			}
			engine := startEngine(t, js, topo, cfg, fake)
			bound := int64(cfg.MaxInflight * cfg.MaxBatchSize)

			const more = 150 // requests the producer adds while the worker drains
			total := filled + more
			var refusedWhileDraining atomic.Int64
			prodErr := make(chan error, 1)
			go func() {
				tick := time.NewTicker(time.Millisecond)
				defer tick.Stop()
				for p.accepted() < total {
					err := p.publish(ctx, "ai.requests.bp")
					if _, full := streamFull(err); full {
						refusedWhileDraining.Add(1)
						<-tick.C // the stream is full: try again shortly
						continue
					}
					if err != nil {
						prodErr <- err
						return
					}
				}
				prodErr <- nil
			}()

			var maxInFlight int64
			var maxStored, maxBytes uint64
			stream, err := js.Stream(ctx, topo.RequestStream)
			if err != nil {
				t.Fatalf("open request stream: %v", err)
			}
			jetstreamtest.Eventually(t, 60*time.Second, fmt.Sprintf("%d results stored", total), func() bool {
				maxInFlight = max(maxInFlight, engine.Stats().InFlight)
				info, err := stream.Info(ctx)
				if err != nil {
					t.Fatalf("read request stream: %v", err)
				}
				maxStored = max(maxStored, info.State.Msgs)
				maxBytes = max(maxBytes, info.State.Bytes)
				return jetstreamtest.Count(t, js, topo.ResultStream) >= uint64(total)
			})
			if err := <-prodErr; err != nil {
				t.Fatalf("producer: %v", err)
			}
			if maxInFlight > bound {
				t.Errorf("engine held %d requests in calls, over MaxInflight × MaxBatchSize = %d", maxInFlight, bound)
			}
			if maxInFlight == 0 {
				t.Error("never saw a request in a call: the in-flight bound was not exercised")
			}
			if tt.topo.MaxMsgs > 0 && maxStored > uint64(tt.topo.MaxMsgs) {
				t.Errorf("request stream held %d requests, over its limit %d", maxStored, tt.topo.MaxMsgs)
			}
			if tt.topo.MaxBytes > 0 && maxBytes > uint64(tt.topo.MaxBytes) {
				t.Errorf("request stream held %d bytes, over its limit %d", maxBytes, tt.topo.MaxBytes)
			}
			if refusedWhileDraining.Load() == 0 {
				t.Error("the producer was never refused: it did not outpace the provider, so backpressure was not exercised")
			}
			jetstreamtest.Eventually(t, 30*time.Second, "request stream drained", func() bool {
				return jetstreamtest.Count(t, js, topo.RequestStream) == 0
			})
			checkOneResultEach(t, js, topo, total)
			t.Logf("%d requests filled the stream, %d more accepted while draining, %d refusals; in flight at most %d (bound %d)",
				filled, more, refusedWhileDraining.Load(), maxInFlight, bound)
		})
	}
}

// producer publishes requests "bp-0", "bp-1", ... with Nats-Msg-Id set to
// the id; an id moves on only once the stream stored it, so a refused
// request is published again with the same id.
type producer struct {
	js   natsjs.JetStream
	mu   sync.Mutex
	next int
}

func (p *producer) accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next
}

// publish sends the next request and returns the publish error, if any. A
// PubAck reporting a duplicate is an error: a refused request must not be
// remembered by the stream's duplicate window.
func (p *producer) publish(ctx context.Context, subject string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := fmt.Sprintf("bp-%d", p.next)
	body, err := json.Marshal(wire.Request{ID: id, Input: "backpressure " + id})
	if err != nil {
		return err
	}
	m := nats.NewMsg(subject)
	m.Data = body
	m.Header.Set(wire.HeaderMsgID, id)
	ack, err := p.js.PublishMsg(ctx, m)
	if err != nil {
		return err
	}
	if ack.Duplicate {
		return fmt.Errorf("request %s stored as a duplicate: an earlier refusal was remembered", id)
	}
	p.next++
	return nil
}

// checkStored checks that the request stream holds exactly requests bp-0
// to bp-<n-1>, in order: the ones accepted before it filled.
func checkStored(t *testing.T, js natsjs.JetStream, topo jetstream.Topology, n int) {
	t.Helper()
	msgs := jetstreamtest.Messages(t, js, topo.RequestStream)
	if len(msgs) != n {
		t.Fatalf("request stream holds %d requests, want the %d accepted", len(msgs), n)
	}
	for i, m := range msgs {
		var r wire.Request
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("stored request %d: %v", m.Sequence, err)
		}
		if want := fmt.Sprintf("bp-%d", i); r.ID != want {
			t.Fatalf("stored request %d is %s, want %s: an old request was dropped", i, r.ID, want)
		}
	}
}

// checkOneResultEach checks that the result stream holds exactly one ok
// result for each of requests bp-0 to bp-<n-1>, and nothing else.
func checkOneResultEach(t *testing.T, js natsjs.JetStream, topo jetstream.Topology, n int) {
	t.Helper()
	seen := make(map[string]bool, n)
	for _, m := range jetstreamtest.Messages(t, js, topo.ResultStream) {
		var r wire.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("result %d is not JSON: %v", m.Sequence, err)
		}
		if seen[r.ID] {
			t.Fatalf("two results for %s", r.ID)
		}
		seen[r.ID] = true
		if r.Status != wire.StatusOK || r.Output != openaitest.Answer("backpressure "+r.ID) {
			t.Errorf("result for %s: status %q output %q error %q", r.ID, r.Status, r.Output, r.Error)
		}
	}
	for i := range n {
		if id := fmt.Sprintf("bp-%d", i); !seen[id] {
			t.Errorf("no result for accepted request %s", id)
		}
	}
	if len(seen) != n {
		t.Errorf("%d results, want %d", len(seen), n)
	}
	for id := range seen {
		if !strings.HasPrefix(id, "bp-") {
			t.Errorf("result for unknown request %q", id)
		}
	}
}

// startEngine runs an engine on topo's lanes with cfg against fake until
// the test ends.
func startEngine(t *testing.T, js natsjs.JetStream, topo jetstream.Topology, cfg batch.Config, fake *openaitest.Server) *batch.Engine {
	t.Helper()
	ctx := testCtx(t)
	bq, uq, pub, err := jetstream.Ensure(ctx, js, topo)
	if err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	p, err := openai.New(openai.Config{APIKey: "test-key", BaseURL: fake.URL})
	if err != nil {
		t.Fatalf("openai provider: %v", err)
	}
	e, err := batch.New(cfg, bq, pub, p, batch.WithUrgentQueue(uq), batch.WithLogger(zaptest.NewLogger(t)))
	if err != nil {
		t.Fatalf("new engine: %v", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("engine Run: %v", err)
		}
	})
	return e
}
