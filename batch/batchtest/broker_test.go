package batchtest_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/batch/batchtest"
	"github.com/aibatch/aibatch/wire"
)

const (
	reqSubject    = "ai.requests.t"
	urgentSubject = "ai.urgent.t"
	resultSubject = "ai.results.t"
	deadSubject   = "ai.dead.t"
)

func mustPublish(t *testing.T, b *batchtest.Broker, subject, body string, header map[string]string) uint64 {
	t.Helper()
	seq, err := b.PublishRequest(subject, []byte(body), header)
	if err != nil {
		t.Fatalf("PublishRequest(%s): %v", subject, err)
	}
	return seq
}

func mustFetch(t *testing.T, q batch.Queue, max int) []batch.Message {
	t.Helper()
	msgs, err := q.Fetch(t.Context(), max)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return msgs
}

func TestPublishRequestRefusesWhatNoStreamStores(t *testing.T) {
	t.Parallel()
	b := batchtest.NewBroker()
	for _, subject := range []string{"", "ai.requests.*", "ai.requests.>", "ai..requests", "ai.results.t", "other", "ai.requests.has space"} {
		if _, err := b.PublishRequest(subject, []byte("x"), nil); err == nil {
			t.Errorf("PublishRequest(%q) stored a request", subject)
		}
	}
	if n := b.Requests(); n != 0 {
		t.Errorf("request stream holds %d", n)
	}
}

func TestRequestDedupeWindowExpires(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := batchtest.NewBroker()
		id := map[string]string{wire.HeaderMsgID: "p-1"}
		first := mustPublish(t, b, reqSubject, "a", id)
		time.Sleep(batchtest.DefaultDedupeWindow - time.Second)
		if again := mustPublish(t, b, reqSubject, "a", id); again != first {
			t.Fatalf("repeat within the window stored as %d", again)
		}
		time.Sleep(time.Second)
		if later := mustPublish(t, b, reqSubject, "a", id); later == first {
			t.Fatal("repeat after the window was treated as a duplicate")
		}
		if n := b.Requests(); n != 2 {
			t.Fatalf("request stream holds %d, want 2", n)
		}
	})
}

func TestOutcomeDedupeWindowExpires(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := batchtest.NewBroker(batchtest.WithOutcomeDedupeWindow(time.Minute))
		pub := b.Publisher()
		msg := []batch.Outgoing{{Subject: resultSubject, MsgID: "result:x:1", Data: []byte("r")}}
		first := pub.Publish(t.Context(), msg)[0]
		time.Sleep(59 * time.Second)
		if a := pub.Publish(t.Context(), msg)[0]; !a.Duplicate || a.Sequence != first.Sequence {
			t.Fatalf("within the window: %+v", a)
		}
		time.Sleep(time.Second)
		if a := pub.Publish(t.Context(), msg)[0]; a.Duplicate || a.Sequence == first.Sequence {
			t.Fatalf("after the window: %+v", a)
		}
	})
}

func TestStoredMessagesCanBeReadBack(t *testing.T) {
	t.Parallel()
	b := batchtest.NewBroker()
	acks := b.Publisher().Publish(t.Context(), []batch.Outgoing{
		{Subject: resultSubject, MsgID: "result:s:1", Header: []batch.HeaderField{{Name: wire.HeaderStreamSeq, Value: "1"}}, Data: []byte("result")},
		{Subject: deadSubject, MsgID: "dead:s:1", Header: []batch.HeaderField{{Name: wire.HeaderError, Value: "bad"}}, Data: []byte("dead")},
		{Subject: "_INBOX.abc", MsgID: "result:s:2", Header: []batch.HeaderField{{Name: wire.HeaderStreamSeq, Value: "2"}}, Data: []byte("inbox")},
	})
	for i, a := range acks {
		if a.Err != nil {
			t.Fatalf("ack %d: %v", i, a.Err)
		}
	}
	results, dead, plain := b.Results(), b.DeadLetters(), b.Plain()
	if len(results) != 1 || len(dead) != 1 || len(plain) != 1 {
		t.Fatalf("stored %d results, %d dead letters, %d plain", len(results), len(dead), len(plain))
	}
	r := results[0]
	if r.Subject != resultSubject || r.MsgID != "result:s:1" || r.Seq != 1 || string(r.Data) != "result" ||
		r.Header[wire.HeaderMsgID] != "result:s:1" || r.Header[wire.HeaderStreamSeq] != "1" {
		t.Errorf("result %+v", r)
	}
	if d := dead[0]; d.Seq != 1 || d.Header[wire.HeaderError] != "bad" || d.Header[wire.HeaderMsgID] != "dead:s:1" {
		t.Errorf("dead letter %+v", d)
	}
	// A plain publish carries its Nats-Msg-Id too, as the JetStream
	// adapter's does, so a subscriber on an inbox can de-duplicate on it.
	if p := plain[0]; p.Seq != 0 || p.Subject != "_INBOX.abc" || string(p.Data) != "inbox" || p.Header[wire.HeaderMsgID] != "result:s:2" {
		t.Errorf("plain message %+v: want sequence 0 and Nats-Msg-Id result:s:2", p)
	}
	// The readers return copies.
	results[0].Data[0] = 'X'
	results[0].Header["k"] = "v"
	if again := b.Results()[0]; string(again.Data) != "result" || again.Header["k"] != "" {
		t.Errorf("changing what Results returned changed the stream: %+v", again)
	}
}

