package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aibatch/aibatch/wire"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// lookupTimeout bounds one look-up of stored results for re-sent requests.
const lookupTimeout = time.Minute

// Client sends requests and waits for their results. It is safe for
// concurrent use; create it with New and release it with Close. It does not
// own the NATS connection.
type Client struct {
	nc           *nats.Conn
	js           jetstream.JetStream
	cfg          config
	resultStream string
	msgIDPrefix  string

	slots chan struct{} // a token per publish waiting for its PubAck
	cc    jetstream.ConsumeContext

	mu      sync.Mutex
	waiting map[string]*Pending
	lookups []string // ids whose publish was a duplicate, to look up in the stream
	closed  bool

	lookupSignal chan struct{}
	ctx          context.Context // ends at Close
	cancel       context.CancelFunc
	wg           sync.WaitGroup
	closeOnce    sync.Once

	unclaimed, invalid atomic.Uint64
}

// New returns a client that publishes on nc. It checks that streams capture
// the request, urgent and reply subjects (the worker creates them; New fails
// if it has not yet) and starts the one ordered consumer that reads every
// result sent to the client's reply subject from now on.
//
// Every error wraps ErrInvalidOption for a bad option, or says which look-up
// failed.
func New(nc *nats.Conn, opts ...Option) (*Client, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: nil NATS connection", ErrInvalidOption)
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	c := &Client{
		nc:           nc,
		cfg:          cfg,
		msgIDPrefix:  cfg.name + ":",
		slots:        make(chan struct{}, cfg.maxPending),
		waiting:      make(map[string]*Pending),
		lookupSignal: make(chan struct{}, 1),
	}
	c.js, err = jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(cfg.maxPending),
		jetstream.WithPublishAsyncTimeout(cfg.pubAckTimeout),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, a *jetstream.PubAck) { c.onPubAck(m, a) }),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) { c.onPubErr(m, err) }),
	)
	if err != nil {
		return nil, fmt.Errorf("client: open JetStream: %w", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), cfg.setupTimeout)
	defer cancel()
	for _, subj := range []string{cfg.requestSubj, cfg.urgentSubj} {
		if _, err := c.js.StreamNameBySubject(ctx, subj); err != nil {
			return nil, fmt.Errorf("client: find the stream that stores requests on %q (is the worker running?): %w", subj, err)
		}
	}
	c.resultStream, err = c.js.StreamNameBySubject(ctx, cfg.replySubj)
	if err != nil {
		return nil, fmt.Errorf("client: find the stream that stores results on %q (is the worker running?): %w", cfg.replySubj, err)
	}
	stream, err := c.js.Stream(ctx, c.resultStream)
	if err != nil {
		return nil, fmt.Errorf("client: open result stream %q: %w", c.resultStream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("client: read result stream %q: %w", c.resultStream, err)
	}
	// Start after what the stream holds now, by sequence rather than
	// "deliver new", so that a consumer reset (a reconnect) before the first
	// result still resumes from here.
	cons, err := c.js.OrderedConsumer(ctx, c.resultStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{cfg.replySubj},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    info.State.LastSeq + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("client: create results consumer on %q: %w", cfg.replySubj, err)
	}
	c.cc, err = cons.Consume(c.onResult, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		c.report(fmt.Errorf("client: results consumer on %q: %w", cfg.replySubj, err))
	}))
	if err != nil {
		return nil, fmt.Errorf("client: consume results on %q: %w", cfg.replySubj, err)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Go(c.lookupLoop)
	return c, nil
}

// ReplySubject is the Batch-Reply-To subject of the client's requests.
func (c *Client) ReplySubject() string { return c.cfg.replySubj }

// Name is the client's name (WithName, or the random one it was given).
func (c *Client) Name() string { return c.cfg.name }

// Do publishes req to the request subject and waits for its result.
//
// A result whose Status is "error" is returned together with an error
// wrapping ErrFailed. If ctx ends first, Do returns ctx's error (wrapped)
// and stops waiting; the request is NOT cancelled: it stays in the stream,
// is answered, and its result is stored in AI_RESULTS, where Fetch finds it
// by id (the error message names the id; set Request.ID to choose it).
// A result that arrives after Do gave up is dropped.
func (c *Client) Do(ctx context.Context, req wire.Request) (wire.Result, error) {
	p, err := c.Submit(ctx, req)
	if err != nil {
		return wire.Result{}, err
	}
	return p.waitOrDiscard(ctx)
}

