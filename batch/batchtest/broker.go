package batchtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/wire"
)

// Broker is an in-memory stand-in for the JetStream topology aibatch runs on
// (jetstream.Ensure): a request stream with WorkQueue retention read by
// durable pull consumers (Queue), and the result and dead-letter streams
// written through a Publisher. It is safe for concurrent use.
//
// It keeps JetStream's rules where the engine relies on them:
//
//   - Requests get increasing stream sequences and their publish time.
//     A request whose Nats-Msg-Id header repeats one published within the
//     duplicate window (default 2m) is not stored again.
//   - A consumer delivers the requests its filters match in stream order:
//     redeliveries that are due, then requests never delivered. Every
//     delivery counts in NumDelivered.
//   - A delivered request that is not acked becomes deliverable again
//     AckWait after its last delivery or its last InProgress; Nak(delay)
//     makes it deliverable after delay (at once for 0).
//   - Ack, from any delivery of the request, removes it from the stream.
//     Ack, Nak and InProgress are fire-and-forget, as with nats.go: they
//     return an error only when this delivery was already acked or naked
//     (or a Fault says so), and are ignored once the request is gone.
//   - Results and dead letters are stored with their Nats-Msg-Id; a repeat
//     within the duplicate window (default 1h) is answered as a duplicate
//     naming the first message's sequence. Subjects neither stream captures
//     are only sent, with sequence 0.
//
// Create a Broker with NewBroker, inside the synctest bubble that uses it.
type Broker struct {
	cfg config

	mu sync.Mutex
	// changed is closed and replaced whenever a request may have become
	// deliverable, waking Queue.Wait.
	changed    chan struct{}
	reqs       []*request // the request stream, in stream order
	lastSeq    uint64
	reqIDs     dedupe
	consumers  []*consumer
	deliveries map[uint64]int
	results    outStream
	dead       outStream
	plain      []Stored
	faults     map[Fault]int
}

// Option configures a Broker.
type Option func(*config)

type config struct {
	ackWait             time.Duration
	requestStream       string
	requestSubjects     []string
	resultStream        string
	resultSubjects      []string
	deadStream          string
	deadSubjects        []string
	dedupeWindow        time.Duration
	outcomeDedupeWindow time.Duration
}

// Defaults of a Broker's settings; its stream names and subjects default to
// the wire package's.
const (
	DefaultAckWait             = 30 * time.Second
	DefaultDedupeWindow        = 2 * time.Minute
	DefaultOutcomeDedupeWindow = time.Hour
)

// WithAckWait sets how long a delivered request may go without an ack, a
// Nak or a progress report before it is delivered again. Default 30s; give
// the engine the same value as batch.Config.AckWait.
func WithAckWait(d time.Duration) Option { return func(c *config) { c.ackWait = d } }

// WithRequestStream names the request stream and the subjects it stores.
// Default wire.RequestStream on wire.RequestSubjects and wire.UrgentSubjects.
func WithRequestStream(name string, subjects ...string) Option {
	return func(c *config) { c.requestStream, c.requestSubjects = name, subjects }
}

// WithResultStream names the result stream and the subjects it captures.
// Default wire.ResultStream on wire.ResultSubjects.
func WithResultStream(name string, subjects ...string) Option {
	return func(c *config) { c.resultStream, c.resultSubjects = name, subjects }
}

// WithDeadStream names the dead-letter stream and the subjects it captures.
// Default wire.DeadStream on wire.DeadSubjects.
func WithDeadStream(name string, subjects ...string) Option {
	return func(c *config) { c.deadStream, c.deadSubjects = name, subjects }
}

// WithDedupeWindow sets the request stream's duplicate window for
// producers' Nats-Msg-Id; 0 or less turns de-duplication off. Default 2m.
func WithDedupeWindow(d time.Duration) Option { return func(c *config) { c.dedupeWindow = d } }

// WithOutcomeDedupeWindow sets the duplicate window of the result and
// dead-letter streams; 0 or less turns de-duplication off. Default 1h.
func WithOutcomeDedupeWindow(d time.Duration) Option {
	return func(c *config) { c.outcomeDedupeWindow = d }
}

