package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/aibatch/aibatch/client"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

func TestDoRoundTrip(t *testing.T) {
	t.Parallel()
	e := setup(t, jetstream.Topology{})
	e.start(t, engineConfig())
	c := e.newClient(t, client.WithTopic("billing"))

	cases := []struct {
		name        string
		req         wire.Request
		urgent      bool
		wantModel   string
		wantTrigger []wire.Trigger
	}{
		{name: "batch lane", req: wire.Request{Input: "hello"}, wantModel: "test-model",
			wantTrigger: []wire.Trigger{wire.TriggerMaxWait, wire.TriggerSize}},
		{name: "every field", req: wire.Request{ID: "own-id", Input: "with fields", Instructions: "be brief", Model: "m-2",
			MaxOutputTokens: 20, Metadata: json.RawMessage(`{"order":42}`)},
			wantModel: "m-2", wantTrigger: []wire.Trigger{wire.TriggerMaxWait, wire.TriggerSize}},
		{name: "urgent lane", req: wire.Request{Input: "now please"}, urgent: true, wantModel: "test-model",
			wantTrigger: []wire.Trigger{wire.TriggerUrgent}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			do := c.Do
			if tc.urgent {
				do = c.Urgent
			}
			res, err := do(ctxFor(t, 20*time.Second), tc.req)
			if err != nil {
				t.Fatalf("do: %v", err)
			}
			if res.Status != wire.StatusOK || res.Output != openaitest.Answer(tc.req.Input) || res.Model != tc.wantModel {
				t.Errorf("result %+v, want ok %q from %s", res, openaitest.Answer(tc.req.Input), tc.wantModel)
			}
			if tc.req.ID != "" && res.ID != tc.req.ID || res.ID == "" {
				t.Errorf("result id %q, want %q (or a generated one)", res.ID, tc.req.ID)
			}
			if string(res.Metadata) != string(tc.req.Metadata) {
				t.Errorf("metadata %s, want %s", res.Metadata, tc.req.Metadata)
			}
			found := false
			for _, trig := range tc.wantTrigger {
				found = found || res.Batch.Trigger == trig
			}
			if !found || res.Batch.Size < 1 || res.Attempts != 1 {
				t.Errorf("batch %+v attempts %d, want trigger in %v", res.Batch, res.Attempts, tc.wantTrigger)
			}
			// The result is stored in AI_RESULTS on the client's own subject.
			stored, err := c.Fetch(ctxFor(t, 10*time.Second), res.ID)
			if err != nil || stored[res.ID].Output != res.Output {
				t.Errorf("stored result %+v, err %v", stored, err)
			}
		})
	}
}

