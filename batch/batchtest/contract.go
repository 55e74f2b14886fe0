package batchtest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/wire"
)

// Harness is one broker implementation as RunBrokerContract drives it: both
// lanes of one request stream, the publisher of results and dead letters,
// and a producer's view of the request stream. Subjects are the wire
// package's defaults.
type Harness struct {
	// Batch is the batch lane's queue, over wire.RequestSubjects.
	Batch batch.Queue
	// Urgent is the urgent lane's queue, over wire.UrgentSubjects, in the
	// same stream.
	Urgent batch.Queue
	// Publisher stores results (wire.ResultSubjects) and dead letters
	// (wire.DeadSubjects) and sends anything else.
	Publisher batch.Publisher
	// Publish stores a request as a producer does and returns its stream
	// sequence; for a Nats-Msg-Id header repeated within the duplicate
	// window, the first request's sequence.
	Publish func(subject string, data []byte, header map[string]string) (uint64, error)
	// Requests returns how many requests the request stream holds.
	Requests func() int
	// Stream is the request stream's name, as Delivery.Stream reports it.
	Stream string
	// AckWait is the lanes' redelivery timer. The suite waits out a few of
	// them, so keep it short (a second) on a real server.
	AckWait time.Duration
}

func (h Harness) validate() error {
	switch {
	case h.Batch == nil || h.Urgent == nil || h.Publisher == nil:
		return errors.New("Harness.Batch, Harness.Urgent and Harness.Publisher are required")
	case h.Publish == nil || h.Requests == nil:
		return errors.New("Harness.Publish and Harness.Requests are required")
	case h.Stream == "":
		return errors.New("Harness.Stream is empty")
	case h.AckWait < 4*time.Millisecond:
		return fmt.Errorf("Harness.AckWait is %s, want at least 4ms", h.AckWait)
	}
	return nil
}

// RunBrokerContract checks, as parallel subtests, what the batch engine
// relies on in a broker: how Fetch and Wait deliver (order, limits, no
// waiting, blocking, cancellation), what a Delivery and Header report, that
// the two lanes see only their own subjects, what Backlog counts, and how
// Ack, Nak, InProgress and the ack wait decide redelivery; and that the
// Publisher stores captured subjects, de-duplicates by MsgID, reads results
// back and sends other subjects with sequence 0.
//
// Wait may return an empty slice and no error when its long poll ends
// without a request (the JetStream adapter's polls last 30s at most, and
// end a moment before the context's deadline); callers call it again. The
// suite allows that wherever it waits.
//
// newHarness is called once per subtest, with that subtest's t, and must
// return a fresh, empty broker; clean-up goes through t.Cleanup. Conditions
// are awaited with deadlines; the suite sleeps only to pace progress reports
// that it checks postpone a redelivery.
func RunBrokerContract(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Helper()
	runContract(t, newHarness, nil)
}

// runContract runs the suite; bubble, when set, runs each subtest's body
// (harness creation included), as synctest.Test does.
func runContract(t *testing.T, newHarness func(t *testing.T) Harness, bubble func(*testing.T, func(*testing.T))) {
	for _, c := range contracts() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			body := func(t *testing.T) {
				h := newHarness(t)
				if err := h.validate(); err != nil {
					t.Fatalf("batchtest: %v", err)
				}
				timeout := 10*time.Second + 4*h.AckWait
				// One deadline for the subtest's broker calls, well past
				// what its conditions may take.
				ctx, cancel := context.WithTimeout(t.Context(), 3*timeout)
				defer cancel()
				c.run(t, contractT{T: t, h: h, timeout: timeout, ctx: ctx})
			}
			if bubble != nil {
				bubble(t, body)
				return
			}
			body(t)
		})
	}
}

type contract struct {
	name string
	run  func(t *testing.T, c contractT)
}