// NewBroker returns an empty Broker. It panics when an option gives an
// AckWait of 0 or less, an empty stream name or an invalid subject filter:
// those are mistakes in the test, not conditions to handle.
func NewBroker(opts ...Option) *Broker {
	c := config{
		ackWait:             DefaultAckWait,
		requestStream:       wire.RequestStream,
		requestSubjects:     []string{wire.RequestSubjects, wire.UrgentSubjects},
		resultStream:        wire.ResultStream,
		resultSubjects:      []string{wire.ResultSubjects},
		deadStream:          wire.DeadStream,
		deadSubjects:        []string{wire.DeadSubjects},
		dedupeWindow:        DefaultDedupeWindow,
		outcomeDedupeWindow: DefaultOutcomeDedupeWindow,
	}
	for _, o := range opts {
		o(&c)
	}
	if c.ackWait <= 0 {
		panic(fmt.Sprintf("batchtest: AckWait is %s, want more than 0", c.ackWait))
	}
	for _, s := range []struct {
		name     string
		subjects []string
	}{{c.requestStream, c.requestSubjects}, {c.resultStream, c.resultSubjects}, {c.deadStream, c.deadSubjects}} {
		if s.name == "" || len(s.subjects) == 0 {
			panic("batchtest: every stream needs a name and at least one subject")
		}
		for _, f := range s.subjects {
			if !validSubject(f, true) {
				panic(fmt.Sprintf("batchtest: stream %s: %q is not a valid subject filter", s.name, f))
			}
		}
	}
	return &Broker{
		cfg:        c,
		changed:    make(chan struct{}),
		reqIDs:     newDedupe(c.dedupeWindow),
		deliveries: make(map[uint64]int),
		results:    outStream{name: c.resultStream, subjects: c.resultSubjects, ids: newDedupe(c.outcomeDedupeWindow)},
		dead:       outStream{name: c.deadStream, subjects: c.deadSubjects, ids: newDedupe(c.outcomeDedupeWindow)},
		faults:     make(map[Fault]int),
	}
}

// AckWait is the redelivery timer the Broker's consumers use.
func (b *Broker) AckWait() time.Duration { return b.cfg.ackWait }

// request is one message in the request stream.
type request struct {
	seq       uint64
	subject   string
	data      []byte
	header    map[string]string
	published time.Time
	// owner is the consumer whose filters match the subject, if any.
	owner *consumer

	// delivered counts deliveries so far.
	delivered uint64
	// ready marks a delivered request as deliverable again at once (a Nak
	// without delay, like JetStream's redelivery queue).
	ready bool
	// due is when a delivered request that is not ready becomes
	// deliverable again.
	due     time.Time
	removed bool
}

// deliverable reports whether r may be delivered at now.
func (r *request) deliverable(now time.Time) bool {
	return r.delivered == 0 || r.ready || !now.Before(r.due)
}

// PublishRequest stores a request as a producer's JetStream publish would,
// and returns its stream sequence. A header's Nats-Msg-Id that repeats one
// stored within the duplicate window stores nothing and returns the first
// request's sequence (JetStream's PubAck says Duplicate). It fails for a
// subject that is not a valid literal subject or that the request stream
// does not store.
func (b *Broker) PublishRequest(subject string, data []byte, header map[string]string) (uint64, error) {
	if !validSubject(subject, false) {
		return 0, fmt.Errorf("batchtest: publish request: %q is not a valid subject", subject)
	}
	if !matchesAny(subject, b.cfg.requestSubjects) {
		return 0, fmt.Errorf("batchtest: publish request: no stream stores subject %q", subject)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	id := header[wire.HeaderMsgID]
	if seq, dup := b.reqIDs.lookup(id, now); dup {
		return seq, nil
	}
	seq := b.storeRequestLocked(subject, data, header, now)
	b.reqIDs.add(id, seq, now)
	return seq, nil
}

func (b *Broker) storeRequestLocked(subject string, data []byte, header map[string]string, now time.Time) uint64 {
	b.lastSeq++
	r := &request{
		seq:       b.lastSeq,
		subject:   subject,
		data:      bytes.Clone(data),
		header:    maps.Clone(header),
		published: now,
	}
	for _, c := range b.consumers {
		if c.matches(subject) {
			r.owner = c
			break
		}
	}
	b.reqs = append(b.reqs, r)
	b.notifyLocked()
	return r.seq
}

// notifyLocked wakes every Wait.
func (b *Broker) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// removeLocked takes r out of the request stream.
func (b *Broker) removeLocked(r *request) {
	if r.removed {
		return
	}
	r.removed = true
	i := sort.Search(len(b.reqs), func(i int) bool { return b.reqs[i].seq >= r.seq })
	if i < len(b.reqs) && b.reqs[i] == r {
		b.reqs = slices.Delete(b.reqs, i, i+1)
	}
}

// Requests returns how many requests the request stream holds: published
// and not yet acked.
func (b *Broker) Requests() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.reqs)
}

