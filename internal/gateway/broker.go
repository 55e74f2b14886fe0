package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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
// the HTTP request waiting for it.
//
// Results of requests without an Idempotency-Key come on the gateway's own
// reply subject, read with one plain subscription: the fastest way, with no
// consumer of the stream to keep alive. A subscription misses what is
// published while the connection is down, or what it drops when it falls
// behind (a slow consumer); the stream has those results, so after a
// reconnect or a drop the broker reads the reply subject's results from
// the stream since a little before the gap and hands on those still awaited
// (catchUp). Results of a key come on the key's subject (see submit).
type broker struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	results jetstream.Stream
	reply   string
	log     *zap.Logger

	sub      *nats.Subscription
	statuses chan nats.Status
	watched  chan struct{} // closed when watch has returned

	mu      sync.Mutex
	waiting map[string]*collector

	// unclaimed counts results nobody waited for: late (the caller timed
	// out or left), or a second copy.
	unclaimed atomic.Uint64
}

// Catching up: how far before a gap the stream is read again (clocks of
// the gateway and the server may differ a little), and how often the
// subscription is checked for dropped messages.
const (
	catchUpMargin   = 10 * time.Second
	dropCheckPeriod = time.Second
	catchUpTimeout  = time.Minute
)

// startBroker finds the streams the workers created and subscribes to
// reply. It fails while no stream stores the request or reply subjects.
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
	b := &broker{nc: nc, js: js, results: stream, reply: reply, log: log, waiting: map[string]*collector{}, watched: make(chan struct{})}
	b.sub, err = nc.Subscribe(reply, func(m *nats.Msg) { b.deliver(m.Data, true) })
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", reply, err)
	}
	// Room for bursts of results: 64 MiB, whatever their number.
	if err := b.sub.SetPendingLimits(-1, 64<<20); err != nil {
		_ = b.sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to %s: %w", reply, err)
	}
	// The server has the subscription before any request is published.
	if err := nc.FlushWithContext(ctx); err != nil {
		_ = b.sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to %s: %w", reply, err)
	}
	b.statuses = nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CONNECTED, nats.CLOSED)
	go b.watch()
	return b, nil
}

// stop stops reading results.
func (b *broker) stop() {
	b.nc.RemoveStatusListener(b.statuses)
	<-b.watched
	_ = b.sub.Unsubscribe()
}

// watch catches up after every gap in the subscription: a disconnect, or
// messages it dropped.
func (b *broker) watch() {
	defer close(b.watched)
	tick := time.NewTicker(dropCheckPeriod)
	defer tick.Stop()
	var lost time.Time // when the connection went down; zero while up
	dropped, checked := 0, time.Now()
	for {
		select {
		case st, ok := <-b.statuses:
			switch {
			case !ok || st == nats.CLOSED:
				return
			case st == nats.CONNECTED && !lost.IsZero():
				b.catchUp(lost.Add(-catchUpMargin), "reconnected")
				lost = time.Time{}
			case st != nats.CONNECTED && lost.IsZero():
				lost = time.Now()
			}
		case now := <-tick.C:
			if n, err := b.sub.Dropped(); err == nil && n > dropped {
				dropped = n
				b.catchUp(checked.Add(-catchUpMargin), "the subscription dropped results")
			}
			checked = now
		}
	}
}

// catchUp reads the results stored on the reply subject since since and
// hands on those still awaited.
func (b *broker) catchUp(since time.Time, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), catchUpTimeout)
	defer cancel()
	n, err := b.read(ctx, b.reply, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{b.reply}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
	}, func(data []byte) bool {
		b.deliver(data, false)
		return false
	})
	if err != nil {
		b.log.Warn("catch up on results", zap.String("why", why), zap.Error(err))
		return
	}
	b.log.Info("caught up on results", zap.String("why", why), zap.Time("since", since), zap.Int("read", n))
}

// read passes the results stored on subject, from where cfg says, to f
// until f returns true or none is left, and returns how many it read.
func (b *broker) read(ctx context.Context, subject string, cfg jetstream.OrderedConsumerConfig, f func(data []byte) (enough bool)) (int, error) {
	cons, err := b.results.OrderedConsumer(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("read stored results on %s: %w", subject, err)
	}
	read := 0
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return read, fmt.Errorf("read stored results on %s: %w", subject, err)
		}
		n, pending := 0, uint64(0)
		for m := range batch.Messages() {
			n++
			if f(m.Data()) {
				return read + n, nil
			}
			if meta, err := m.Metadata(); err == nil {
				pending = meta.NumPending
			}
		}
		read += n
		if err := batch.Error(); err != nil {
			return read, fmt.Errorf("read stored results on %s: %w", subject, err)
		}
		if n == 0 || pending == 0 {
			return read, nil
		}
	}
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
	_, err = b.read(ctx, subject, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}}, func(data []byte) bool {
		c.add(data)
		return c.complete()
	})
	if err != nil {
		return fmt.Errorf("%w: %w", errUnconfirmed, err)
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
// count says whether a result nobody takes counts as unclaimed: not when
// catching up, which reads results delivered already.
func (b *broker) deliver(data []byte, count bool) {
	var r wire.Result
	if json.Unmarshal(data, &r) != nil {
		if count {
			b.unclaimed.Add(1)
		}
		return
	}
	b.mu.Lock()
	c := b.waiting[r.ID]
	b.mu.Unlock()
	if (c == nil || !c.put(r)) && count {
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
