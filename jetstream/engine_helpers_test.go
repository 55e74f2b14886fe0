package jetstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/attempts"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

// bundle is one engine on a real embedded server, talking to a fake OpenAI
// server over real HTTP.
type bundle struct {
	ns     *server.Server
	dir    string
	nc     *nats.Conn
	js     natsjs.JetStream
	fake   *openaitest.Server
	topo   jetstream.Topology
	engine *batch.Engine
	cfg    batch.Config
	// attempts keeps the engine's attempt records in a real bucket.
	attempts *attempts.Store

	stop func() // stops the engine and waits for Run to return
}

// testConfig is a fast schedule for tests: nothing is due by the clock
// unless a test says so.
func testConfig() batch.Config {
	return batch.Config{
		MaxBatchSize:    50,
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

func setup(t *testing.T, fakeOpts ...openaitest.Option) *bundle {
	t.Helper()
	b := &bundle{dir: t.TempDir()}
	b.ns = jetstreamtest.RunServer(t, b.dir)
	b.nc, b.js = jetstreamtest.Connect(t, b.ns)
	b.fake = openaitest.NewServer(fakeOpts...)
	t.Cleanup(b.fake.Close)
	b.topo = jetstream.Topology{AckWait: 2 * time.Second}.WithDefaults()
	// The streams exist before the engine starts, so tests can fill the
	// backlog first.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, _, err := jetstream.Ensure(ctx, b.js, b.topo); err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	return b
}

// start runs a new engine with cfg against the fake OpenAI server; it is
// stopped when the test ends.
func (b *bundle) start(t *testing.T, cfg batch.Config, pubWrap ...func(batch.Publisher) batch.Publisher) {
	t.Helper()
	p, err := openai.New(openai.Config{APIKey: "test-key", BaseURL: b.fake.URL})
	if err != nil {
		t.Fatalf("openai provider: %v", err)
	}
	var wrap func(batch.Publisher) batch.Publisher
	if len(pubWrap) > 0 {
		wrap = pubWrap[0]
	}
	b.startWrapped(t, cfg, p, wrap)
}

// startWith runs a new engine with cfg and provider p.
func (b *bundle) startWith(t *testing.T, cfg batch.Config, p provider.Provider, opts ...batch.Option) {
	t.Helper()
	b.startWrapped(t, cfg, p, nil, opts...)
}

func (b *bundle) startWrapped(t *testing.T, cfg batch.Config, p provider.Provider, wrap func(batch.Publisher) batch.Publisher, opts ...batch.Option) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bq, uq, pub, err := jetstream.Ensure(ctx, b.js, b.topo)
	if err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	var publisher batch.Publisher = pub
	if wrap != nil {
		publisher = wrap(publisher)
	}
	b.attempts, err = attempts.Ensure(ctx, b.js, attempts.Config{})
	if err != nil {
		t.Fatalf("attempt records: %v", err)
	}
	opts = append([]batch.Option{batch.WithUrgentQueue(uq), batch.WithLogger(zaptest.NewLogger(t)), batch.WithAttemptStore(b.attempts)}, opts...)
	e, err := batch.New(cfg, bq, publisher, p, opts...)
	if err != nil {
		t.Fatalf("new engine: %v", err)
	}
	b.engine, b.cfg = e, e.Config()
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	var once sync.Once
	b.stop = func() {
		once.Do(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("engine Run: %v", err)
			}
		})
	}
	t.Cleanup(b.stop)
}

type req struct {
	subject string
	body    string
	header  map[string]string
}

// publish stores requests in the request stream and waits for the PubAcks.
func (b *bundle) publish(t *testing.T, reqs ...req) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	futures := make([]natsjs.PubAckFuture, 0, len(reqs))
	for _, r := range reqs {
		m := nats.NewMsg(r.subject)
		m.Data = []byte(r.body)
		for k, v := range r.header {
			m.Header.Set(k, v)
		}
		f, err := b.js.PublishMsgAsync(m)
		if err != nil {
			t.Fatalf("publish to %s: %v", r.subject, err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatalf("publish: %v", err)
		case <-ctx.Done():
			t.Fatal("publish: no ack")
		}
	}
}

// inputs makes n valid requests on subject with inputs "<prefix> <i>".
func inputs(subject, prefix string, n int) []req {
	out := make([]req, n)
	for i := range out {
		body, _ := json.Marshal(wire.Request{ID: fmt.Sprintf("%s-%d", prefix, i), Input: prefix + " " + strconv.Itoa(i)})
		out[i] = req{subject: subject, body: string(body)}
	}
	return out
}

// storedResult is one result read back from the results stream.
type storedResult struct {
	wire.Result
	subject string
	msgID   string
}

// results reads every result the results stream holds.
func (b *bundle) results(t *testing.T) []storedResult {
	t.Helper()
	var out []storedResult
	for _, m := range jetstreamtest.Messages(t, b.js, b.topo.ResultStream) {
		var r wire.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("result %d is not JSON: %v: %s", m.Sequence, err, m.Data)
		}
		out = append(out, storedResult{Result: r, subject: m.Subject, msgID: m.Header.Get(wire.HeaderMsgID)})
	}
	return out
}

// waitResults waits until the results stream holds n results and returns
// them by request id, failing on a second result for any id.
func (b *bundle) waitResults(t *testing.T, n int, timeout time.Duration) map[string]storedResult {
	t.Helper()
	jetstreamtest.Eventually(t, timeout, fmt.Sprintf("%d results stored", n), func() bool {
		return jetstreamtest.Count(t, b.js, b.topo.ResultStream) >= uint64(n)
	})
	byID := make(map[string]storedResult)
	for _, r := range b.results(t) {
		if _, dup := byID[r.ID]; dup {
			t.Fatalf("two results for request %q", r.ID)
		}
		byID[r.ID] = r
	}
	if len(byID) != n {
		t.Fatalf("got %d results, want %d", len(byID), n)
	}
	return byID
}

// waitDrained waits until every request was acked (the WorkQueue stream is
// empty).
func (b *bundle) waitDrained(t *testing.T, timeout time.Duration) {
	t.Helper()
	jetstreamtest.Eventually(t, timeout, "request stream drained", func() bool {
		return jetstreamtest.Count(t, b.js, b.topo.RequestStream) == 0
	})
}

// attemptRecords counts the records in the attempt bucket.
func (b *bundle) attemptRecords(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := b.js.KeyValue(ctx, attempts.DefaultBucket)
	if err != nil {
		t.Fatalf("open the attempt bucket: %v", err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatalf("list attempt records: %v", err)
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	return n
}
