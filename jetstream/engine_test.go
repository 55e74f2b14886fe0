package jetstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

func TestThousandRequestsInTwentyCalls(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.Shuffle(true)
	reqs := inputs("ai.requests.demo", "observation", 1000)
	b.publish(t, reqs...)
	b.start(t, testConfig())

	got := b.waitResults(t, 1000, 60*time.Second)
	b.waitDrained(t, 10*time.Second)
	for i := range reqs {
		id := "observation-" + strconv.Itoa(i)
		r, ok := got[id]
		if !ok {
			t.Fatalf("no result for %s", id)
		}
		want := openaitest.Answer("observation " + strconv.Itoa(i))
		if r.Status != wire.StatusOK || r.Output != want {
			t.Fatalf("result %s = %q (%s), want %q", id, r.Output, r.Status, want)
		}
		if r.subject != "ai.results.demo" || r.Batch.Trigger != wire.TriggerSize || r.Batch.Size != 50 || r.Attempts != 1 {
			t.Fatalf("result %s: subject %s, batch %+v, attempts %d", id, r.subject, r.Batch, r.Attempts)
		}
	}
	if calls := b.fake.Calls(); calls > 20 {
		t.Fatalf("provider calls = %d, want at most 20", calls)
	}
	if s := b.engine.Stats(); s.ResultsOK != 1000 || s.APICalls != 20 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestTriggers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     func(*batch.Config)
		subject string
		force   bool
		want    wire.Trigger
	}{
		{name: "interval", cfg: func(c *batch.Config) { c.Interval = 300 * time.Millisecond }, subject: "ai.requests.t", want: wire.TriggerInterval},
		{name: "max_wait", cfg: func(c *batch.Config) { c.MaxWait = 300 * time.Millisecond }, subject: "ai.requests.t", want: wire.TriggerMaxWait},
		{name: "urgent", subject: "ai.urgent.t", want: wire.TriggerUrgent},
		{name: "forced", subject: "ai.requests.t", force: true, want: wire.TriggerForced},
		{name: "immediate", cfg: func(c *batch.Config) { c.Immediate = true }, subject: "ai.requests.t", want: wire.TriggerImmediate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			cfg := testConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			b.start(t, cfg)
			b.publish(t, inputs(tt.subject, tt.name, 3)...)
			if tt.force {
				// Nothing else is due for an hour: only the force sends.
				jetstreamtest.Eventually(t, 5*time.Second, "stream holds 3", func() bool {
					return jetstreamtest.Count(t, b.js, b.topo.RequestStream) == 3
				})
				// The consumer learns of new messages a moment after the
				// stream stores them, so a flush may come too early to see
				// them; flush until all three were sent.
				var sent int
				jetstreamtest.Eventually(t, 5*time.Second, "forced flush sent 3", func() bool {
					rep, err := b.engine.Flush(context.Background())
					if err != nil {
						t.Fatalf("Flush: %v", err)
					}
					sent += rep.Requests
					return sent == 3
				})
			}
			got := b.waitResults(t, 3, 10*time.Second)
			batches := map[string]bool{}
			for id, r := range got {
				batches[r.Batch.ID] = true
				if r.Batch.Trigger != tt.want {
					t.Fatalf("%s: trigger %q, want %q", id, r.Batch.Trigger, tt.want)
				}
				if r.Output != openaitest.Answer(strings.Replace(id, "-", " ", 1)) {
					t.Fatalf("%s: output %q", id, r.Output)
				}
			}
			wantCalls := int64(1)
			if tt.want == wire.TriggerImmediate {
				wantCalls = 3
			}
			if tt.want == wire.TriggerUrgent || tt.want == wire.TriggerForced {
				// Urgent requests arriving a moment apart, or a flush that
				// came before the consumer saw them all, may take two calls.
				wantCalls = int64(len(batches))
			}
			if b.fake.Calls() != wantCalls {
				t.Fatalf("calls = %d, want %d", b.fake.Calls(), wantCalls)
			}
		})
	}
}

func TestSizeTriggerWaitsForAFullBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := testConfig()
	cfg.MaxBatchSize = 10
	b.start(t, cfg)
	b.publish(t, inputs("ai.requests.t", "first", 9)...)
	// Nine of ten: nothing is due. Let the scheduler poll a few times.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if b.fake.Calls() != 0 {
			t.Fatalf("a batch of 9 was sent before MaxBatchSize 10 was reached")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.publish(t, inputs("ai.requests.t", "last", 1)...)
	got := b.waitResults(t, 10, 10*time.Second)
	for _, r := range got {
		if r.Batch.Trigger != wire.TriggerSize || r.Batch.Size != 10 {
			t.Fatalf("batch %+v, want size trigger with 10", r.Batch)
		}
	}
}

