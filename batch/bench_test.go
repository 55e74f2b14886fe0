package batch

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// Micro-benchmarks of the engine's hot path, with no broker: in-memory
// messages, an instant provider and a publisher that stores nothing, so the
// figures are the engine's own cost per request. `make bench` runs them with
// -benchmem; besides the usual per-op figures each reports ns/req, B/req and
// allocs/req.

// benchBatch is the batch size the batch-level benchmarks use.
const benchBatch = 50

// benchMessage is an in-memory Message.
type benchMessage struct {
	data    []byte
	subject string
	d       Delivery
}

func (m *benchMessage) Data() []byte            { return m.data }
func (m *benchMessage) Subject() string         { return m.subject }
func (m *benchMessage) Header(string) string    { return "" }
func (m *benchMessage) Delivery() Delivery      { return m.d }
func (m *benchMessage) Ack() error              { return nil }
func (m *benchMessage) Nak(time.Duration) error { return nil }
func (m *benchMessage) InProgress() error       { return nil }

// benchQueue is an empty lane; the benchmarks call the engine's steps
// directly.
type benchQueue struct{}

func (benchQueue) Backlog(context.Context) (Backlog, error)                 { return Backlog{}, nil }
func (benchQueue) Fetch(context.Context, int) ([]Message, error)            { return nil, nil }
func (benchQueue) Wait(context.Context, int) ([]Message, error)             { return nil, nil }
func (benchPublisher) StoredResult(context.Context, uint64) ([]byte, error) { return nil, nil }

// benchPublisher acknowledges every message as stored.
type benchPublisher struct{}

func (benchPublisher) Publish(_ context.Context, msgs []Outgoing) []PublishAck {
	acks := make([]PublishAck, len(msgs))
	for i := range acks {
		acks[i].Sequence = uint64(i + 1)
	}
	return acks
}

// benchProvider answers every request at once from answers prepared for
// keys "0" to "n-1" (the keys the engine gives a call's requests), so the
// benchmarks measure the engine, not the provider.
type benchProvider struct{ answers []provider.Result }

func newBenchProvider(n int) *benchProvider {
	p := &benchProvider{answers: make([]provider.Result, n)}
	for i := range p.answers {
		p.answers[i] = provider.Result{Key: strconv.Itoa(i), Output: "echo: observation " + strconv.Itoa(i),
			Usage: provider.Usage{InputTokens: 125, OutputTokens: 10}}
	}
	return p
}

func (p *benchProvider) Name() string { return "bench" }

func (p *benchProvider) Complete(_ context.Context, b provider.Batch) ([]provider.Result, error) {
	return p.answers[:len(b.Requests)], nil
}

// benchBody is a request of about 500 bytes, as producers publish them.
func benchBody(i int) []byte {
	head := `{"id":"r-` + strconv.Itoa(i) + `","input":"`
	return []byte(head + strings.Repeat("observation: reading within range; ", 13) + `","metadata":{"sensor":"s-17"}}`)
}

func benchMessages(n int) []Message {
	msgs := make([]Message, n)
	for i := range msgs {
		msgs[i] = &benchMessage{data: benchBody(i), subject: "ai.requests.bench",
			d: Delivery{Stream: "AI_REQUESTS", StreamSeq: uint64(i + 1), NumDelivered: 1, Published: time.Now()}}
	}
	return msgs
}

func newBenchEngine(b *testing.B) *Engine {
	b.Helper()
	e, err := New(Config{DefaultModel: "bench-model"}, benchQueue{}, benchPublisher{}, newBenchProvider(benchBatch))
	if err != nil {
		b.Fatalf("new engine: %v", err)
	}
	return e
}

// reqMeter reports time, bytes and allocations per request for benchmarks
// whose operation handles perOp requests.
type reqMeter struct {
	b     *testing.B
	perOp int
	last  runtime.MemStats
}