func TestSubmitWireFormat(t *testing.T) {
	t.Parallel()
	e := setup(t, jetstream.Topology{})
	c := e.newClient(t, client.WithTopic("wire"), client.WithName("svc-1"))
	if got, want := c.ReplySubject(), "ai.results.client.svc-1"; got != want {
		t.Fatalf("reply subject %q, want %q", got, want)
	}
	ctx := ctxFor(t, 20*time.Second)
	p, err := c.Submit(ctx, wire.Request{Input: "batched"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := c.SubmitUrgent(ctx, wire.Request{ID: "u-1", Input: "urgent"})
	if err != nil {
		t.Fatal(err)
	}
	jetstreamtest.Eventually(t, 10*time.Second, "two requests stored", func() bool {
		return jetstreamtest.Count(t, e.js, e.topo.RequestStream) == 2
	})
	msgs := jetstreamtest.Messages(t, e.js, e.topo.RequestStream)
	for i, want := range []struct{ subject, id, input string }{
		{"ai.requests.wire", p.ID(), "batched"},
		{"ai.urgent.wire", "u-1", "urgent"},
	} {
		m := msgs[i]
		var body wire.Request
		if err := json.Unmarshal(m.Data, &body); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if m.Subject != want.subject || body.ID != want.id || body.Input != want.input {
			t.Errorf("request %d on %s: %+v, want %+v", i, m.Subject, body, want)
		}
		if got := m.Header.Get(wire.HeaderMsgID); got != "svc-1:"+want.id {
			t.Errorf("request %d: Nats-Msg-Id %q, want %q", i, got, "svc-1:"+want.id)
		}
		if got := m.Header.Get(wire.HeaderReplyTo); got != c.ReplySubject() {
			t.Errorf("request %d: Batch-Reply-To %q, want %q", i, got, c.ReplySubject())
		}
	}

	// Nothing answers yet; then a worker starts and both waits complete.
	select {
	case <-p.Done():
		t.Fatal("a result before any worker ran")
	default:
	}
	e.start(t, engineConfig())
	for _, h := range []*client.Pending{p, u} {
		res, err := h.Wait(ctx)
		if err != nil || res.ID != h.ID() {
			t.Errorf("wait %s: %+v, %v", h.ID(), res, err)
		}
	}
}

func TestErrorResult(t *testing.T) {
	t.Parallel()
	e := setup(t, jetstream.Topology{})
	e.start(t, engineConfig())
	c := e.newClient(t)
	res, err := c.Do(ctxFor(t, 20*time.Second), wire.Request{ID: "bad-model", Input: "x", Model: "unknown-model"})
	if !errors.Is(err, client.ErrFailed) {
		t.Fatalf("error %v, want ErrFailed", err)
	}
	if res.ID != "bad-model" || res.Status != wire.StatusError || res.Error == "" || !strings.Contains(err.Error(), res.Error) {
		t.Errorf("result %+v, error %v", res, err)
	}
	jetstreamtest.Eventually(t, 10*time.Second, "dead letter stored", func() bool {
		return jetstreamtest.Count(t, e.js, e.topo.DeadStream) == 1
	})
}

func TestSubmitRefuses(t *testing.T) {
	t.Parallel()
	e := setup(t, jetstream.Topology{})
	c := e.newClient(t)
	ctx := ctxFor(t, 10*time.Second)
	if _, err := c.Submit(ctx, wire.Request{ID: "taken", Input: "first"}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		req  wire.Request
		want error
	}{
		{"empty input", wire.Request{Input: " \n"}, client.ErrInvalidRequest},
		{"negative max tokens", wire.Request{Input: "x", MaxOutputTokens: -1}, client.ErrInvalidRequest},
		{"control character in id", wire.Request{ID: "a\nb", Input: "x"}, client.ErrInvalidRequest},
		{"invalid metadata", wire.Request{Input: "x", Metadata: json.RawMessage(`{`)}, client.ErrInvalidRequest},
		{"id already waiting", wire.Request{ID: "taken", Input: "second"}, client.ErrDuplicateID},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := c.Submit(ctx, tc.req); !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	e := setup(t, jetstream.Topology{})
	bare := jetstreamtest.RunServer(t, "") // no streams: the worker never ran
	bareNC, _ := jetstreamtest.Connect(t, bare)
	cases := []struct {
		name string
		nc   *nats.Conn
		opts []client.Option
		want string
	}{
		{"nil connection", nil, nil, "nil NATS connection"},
		{"wildcard topic", e.nc, []client.Option{client.WithTopic("a.*")}, "WithTopic"},
		{"name with a dot", e.nc, []client.Option{client.WithName("a.b")}, "WithName"},
		{"reply is a request subject", e.nc, []client.Option{client.WithTopic("x"), client.WithReplySubject("ai.requests.x")}, "is a request subject"},
		{"zero max pending", e.nc, []client.Option{client.WithMaxPending(0)}, "WithMaxPending"},
		{"zero pub ack timeout", e.nc, []client.Option{client.WithPubAckTimeout(0)}, "WithPubAckTimeout"},
		{"reply not stored", e.nc, []client.Option{client.WithReplySubject("inbox.me")}, "stores results"},
		{"no streams", bareNC, []client.Option{client.WithSetupTimeout(2 * time.Second)}, "is the worker running"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := client.New(tc.nc, tc.opts...)
			if err == nil {
				_ = c.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestCancelledWaitDoesNotCancelRequest(t *testing.T) {
	t.Parallel()
	e := setup(t, jetstream.Topology{})
	cfg := engineConfig()
	cfg.MaxWait = 500 * time.Millisecond // the wait below gives up long before
	e.start(t, cfg)
	c := e.newClient(t)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	_, err := c.Do(ctx, wire.Request{ID: "impatient", Input: "slow"})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `"impatient"`) {
		t.Fatalf("error %v, want a deadline naming the request", err)
	}
	if s := c.Stats(); s.Waiting != 0 {
		t.Errorf("%d waits left after Do gave up", s.Waiting)
	}
	// The request is answered anyway; the late result reaches the client,
	// which drops it, and Fetch finds it in the stream.
	jetstreamtest.Eventually(t, 10*time.Second, "late result dropped", func() bool {
		return c.Stats().Unclaimed == 1
	})
	got, err := c.Fetch(ctxFor(t, 10*time.Second), "impatient")
	if err != nil || got["impatient"].Output != openaitest.Answer("slow") {
		t.Errorf("fetch: %+v, %v", got, err)
	}
}

func TestPendingWaitAgainAndDiscard(t *testing.T) {
	t.Parallel()
	e := setup(t, jetstream.Topology{})
	c := e.newClient(t)
	ctx := ctxFor(t, 20*time.Second)
	keep, err := c.Submit(ctx, wire.Request{Input: "kept"})
	if err != nil {
		t.Fatal(err)
	}
	drop, err := c.Submit(ctx, wire.Request{Input: "dropped"})
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := keep.Wait(short); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait on a cancelled context: %v", err)
	}
	drop.Discard()
	if _, err := drop.Wait(ctx); !errors.Is(err, client.ErrDiscarded) {
		t.Errorf("wait after Discard: %v", err)
	}
	e.start(t, engineConfig())
	// A cancelled Wait left the handle waiting: the next Wait gets the result.
	if res, err := keep.Wait(ctx); err != nil || res.Output != openaitest.Answer("kept") {
		t.Errorf("second wait: %+v, %v", res, err)
	}
	jetstreamtest.Eventually(t, 10*time.Second, "discarded result dropped", func() bool {
		return c.Stats().Unclaimed == 1
	})
}

func TestRestartedClientFetchesMissedResults(t *testing.T) {
	t.Parallel()
	e := setup(t, jetstream.Topology{})
	ctx := ctxFor(t, 30*time.Second)

	// The first incarnation submits and stops before anything is answered.
	first, err := client.New(e.nc, client.WithName("svc"))
	if err != nil {
		t.Fatal(err)
	}
	reqs := []wire.Request{{ID: "r-1", Input: "one"}, {ID: "r-2", Input: "two"}, {ID: "r-3", Input: "three"}}
	var handles []*client.Pending
	for _, r := range reqs {
		p, err := first.Submit(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		handles = append(handles, p)
	}
	jetstreamtest.Eventually(t, 10*time.Second, "requests stored", func() bool {
		return jetstreamtest.Count(t, e.js, e.topo.RequestStream) == 3
	})
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := handles[0].Wait(ctx); !errors.Is(err, client.ErrClosed) {
		t.Errorf("wait on a closed client: %v", err)
	}
	if _, err := first.Submit(ctx, wire.Request{Input: "late"}); !errors.Is(err, client.ErrClosed) {
		t.Errorf("submit on a closed client: %v", err)
	}

	e.start(t, engineConfig())
	jetstreamtest.Eventually(t, 10*time.Second, "results stored", func() bool {
		return jetstreamtest.Count(t, e.js, e.topo.ResultStream) == 3
	})

	// The restarted client (same name) finds them by id.
	second := e.newClient(t, client.WithName("svc"))
	got, err := second.Fetch(ctx, "r-1", "r-3", "never-sent")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["r-1"].Output != openaitest.Answer("one") || got["r-3"].Output != openaitest.Answer("three") {
		t.Errorf("fetched %+v", got)
	}
	// Another client's subject does not hold them; the whole stream does.
	other := e.newClient(t, client.WithName("other"))
	if got, err := other.Fetch(ctx, "r-1"); err != nil || len(got) != 0 {
		t.Errorf("other client's fetch: %+v, %v", got, err)
	}
	if got, err := other.FetchFrom(ctx, "ai.results.>", "r-2"); err != nil || got["r-2"].Output != openaitest.Answer("two") {
		t.Errorf("fetch from ai.results.>: %+v, %v", got, err)
	}

	// Re-sending an answered request within the duplicate window stores
	// nothing new; the client reads the stored result instead.
	res, err := second.Do(ctx, reqs[1])
	if err != nil || res.Output != openaitest.Answer("two") {
		t.Fatalf("re-sent request: %+v, %v", res, err)
	}
	if n := jetstreamtest.Count(t, e.js, e.topo.ResultStream); n != 3 {
		t.Errorf("%d results stored, want still 3", n)
	}
	if calls := e.engine.Stats().Requests; calls != 3 {
		t.Errorf("the engine took %d requests, want 3", calls)
	}
}

func TestNotConfirmed(t *testing.T) {
	t.Parallel()
	// A request stream that holds one message refuses the second publish.
	e := setup(t, jetstream.Topology{MaxMsgs: 1})
	c := e.newClient(t)
	ctx := ctxFor(t, 20*time.Second)
	if _, err := c.Submit(ctx, wire.Request{Input: "fits"}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Do(ctx, wire.Request{ID: "too-many", Input: "does not fit"})
	if !errors.Is(err, client.ErrNotConfirmed) || !strings.Contains(err.Error(), `"too-many"`) {
		t.Errorf("error %v, want ErrNotConfirmed naming the request", err)
	}
	if s := c.Stats(); s.Waiting != 1 {
		t.Errorf("%d waiting, want 1 (the stored request)", s.Waiting)
	}
}

// TestConcurrentDo sends 10,000 requests through Do from 100 goroutines at
// once (100 each, one after another) and checks that every call gets the
// result of its own input.
func TestConcurrentDo(t *testing.T) {
	t.Parallel()
	const goroutines, perGoroutine = 100, 100
	e := setup(t, jetstream.Topology{})
	e.start(t, engineConfig())
	c := e.newClient(t)
	ctx := ctxFor(t, 60*time.Second)

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				input := fmt.Sprintf("g%d-i%d", g, i)
				res, err := c.Do(ctx, wire.Request{Input: input})
				if err != nil {
					errs <- fmt.Errorf("%s: %w", input, err)
					return
				}
				if res.Output != openaitest.Answer(input) || res.Status != wire.StatusOK {
					errs <- fmt.Errorf("%s: got %+v", input, res)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s := c.Stats()
	if s.Waiting != 0 || s.Unclaimed != 0 || s.Invalid != 0 {
		t.Errorf("client stats after the run: %+v", s)
	}
	// The engine counts a result once its request is acked, just after the
	// result reached the client.
	jetstreamtest.Eventually(t, 10*time.Second, "every result stored and counted", func() bool {
		return e.engine.Stats().ResultsOK == goroutines*perGoroutine
	})
	if n := jetstreamtest.Count(t, e.js, e.topo.ResultStream); n != goroutines*perGoroutine {
		t.Errorf("%d results stored, want %d", n, goroutines*perGoroutine)
	}
	es := e.engine.Stats()
	if es.APICalls >= goroutines*perGoroutine/10 {
		t.Errorf("engine: %d API calls for %d requests, want far fewer", es.APICalls, goroutines*perGoroutine)
	}
	t.Logf("%d Do calls in %s, %d API calls", goroutines*perGoroutine, time.Since(start).Round(time.Millisecond), es.APICalls)
}
