// Package fleet keeps what a fleet of workers shares beyond the streams:
// the fleet's totals, which every worker adds its engine's counts to in one
// key of a JetStream key-value bucket, so they add up across workers and
// survive restarts; and the fleet flush, which every worker answers on
// wire.ControlFlushSubject, so one admin call can flush the whole fleet.
package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/wire"
)

// Counters are counts of what engines did: one worker's share, or the
// fleet's totals. The JSON names match batch.Stats.
type Counters struct {
	Requests     int64 `json:"requests"`
	ResultsOK    int64 `json:"results_ok"`
	ResultsError int64 `json:"results_error"`
	DeadLetters  int64 `json:"dead_letters"`
	APICalls     int64 `json:"api_calls"`
	Batches      int64 `json:"batches"`
	Retries      int64 `json:"retries"`
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
}

// CountersOf returns the counters of an engine's stats.
func CountersOf(s batch.Stats) Counters {
	return Counters{
		Requests:     s.Requests,
		ResultsOK:    s.ResultsOK,
		ResultsError: s.ResultsError,
		DeadLetters:  s.DeadLetters,
		APICalls:     s.APICalls,
		Batches:      s.Batches,
		Retries:      s.Retries,
		InputTokens:  s.Usage.InputTokens,
		OutputTokens: s.Usage.OutputTokens,
	}
}

// Add returns c plus o.
func (c Counters) Add(o Counters) Counters {
	return Counters{
		Requests:     c.Requests + o.Requests,
		ResultsOK:    c.ResultsOK + o.ResultsOK,
		ResultsError: c.ResultsError + o.ResultsError,
		DeadLetters:  c.DeadLetters + o.DeadLetters,
		APICalls:     c.APICalls + o.APICalls,
		Batches:      c.Batches + o.Batches,
		Retries:      c.Retries + o.Retries,
		InputTokens:  c.InputTokens + o.InputTokens,
		OutputTokens: c.OutputTokens + o.OutputTokens,
	}
}

// Sub returns c minus o.
func (c Counters) Sub(o Counters) Counters {
	return c.Add(Counters{
		Requests: -o.Requests, ResultsOK: -o.ResultsOK, ResultsError: -o.ResultsError,
		DeadLetters: -o.DeadLetters, APICalls: -o.APICalls, Batches: -o.Batches, Retries: -o.Retries,
		InputTokens: -o.InputTokens, OutputTokens: -o.OutputTokens,
	})
}

// IsZero reports whether every counter is 0.
func (c Counters) IsZero() bool { return c == Counters{} }

// Config names the key-value bucket that holds the fleet's totals.
type Config struct {
	// Bucket is the key-value bucket. Default "AI_STATS".
	Bucket string
	// Key is the key holding the totals. Default "totals".
	Key string
	// Interval is how often Run adds this worker's new counts. Default 5s.
	Interval time.Duration
	// Replicas is the number of copies of the bucket. Default 1.
	Replicas int
	// MaxConflicts bounds the compare-and-swap retries of one Add when other
	// workers update the key at the same time. Default 100.
	MaxConflicts int
}

// WithDefaults returns c with every unset field given its default.
func (c Config) WithDefaults() Config {
	if c.Bucket == "" {
		c.Bucket = "AI_STATS"
	}
	if c.Key == "" {
		c.Key = "totals"
	}
	if c.Interval == 0 {
		c.Interval = 5 * time.Second
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxConflicts == 0 {
		c.MaxConflicts = 100
	}
	return c
}

// Totals keeps the fleet's totals in a key-value bucket. Create it with
// Open; it is safe for concurrent use.
type Totals struct {
	kv  jetstream.KeyValue
	cfg Config
}

// Open creates the bucket named by cfg, or opens it if it exists.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Totals, error) {
	cfg = cfg.WithDefaults()
	if cfg.Interval < 0 || cfg.Replicas < 1 || cfg.Replicas > 5 || cfg.MaxConflicts < 1 {
		return nil, errors.New("fleet: want a positive interval, 1 to 5 replicas and at least 1 conflict retry")
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "aibatch fleet-wide counters",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: create or open key-value bucket %q: %w", cfg.Bucket, err)
	}
	return &Totals{kv: kv, cfg: cfg}, nil
}

// Read returns the fleet's totals; all zero when nothing was added yet.
func (f *Totals) Read(ctx context.Context) (Counters, error) {
	c, _, err := f.read(ctx)
	return c, err
}

// read returns the totals and their revision; revision 0 means the key does
// not exist (or was deleted).
func (f *Totals) read(ctx context.Context) (Counters, uint64, error) {
	e, err := f.kv.Get(ctx, f.cfg.Key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Counters{}, 0, nil
	}
	if err != nil {
		return Counters{}, 0, fmt.Errorf("fleet: read totals %s/%s: %w", f.cfg.Bucket, f.cfg.Key, err)
	}
	var c Counters
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return Counters{}, 0, fmt.Errorf("fleet: totals %s/%s are not JSON counters: %w", f.cfg.Bucket, f.cfg.Key, err)
	}
	return c, e.Revision(), nil
}

