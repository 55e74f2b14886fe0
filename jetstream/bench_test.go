package jetstream_test

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/wire"
)

// Micro-benchmarks of the broker side of the hot path against a real
// embedded server with file storage. The server runs in the benchmark's
// process, so B/op and allocs/op include the server's allocations, not only
// the client's; ns/req is the wall time per request of one client doing the
// step alone.

const benchBatch = 50

// reqMeter reports time, bytes and allocations per request for benchmarks
// whose operation handles perOp requests, leaving out the time and
// allocations between pause and resume.
type reqMeter struct {
	b       *testing.B
	perOp   int
	mallocs uint64
	bytes   uint64
	last    runtime.MemStats
}

func newReqMeter(b *testing.B, perOp int) *reqMeter {
	b.ReportAllocs()
	m := &reqMeter{b: b, perOp: perOp}
	runtime.ReadMemStats(&m.last)
	b.ResetTimer()
	return m
}

func (m *reqMeter) pause() {
	m.b.StopTimer()
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.mallocs += s.Mallocs - m.last.Mallocs
	m.bytes += s.TotalAlloc - m.last.TotalAlloc
}

func (m *reqMeter) resume() {
	runtime.ReadMemStats(&m.last)
	m.b.StartTimer()
}

func (m *reqMeter) report() {
	m.pause()
	reqs := float64(m.b.N * m.perOp)
	m.b.ReportMetric(float64(m.b.Elapsed().Nanoseconds())/reqs, "ns/req")
	m.b.ReportMetric(float64(m.bytes)/reqs, "B/req")
	m.b.ReportMetric(float64(m.mallocs)/reqs, "allocs/req")
}

// benchResult is a result body of a typical size.
var benchResult = []byte(`{"id":"r-123456","status":"ok","output":"echo: observation: reading within","model":"bench-model","usage":{"input_tokens":125,"output_tokens":10},"batch":{"id":"0123abcd-42","size":50,"trigger":"size"},"queued_ms":1234,"attempts":1}`)

func benchSetup(b *testing.B) (*jetstream.Queue, *jetstream.Publisher, func(n int)) {
	b.Helper()
	ns := jetstreamtest.RunServer(b, "")
	_, js := jetstreamtest.Connect(b, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, _, pub, err := jetstream.Ensure(ctx, js, jetstream.Topology{})
	if err != nil {
		b.Fatalf("ensure topology: %v", err)
	}
	body := []byte(`{"input":"` + strings.Repeat("observation: reading within range; ", 13) + `"}`)
	fill := func(n int) {
		for range n {
			if _, err := js.PublishAsync("ai.requests.bench", body); err != nil {
				b.Fatalf("publish request: %v", err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("requests not stored after a minute")
		}
	}
	return q, pub, fill
}

// BenchmarkPublishResults stores a batch's results with JetStream publish
// acks, each with its own Nats-Msg-Id, as the engine does after every call.
func BenchmarkPublishResults(b *testing.B) {
	_, pub, _ := benchSetup(b)
	ctx := context.Background()
	msgs := make([]batch.Outgoing, benchBatch)
	seq := 0
	m := newReqMeter(b, benchBatch)
	for range b.N {
		for i := range msgs {
			seq++
			s := strconv.Itoa(seq)
			msgs[i] = batch.Outgoing{Subject: "ai.results.bench", MsgID: "result:AI_REQUESTS:" + s,
				Header: []batch.HeaderField{{Name: wire.HeaderStreamSeq, Value: s}}, Data: benchResult}
		}
		for _, a := range pub.Publish(ctx, msgs) {
			if a.Err != nil || a.Duplicate {
				b.Fatalf("publish result: %+v", a)
			}
		}
	}
	m.report()
}

// BenchmarkFetchAndAck fetches a batch from the batch lane's durable
// consumer without waiting, reads each delivery's metadata and acks it.
func BenchmarkFetchAndAck(b *testing.B) {
	q, _, fill := benchSetup(b)
	ctx := context.Background()
	const refill = 20_000
	left := 0
	m := newReqMeter(b, benchBatch)
	for range b.N {
		if left < benchBatch {
			m.pause()
			fill(refill)
			left += refill
			m.resume()
		}
		msgs, err := q.Fetch(ctx, benchBatch)
		if err != nil || len(msgs) != benchBatch {
			b.Fatalf("fetch: %d messages, %v", len(msgs), err)
		}
		for _, msg := range msgs {
			if err := msg.Ack(); err != nil {
				b.Fatalf("ack: %v", err)
			}
		}
		left -= benchBatch
	}
	m.report()
}

// BenchmarkBacklog reads the batch lane's backlog as the scheduler does
// before every batch: the consumer's state and, when the consumer moved,
// the oldest pending request's publish time.
func BenchmarkBacklog(b *testing.B) {
	q, _, fill := benchSetup(b)
	fill(1000)
	ctx := context.Background()
	m := newReqMeter(b, 1)
	for range b.N {
		bl, err := q.Backlog(ctx)
		if err != nil || bl.Pending != 1000 {
			b.Fatalf("backlog: %+v, %v", bl, err)
		}
	}
	m.report()
}