func newReqMeter(b *testing.B, perOp int) *reqMeter {
	b.ReportAllocs()
	m := &reqMeter{b: b, perOp: perOp}
	runtime.ReadMemStats(&m.last)
	b.ResetTimer()
	return m
}

func (m *reqMeter) report() {
	m.b.StopTimer()
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	reqs := float64(m.b.N * m.perOp)
	m.b.ReportMetric(float64(m.b.Elapsed().Nanoseconds())/reqs, "ns/req")
	m.b.ReportMetric(float64(s.TotalAlloc-m.last.TotalAlloc)/reqs, "B/req")
	m.b.ReportMetric(float64(s.Mallocs-m.last.Mallocs)/reqs, "allocs/req")
}

// BenchmarkDecodeRequest parses and checks one request body.
func BenchmarkDecodeRequest(b *testing.B) {
	body := benchBody(1)
	m := newReqMeter(b, 1)
	for range b.N {
		if _, err := wire.DecodeRequest(body, 64<<10); err != nil {
			b.Fatal(err)
		}
	}
	m.report()
}

// BenchmarkDecodeMessage turns one delivered message into an item: body,
// topic, id, reply subject.
func BenchmarkDecodeMessage(b *testing.B) {
	e := newBenchEngine(b)
	msg := benchMessages(1)[0]
	m := newReqMeter(b, 1)
	for range b.N {
		if it := e.intake.read(context.Background(), msg); it.outcome != outcomeNone {
			b.Fatalf("decode failed: %v", it.err)
		}
	}
	m.report()
}

// BenchmarkBuildCall groups a fetched batch by model and instructions,
// builds the combined call and matches the provider's answers to the
// requests (the provider answers instantly from prepared results).
func BenchmarkBuildCall(b *testing.B) {
	e := newBenchEngine(b)
	items := make([]*item, benchBatch)
	for i, msg := range benchMessages(benchBatch) {
		items[i] = e.intake.read(context.Background(), msg)
	}
	ctx := context.Background()
	m := newReqMeter(b, benchBatch)
	for range b.N {
		for _, it := range items {
			it.outcome = outcomeNone
		}
		for _, g := range groupForCalls(items) {
			_, _ = e.caller.call(ctx, wire.TriggerSize, call{items: g})
		}
	}
	m.report()
	for _, it := range items {
		if it.outcome != outcomeAnswered {
			b.Fatalf("item %s not answered: outcome %d, %v", it.id, it.outcome, it.err)
		}
	}
}

// BenchmarkResultMessage encodes one answered request's result message.
func BenchmarkResultMessage(b *testing.B) {
	e := newBenchEngine(b)
	it := e.intake.read(context.Background(), benchMessages(1)[0])
	it.answered(provider.Result{Output: "echo: observation 1", Usage: provider.Usage{InputTokens: 125, OutputTokens: 10}})
	it.batch = wire.BatchInfo{ID: "0123abcd-1", Size: benchBatch, Trigger: wire.TriggerSize}
	m := newReqMeter(b, 1)
	for range b.N {
		if o, err := e.settler.out.resultMsg(it); err != nil || len(o.Data) == 0 {
			b.Fatal("empty result")
		}
	}
	m.report()
}

// BenchmarkProcessBatch takes a fetched batch through everything the engine
// does with it: decode, call, results, publish, ack.
func BenchmarkProcessBatch(b *testing.B) {
	e := newBenchEngine(b)
	msgs := benchMessages(benchBatch)
	ctx := context.Background()
	m := newReqMeter(b, benchBatch)
	for range b.N {
		items := make([]*item, len(msgs))
		for i, m := range msgs {
			items[i] = e.intake.read(ctx, m)
		}
		e.process(ctx, wire.TriggerSize, items)
	}
	m.report()
	if got, want := e.Stats().ResultsOK, int64(b.N*benchBatch); got != want {
		b.Fatalf("%d results stored, want %d", got, want)
	}
}
