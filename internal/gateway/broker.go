package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/aibatch/aibatch/wire"
)

// Publishing errors, as the HTTP answers tell them apart.
var (
	// errStreamFull: the request stream refused the request, full at its
	// STREAM_MAX_MSGS or STREAM_MAX_BYTES: nothing was stored.
	errStreamFull = errors.New("the request stream is full")
	// errNoStream: no stream stores the request subject (the workers have
	// not created it): nothing was stored.
	errNoStream = errors.New("no stream stores the request subject")
	// errUnconfirmed: the stream did not confirm storing the request in
	// time, or the connection failed: it may or may not be stored.
	errUnconfirmed = errors.New("the request stream did not confirm storing the request")
)

// errCodeStoreFailed is the JetStream API error code of a publish a stream
// could not store (JSStreamStoreFailedF): a full stream with discard
// policy new answers it with "maximum messages exceeded" or "maximum bytes
// exceeded". nats.go has no constant for it.
const errCodeStoreFailed jetstream.ErrorCode = 10077

// broker publishes the gateway's wire requests and hands each result to
// the HTTP request waiting for it. Results of requests without an
// Idempotency-Key come on the gateway's own reply subject through one
// ordered consumer of the result stream, which resumes where it was after
// a reconnect; those of a key come on the key's subject (see do).
type broker struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	results jetstream.Stream
	reply   string
	log     *zap.Logger

	cc jetstream.ConsumeContext

	mu      sync.Mutex
	waiting map[string]*collector

	// unclaimed counts results nobody waited for: late (the caller timed
	// out or left), or a second copy.
	unclaimed atomic.Uint64
}

// startBroker finds the streams the workers created and starts reading
// results sent to reply from now on. It fails while no stream stores the
// request or reply subjects.
func startBroker(ctx context.Context, nc *nats.Conn, reply string, log *zap.Logger) (*broker, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open JetStream: %w", err)
	}
	probe := wire.RequestSubject(DefaultTopic, false)
	if _, err := js.StreamNameBySubject(ctx, probe); err != nil {
		return nil, fmt.Errorf("find the stream that stores requests on %s (have the workers started?): %w", probe, err)
	}
	name, err := js.StreamNameBySubject(ctx, reply)
	if err != nil {
		return nil, fmt.Errorf("find the stream that stores results on %s (have the workers started?): %w", reply, err)
	}
	stream, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("open result stream %s: %w", name, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read result stream %s: %w", name, err)
	}
	b := &broker{nc: nc, js: js, results: stream, reply: reply, log: log, waiting: map[string]*collector{}}
	// From the sequence after what the stream holds now rather than "new":
	// a consumer reset before the first result still resumes from here.
	cons, err := js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{reply},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    info.State.LastSeq + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("create the results consumer on %s: %w", reply, err)
	}
	b.cc, err = cons.Consume(func(m jetstream.Msg) { b.deliver(m.Data()) }, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		log.Warn("results consumer", zap.String("subject", reply), zap.Error(err))
	}))
	if err != nil {
		return nil, fmt.Errorf("consume results on %s: %w", reply, err)
	}
	return b, nil
}

// stop stops reading results.
func (b *broker) stop() {
	b.cc.Stop()
	<-b.cc.Closed()
}

// submission is what one HTTP request publishes: its wire requests (with
// their ids set) and their encoded bodies.
type submission struct {
	subject string
	// key is the digest of the caller's Idempotency-Key, the endpoint and
	// the topic; "" without a key.
	key    string
	ids    []string
	bodies [][]byte
}

// msgID is the Nats-Msg-Id of the i-th request of a keyed submission: the
// same for a retry, through any gateway, so the request stream stores it
// once within its DEDUPE_WINDOW.
func (s submission) msgID(i int) string {
	if len(s.ids) == 1 {
		return "gateway:" + s.key
	}
	return "gateway:" + s.key + ":" + strconv.Itoa(i)
}

// pending is a published submission whose results are on their way.
// Results fill collector; call release once done with it (after the
// results, a timeout or a caller who left), after which no more are routed
// to it.
type pending struct {
	*collector
	release func()
}

// submit publishes s and returns at once with the handle its results
// arrive in (in the order of s.ids). The requests are answered and stored
// whatever the caller does with the handle.
//
// A keyed submission's results go to the key's own subject under
// ai.results.gateway.key., which the broker subscribes to for the wait.
// Before publishing, it reads the results the result stream already holds
// there: a retry of a request answered earlier, even beyond the request
// stream's duplicate window (up to RESULTS_MAX_AGE), is answered from them
// without a second provider call. Within the window a retry of a request
// not yet answered is dropped by the stream and waits for the first one's
// result.
func (b *broker) submit(ctx context.Context, s submission) (*pending, error) {
	c := newCollector(s.ids)
	p := &pending{collector: c}
	reply := b.reply
	if s.key == "" {
		b.register(c)
		p.release = func() { b.unregister(c) }
	} else {
		reply = keySubject(s.key)
		sub, err := b.nc.Subscribe(reply, func(m *nats.Msg) {
			if !c.add(m.Data) {
				b.unclaimed.Add(1)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("%w: subscribe to %s: %w", errUnconfirmed, reply, err)
		}
		p.release = func() { _ = sub.Unsubscribe() }
		if err := b.stored(ctx, reply, c); err != nil {
			p.release()
			return nil, err
		}
	}
	if err := b.publish(ctx, s, reply, c.missing()); err != nil {
		p.release()
		return nil, err
	}
	return p, nil
}

// stored adds to c the results the result stream holds on subject.
func (b *broker) stored(ctx context.Context, subject string, c *collector) error {
	last, err := b.results.GetLastMsgForSubject(ctx, subject)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("%w: read stored results on %s: %w", errUnconfirmed, subject, err)
	}
	c.add(last.Data)
	if len(c.ids) == 1 || c.complete() {
		return nil
	}
	// An array's earlier results: read the key's subject from the start.
	cons, err := b.results.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return fmt.Errorf("%w: read stored results on %s: %w", errUnconfirmed, subject, err)
	}
	for !c.complete() {
		batch, err := cons.FetchNoWait(len(c.ids))
		if err != nil {
			return fmt.Errorf("%w: read stored results on %s: %w", errUnconfirmed, subject, err)
		}
		n, pending := 0, uint64(0)
		for m := range batch.Messages() {
			n++
			c.add(m.Data())
			if meta, err := m.Metadata(); err == nil {
				pending = meta.NumPending
			}
		}
		if n == 0 || pending == 0 {
			break
		}
	}
	return nil
}