func TestPlainPublishToARequestSubjectLandsInTheStream(t *testing.T) {
	t.Parallel()
	b := batchtest.NewBroker()
	a := b.Publisher().Publish(t.Context(), []batch.Outgoing{{Subject: reqSubject, Data: []byte("loop")}})[0]
	if a.Err != nil || a.Sequence != 0 {
		t.Fatalf("ack %+v", a)
	}
	if n := b.Requests(); n != 1 {
		t.Fatalf("request stream holds %d, want the plain publish stored", n)
	}
}

func TestPublishWithEndedContextStoresButReportsIt(t *testing.T) {
	t.Parallel()
	b := batchtest.NewBroker()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	a := b.Publisher().Publish(ctx, []batch.Outgoing{{Subject: resultSubject, MsgID: "m", Data: []byte("r")}})[0]
	if !errors.Is(a.Err, context.Canceled) {
		t.Fatalf("ack %+v, want the context's error", a)
	}
	if n := len(b.Results()); n != 1 {
		t.Fatalf("stored %d results, want the message stored anyway", n)
	}
}

func TestQueueWithTheSameFiltersIsTheSameConsumer(t *testing.T) {
	t.Parallel()
	b := batchtest.NewBroker()
	mustPublish(t, b, reqSubject, "a", nil)
	q1 := b.Queue(wire.RequestSubjects)
	q2 := b.Queue(wire.RequestSubjects)
	if got := mustFetch(t, q1, 10); len(got) != 1 {
		t.Fatalf("first handle fetched %d", len(got))
	}
	if got := mustFetch(t, q2, 10); len(got) != 0 {
		t.Fatalf("second handle on the same consumer fetched %d again", len(got))
	}
	if bl, _ := q2.Backlog(t.Context()); bl.AckPending != 1 {
		t.Fatalf("second handle's backlog %+v", bl)
	}
}

func TestQueueRefusesBadFilters(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		filters []string
	}{
		{"none", nil},
		{"invalid", []string{"ai.>.x"}},
		{"outside the stream", []string{"ai.results.>"}},
		{"overlapping another consumer", []string{"ai.requests.t"}},
		{"overlapping through a wildcard", []string{"ai.*.t"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := batchtest.NewBroker()
			b.Queue(wire.RequestSubjects)
			defer func() {
				if recover() == nil {
					t.Errorf("Queue(%v) did not panic", tt.filters)
				}
			}()
			b.Queue(tt.filters...)
		})
	}
}

func TestNewBrokerRefusesBadOptions(t *testing.T) {
	t.Parallel()
	for name, opt := range map[string]batchtest.Option{
		"zero ack wait":    batchtest.WithAckWait(0),
		"no stream name":   batchtest.WithResultStream("", "x.>"),
		"no subjects":      batchtest.WithDeadStream("D"),
		"invalid subjects": batchtest.WithRequestStream("R", "a.>.b"),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Error("NewBroker did not panic")
				}
			}()
			batchtest.NewBroker(opt)
		})
	}
}