func TestOnlySameModelAndInstructionsShareACall(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var reqs []req
	for _, body := range []string{
		`{"id":"a1","input":"x"}`,
		`{"id":"a2","input":"y"}`,
		`{"id":"b1","input":"x","model":"other-model"}`,
		`{"id":"c1","input":"x","instructions":"be brief"}`,
		`{"id":"c2","input":"z","instructions":"be brief"}`,
	} {
		reqs = append(reqs, req{subject: "ai.requests.mix", body: body})
	}
	b.publish(t, reqs...)
	cfg := testConfig()
	cfg.MaxBatchSize = 5
	cfg.MaxWait = 200 * time.Millisecond // each group is partial
	b.start(t, cfg)
	got := b.waitResults(t, 5, 10*time.Second)
	if b.fake.Calls() != 3 {
		t.Fatalf("calls = %d, want 3 (one per model and instructions)", b.fake.Calls())
	}
	if got["a1"].Batch.ID != got["a2"].Batch.ID || got["c1"].Batch.ID != got["c2"].Batch.ID || got["a1"].Batch.ID == got["c1"].Batch.ID {
		t.Fatalf("grouping wrong: %+v", got)
	}
	if got["b1"].Model != "other-model" || got["a1"].Model != "test-model" {
		t.Fatalf("models: %q %q", got["b1"].Model, got["a1"].Model)
	}
	for _, r := range b.fake.Requests() {
		for _, m := range r.Messages {
			if m.Role == "system" && strings.Contains(m.Content, "be brief") {
				return
			}
		}
	}
	t.Fatal("no call carried the instructions as its system message")
}

func TestAProviderOutageSpendsNoAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.FailNext(2, 500) // two calls in a row: too few to open the breaker
	b.publish(t, inputs("ai.requests.t", "outage", 5)...)
	cfg := testConfig()
	cfg.MaxBatchSize = 5
	cfg.MaxDeliver = 1 // one failure of its own would end a request
	b.start(t, cfg)
	got := b.waitResults(t, 5, 15*time.Second)
	for id, r := range got {
		if r.Status != wire.StatusOK || r.Batch.Trigger != wire.TriggerRetry {
			t.Fatalf("%s: %+v, want ok when the provider came back", id, r.Result)
		}
	}
	// Two failed calls, each followed by a short wait in the stream, then
	// the answer; no breaker opened, no probe made.
	if b.fake.Calls() != 3 || b.engine.Stats().Probes != 0 || b.engine.Stats().Deferred != 10 {
		t.Fatalf("calls = %d, probes = %d, deferred = %d; want 3, 0 and 10", b.fake.Calls(), b.engine.Stats().Probes, b.engine.Stats().Deferred)
	}
	if n := jetstreamtest.Count(t, b.js, b.topo.DeadStream); n != 0 {
		t.Fatalf("dead letters = %d, want 0", n)
	}
	b.waitDrained(t, 5*time.Second)
	jetstreamtest.Eventually(t, 5*time.Second, "attempt records deleted", func() bool {
		return b.attemptRecords(t) == 0
	})
}

func TestMissingItemsAreCalledAgainAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var calls atomic.Int32
	b.fake.SetResultsFunc(func(rs []openaitest.Result) []openaitest.Result {
		if calls.Add(1) == 1 {
			return rs[:3] // the first answer leaves out two items
		}
		return rs
	})
	b.publish(t, inputs("ai.requests.t", "partial", 5)...)
	cfg := testConfig()
	cfg.MaxBatchSize = 5
	b.start(t, cfg)
	got := b.waitResults(t, 5, 15*time.Second)
	var again int
	for _, r := range got {
		if r.Status != wire.StatusOK || r.Attempts != 1 {
			t.Fatalf("%s: %+v", r.ID, r.Result)
		}
		if r.Batch.Size == 2 {
			again++
		}
	}
	if again != 2 || b.fake.Calls() != 2 {
		t.Fatalf("%d requests in the second call, %d calls; want the 2 left out, in 2 calls", again, b.fake.Calls())
	}
}

