package jetstream_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/fleet"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/wire"
)

// nextIsSentinel publishes a sentinel on sub's subject through pub, after
// everything pub published before, and fails if sub receives anything
// before it. A publisher's messages reach a subscriber in order, so this
// proves pub sent nothing there, without waiting for an absence.
func nextIsSentinel(t *testing.T, pub *nats.Conn, sub *nats.Subscription) {
	t.Helper()
	if err := pub.Publish(sub.Subject, []byte("sentinel")); err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for the sentinel on %s: %v", sub.Subject, err)
		}
		if string(m.Data) == "sentinel" {
			return
		}
		t.Errorf("the worker published on %s: headers %v, body %s", sub.Subject, m.Header, m.Data)
	}
}

// TestReplySubjectOutsideTheAllowListGetsNothing is the acceptance test of
// REPLY_SUBJECTS: a request with Batch-Reply-To: orders.create publishes
// nothing on orders.create; its error result goes to the default results
// subject and its dead letter names the reason.
func TestReplySubjectOutsideTheAllowListGetsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	orders, _ := jetstreamtest.Connect(t, b.ns)
	sub, err := orders.SubscribeSync("orders.create")
	if err != nil {
		t.Fatal(err)
	}
	if err := orders.Flush(); err != nil {
		t.Fatal(err)
	}
	b.publish(t,
		req{subject: "ai.requests.shop", body: `{"id":"deputy","input":"place an order"}`, header: map[string]string{wire.HeaderReplyTo: "orders.create"}},
		req{subject: "ai.requests.shop", body: `{"id":"fine","input":"b"}`},
	)
	cfg := testConfig()
	cfg.MaxBatchSize = 2
	// The refused request never joins a batch: the other goes alone.
	cfg.MaxWait = 200 * time.Millisecond
	b.start(t, cfg)

	got := b.waitResults(t, 2, 15*time.Second)
	b.waitDrained(t, 10*time.Second)
	deputy := got["deputy"]
	if deputy.Status != wire.StatusError || deputy.subject != "ai.results.shop" ||
		!strings.Contains(deputy.Error, `Batch-Reply-To "orders.create" is not in REPLY_SUBJECTS (ai.results.>,_INBOX.>)`) {
		t.Errorf("deputy: status %q error %q on %s, want an error result on ai.results.shop naming REPLY_SUBJECTS", deputy.Status, deputy.Error, deputy.subject)
	}
	if r := got["fine"]; r.Status != wire.StatusOK {
		t.Errorf("fine: %+v", r.Result)
	}
	dead := jetstreamtest.Messages(t, b.js, b.topo.DeadStream)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	if h := dead[0].Header; h.Get(wire.HeaderRequestID) != "deputy" || !strings.Contains(h.Get(wire.HeaderError), "REPLY_SUBJECTS") {
		t.Errorf("dead letter headers %v", h)
	}
	if calls := b.fake.Calls(); calls != 1 {
		t.Errorf("%d provider calls, want 1 (fine's alone)", calls)
	}
	// The engine publishes on b.nc: anything it sent to orders.create
	// arrives before the sentinel.
	nextIsSentinel(t, b.nc, sub)
}