// publish stores the requests at the indexes given, with reply as their
// Batch-Reply-To, waiting for every PubAck.
func (b *broker) publish(ctx context.Context, s submission, reply string, indexes []int) error {
	msg := func(i int) *nats.Msg {
		m := nats.NewMsg(s.subject)
		m.Data = s.bodies[i]
		m.Header.Set(wire.HeaderReplyTo, reply)
		if s.key != "" {
			m.Header.Set(wire.HeaderMsgID, s.msgID(i))
		}
		return m
	}
	if len(indexes) == 1 {
		_, err := b.js.PublishMsg(ctx, msg(indexes[0]))
		return publishError(err)
	}
	futures := make([]jetstream.PubAckFuture, 0, len(indexes))
	for _, i := range indexes {
		f, err := b.js.PublishMsgAsync(msg(i))
		if err != nil {
			return publishError(err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return publishError(err)
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", errUnconfirmed, context.Cause(ctx))
		}
	}
	return nil
}

// publishError sorts a publish error into errStreamFull, errNoStream and
// errUnconfirmed.
func publishError(err error) error {
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStoreFailed:
		return fmt.Errorf("%w: %s", errStreamFull, apiErr.Description)
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w: %w", errNoStream, err)
	}
	return fmt.Errorf("%w: %w", errUnconfirmed, err)
}

func (b *broker) register(c *collector) {
	b.mu.Lock()
	for _, id := range c.ids {
		b.waiting[id] = c
	}
	b.mu.Unlock()
}

func (b *broker) unregister(c *collector) {
	b.mu.Lock()
	for _, id := range c.ids {
		if b.waiting[id] == c {
			delete(b.waiting, id)
		}
	}
	b.mu.Unlock()
}

// deliver hands a result from the gateway's reply subject to its waiter.
func (b *broker) deliver(data []byte) {
	var r wire.Result
	if json.Unmarshal(data, &r) != nil {
		b.unclaimed.Add(1)
		return
	}
	b.mu.Lock()
	c := b.waiting[r.ID]
	b.mu.Unlock()
	if c == nil || !c.put(r) {
		b.unclaimed.Add(1)
	}
}

// collector gathers the results of one HTTP request's wire requests, in
// order, each once. done is closed when it has them all.
type collector struct {
	ids  []string
	done chan struct{}
	// then, when set, is called once it has them all.
	then func()

	mu sync.Mutex
	// index finds an id's place; nil for a few ids, which are searched.
	index   map[string]int
	results []wire.Result
	have    []bool
	n       int
}

// indexAbove is the number of ids from which a collector keeps a map
// rather than searching: most waits are for one result, and a waiting
// request should hold as little memory as it can.
const indexAbove = 8

func newCollector(ids []string) *collector {
	c := &collector{ids: ids, done: make(chan struct{}), results: make([]wire.Result, len(ids)), have: make([]bool, len(ids))}
	if len(ids) > indexAbove {
		c.index = make(map[string]int, len(ids))
		for i, id := range ids {
			c.index[id] = i
		}
	}
	return c
}

// place returns the index of id among c's ids.
func (c *collector) place(id string) (int, bool) {
	if c.index != nil {
		i, ok := c.index[id]
		return i, ok
	}
	for i, x := range c.ids {
		if x == id {
			return i, true
		}
	}
	return 0, false
}

// add records the result in data if it answers one of c's requests that
// had none yet, and reports whether it did.
func (c *collector) add(data []byte) bool {
	var r wire.Result
	if json.Unmarshal(data, &r) != nil {
		return false
	}
	return c.put(r)
}

// put records r if it answers one of c's requests that had none yet, and
// reports whether it did.
func (c *collector) put(r wire.Result) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.place(r.ID)
	if !ok || c.have[i] {
		return false
	}
	c.results[i], c.have[i] = r, true
	c.n++
	if c.n == len(c.ids) {
		close(c.done)
		if c.then != nil {
			go c.then()
		}
	}
	return true
}

// whenDone calls f, in a goroutine of its own, once c has every result:
// at once if it has them already.
func (c *collector) whenDone(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == len(c.ids) {
		go f()
		return
	}
	c.then = f
}

func (c *collector) complete() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n == len(c.ids)
}

// missing returns the indexes of the requests without a result.
func (c *collector) missing() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i, h := range c.have {
		if !h {
			out = append(out, i)
		}
	}
	return out
}