// Deliveries returns how many times the request at seq was delivered so far,
// whether it is still in the stream or not.
func (b *Broker) Deliveries(seq uint64) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.deliveries[seq]
}

// Queue returns the durable pull consumer that reads the requests matching
// filters, as a batch.Queue: the batch lane is Queue(wire.RequestSubjects),
// the urgent lane Queue(wire.UrgentSubjects). Calling it again with the same
// filters returns the same consumer, as a restarted worker finds its durable
// consumer, so two engines given equal queues share their requests.
//
// As on a WorkQueue stream, consumers may not overlap: Queue panics when a
// filter collides with another consumer's, when it is not a valid filter, or
// when the request stream does not store what it matches.
func (b *Broker) Queue(filters ...string) batch.Queue {
	if len(filters) == 0 {
		panic("batchtest: Queue needs at least one subject filter")
	}
	for _, f := range filters {
		if !validSubject(f, true) {
			panic(fmt.Sprintf("batchtest: Queue: %q is not a valid subject filter", f))
		}
		within := false
		for _, s := range b.cfg.requestSubjects {
			within = within || filterWithin(f, s)
		}
		if !within {
			panic(fmt.Sprintf("batchtest: Queue: filter %q is not within the request stream's subjects %v", f, b.cfg.requestSubjects))
		}
	}
	sorted := slices.Clone(filters)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.consumers {
		if slices.Equal(c.filters, sorted) {
			return &queue{b: b, c: c}
		}
		for _, f := range sorted {
			for _, g := range c.filters {
				if filtersCollide(f, g) {
					panic(fmt.Sprintf("batchtest: Queue: filter %q overlaps %q of another consumer on a WorkQueue stream", f, g))
				}
			}
		}
	}
	c := &consumer{filters: sorted}
	b.consumers = append(b.consumers, c)
	for _, r := range b.reqs {
		if r.owner == nil && c.matches(r.subject) {
			r.owner = c
		}
	}
	return &queue{b: b, c: c}
}

// consumer is one durable consumer's identity; its state lives in the
// requests it owns.
type consumer struct {
	filters []string
}

func (c *consumer) matches(subject string) bool { return matchesAny(subject, c.filters) }

// queue is a handle on a consumer. It implements batch.Queue.
type queue struct {
	b *Broker
	c *consumer
}

var _ batch.Queue = (*queue)(nil)

// Backlog counts the consumer's never-delivered requests (Pending, with the
// publish time of the oldest) and its delivered, unacked ones (AckPending,
// including those waiting out a Nak delay).
func (q *queue) Backlog(ctx context.Context) (batch.Backlog, error) {
	if err := ctx.Err(); err != nil {
		return batch.Backlog{}, err
	}
	b := q.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.faultLocked(FailBacklog); err != nil {
		return batch.Backlog{}, err
	}
	var bl batch.Backlog
	for _, r := range b.reqs {
		if r.owner != q.c {
			continue
		}
		if r.delivered > 0 {
			bl.AckPending++
			continue
		}
		if bl.Pending == 0 {
			bl.Oldest = r.published
		}
		bl.Pending++
	}
	return bl, nil
}