func contracts() []contract {
	return []contract{
		{"FetchEmptyLane", testFetchEmpty},
		{"FetchOrderAndLimit", testFetchOrder},
		{"DeliveryFields", testDeliveryFields},
		{"Headers", testHeaders},
		{"LanesSeeOnlyTheirSubjects", testLanes},
		{"Backlog", testBacklog},
		{"AckRemoves", testAckRemoves},
		{"NoAckRedeliversAfterAckWait", testNoAckRedelivers},
		{"NakDelay", testNakDelay},
		{"NakWithoutDelay", testNakZero},
		{"InProgressPostponesRedelivery", testInProgress},
		{"WaitBlocksUntilPublish", testWaitPublish},
		{"WaitReturnsUpToMax", testWaitMax},
		{"WaitEndsWithContext", testWaitContext},
		{"RequestDeduplication", testRequestDedupe},
		{"PublisherStoresAndDeduplicates", testPublisher},
		{"PublisherSendsUncaptured", testPublisherPlain},
	}
}

// Subjects the suite publishes on.
const (
	contractRequest = wire.RequestPrefix + ".contract"
	contractUrgent  = wire.UrgentPrefix + ".contract"
	contractResult  = wire.ResultPrefix + ".contract"
	contractDead    = wire.DeadPrefix + ".contract"
	contractInbox   = "_INBOX.contract"
)

// clockSlack allows for a broker whose publish timestamps come from a clock
// read a moment apart from the test's.
const clockSlack = 50 * time.Millisecond

// contractT bundles a subtest's harness and the helpers its checks share.
type contractT struct {
	*testing.T
	h Harness
	// timeout bounds the wait for any one condition.
	timeout time.Duration
	// ctx bounds every broker call of the subtest.
	ctx context.Context
}

// publish stores a request and returns its sequence.
func (c contractT) publish(subject, body string, header map[string]string) uint64 {
	c.Helper()
	seq, err := c.h.Publish(subject, []byte(body), header)
	if err != nil {
		c.Fatalf("publish request to %s: %v", subject, err)
	}
	return seq
}