// Urgent is Do on the urgent lane (ai.urgent.<topic>): the worker sends it
// within milliseconds, with whatever other urgent requests wait, instead of
// waiting for a batch to fill.
func (c *Client) Urgent(ctx context.Context, req wire.Request) (wire.Result, error) {
	p, err := c.SubmitUrgent(ctx, req)
	if err != nil {
		return wire.Result{}, err
	}
	return p.waitOrDiscard(ctx)
}

// Submit publishes req to the request subject and returns at once with a
// handle to wait on; it blocks only while WithMaxPending publishes wait for
// their PubAck, until ctx ends. ctx bounds Submit itself, not the request.
//
// A request without an ID gets a unique one (Pending.ID). IDs must be unique
// among this client's waiting requests (else ErrDuplicateID). The request's
// Nats-Msg-Id is "<client name>:<id>": re-submitting an id within the
// request stream's duplicate window (2m by default) does not store a second
// request; the handle then gets the first one's result, read from AI_RESULTS
// if it was already answered.
func (c *Client) Submit(ctx context.Context, req wire.Request) (*Pending, error) {
	return c.submit(ctx, c.cfg.requestSubj, req)
}

// SubmitUrgent is Submit on the urgent lane.
func (c *Client) SubmitUrgent(ctx context.Context, req wire.Request) (*Pending, error) {
	return c.submit(ctx, c.cfg.urgentSubj, req)
}

func (c *Client) submit(ctx context.Context, subject string, req wire.Request) (*Pending, error) {
	if err := checkRequest(req); err != nil {
		return nil, err
	}
	if req.ID == "" {
		req.ID = nuid.Next()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("%w: encode request %q: %w", ErrInvalidRequest, req.ID, err)
	}
	if c.isClosed() {
		return nil, ErrClosed
	}
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("client: wait for a publish slot for request %q: %w", req.ID, ctx.Err())
	case <-c.ctx.Done():
		return nil, ErrClosed
	}

	m := nats.NewMsg(subject)
	m.Data = body
	m.Header.Set(wire.HeaderMsgID, c.msgIDPrefix+req.ID)
	m.Header.Set(wire.HeaderReplyTo, c.cfg.replySubj)
	p := &Pending{c: c, id: req.ID, msg: m, done: make(chan struct{})}

	c.mu.Lock()
	switch _, dup := c.waiting[req.ID]; {
	case c.closed:
		c.mu.Unlock()
		c.release()
		return nil, ErrClosed
	case dup:
		c.mu.Unlock()
		c.release()
		return nil, fmt.Errorf("%w: %q", ErrDuplicateID, req.ID)
	}
	c.waiting[req.ID] = p
	c.mu.Unlock()

	if _, err := c.js.PublishMsgAsync(m, jetstream.WithStallWait(c.cfg.pubAckTimeout)); err != nil {
		c.remove(p)
		c.release()
		return nil, fmt.Errorf("client: publish request %q to %q: %w", req.ID, subject, err)
	}
	return p, nil
}

// checkRequest refuses what the worker would dead-letter at once: what
// wire.Request.Validate refuses (no input, both input and messages,
// parameters out of range, ...), and an id with control characters.
func checkRequest(req wire.Request) error {
	if err := req.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if strings.ContainsFunc(req.ID, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("%w: ID %q has control characters", ErrInvalidRequest, req.ID)
	}
	return nil
}

// Stats is a snapshot of a client's bookkeeping.
type Stats struct {
	// Waiting counts handles waiting for their result.
	Waiting int
	// Unclaimed counts results that arrived with nobody waiting: late
	// (the wait was cancelled or discarded), or a second copy on the wire.
	Unclaimed uint64
	// Invalid counts messages on the reply subject that were not a result
	// with an id.
	Invalid uint64
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	n := len(c.waiting)
	c.mu.Unlock()
	return Stats{Waiting: n, Unclaimed: c.unclaimed.Load(), Invalid: c.invalid.Load()}
}