// Fetch delivers up to max requests that are deliverable now, in stream
// order, without waiting; it returns an empty slice when there are none.
func (q *queue) Fetch(ctx context.Context, max int) ([]batch.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if max < 1 {
		return nil, fmt.Errorf("batchtest: fetch of %d requests, want 1 or more", max)
	}
	b := q.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.faultLocked(FailFetch); err != nil {
		return nil, err
	}
	msgs, _ := b.takeLocked(q.c, max, time.Now())
	return msgs, nil
}

// WaitSlice is the longest a Queue's Wait waits before it returns empty-handed
// (no messages, no error), as the JetStream adapter's long poll does.
const WaitSlice = 30 * time.Second

// Wait blocks until at least one request is deliverable, then delivers up to
// max as Fetch does. It returns (nil, ctx.Err()) when ctx ends first, and
// (nil, nil) when WaitSlice passed without a request, like the JetStream
// adapter; callers call it again.
func (q *queue) Wait(ctx context.Context, max int) ([]batch.Message, error) {
	if max < 1 {
		return nil, fmt.Errorf("batchtest: wait for %d requests, want 1 or more", max)
	}
	b := q.b
	slice := time.NewTimer(WaitSlice)
	defer slice.Stop()
	faultChecked := false
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b.mu.Lock()
		if !faultChecked {
			// A fault fails the call, not every round of it.
			faultChecked = true
			if err := b.faultLocked(FailFetch); err != nil {
				b.mu.Unlock()
				return nil, err
			}
		}
		now := time.Now()
		msgs, next := b.takeLocked(q.c, max, now)
		changed := b.changed
		b.mu.Unlock()
		if len(msgs) > 0 {
			return msgs, nil
		}
		var timer *time.Timer
		var expired <-chan time.Time
		if !next.IsZero() {
			timer = time.NewTimer(next.Sub(now))
			expired = timer.C
		}
		sliceEnded := false
		select {
		case <-ctx.Done():
		case <-changed:
		case <-expired:
		case <-slice.C:
			sliceEnded = true
		}
		if timer != nil {
			timer.Stop()
		}
		if sliceEnded && ctx.Err() == nil {
			return nil, nil
		}
	}
}

// takeLocked delivers up to max of c's deliverable requests. When it
// delivers none, it returns the earliest time one of c's delivered requests
// becomes deliverable again (zero when none will by the clock).
func (b *Broker) takeLocked(c *consumer, max int, now time.Time) ([]batch.Message, time.Time) {
	var out []batch.Message
	var next time.Time
	for _, r := range b.reqs {
		if len(out) == max {
			break
		}
		if r.owner != c {
			continue
		}
		if !r.deliverable(now) {
			if next.IsZero() || r.due.Before(next) {
				next = r.due
			}
			continue
		}
		r.delivered++
		r.ready, r.due = false, now.Add(b.cfg.ackWait)
		b.deliveries[r.seq]++
		out = append(out, &message{b: b, req: r, delivery: batch.Delivery{
			Stream:       b.cfg.requestStream,
			StreamSeq:    r.seq,
			NumDelivered: r.delivered,
			Published:    r.published,
		}})
	}
	if len(out) > 0 {
		return out, time.Time{}
	}
	return nil, next
}

// errAcked is what nats.go returns for an ack of a delivery that was already
// acked or naked.
var errAcked = errors.New("batchtest: message was already acknowledged")

// message is one delivery of a request. It implements batch.Message.
type message struct {
	b        *Broker
	req      *request
	delivery batch.Delivery
	// acked records an Ack or Nak sent with this delivery; guarded by b.mu.
	acked bool
}

var _ batch.Message = (*message)(nil)

func (m *message) Data() []byte             { return m.req.data }
func (m *message) Subject() string          { return m.req.subject }
func (m *message) Delivery() batch.Delivery { return m.delivery }

// Header returns the first value of the named header, or "". Names are
// case-sensitive, as with nats.go.
func (m *message) Header(name string) string { return m.req.header[name] }

// Ack removes the request from the stream, whichever of its deliveries m is.
func (m *message) Ack() error {
	b := m.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if m.acked {
		return errAcked
	}
	if err := b.faultLocked(FailAck); err != nil {
		return err
	}
	m.acked = true
	if b.faultLocked(LoseAck) != nil {
		return nil // sent, never arrived
	}
	b.removeLocked(m.req)
	return nil
}

