package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/aibatch/aibatch/internal/gateway"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/wire"
)

// The tests run the gateway against a real embedded JetStream server with
// the workers' topology, and a responder in place of the worker: it
// consumes the lanes' durable consumers and publishes a result per request
// to its Batch-Reply-To, as a worker does, so each test decides what the
// "provider" answers and sees exactly what the gateway published.

const testKey = "sk-test-key-0123456789"

// seen is one request the responder received.
type seen struct {
	req     wire.Request
	subject string
	header  nats.Header
	raw     []byte
}

// answerFunc decides the result of a request; hold=true leaves the
// request unanswered (and unacked), as a worker waiting for its batch.
type answerFunc func(req wire.Request) (res wire.Result, hold bool)

// responder stands in for the worker.
type responder struct {
	t  *testing.T
	js natsjs.JetStream

	mu     sync.Mutex
	got    []seen
	answer answerFunc
	cc     []natsjs.ConsumeContext
	// busy counts requests being answered, each in a goroutine of its
	// own, so an answer function may wait without holding up the others.
	busy sync.WaitGroup
}

// echo answers a chat request with "echo: <prompt>" and an embedding with
// vectorOf(input), one request per call.
func echo(req wire.Request) (wire.Result, bool) {
	res := wire.Result{Status: wire.StatusOK, Model: req.Model, Usage: wire.Usage{InputTokens: 3, OutputTokens: 2}}
	if req.IsEmbedding() {
		res.Embedding = vectorOf(req.Input)
		res.Usage.OutputTokens = 0
	} else {
		prompt, _ := req.Prompt()
		res.Output = "echo: " + prompt
	}
	return res, false
}

// vectorOf is the responder's embedding of input: exact float32 values
// that differ per input.
func vectorOf(input string) []float32 {
	return []float32{float32(len(input)), 0.1 + float32(len(input))/3, -1.5e-7}
}

func (r *responder) setAnswer(f answerFunc) {
	r.mu.Lock()
	r.answer = f
	r.mu.Unlock()
}

// requests returns what the responder received so far.
func (r *responder) requests() []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seen(nil), r.got...)
}

func (r *responder) handle(m natsjs.Msg) {
	r.busy.Go(func() { r.answerOne(m) })
}

func (r *responder) answerOne(m natsjs.Msg) {
	var req wire.Request
	if err := json.Unmarshal(m.Data(), &req); err != nil {
		r.t.Errorf("responder: request is not JSON: %v: %s", err, m.Data())
		_ = m.Term()
		return
	}
	r.mu.Lock()
	r.got = append(r.got, seen{req: req, subject: m.Subject(), header: m.Headers(), raw: m.Data()})
	answer := r.answer
	r.mu.Unlock()
	res, hold := answer(req)
	if hold {
		return
	}
	meta, err := m.Metadata()
	if err != nil {
		r.t.Errorf("responder: metadata: %v", err)
		return
	}
	res.ID = req.ID
	if res.Batch.ID == "" {
		res.Batch = wire.BatchInfo{ID: "call-" + strconv.FormatUint(meta.Sequence.Stream, 10), Size: 1, Trigger: wire.TriggerUrgent}
	}
	res.Attempts = 1
	body, _ := json.Marshal(res)
	out := nats.NewMsg(m.Headers().Get(wire.HeaderReplyTo))
	out.Data = body
	out.Header.Set(wire.HeaderMsgID, wire.ResultMsgID(wire.RequestStream, meta.Sequence.Stream))
	out.Header.Set(wire.HeaderStreamSeq, strconv.FormatUint(meta.Sequence.Stream, 10))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.js.PublishMsg(ctx, out); err != nil {
		r.t.Errorf("responder: publish result: %v", err)
		return
	}
	_ = m.Ack()
}

// stack is a JetStream server with the workers' streams, a responder and a
// gateway.
type stack struct {
	t    *testing.T
	nc   *nats.Conn
	js   natsjs.JetStream
	resp *responder
	srv  *gateway.Server
	reg  *prometheus.Registry
	base string // http://host:port
}

type stackOptions struct {
	topology jetstream.Topology
	config   gateway.Config
	// noResponder leaves the lanes unconsumed: requests pile up.
	noResponder bool
}

func newStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	ns := jetstreamtest.RunServer(t, "")
	nc, js := jetstreamtest.Connect(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topo := o.topology.WithDefaults()
	if _, _, _, err := jetstream.Ensure(ctx, js, topo); err != nil {
		t.Fatalf("create the workers' streams: %v", err)
	}
	s := &stack{t: t, nc: nc, js: js, reg: prometheus.NewRegistry()}
	s.resp = &responder{t: t, js: js, answer: echo}
	if !o.noResponder {
		s.resp.start(ctx, topo)
	}
	cfg := o.config
	cfg.Addr = "127.0.0.1:0"
	if cfg.Keys == nil {
		keys, err := gateway.ParseKeys(testKey+"=tenant", ',', "test keys")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Keys = keys
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 20 * time.Second
	}
	if cfg.Models == nil {
		cfg.Models = []string{"gpt-4o-mini", "text-embedding-3-small"}
	}
	cfg.Log = zaptest.NewLogger(t)
	srv, err := gateway.New(cfg, s.reg, s.reg)
	if err != nil {
		t.Fatalf("new gateway: %v", err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("shut down: %v", err)
		}
		s.resp.stop()
	})
	if err := srv.Connect(ctx, nc); err != nil {
		t.Fatalf("connect the gateway: %v", err)
	}
	s.srv, s.base = srv, "http://"+srv.Addr()
	return s
}

// start consumes both lanes.
func (r *responder) start(ctx context.Context, topo jetstream.Topology) {
	for _, name := range []string{topo.Consumer, topo.UrgentConsumer()} {
		cons, err := r.js.Consumer(ctx, topo.RequestStream, name)
		if err != nil {
			r.t.Fatalf("responder: open consumer %s: %v", name, err)
		}
		cc, err := cons.Consume(r.handle)
		if err != nil {
			r.t.Fatalf("responder: consume %s: %v", name, err)
		}
		r.cc = append(r.cc, cc)
	}
}

func (r *responder) stop() {
	for _, cc := range r.cc {
		cc.Stop()
		<-cc.Closed()
	}
	r.busy.Wait()
}

// client is an official openai-go client of the gateway with key, without
// retries unless opts add them; its idle connections close when the test
// ends.
func (s *stack) client(key string, opts ...option.RequestOption) *openai.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	s.t.Cleanup(tr.CloseIdleConnections)
	base := []option.RequestOption{
		option.WithBaseURL(s.base + "/v1"), option.WithAPIKey(key), option.WithMaxRetries(0),
		option.WithHTTPClient(&http.Client{Transport: tr}),
	}
	c := openai.NewClient(append(base, opts...)...)
	return &c
}

// httpClient is a plain client whose idle connections close when the test
// ends.
func (s *stack) httpClient() *http.Client {
	tr := &http.Transport{}
	s.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