func TestCustomStreams(t *testing.T) {
	t.Parallel()
	b := batchtest.NewBroker(
		batchtest.WithRequestStream("REQ", "jobs.>"),
		batchtest.WithResultStream("RES", "answers.>"),
		batchtest.WithDeadStream("DLQ", "failed.>"),
	)
	mustPublish(t, b, "jobs.a", "x", nil)
	msgs := mustFetch(t, b.Queue("jobs.>"), 1)
	if len(msgs) != 1 || msgs[0].Delivery().Stream != "REQ" {
		t.Fatalf("fetched %d from stream %q", len(msgs), msgs[0].Delivery().Stream)
	}
	acks := b.Publisher().Publish(t.Context(), []batch.Outgoing{
		{Subject: "answers.a", MsgID: "1"}, {Subject: "failed.a", MsgID: "1"}, {Subject: resultSubject, MsgID: "1"},
	})
	if acks[0].Sequence != 1 || acks[1].Sequence != 1 || acks[2].Sequence != 0 {
		t.Fatalf("acks %+v: want the custom streams to capture, the default subjects not", acks)
	}
}

func TestWaitEndsEmptyHandedAfterWaitSlice(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		q := batchtest.NewBroker().Queue(wire.UrgentSubjects)
		start := time.Now()
		msgs, err := q.Wait(t.Context(), 10)
		if err != nil || len(msgs) != 0 || time.Since(start) != batchtest.WaitSlice {
			t.Fatalf("Wait: %d messages, %v after %s; want nothing after %s", len(msgs), err, time.Since(start), batchtest.WaitSlice)
		}
	})
}

func TestDeliveriesCountsEveryDelivery(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := batchtest.NewBroker()
		q := b.Queue(wire.RequestSubjects)
		seq := mustPublish(t, b, reqSubject, "x", nil)
		if n := b.Deliveries(seq); n != 0 {
			t.Fatalf("Deliveries before any = %d", n)
		}
		m := mustFetch(t, q, 1)[0]
		if err := m.Nak(0); err != nil {
			t.Fatal(err)
		}
		if m = mustFetch(t, q, 1)[0]; m.Delivery().NumDelivered != 2 {
			t.Fatalf("after a Nak: delivery %d, want 2", m.Delivery().NumDelivered)
		}
		time.Sleep(b.AckWait())
		m = mustFetch(t, q, 1)[0]
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
		if n, nd := b.Deliveries(seq), m.Delivery().NumDelivered; n != 3 || nd != 3 {
			t.Fatalf("Deliveries = %d, NumDelivered = %d, want 3 after the request was removed", n, nd)
		}
	})
}