// Close stops the results consumer, ends every wait with ErrClosed, and
// waits (at most the PubAck timeout) for publishes still waiting for their
// PubAck. Requests already stored are answered anyway; their results can be
// read later with Fetch by a client with the same name. Close does not close
// the NATS connection. It is safe to call more than once.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		waiting := c.waiting
		c.waiting = make(map[string]*Pending)
		c.lookups = nil
		c.mu.Unlock()

		c.cc.Stop()
		<-c.cc.Closed()
		c.cancel()
		c.wg.Wait()
		for _, p := range waiting {
			p.finish(wire.Result{}, ErrClosed)
		}
		t := time.NewTimer(c.cfg.pubAckTimeout)
		select {
		case <-c.js.PublishAsyncComplete():
		case <-t.C:
		}
		t.Stop()
		c.js.CleanupPublisher()
	})
	return nil
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// release frees the publish slot of one settled PubAck.
func (c *Client) release() {
	select {
	case <-c.slots:
	default:
	}
}

// remove forgets p if it is still the handle waiting for its id, and
// reports whether it was.
func (c *Client) remove(p *Pending) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiting[p.id] != p {
		return false
	}
	delete(c.waiting, p.id)
	return true
}

// settle ends the wait for id, if any, with res and err.
func (c *Client) settle(id string, res wire.Result, err error) bool {
	c.mu.Lock()
	p := c.waiting[id]
	delete(c.waiting, id)
	c.mu.Unlock()
	if p == nil {
		return false
	}
	p.finish(res, err)
	return true
}

// idOf returns the request id of a message this client published.
func (c *Client) idOf(m *nats.Msg) string {
	return strings.TrimPrefix(m.Header.Get(wire.HeaderMsgID), c.msgIDPrefix)
}

func (c *Client) onPubAck(m *nats.Msg, a *jetstream.PubAck) {
	c.release()
	if !a.Duplicate {
		return
	}
	// The stream already held this id: the result may have been stored
	// before anyone waited for it, so look in the stream as well.
	id := c.idOf(m)
	c.mu.Lock()
	if p := c.waiting[id]; p != nil && !c.closed {
		c.lookups = append(c.lookups, id)
	}
	c.mu.Unlock()
	select {
	case c.lookupSignal <- struct{}{}:
	default:
	}
}

func (c *Client) onPubErr(m *nats.Msg, err error) {
	c.release()
	id := c.idOf(m)
	c.mu.Lock()
	p := c.waiting[id]
	if p == nil || p.msg != m {
		c.mu.Unlock()
		return
	}
	delete(c.waiting, id)
	c.mu.Unlock()
	p.finish(wire.Result{}, fmt.Errorf("%w: request %q on %q: %w", ErrNotConfirmed, id, m.Subject, err))
}

func (c *Client) onResult(m jetstream.Msg) {
	var r wire.Result
	if err := json.Unmarshal(m.Data(), &r); err != nil || r.ID == "" {
		c.invalid.Add(1)
		return
	}
	if !c.settle(r.ID, r, resultErr(r)) {
		c.unclaimed.Add(1)
	}
}

// resultErr is the error that goes with r: nil when it is ok.
func resultErr(r wire.Result) error {
	if r.Status == wire.StatusOK {
		return nil
	}
	return fmt.Errorf("%w: request %q: %s: %s", ErrFailed, r.ID, r.Status, r.Error)
}

// lookupLoop looks up, in the result stream, the results of requests whose
// publish the stream reported as a duplicate, several at a time.
func (c *Client) lookupLoop() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.lookupSignal:
		}
		c.mu.Lock()
		ids := c.lookups
		c.lookups = nil
		c.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(c.ctx, lookupTimeout)
		found, err := c.FetchFrom(ctx, c.cfg.replySubj, ids...)
		cancel()
		for id, r := range found {
			c.settle(id, r, resultErr(r))
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			c.report(fmt.Errorf("client: look up stored results of re-sent requests: %w", err))
		}
	}
}

func (c *Client) report(err error) {
	if c.cfg.errHandler != nil {
		c.cfg.errHandler(err)
	}
}