// TestInboxResultsCarryNatsMsgID: a result sent to a private inbox, which no
// stream captures, carries the same Nats-Msg-Id a stored one does.
func TestInboxResultsCarryNatsMsgID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	requester, _ := jetstreamtest.Connect(t, b.ns)
	sub, err := requester.SubscribeSync("_INBOX.x.y")
	if err != nil {
		t.Fatal(err)
	}
	if err := requester.Flush(); err != nil {
		t.Fatal(err)
	}
	b.publish(t,
		req{subject: "ai.requests.t", body: `{"id":"inbox","input":"a"}`, header: map[string]string{wire.HeaderReplyTo: "_INBOX.x.y"}},
		req{subject: "ai.requests.t", body: `{"id":"bad-inbox","input":" "}`, header: map[string]string{wire.HeaderReplyTo: "_INBOX.x.y"}},
	)
	cfg := testConfig()
	cfg.MaxBatchSize = 2
	// The refused request never joins a batch: the other goes alone.
	cfg.MaxWait = 200 * time.Millisecond
	b.start(t, cfg)
	seen := map[string]string{}
	for len(seen) < 2 {
		m, err := sub.NextMsg(15 * time.Second)
		if err != nil {
			t.Fatalf("results on _INBOX.x.y so far %v: %v", seen, err)
		}
		var r wire.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("inbox result %s: %v", m.Data, err)
		}
		seq := m.Header.Get(wire.HeaderStreamSeq)
		if want := "result:" + b.topo.RequestStream + ":" + seq; m.Header.Get(wire.HeaderMsgID) != want {
			t.Errorf("%s's result: %s %q, want %q (headers %v)", r.ID, wire.HeaderMsgID, m.Header.Get(wire.HeaderMsgID), want, m.Header)
		}
		seen[r.ID] = r.Status
	}
	if seen["inbox"] != wire.StatusOK || seen["bad-inbox"] != wire.StatusError {
		t.Errorf("results on the inbox: %v", seen)
	}
	b.waitDrained(t, 10*time.Second)
	// The dead letter (stored) carries its own id as ever.
	dead := jetstreamtest.Messages(t, b.js, b.topo.DeadStream)
	if len(dead) != 1 || !strings.HasPrefix(dead[0].Header.Get(wire.HeaderMsgID), "dead:"+b.topo.RequestStream+":") {
		t.Errorf("dead letters %d, first Nats-Msg-Id %q", len(dead), dead[0].Header.Get(wire.HeaderMsgID))
	}
}

// TestTopicBudgetIsSharedByTheFleet runs two engines one after the other,
// each with its own connection to the fleet's bucket: what the first spent
// on topic t counts against the second, which refuses t's next request at
// intake ("budget exceeded", an error result and a dead letter, no call),
// while another topic goes on.
func TestTopicBudgetIsSharedByTheFleet(t *testing.T) {
	t.Parallel()
	b := setup(t)
	budgets := func() *fleet.Budgets {
		_, js := jetstreamtest.Connect(t, b.ns)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		totals, err := fleet.Open(ctx, js, fleet.Config{})
		if err != nil {
			t.Fatal(err)
		}
		bg, err := fleet.OpenBudgets(totals, fleet.BudgetConfig{Limits: map[string]int64{"t": 1}})
		if err != nil {
			t.Fatal(err)
		}
		return bg
	}
	p, err := openai.New(openai.Config{APIKey: "test-key", BaseURL: b.fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	first := budgets()
	b.publish(t, req{subject: "ai.urgent.t", body: `{"id":"first","input":"a"}`})
	b.startWith(t, testConfig(), p, batch.WithBudget(first))
	got := b.waitResults(t, 1, 15*time.Second)
	if r := got["first"]; r.Status != wire.StatusOK || r.Usage.InputTokens+r.Usage.OutputTokens == 0 {
		t.Fatalf("first: %+v, want answered with usage", r.Result)
	}
	b.waitDrained(t, 10*time.Second)
	b.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if used, err := first.Used(ctx, "t", time.Now()); err != nil || used == 0 {
		t.Fatalf("topic t used %d (%v) in the bucket, want the first answer's usage", used, err)
	}

	b.publish(t,
		req{subject: "ai.urgent.t", body: `{"id":"second","input":"b"}`},
		req{subject: "ai.urgent.other", body: `{"id":"other","input":"c"}`},
	)
	b.startWith(t, testConfig(), p, batch.WithBudget(budgets()))
	got = b.waitResults(t, 3, 15*time.Second)
	if r := got["second"]; r.Status != wire.StatusError || !strings.Contains(r.Error, `budget exceeded: topic "t" has used`) {
		t.Errorf("second: status %q error %q, want refused for the budget", r.Status, r.Error)
	}
	if r := got["other"]; r.Status != wire.StatusOK {
		t.Errorf("other: %+v", r.Result)
	}
	b.waitDrained(t, 10*time.Second)
	dead := jetstreamtest.Messages(t, b.js, b.topo.DeadStream)
	if len(dead) != 1 || !strings.Contains(dead[0].Header.Get(wire.HeaderError), "budget exceeded") {
		t.Fatalf("%d dead letters, want 1 for the budget", len(dead))
	}
	if calls := b.fake.Calls(); calls != 2 {
		t.Errorf("%d provider calls, want 2 (first, other)", calls)
	}
}