// TestInjectedFaults checks each fault does what its doc says, once per
// injection.
func TestInjectedFaults(t *testing.T) {
	t.Parallel()
	publishOne := func(t *testing.T, b *batchtest.Broker) batch.PublishAck {
		return b.Publisher().Publish(t.Context(), []batch.Outgoing{{Subject: resultSubject, MsgID: "result:f:1", Data: []byte("r")}})[0]
	}
	deliver := func(t *testing.T, b *batchtest.Broker) (batch.Queue, batch.Message) {
		q := b.Queue(wire.RequestSubjects)
		mustPublish(t, b, reqSubject, "x", nil)
		return q, mustFetch(t, q, 1)[0]
	}
	tests := []struct {
		fault batchtest.Fault
		check func(t *testing.T, b *batchtest.Broker)
	}{
		{batchtest.RejectPublish, func(t *testing.T, b *batchtest.Broker) {
			if a := publishOne(t, b); !errors.Is(a.Err, batchtest.ErrInjected) || len(b.Results()) != 0 {
				t.Fatalf("ack %+v with %d stored, want an error and nothing stored", a, len(b.Results()))
			}
			if a := publishOne(t, b); a.Err != nil || a.Duplicate {
				t.Fatalf("next publish: %+v", a)
			}
		}},
		{batchtest.LosePubAck, func(t *testing.T, b *batchtest.Broker) {
			if a := publishOne(t, b); !errors.Is(a.Err, batchtest.ErrInjected) || len(b.Results()) != 1 {
				t.Fatalf("ack %+v with %d stored, want an error and the message stored", a, len(b.Results()))
			}
			if a := publishOne(t, b); a.Err != nil || !a.Duplicate || a.Sequence != 1 {
				t.Fatalf("the retry: %+v, want a duplicate of 1", a)
			}
		}},
		{batchtest.LoseAck, func(t *testing.T, b *batchtest.Broker) {
			q, m := deliver(t, b)
			if err := m.Ack(); err != nil {
				t.Fatalf("lost Ack returned %v", err)
			}
			if err := m.Ack(); err == nil {
				t.Fatal("a second Ack of the delivery whose ack was lost returned nil")
			}
			time.Sleep(b.AckWait())
			m = mustFetch(t, q, 1)[0]
			if m.Delivery().NumDelivered != 2 {
				t.Fatalf("redelivery %+v", m.Delivery())
			}
			if err := m.Ack(); err != nil || b.Requests() != 0 {
				t.Fatalf("Ack of the redelivery: %v, %d left", err, b.Requests())
			}
		}},
		{batchtest.FailAck, func(t *testing.T, b *batchtest.Broker) {
			_, m := deliver(t, b)
			if err := m.Ack(); !errors.Is(err, batchtest.ErrInjected) || b.Requests() != 1 {
				t.Fatalf("Ack: %v with %d left", err, b.Requests())
			}
			if err := m.Ack(); err != nil || b.Requests() != 0 {
				t.Fatalf("Ack again: %v with %d left, want it applied", err, b.Requests())
			}
		}},
		{batchtest.FailNak, func(t *testing.T, b *batchtest.Broker) {
			q, m := deliver(t, b)
			if err := m.Nak(0); !errors.Is(err, batchtest.ErrInjected) {
				t.Fatalf("Nak: %v", err)
			}
			if got := mustFetch(t, q, 1); len(got) != 0 {
				t.Fatal("redelivered at once after a failed Nak(0)")
			}
			time.Sleep(b.AckWait())
			if got := mustFetch(t, q, 1); len(got) != 1 {
				t.Fatal("not redelivered after AckWait")
			}
		}},
		{batchtest.FailInProgress, func(t *testing.T, b *batchtest.Broker) {
			q, m := deliver(t, b)
			time.Sleep(b.AckWait() / 2)
			if err := m.InProgress(); !errors.Is(err, batchtest.ErrInjected) {
				t.Fatalf("InProgress: %v", err)
			}
			time.Sleep(b.AckWait() / 2)
			if got := mustFetch(t, q, 1); len(got) != 1 {
				t.Fatal("a failed InProgress postponed the redelivery")
			}
		}},
		{batchtest.FailFetch, func(t *testing.T, b *batchtest.Broker) {
			b.Inject(batchtest.FailFetch, 1) // two in all: one for Fetch, one for Wait
			q := b.Queue(wire.RequestSubjects)
			mustPublish(t, b, reqSubject, "x", nil)
			if _, err := q.Fetch(t.Context(), 1); !errors.Is(err, batchtest.ErrInjected) {
				t.Fatalf("Fetch: %v", err)
			}
			if _, err := q.Wait(t.Context(), 1); !errors.Is(err, batchtest.ErrInjected) {
				t.Fatalf("Wait: %v", err)
			}
			if got := mustFetch(t, q, 1); len(got) != 1 || got[0].Delivery().NumDelivered != 1 {
				t.Fatal("the failed fetches delivered something")
			}
		}},
		{batchtest.FailBacklog, func(t *testing.T, b *batchtest.Broker) {
			q := b.Queue(wire.RequestSubjects)
			if _, err := q.Backlog(t.Context()); !errors.Is(err, batchtest.ErrInjected) {
				t.Fatalf("Backlog: %v", err)
			}
			if _, err := q.Backlog(t.Context()); err != nil {
				t.Fatalf("second Backlog: %v", err)
			}
		}},
		{batchtest.FailStoredResult, func(t *testing.T, b *batchtest.Broker) {
			a := publishOne(t, b)
			if _, err := b.Publisher().StoredResult(t.Context(), a.Sequence); !errors.Is(err, batchtest.ErrInjected) {
				t.Fatalf("StoredResult: %v", err)
			}
			if body, err := b.Publisher().StoredResult(t.Context(), a.Sequence); err != nil || string(body) != "r" {
				t.Fatalf("second StoredResult: %q, %v", body, err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.fault.String(), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				b := batchtest.NewBroker()
				b.Inject(tt.fault, 1)
				tt.check(t, b)
			})
		})
	}
}

func TestInjectZeroClears(t *testing.T) {
	t.Parallel()
	b := batchtest.NewBroker()
	q := b.Queue(wire.RequestSubjects)
	b.Inject(batchtest.FailBacklog, 3)
	b.Inject(batchtest.FailBacklog, 0)
	if _, err := q.Backlog(t.Context()); err != nil {
		t.Fatalf("Backlog after clearing: %v", err)
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "unknown") {
			t.Errorf("Inject of an unknown fault: %v", r)
		}
	}()
	b.Inject(batchtest.Fault(99), 1)
}