func TestPoisonRequestsAreDeadLettered(t *testing.T) {
	t.Parallel()
	b := setup(t, openaitest.WithUnknownModels("no-such-model"))
	good := inputs("ai.requests.mixed", "good", 4)
	// Ids come from Nats-Msg-Id where the body cannot be read.
	poison := []req{
		{subject: "ai.requests.mixed", body: `{"id":"p-json","input":`, header: map[string]string{wire.HeaderMsgID: "p-json"}},
		{subject: "ai.requests.mixed", body: `{"id":"p-noinput","instructions":"x"}`},
		{subject: "ai.requests.mixed", body: `{"id":"p-big","input":"` + strings.Repeat("a", 2000) + `"}`, header: map[string]string{wire.HeaderMsgID: "p-big"}},
		{subject: "ai.requests.mixed", body: ``, header: map[string]string{wire.HeaderMsgID: "p-empty"}},
		{subject: "ai.requests.mixed", body: `{"id":"p-model","input":"x","model":"no-such-model"}`},
		{subject: "ai.requests.mixed", body: `{"id":"p-reply","input":"x"}`, header: map[string]string{wire.HeaderReplyTo: "ai.requests.loop"}},
		{subject: "ai.requests.mixed", body: "\x00\xff\xfe binary", header: map[string]string{wire.HeaderMsgID: "p-binary"}},
	}
	b.publish(t, append(append([]req{}, good[:2]...), append(poison, good[2:]...)...)...)
	cfg := testConfig()
	cfg.MaxBatchSize = 11
	cfg.MaxRequestBytes = 1024
	cfg.MaxWait = 200 * time.Millisecond // the good group and the unknown model's are partial
	b.start(t, cfg)

	got := b.waitResults(t, 11, 15*time.Second)
	b.waitDrained(t, 10*time.Second)
	wantErr := map[string]string{
		"p-json":    "not a JSON request",
		"p-noinput": `"input" is missing`,
		"p-big":     "MAX_REQUEST_BYTES",
		"p-empty":   "empty body",
		"p-model":   "404",
		"p-reply":   "Batch-Reply-To",
		"p-binary":  "not a JSON request",
	}
	for id, want := range wantErr {
		r := got[id]
		if r.Status != wire.StatusError || !strings.Contains(r.Error, want) {
			t.Errorf("%s: status %q error %q, want an error containing %q", id, r.Status, r.Error, want)
		}
	}
	for i := range 4 {
		if r := got["good-"+strconv.Itoa(i)]; r.Status != wire.StatusOK {
			t.Errorf("good-%d: %s %s", i, r.Status, r.Error)
		}
	}
	dead := jetstreamtest.Messages(t, b.js, b.topo.DeadStream)
	if len(dead) != 7 {
		t.Fatalf("dead letters = %d, want 7", len(dead))
	}
	for _, d := range dead {
		if d.Subject != "ai.dead.mixed" || d.Header.Get(wire.HeaderError) == "" || d.Header.Get(wire.HeaderAttempts) != "1" {
			t.Fatalf("dead letter %q headers %v", d.Subject, d.Header)
		}
	}
	if b.fake.Calls() != 2 {
		t.Fatalf("calls = %d, want 2 (the good batch and the unknown model)", b.fake.Calls())
	}
}

func TestRequestsOutOfAttemptsAreDeadLettered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// The model never answers doomed-0: left out of combined answers, an
	// empty answer alone. That is its own failure, each delivery.
	b.fake.OmitInput("doomed 0")
	b.publish(t, inputs("ai.requests.t", "doomed", 2)...)
	cfg := testConfig()
	cfg.MaxBatchSize = 2
	cfg.MaxDeliver = 3
	b.start(t, cfg)
	got := b.waitResults(t, 2, 15*time.Second)
	if r := got["doomed-0"]; r.Status != wire.StatusError || r.Attempts != 3 || !strings.Contains(r.Error, "gave up after 3 attempts") {
		t.Fatalf("doomed-0: %+v", r.Result)
	}
	if r := got["doomed-1"]; r.Status != wire.StatusOK || r.Attempts != 1 {
		t.Fatalf("doomed-1: %+v", r.Result)
	}
	jetstreamtest.Eventually(t, 5*time.Second, "1 dead letter", func() bool {
		return jetstreamtest.Count(t, b.js, b.topo.DeadStream) == 1
	})
}