// eventually polls cond until it holds, failing the test at the deadline.
func (c contractT) eventually(what string, cond func() bool) {
	c.Helper()
	deadline := time.Now().Add(c.timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.Fatalf("not true after %s: %s", c.timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (c contractT) backlog(q batch.Queue) batch.Backlog {
	c.Helper()
	b, err := q.Backlog(c.ctx)
	if err != nil {
		c.Fatalf("Backlog: %v", err)
	}
	return b
}

// waitBacklog polls the lane's backlog until ok holds and returns it.
func (c contractT) waitBacklog(q batch.Queue, what string, ok func(batch.Backlog) bool) batch.Backlog {
	c.Helper()
	var b batch.Backlog
	c.eventually(what, func() bool {
		b = c.backlog(q)
		return ok(b)
	})
	return b
}

func (c contractT) fetch(q batch.Queue, max int) []batch.Message {
	c.Helper()
	msgs, err := q.Fetch(c.ctx, max)
	if err != nil {
		c.Fatalf("Fetch(%d): %v", max, err)
	}
	if len(msgs) > max {
		c.Fatalf("Fetch(%d) returned %d messages", max, len(msgs))
	}
	return msgs
}

// fetchN fetches until n messages arrived: a broker may store a request a
// moment before its consumer can deliver it.
func (c contractT) fetchN(q batch.Queue, n int) []batch.Message {
	c.Helper()
	var out []batch.Message
	c.eventually(fmt.Sprintf("%d messages fetched", n), func() bool {
		out = append(out, c.fetch(q, n-len(out))...)
		return len(out) == n
	})
	return out
}

// wait calls Wait until it returns something: a long poll may end
// empty-handed, and the caller calls again.
func (c contractT) wait(q batch.Queue, max int) []batch.Message {
	c.Helper()
	deadline := time.Now().Add(c.timeout)
	for {
		msgs, err := q.Wait(c.ctx, max)
		if err != nil {
			c.Fatalf("Wait(%d): %v", max, err)
		}
		if len(msgs) > max {
			c.Fatalf("Wait(%d) returned %d messages", max, len(msgs))
		}
		if len(msgs) > 0 {
			return msgs
		}
		if time.Now().After(deadline) {
			c.Fatalf("Wait(%d) returned nothing for %s", max, c.timeout)
		}
	}
}

func (c contractT) waitOne(q batch.Queue) batch.Message { return c.wait(q, 1)[0] }

// checkDelivery compares a message's subject, body, sequence and delivery
// count with what was published.
func (c contractT) checkDelivery(m batch.Message, subject, body string, seq, delivered uint64) {
	c.Helper()
	d := m.Delivery()
	if m.Subject() != subject || string(m.Data()) != body || d.StreamSeq != seq || d.NumDelivered != delivered {
		c.Fatalf("delivered %s %q seq %d (delivery %d), want %s %q seq %d (delivery %d)",
			m.Subject(), m.Data(), d.StreamSeq, d.NumDelivered, subject, body, seq, delivered)
	}
}

func (c contractT) ack(m batch.Message) {
	c.Helper()
	if err := m.Ack(); err != nil {
		c.Fatalf("Ack of request %d: %v", m.Delivery().StreamSeq, err)
	}
}

func (c contractT) waitRequests(n int) {
	c.Helper()
	c.eventually(fmt.Sprintf("request stream holds %d", n), func() bool { return c.h.Requests() == n })
}

func testFetchEmpty(t *testing.T, c contractT) {
	for name, q := range map[string]batch.Queue{"batch": c.h.Batch, "urgent": c.h.Urgent} {
		start := time.Now()
		if msgs := c.fetch(q, 10); len(msgs) != 0 {
			t.Errorf("%s lane: Fetch on an empty stream returned %d messages", name, len(msgs))
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s lane: Fetch on an empty stream took %s; it must not wait", name, d)
		}
		if b := c.backlog(q); b != (batch.Backlog{}) {
			t.Errorf("%s lane: Backlog of an empty stream = %+v, want the zero value", name, b)
		}
	}
	if n := c.h.Requests(); n != 0 {
		t.Errorf("a new request stream holds %d requests", n)
	}
}

func testFetchOrder(t *testing.T, c contractT) {
	var seqs []uint64
	for i := range 5 {
		seqs = append(seqs, c.publish(contractRequest, fmt.Sprintf("r%d", i), nil))
		if i > 0 && seqs[i] <= seqs[i-1] {
			t.Fatalf("stream sequences %v do not increase", seqs)
		}
	}
	c.waitBacklog(c.h.Batch, "5 requests pending", func(b batch.Backlog) bool { return b.Pending == 5 })
	first := c.fetch(c.h.Batch, 3)
	if len(first) != 3 {
		t.Fatalf("Fetch(3) with 5 available returned %d", len(first))
	}
	rest := c.fetch(c.h.Batch, 10)
	if len(rest) != 2 {
		t.Fatalf("Fetch(10) with 2 left returned %d", len(rest))
	}
	for i, m := range append(first, rest...) {
		c.checkDelivery(m, contractRequest, fmt.Sprintf("r%d", i), seqs[i], 1)
	}
	if more := c.fetch(c.h.Batch, 10); len(more) != 0 {
		t.Fatalf("Fetch after every request was delivered returned %d", len(more))
	}
}

func testDeliveryFields(t *testing.T, c contractT) {
	before := time.Now()
	seq := c.publish(contractRequest, "body", nil)
	after := time.Now()
	m := c.waitOne(c.h.Batch)
	c.checkDelivery(m, contractRequest, "body", seq, 1)
	d := m.Delivery()
	if d.Stream != c.h.Stream {
		t.Errorf("Delivery.Stream = %q, want %q", d.Stream, c.h.Stream)
	}
	if d.Published.Before(before.Add(-clockSlack)) || d.Published.After(after.Add(clockSlack)) {
		t.Errorf("Delivery.Published = %s, want between %s and %s", d.Published, before, after)
	}
	second := c.publish(contractRequest, "second", nil)
	if m2 := c.waitOne(c.h.Batch); m2.Delivery().StreamSeq != second || second <= seq {
		t.Errorf("second request delivered with sequence %d (published as %d), after %d", m2.Delivery().StreamSeq, second, seq)
	}
}

func testHeaders(t *testing.T, c contractT) {
	c.publish(contractRequest, "with", map[string]string{wire.HeaderReplyTo: contractResult + ".reply", "X-Contract": "v"})
	c.publish(contractRequest, "without", nil)
	msgs := c.fetchN(c.h.Batch, 2)
	with, without := msgs[0], msgs[1]
	for name, want := range map[string]string{
		wire.HeaderReplyTo: contractResult + ".reply",
		"X-Contract":       "v",
		"x-contract":       "", // names are case-sensitive, as in nats.go
		"Missing":          "",
	} {
		if got := with.Header(name); got != want {
			t.Errorf("Header(%q) = %q, want %q", name, got, want)
		}
	}
	if got := without.Header(wire.HeaderReplyTo); got != "" {
		t.Errorf("Header of a request published without headers = %q", got)
	}
}

func testLanes(t *testing.T, c contractT) {
	bseq := c.publish(contractRequest, "batch", nil)
	useq := c.publish(contractUrgent, "urgent", nil)
	c.waitBacklog(c.h.Batch, "batch lane has 1 pending", func(b batch.Backlog) bool { return b.Pending == 1 })
	c.waitBacklog(c.h.Urgent, "urgent lane has 1 pending", func(b batch.Backlog) bool { return b.Pending == 1 })
	bm := c.fetch(c.h.Batch, 10)
	if len(bm) != 1 {
		t.Fatalf("batch lane fetched %d, want 1", len(bm))
	}
	c.checkDelivery(bm[0], contractRequest, "batch", bseq, 1)
	um := c.fetch(c.h.Urgent, 10)
	if len(um) != 1 {
		t.Fatalf("urgent lane fetched %d, want 1", len(um))
	}
	c.checkDelivery(um[0], contractUrgent, "urgent", useq, 1)
	for name, q := range map[string]batch.Queue{"batch": c.h.Batch, "urgent": c.h.Urgent} {
		if b := c.backlog(q); b.Pending != 0 || b.AckPending != 1 {
			t.Errorf("%s lane backlog %+v, want 0 pending and 1 ack pending", name, b)
		}
	}
	c.ack(bm[0])
	c.waitBacklog(c.h.Batch, "batch lane settled", func(b batch.Backlog) bool { return b.AckPending == 0 })
	if b := c.backlog(c.h.Urgent); b.AckPending != 1 {
		t.Errorf("an ack on the batch lane changed the urgent lane: %+v", b)
	}
	c.ack(um[0])
	c.waitRequests(0)
}

func testBacklog(t *testing.T, c contractT) {
	for i := range 3 {
		c.publish(contractRequest, fmt.Sprintf("b%d", i), nil)
	}
	b := c.waitBacklog(c.h.Batch, "3 pending", func(b batch.Backlog) bool { return b.Pending == 3 })
	if b.AckPending != 0 || b.Oldest.IsZero() {
		t.Fatalf("backlog %+v, want no ack pending and an Oldest", b)
	}
	m1 := c.fetch(c.h.Batch, 1)[0]
	if !b.Oldest.Equal(m1.Delivery().Published) {
		t.Errorf("Oldest %s is not the first request's publish time %s", b.Oldest, m1.Delivery().Published)
	}
	b = c.waitBacklog(c.h.Batch, "2 pending, 1 ack pending", func(b batch.Backlog) bool { return b.Pending == 2 && b.AckPending == 1 })
	m2 := c.fetch(c.h.Batch, 1)[0]
	if !b.Oldest.Equal(m2.Delivery().Published) {
		t.Errorf("Oldest %s is not the oldest undelivered request's publish time %s", b.Oldest, m2.Delivery().Published)
	}
	// A request waiting out a Nak delay counts as ack pending.
	if err := m1.Nak(time.Hour); err != nil {
		t.Fatalf("Nak: %v", err)
	}
	c.waitBacklog(c.h.Batch, "1 pending, 2 ack pending", func(b batch.Backlog) bool { return b.Pending == 1 && b.AckPending == 2 })
	c.ack(m2)
	c.waitBacklog(c.h.Batch, "1 pending, 1 ack pending", func(b batch.Backlog) bool { return b.Pending == 1 && b.AckPending == 1 })
	m3 := c.fetch(c.h.Batch, 1)[0]
	c.ack(m3)
	b = c.waitBacklog(c.h.Batch, "0 pending, 1 ack pending", func(b batch.Backlog) bool { return b.Pending == 0 && b.AckPending == 1 })
	if !b.Oldest.IsZero() {
		t.Errorf("Oldest = %s with nothing pending, want zero", b.Oldest)
	}
	c.waitRequests(1)
}

func testAckRemoves(t *testing.T, c contractT) {
	c.publish(contractRequest, "acked", nil)
	m := c.waitOne(c.h.Batch)
	c.ack(m)
	c.waitRequests(0)
	c.waitBacklog(c.h.Batch, "nothing pending or ack pending", func(b batch.Backlog) bool { return b == batch.Backlog{} })
	// The stream is empty, so nothing can be redelivered.
	if msgs := c.fetch(c.h.Batch, 10); len(msgs) != 0 {
		t.Fatalf("Fetch after the Ack returned %d", len(msgs))
	}
	// nats.go refuses a second acknowledgement of one delivery.
	if err := m.Ack(); err == nil {
		t.Error("a second Ack of one delivery returned nil")
	}
	if err := m.Nak(0); err == nil {
		t.Error("a Nak after the Ack of one delivery returned nil")
	}
	if err := m.InProgress(); err == nil {
		t.Error("an InProgress after the Ack of one delivery returned nil")
	}
}

func testNoAckRedelivers(t *testing.T, c contractT) {
	seq := c.publish(contractRequest, "unacked", nil)
	start := time.Now()
	m1 := c.waitOne(c.h.Batch)
	m2 := c.waitOne(c.h.Batch)
	if d := time.Since(start); d < c.h.AckWait {
		t.Errorf("redelivered %s after the first delivery, before the AckWait of %s", d, c.h.AckWait)
	}
	c.checkDelivery(m2, contractRequest, "unacked", seq, 2)
	if !m2.Delivery().Published.Equal(m1.Delivery().Published) || m2.Delivery().Stream != m1.Delivery().Stream {
		t.Errorf("redelivery %+v does not describe the request of delivery %+v", m2.Delivery(), m1.Delivery())
	}
	if b := c.backlog(c.h.Batch); b.Pending != 0 || b.AckPending != 1 {
		t.Errorf("backlog while redelivered %+v, want 0 pending and 1 ack pending", b)
	}
	// An Ack of the earlier delivery removes the request; the later one's
	// acknowledgements then change nothing and do not fail.
	c.ack(m1)
	c.waitRequests(0)
	if err := m2.InProgress(); err != nil {
		t.Errorf("InProgress of a removed request's other delivery: %v", err)
	}
	if err := m2.Ack(); err != nil {
		t.Errorf("Ack of a removed request's other delivery: %v", err)
	}
	c.waitBacklog(c.h.Batch, "nothing ack pending", func(b batch.Backlog) bool { return b == batch.Backlog{} })
}

func testNakDelay(t *testing.T, c contractT) {
	seq := c.publish(contractRequest, "naked", nil)
	m := c.waitOne(c.h.Batch)
	short := c.h.AckWait / 4
	nakAt := time.Now()
	if err := m.Nak(short); err != nil {
		t.Fatalf("Nak(%s): %v", short, err)
	}
	if b := c.backlog(c.h.Batch); b.Pending != 0 || b.AckPending != 1 {
		t.Errorf("backlog after a Nak %+v, want 0 pending and 1 ack pending", b)
	}
	m = c.waitOne(c.h.Batch)
	if d := time.Since(nakAt); d < short || d >= c.h.AckWait {
		t.Errorf("redelivered %s after Nak(%s), want from %s and before the AckWait of %s", d, short, short, c.h.AckWait)
	}
	c.checkDelivery(m, contractRequest, "naked", seq, 2)

	// A delay longer than AckWait holds too.
	long := c.h.AckWait * 3 / 2
	nakAt = time.Now()
	if err := m.Nak(long); err != nil {
		t.Fatalf("Nak(%s): %v", long, err)
	}
	m = c.waitOne(c.h.Batch)
	if d := time.Since(nakAt); d < long {
		t.Errorf("redelivered %s after Nak(%s)", d, long)
	}
	c.checkDelivery(m, contractRequest, "naked", seq, 3)
	c.ack(m)
	c.waitRequests(0)
}

func testNakZero(t *testing.T, c contractT) {
	seq := c.publish(contractRequest, "handed back", nil)
	m := c.waitOne(c.h.Batch)
	nakAt := time.Now()
	if err := m.Nak(0); err != nil {
		t.Fatalf("Nak(0): %v", err)
	}
	m = c.waitOne(c.h.Batch)
	if d := time.Since(nakAt); d >= c.h.AckWait {
		t.Errorf("redelivered %s after Nak(0), want at once, well before the AckWait of %s", d, c.h.AckWait)
	}
	c.checkDelivery(m, contractRequest, "handed back", seq, 2)
}

func testInProgress(t *testing.T, c contractT) {
	seq := c.publish(contractRequest, "slow", nil)
	m := c.waitOne(c.h.Batch)
	// Report progress every third of AckWait for longer than AckWait: the
	// sleeps pace the reports under test, they do not wait for an outcome.
	var last time.Time
	for range 4 {
		time.Sleep(c.h.AckWait / 3)
		last = time.Now()
		if err := m.InProgress(); err != nil {
			t.Fatalf("InProgress: %v", err)
		}
	}
	// Without the reports the request would have been deliverable for a
	// while by now.
	if msgs := c.fetch(c.h.Batch, 10); len(msgs) != 0 {
		t.Fatalf("redelivered while progress was reported (delivery %d)", msgs[0].Delivery().NumDelivered)
	}
	m = c.waitOne(c.h.Batch)
	if d := time.Since(last); d < c.h.AckWait {
		t.Errorf("redelivered %s after the last InProgress, before the AckWait of %s", d, c.h.AckWait)
	}
	c.checkDelivery(m, contractRequest, "slow", seq, 2)
}

func testWaitPublish(t *testing.T, c contractT) {
	type result struct {
		msgs []batch.Message
		err  error
	}
	got := make(chan result, 1)
	ctx := c.ctx
	go func() {
		for {
			msgs, err := c.h.Urgent.Wait(ctx, 10)
			if err != nil || len(msgs) > 0 {
				got <- result{msgs, err}
				return
			}
		}
	}()
	seq := c.publish(contractUrgent, "urgent", nil)
	r := <-got
	if r.err != nil || len(r.msgs) != 1 {
		t.Fatalf("Wait returned %d messages, error %v; want the request published while it waited", len(r.msgs), r.err)
	}
	c.checkDelivery(r.msgs[0], contractUrgent, "urgent", seq, 1)
}

func testWaitMax(t *testing.T, c contractT) {
	var seqs []uint64
	for i := range 5 {
		seqs = append(seqs, c.publish(contractRequest, fmt.Sprintf("w%d", i), nil))
	}
	c.waitBacklog(c.h.Batch, "5 pending", func(b batch.Backlog) bool { return b.Pending == 5 })
	first := c.wait(c.h.Batch, 3)
	if len(first) != 3 {
		t.Fatalf("Wait(3) with 5 available returned %d", len(first))
	}
	rest := c.wait(c.h.Batch, 10)
	if len(rest) != 2 {
		t.Fatalf("Wait(10) with 2 available returned %d", len(rest))
	}
	for i, m := range append(first, rest...) {
		c.checkDelivery(m, contractRequest, fmt.Sprintf("w%d", i), seqs[i], 1)
	}
}

func testWaitContext(t *testing.T, c contractT) {
	// Cancelled while waiting.
	ctx, cancel := context.WithCancel(c.Context())
	done := make(chan error, 1)
	go func() {
		msgs, err := c.h.Batch.Wait(ctx, 10)
		if len(msgs) != 0 {
			err = fmt.Errorf("returned %d messages from an empty lane (error %v)", len(msgs), err)
		}
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Wait cancelled: %v, want context.Canceled", err)
	}

	// Past its deadline. A long poll may end empty-handed before the
	// deadline (the JetStream adapter's does, as the server gives up a
	// moment early); the caller then calls again.
	wait := c.h.AckWait / 4
	ctx, cancel = context.WithTimeout(c.Context(), wait)
	defer cancel()
	var err error
	for polls := 0; err == nil; polls++ {
		var msgs []batch.Message
		msgs, err = c.h.Batch.Wait(ctx, 10)
		if len(msgs) != 0 {
			t.Fatalf("Wait on an empty lane returned %d messages", len(msgs))
		}
		if err == nil && polls == 1000 {
			t.Fatal("Wait keeps returning nothing and no error after its deadline")
		}
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait past its deadline: %v, want context.DeadlineExceeded", err)
	}
	if deadline, _ := ctx.Deadline(); time.Now().Before(deadline) {
		t.Errorf("Wait returned the deadline's error %s before the deadline", deadline.Sub(time.Now()))
	}

	// Cancelled before it was called, with a request available.
	c.publish(contractRequest, "available", nil)
	c.waitBacklog(c.h.Batch, "1 pending", func(b batch.Backlog) bool { return b.Pending == 1 })
	ctx, cancel = context.WithCancel(c.Context())
	cancel()
	if msgs, err := c.h.Batch.Wait(ctx, 10); err == nil || len(msgs) != 0 {
		t.Errorf("Wait with an ended context: %d messages, error %v", len(msgs), err)
	}
	if msgs, err := c.h.Batch.Fetch(ctx, 10); err == nil || len(msgs) != 0 {
		t.Errorf("Fetch with an ended context: %d messages, error %v", len(msgs), err)
	}
}

func testRequestDedupe(t *testing.T, c contractT) {
	first := c.publish(contractRequest, "first", map[string]string{wire.HeaderMsgID: "contract-1"})
	again := c.publish(contractRequest, "again", map[string]string{wire.HeaderMsgID: "contract-1"})
	if again != first {
		t.Errorf("a repeated Nats-Msg-Id got sequence %d, want the first's %d", again, first)
	}
	other := c.publish(contractRequest, "other", map[string]string{wire.HeaderMsgID: "contract-2"})
	if other <= first {
		t.Errorf("a new Nats-Msg-Id got sequence %d, want more than %d", other, first)
	}
	c.waitBacklog(c.h.Batch, "2 pending", func(b batch.Backlog) bool { return b.Pending == 2 })
	msgs := c.fetchN(c.h.Batch, 2)
	c.checkDelivery(msgs[0], contractRequest, "first", first, 1)
	c.checkDelivery(msgs[1], contractRequest, "other", other, 1)
	if id := msgs[0].Header(wire.HeaderMsgID); id != "contract-1" {
		t.Errorf("Header(%q) = %q, want the producer's id", wire.HeaderMsgID, id)
	}
	if n := c.h.Requests(); n != 2 {
		t.Errorf("request stream holds %d, want 2", n)
	}
}

func testPublisher(t *testing.T, c contractT) {
	ctx := c.ctx
	acks := c.h.Publisher.Publish(ctx, []batch.Outgoing{
		{Subject: contractResult, MsgID: "result:contract:1", Header: []batch.HeaderField{{Name: wire.HeaderStreamSeq, Value: "1"}}, Data: []byte(`{"id":"one"}`)},
		{Subject: contractDead, MsgID: "dead:contract:1", Data: []byte("dead one")},
		{Subject: contractResult, MsgID: "result:contract:2", Data: []byte(`{"id":"two"}`)},
	})
	if len(acks) != 3 {
		t.Fatalf("Publish of 3 returned %d acks", len(acks))
	}
	for i, a := range acks {
		if a.Err != nil || a.Duplicate || a.Sequence == 0 {
			t.Fatalf("ack %d = %+v, want a new stored message", i, a)
		}
	}
	if acks[2].Sequence <= acks[0].Sequence {
		t.Errorf("result sequences %d then %d do not increase", acks[0].Sequence, acks[2].Sequence)
	}

	dups := c.h.Publisher.Publish(ctx, []batch.Outgoing{
		{Subject: contractResult, MsgID: "result:contract:1", Data: []byte(`{"id":"one","again":true}`)},
		{Subject: contractDead, MsgID: "dead:contract:1", Data: []byte("dead again")},
	})
	for i, want := range []uint64{acks[0].Sequence, acks[1].Sequence} {
		if a := dups[i]; a.Err != nil || !a.Duplicate || a.Sequence != want {
			t.Errorf("repeated MsgID %d: ack %+v, want a duplicate of sequence %d", i, a, want)
		}
	}
	for seq, want := range map[uint64]string{acks[0].Sequence: `{"id":"one"}`, acks[2].Sequence: `{"id":"two"}`} {
		body, err := c.h.Publisher.StoredResult(ctx, seq)
		if err != nil || string(body) != want {
			t.Errorf("StoredResult(%d) = %q, %v; want the first message stored, %q", seq, body, err, want)
		}
	}
	if _, err := c.h.Publisher.StoredResult(ctx, acks[2].Sequence+100); err == nil {
		t.Error("StoredResult of a sequence never stored returned no error")
	}

	// Each stream de-duplicates on its own; an empty MsgID is never a
	// duplicate.
	more := c.h.Publisher.Publish(ctx, []batch.Outgoing{
		{Subject: contractDead, MsgID: "result:contract:2", Data: []byte("same id, other stream")},
		{Subject: contractResult, Data: []byte("no id")},
		{Subject: contractResult, Data: []byte("no id")},
	})
	for i, a := range more {
		if a.Err != nil || a.Duplicate || a.Sequence == 0 {
			t.Errorf("ack %d = %+v, want a new stored message", i, a)
		}
	}
	if more[1].Sequence == more[2].Sequence {
		t.Errorf("two messages without MsgID share sequence %d", more[1].Sequence)
	}
}

func testPublisherPlain(t *testing.T, c contractT) {
	acks := c.h.Publisher.Publish(c.ctx, []batch.Outgoing{
		{Subject: contractInbox, MsgID: "result:contract:9", Data: []byte(`{"id":"inbox"}`)},
		{Subject: contractInbox, MsgID: "result:contract:9", Data: []byte(`{"id":"inbox"}`)},
	})
	for i, a := range acks {
		if a.Err != nil || a.Duplicate || a.Sequence != 0 {
			t.Errorf("ack %d of a subject no stream captures = %+v, want sent with sequence 0", i, a)
		}
	}
}