// Nak makes the request deliverable again after delay, or at once for 0.
func (m *message) Nak(delay time.Duration) error {
	b := m.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if m.acked {
		return errAcked
	}
	if err := b.faultLocked(FailNak); err != nil {
		return err
	}
	m.acked = true
	r := m.req
	if r.removed {
		return nil
	}
	if delay > 0 {
		r.ready, r.due = false, time.Now().Add(delay)
	} else {
		r.ready = true
	}
	b.notifyLocked()
	return nil
}

// InProgress restarts the request's AckWait, unless it is deliverable
// again already (JetStream has queued it for redelivery by then).
func (m *message) InProgress() error {
	b := m.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if m.acked {
		return errAcked
	}
	if err := b.faultLocked(FailInProgress); err != nil {
		return err
	}
	r := m.req
	now := time.Now()
	if r.removed || r.deliverable(now) {
		return nil
	}
	r.due = now.Add(b.cfg.ackWait)
	return nil
}

// Stored is one message the Publisher stored or sent.
type Stored struct {
	Subject string
	// MsgID is the Outgoing's MsgID. The Header holds it too, as
	// Nats-Msg-Id, when it is not empty, on stored and plain messages alike.
	MsgID  string
	Header map[string]string
	Data   []byte
	// Seq is the message's sequence in its stream; 0 for a message no
	// stream captured.
	Seq uint64
}

func (s Stored) clone() Stored {
	s.Header = maps.Clone(s.Header)
	s.Data = bytes.Clone(s.Data)
	return s
}

// outStream is the result or the dead-letter stream.
type outStream struct {
	name     string
	subjects []string
	msgs     []Stored // msgs[i].Seq == i+1
	ids      dedupe
}

// Results returns the messages stored in the result stream, oldest first.
func (b *Broker) Results() []Stored { return b.read(func() []Stored { return b.results.msgs }) }

// DeadLetters returns the messages stored in the dead-letter stream, oldest
// first.
func (b *Broker) DeadLetters() []Stored { return b.read(func() []Stored { return b.dead.msgs }) }

// Plain returns the messages the Publisher sent to subjects no stream
// captures (a producer's private inbox), oldest first.
func (b *Broker) Plain() []Stored { return b.read(func() []Stored { return b.plain }) }

func (b *Broker) read(list func() []Stored) []Stored {
	b.mu.Lock()
	defer b.mu.Unlock()
	src := list()
	out := make([]Stored, len(src))
	for i, s := range src {
		out[i] = s.clone()
	}
	return out
}

// Publisher returns the batch.Publisher that stores results and dead
// letters in the Broker.
func (b *Broker) Publisher() batch.Publisher { return publisher{b: b} }

// publisher implements batch.Publisher on a Broker.
type publisher struct{ b *Broker }

var _ batch.Publisher = publisher{}

// Publish stores every message captured by the result or dead-letter stream,
// de-duplicated by MsgID, and sends the others. When ctx has ended the
// messages still go out, as they would on the wire, but every PublishAck
// carries ctx's error.
func (p publisher) Publish(ctx context.Context, msgs []batch.Outgoing) []batch.PublishAck {
	b := p.b
	ctxErr := ctx.Err()
	acks := make([]batch.PublishAck, len(msgs))
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	for i, o := range msgs {
		if err := b.faultLocked(RejectPublish); err != nil {
			acks[i].Err = fmt.Errorf("batchtest: publish to %q: %w", o.Subject, err)
			continue
		}
		if !validSubject(o.Subject, false) {
			acks[i].Err = fmt.Errorf("batchtest: publish to %q: not a valid subject", o.Subject)
			continue
		}
		acks[i] = b.publishLocked(o, now)
		if err := b.faultLocked(LosePubAck); err != nil {
			acks[i] = batch.PublishAck{Err: fmt.Errorf("batchtest: wait for ack on %q: %w", o.Subject, err)}
		} else if ctxErr != nil {
			acks[i] = batch.PublishAck{Err: fmt.Errorf("batchtest: wait for ack on %q: %w", o.Subject, ctxErr)}
		}
	}
	return acks
}

