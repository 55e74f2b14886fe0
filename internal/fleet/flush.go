package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/wire"
)

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