// Add adds d to the fleet's totals. When another worker updated the totals
// in between, it reads them again and retries, up to MaxConflicts times.
func (f *Totals) Add(ctx context.Context, d Counters) error {
	if d.IsZero() {
		return nil
	}
	for range f.cfg.MaxConflicts {
		cur, rev, err := f.read(ctx)
		if err != nil {
			return err
		}
		body, err := json.Marshal(cur.Add(d))
		if err != nil {
			return fmt.Errorf("fleet: encode totals: %w", err)
		}
		if rev == 0 {
			_, err = f.kv.Create(ctx, f.cfg.Key, body)
		} else {
			_, err = f.kv.Update(ctx, f.cfg.Key, body, rev)
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			continue // another worker was first: read again
		default:
			return fmt.Errorf("fleet: update totals %s/%s: %w", f.cfg.Bucket, f.cfg.Key, err)
		}
	}
	return fmt.Errorf("fleet: update totals %s/%s: still conflicting after %d tries", f.cfg.Bucket, f.cfg.Key, f.cfg.MaxConflicts)
}

// Run adds this worker's new counts to the totals every Interval until ctx
// ends, then once more, so a clean stop loses nothing: call it after the
// engine has stopped counting, or cancel ctx only then. read returns the
// worker's counters since it started (CountersOf(engine.Stats())); they must
// only grow. A failed update is retried with the next one: its counts are
// not lost. onError, when not nil, is told of each failed update. Run
// returns the final update's error.
func (f *Totals) Run(ctx context.Context, read func() Counters, onError func(error)) error {
	var sent Counters
	flush := func(ctx context.Context) error {
		now := read()
		if err := f.Add(ctx, now.Sub(sent)); err != nil {
			return err
		}
		sent = now
		return nil
	}
	ticker := time.NewTicker(f.cfg.Interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return flush(final)
		case <-ticker.C:
			if err := flush(ctx); err != nil && onError != nil && ctx.Err() == nil {
				onError(err)
			}
		}
	}
}

// Flusher is what a flush request asks of a worker: *batch.Engine.
type Flusher interface {
	Flush(ctx context.Context) (batch.FlushReport, error)
}

// FlushReply is one worker's answer to a flush request.
type FlushReply struct {
	// Worker identifies the worker.
	Worker string `json:"worker"`
	// Batches and Requests say what it sent.
	Batches  int `json:"batches"`
	Requests int `json:"requests"`
	// Error says why its flush failed or stopped early; empty when it did
	// not.
	Error string `json:"error,omitempty"`
}

// FlushResponder answers flush requests for one worker. Create it with
// ServeFlush and stop it with Stop.
type FlushResponder struct {
	sub *nats.Subscription
	// busy is held while a request is answered; stopped turns later
	// deliveries away.
	busy    sync.Mutex
	stopped bool
	once    sync.Once
}

// ServeFlush subscribes worker to subject (wire.ControlFlushSubject when empty)
// with a plain subscription, so every worker receives every request, and
// answers each request with f's FlushReport. A flush is bounded by timeout
// (30s when 0); worker is required.
func ServeFlush(nc *nats.Conn, subject, worker string, f Flusher, timeout time.Duration) (*FlushResponder, error) {
	if subject == "" {
		subject = wire.ControlFlushSubject
	}
	if worker == "" || f == nil || nc == nil {
		return nil, errors.New("fleet: ServeFlush needs a connection, a worker id and a flusher")
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	r := &FlushResponder{}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		r.busy.Lock()
		defer r.busy.Unlock()
		if m.Reply == "" || r.stopped {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		report, err := f.Flush(ctx)
		reply := FlushReply{Worker: worker, Batches: report.Batches, Requests: report.Requests}
		if err != nil {
			reply.Error = err.Error()
		}
		body, _ := json.Marshal(reply)
		_ = m.Respond(body) // the asker may be gone; nothing to do then
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: subscribe to %s: %w", subject, err)
	}
	r.sub = sub
	return r, nil
}

// Stop stops answering and returns once a flush being answered has
// finished. It may be called more than once.
func (r *FlushResponder) Stop() error {
	var err error
	r.once.Do(func() {
		if e := r.sub.Unsubscribe(); e != nil && !errors.Is(e, nats.ErrConnectionClosed) && !errors.Is(e, nats.ErrBadSubscription) {
			err = fmt.Errorf("fleet: stop flush responder: %w", e)
		}
		r.busy.Lock()
		r.stopped = true
		r.busy.Unlock()
	})
	return err
}

// FlushAll asks every worker listening on subject (wire.ControlFlushSubject when
// empty) to flush, and returns their replies in the order they came. It
// waits for the first reply until ctx ends, then for more until none comes
// for quiet (250ms when 0); it returns at once, with no replies, when no
// worker listens. Replies that cannot be read are skipped. It returns ctx's
// error only when no reply came at all.
func FlushAll(ctx context.Context, nc *nats.Conn, subject string, quiet time.Duration) ([]FlushReply, error) {
	if subject == "" {
		subject = wire.ControlFlushSubject
	}
	if quiet <= 0 {
		quiet = 250 * time.Millisecond
	}
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("fleet: subscribe to flush replies: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
		return nil, fmt.Errorf("fleet: send flush request on %s: %w", subject, err)
	}
	var replies []FlushReply
	for {
		wait := ctx
		cancel := context.CancelFunc(func() {})
		if len(replies) > 0 {
			wait, cancel = context.WithTimeout(ctx, quiet)
		}
		m, err := sub.NextMsgWithContext(wait)
		cancel()
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, nil // no worker listens
		}
		if err != nil {
			if len(replies) == 0 && ctx.Err() != nil {
				return nil, fmt.Errorf("fleet: wait for flush replies: %w", ctx.Err())
			}
			if len(replies) == 0 {
				return nil, fmt.Errorf("fleet: wait for flush replies: %w", err)
			}
			return replies, nil
		}
		var reply FlushReply
		if err := json.Unmarshal(m.Data, &reply); err != nil || reply.Worker == "" {
			continue
		}
		replies = append(replies, reply)
	}
}