func (b *Broker) publishLocked(o batch.Outgoing, now time.Time) batch.PublishAck {
	var st *outStream
	switch {
	case matchesAny(o.Subject, b.results.subjects):
		st = &b.results
	case matchesAny(o.Subject, b.dead.subjects):
		st = &b.dead
	default:
		b.plain = append(b.plain, Stored{Subject: o.Subject, MsgID: o.MsgID, Header: withMsgID(o), Data: bytes.Clone(o.Data)})
		if matchesAny(o.Subject, b.cfg.requestSubjects) {
			// A plain publish still lands in a stream that listens.
			b.storeRequestLocked(o.Subject, o.Data, headerMap(o), now)
		}
		return batch.PublishAck{}
	}
	if seq, dup := st.ids.lookup(o.MsgID, now); dup {
		return batch.PublishAck{Duplicate: true, Sequence: seq}
	}
	h := withMsgID(o)
	seq := uint64(len(st.msgs) + 1)
	st.msgs = append(st.msgs, Stored{Subject: o.Subject, MsgID: o.MsgID, Header: h, Data: bytes.Clone(o.Data), Seq: seq})
	st.ids.add(o.MsgID, seq, now)
	return batch.PublishAck{Sequence: seq}
}

// withMsgID is o's headers with its MsgID as Nats-Msg-Id, as the JetStream
// adapter sends every message, stored or plain.
func withMsgID(o batch.Outgoing) map[string]string {
	h := headerMap(o)
	if o.MsgID != "" {
		if h == nil {
			h = make(map[string]string, 1)
		}
		h[wire.HeaderMsgID] = o.MsgID
	}
	return h
}

// headerMap is o's headers as a map, nil when it has none.
func headerMap(o batch.Outgoing) map[string]string {
	if len(o.Header) == 0 {
		return nil
	}
	h := make(map[string]string, len(o.Header))
	for _, f := range o.Header {
		h[f.Name] = f.Value
	}
	return h
}

// StoredResult returns the body of the result stored at seq.
func (p publisher) StoredResult(ctx context.Context, seq uint64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("batchtest: read stored result %d: %w", seq, err)
	}
	b := p.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.faultLocked(FailStoredResult); err != nil {
		return nil, fmt.Errorf("batchtest: read stored result %d: %w", seq, err)
	}
	if seq == 0 || seq > uint64(len(b.results.msgs)) {
		return nil, fmt.Errorf("batchtest: read stored result %d: no message at that sequence in %s", seq, b.results.name)
	}
	return bytes.Clone(b.results.msgs[seq-1].Data), nil
}

// dedupe remembers message ids for a stream's duplicate window.
type dedupe struct {
	window time.Duration
	ids    map[string]dedupeEntry
}

type dedupeEntry struct {
	seq uint64
	at  time.Time
}

func newDedupe(window time.Duration) dedupe {
	return dedupe{window: window, ids: make(map[string]dedupeEntry)}
}

// lookup returns the sequence of the message stored with id within the
// window before now.
func (d dedupe) lookup(id string, now time.Time) (uint64, bool) {
	if id == "" || d.window <= 0 {
		return 0, false
	}
	e, ok := d.ids[id]
	if !ok || now.Sub(e.at) >= d.window {
		return 0, false
	}
	return e.seq, true
}

func (d dedupe) add(id string, seq uint64, now time.Time) {
	if id == "" || d.window <= 0 {
		return
	}
	d.ids[id] = dedupeEntry{seq: seq, at: now}
}

var _ batch.ResultFinder = publisher{}

// FindResult looks through the stored results for one on subject with
// msgID, as the jetstream adapter does from since on; the double keeps no
// store times and looks through all.
func (p publisher) FindResult(ctx context.Context, subject, msgID string, _ time.Time) (uint64, bool, error) {
	if err := ctx.Err(); err != nil {
		return 0, false, fmt.Errorf("batchtest: look for result %s: %w", msgID, err)
	}
	b := p.b
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.results.msgs {
		if m.Subject == subject && m.MsgID == msgID {
			return m.Seq, true, nil
		}
	}
	return 0, false, nil
}