func TestReplyToHeaderRoutesTheResult(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// One reply subject the results stream stores, one private inbox it does not.
	sub, err := b.nc.SubscribeSync("_INBOX.private")
	if err != nil {
		t.Fatal(err)
	}
	b.publish(t,
		req{subject: "ai.requests.t", body: `{"id":"stored","input":"a"}`, header: map[string]string{wire.HeaderReplyTo: "ai.results.client.42"}},
		req{subject: "ai.requests.t", body: `{"id":"inbox","input":"b","metadata":{"k":1}}`, header: map[string]string{wire.HeaderReplyTo: "_INBOX.private"}},
	)
	cfg := testConfig()
	cfg.MaxBatchSize = 2
	b.start(t, cfg)
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no result on the private inbox: %v", err)
	}
	var r wire.Result
	if err := json.Unmarshal(m.Data, &r); err != nil || r.ID != "inbox" || string(r.Metadata) != `{"k":1}` {
		t.Fatalf("inbox result %s (%v)", m.Data, err)
	}
	got := b.waitResults(t, 1, 10*time.Second)
	if got["stored"].subject != "ai.results.client.42" {
		t.Fatalf("stored result on %q", got["stored"].subject)
	}
	b.waitDrained(t, 5*time.Second)
}

// lossyPublisher reports the first publish of results and the first of dead
// letters as failed after they were in fact stored, as when a worker dies
// between storing an outcome and acking its request.
type lossyPublisher struct {
	batch.Publisher
	mu   sync.Mutex
	lost map[string]bool // subject prefix -> already lost once
	// minBatch is the fewest results a publish must carry to be lost.
	minBatch int
}

func (p *lossyPublisher) Publish(ctx context.Context, msgs []batch.Outgoing) []batch.PublishAck {
	acks := p.Publisher.Publish(ctx, msgs)
	prefix, _, _ := strings.Cut(msgs[0].Subject, ".")
	prefix += "." + strings.Split(msgs[0].Subject, ".")[1]
	p.mu.Lock()
	defer p.mu.Unlock()
	// The rejected request's lone error result is settled on its own, at
	// once; the answered ones come as a set of minBatch.
	if prefix == "ai.results" && len(msgs) < p.minBatch {
		return acks
	}
	if !p.lost[prefix] {
		p.lost[prefix] = true
		for i := range acks {
			acks[i].Err = errors.New("connection lost before the ack")
		}
	}
	return acks
}

func TestRedeliveryNeverStoresASecondResult(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t, append(inputs("ai.requests.t", "once", 3), req{subject: "ai.requests.t", body: `{"id":"bad"}`})...)
	cfg := testConfig()
	cfg.MaxBatchSize = 4
	cfg.MaxWait = 200 * time.Millisecond // 3 valid requests: a partial group
	lossy := &lossyPublisher{lost: make(map[string]bool), minBatch: 3}
	b.start(t, cfg, func(p batch.Publisher) batch.Publisher { lossy.Publisher = p; return lossy })
	b.waitDrained(t, 15*time.Second)

	results := b.results(t)
	if len(results) != 4 {
		t.Fatalf("results stored = %d, want 4: %+v", len(results), results)
	}
	for _, r := range results {
		if r.ID == "once-0" && r.Attempts != 1 {
			// The stored result is the first attempt's; the second was a duplicate.
			t.Fatalf("stored result is from attempt %d", r.Attempts)
		}
	}
	if n := jetstreamtest.Count(t, b.js, b.topo.DeadStream); n != 1 {
		t.Fatalf("dead letters = %d, want 1", n)
	}
	if b.fake.Calls() != 2 {
		t.Fatalf("calls = %d, want 2 (the first answer was paid for and lost)", b.fake.Calls())
	}
}

func TestShutdownHandsBackUnfinishedCalls(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.SetDelay(time.Hour)
	b.publish(t, inputs("ai.requests.t", "slow", 5)...)
	cfg := testConfig()
	cfg.MaxBatchSize = 5
	cfg.ShutdownTimeout = 200 * time.Millisecond
	b.start(t, cfg)
	jetstreamtest.Eventually(t, 10*time.Second, "call in flight", func() bool { return b.engine.Stats().InFlight == 5 })
	b.stop()
	if n := len(b.results(t)); n != 0 {
		t.Fatalf("results after an interrupted call = %d, want 0", n)
	}

	// A new worker takes the requests at once (handed back without delay)
	// and answers each exactly once.
	b.fake.SetDelay(0)
	b.start(t, cfg)
	got := b.waitResults(t, 5, 15*time.Second)
	for id, r := range got {
		if r.Status != wire.StatusOK || r.Attempts != 2 {
			t.Fatalf("%s: %s attempts %d", id, r.Status, r.Attempts)
		}
	}
}

func TestServerRestartLosesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t, inputs("ai.requests.t", "persist", 120)...)
	b.ns = jetstreamtest.RestartServer(t, b.ns, b.dir)
	cfg := testConfig()
	b.start(t, cfg)
	got := b.waitResults(t, 100, 30*time.Second)
	if len(got) != 100 {
		t.Fatalf("got %d", len(got))
	}
	// The last 20 are held, waiting for their group to fill a call; restart
	// again and force them out. Their ack wait may run out while the server
	// is down, and the lane takes the redeliveries by itself.
	if held := b.engine.Stats().HeldRequests; held != 20 {
		t.Fatalf("%d requests held, want the last 20", held)
	}
	b.ns = jetstreamtest.RestartServer(t, b.ns, b.dir)
	jetstreamtest.Eventually(t, 10*time.Second, "client reconnected", b.nc.IsConnected)
	jetstreamtest.Eventually(t, 20*time.Second, "flushed after the restart", func() bool {
		_, err := b.engine.Flush(context.Background())
		return err == nil && b.engine.Stats().HeldRequests == 0
	})
	b.waitResults(t, 120, 20*time.Second)
	b.waitDrained(t, 10*time.Second)
}

func TestBatchesAreSplitToStayUnderMaxBatchTokens(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var reqs []req
	for i := range 10 {
		// 100 bytes of input: 25 tokens + 8 of framing; the call's own
		// overhead is 64, so four fit in 200 and a fifth would not.
		body, _ := json.Marshal(wire.Request{ID: "fit-" + strconv.Itoa(i), Input: strings.Repeat(strconv.Itoa(i), 100)})
		reqs = append(reqs, req{subject: "ai.requests.t", body: string(body)})
	}
	big, _ := json.Marshal(wire.Request{ID: "too-big", Input: strings.Repeat("x", 2000)})
	reqs = append(reqs, req{subject: "ai.requests.t", body: string(big)})
	b.publish(t, reqs...)
	cfg := testConfig()
	cfg.MaxBatchSize = 11
	cfg.MaxBatchTokens = 200
	b.start(t, cfg)

	got := b.waitResults(t, 11, 15*time.Second)
	sizes := map[string]int{}
	for id, r := range got {
		if id == "too-big" {
			if r.Status != wire.StatusError || !strings.Contains(r.Error, "MAX_BATCH_TOKENS") {
				t.Fatalf("too-big: %s %q", r.Status, r.Error)
			}
			continue
		}
		if r.Status != wire.StatusOK {
			t.Fatalf("%s: %s %s", id, r.Status, r.Error)
		}
		sizes[r.Batch.ID] = r.Batch.Size
	}
	if b.fake.Calls() != 3 || len(sizes) != 3 {
		t.Fatalf("calls = %d over batches %v, want 3 (4 + 4 + 2)", b.fake.Calls(), sizes)
	}
	for id, n := range sizes {
		if n > 4 {
			t.Fatalf("batch %s has %d requests, more than fit in 200 tokens", id, n)
		}
	}
	jetstreamtest.Eventually(t, 5*time.Second, "the oversized request dead-lettered", func() bool {
		return jetstreamtest.Count(t, b.js, b.topo.DeadStream) == 1
	})
}

func TestAnAnswerTooLargeToStoreFailsAlone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.SetResultsFunc(func(rs []openaitest.Result) []openaitest.Result {
		for i := range rs {
			if strings.HasSuffix(rs[i].Output, "big 1") {
				rs[i].Output = strings.Repeat("x", 10_000)
			}
		}
		return rs
	})
	b.publish(t, inputs("ai.requests.t", "big", 3)...)
	cfg := testConfig()
	cfg.MaxBatchSize = 3
	cfg.MaxResultBytes = 4096
	b.start(t, cfg)
	got := b.waitResults(t, 3, 15*time.Second)
	if r := got["big-1"]; r.Status != wire.StatusError || !strings.Contains(r.Error, "over the 4096 bytes the broker accepts") {
		t.Fatalf("big-1: %s %q", r.Status, r.Error)
	}
	for _, id := range []string{"big-0", "big-2"} {
		if got[id].Status != wire.StatusOK {
			t.Fatalf("%s: %+v", id, got[id].Result)
		}
	}
	jetstreamtest.Eventually(t, 5*time.Second, "one dead letter", func() bool {
		return jetstreamtest.Count(t, b.js, b.topo.DeadStream) == 1
	})
	if b.fake.Calls() != 1 {
		t.Fatalf("calls = %d, want 1: the answer is not paid for again", b.fake.Calls())
	}
}
