package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/batch"
)

// Queue is one lane of the request stream read through a durable pull
// consumer shared by every worker. It implements batch.Queue.
type Queue struct {
	stream   jetstream.Stream
	consumer jetstream.Consumer
	filters  []string

	// The oldest undelivered request only changes when the consumer delivers
	// past it, so it is looked up once per delivered sequence.
	mu           sync.Mutex
	cachedAfter  uint64
	oldestCached time.Time
}

var _ batch.Queue = (*Queue)(nil)

func newQueue(ctx context.Context, s jetstream.Stream, cfg jetstream.ConsumerConfig) (*Queue, error) {
	c, err := s.CreateOrUpdateConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("jetstream: create or update consumer %q: %w", cfg.Durable, err)
	}
	return &Queue{stream: s, consumer: c, filters: cfg.FilterSubjects}, nil
}

// Consumer returns the lane's durable consumer.
func (q *Queue) Consumer() jetstream.Consumer { return q.consumer }

// Backlog reads the consumer's state: undelivered requests, the publish
// time of the oldest of them, and requests delivered but not acked.
func (q *Queue) Backlog(ctx context.Context) (batch.Backlog, error) {
	info, err := q.consumer.Info(ctx)
	if err != nil {
		return batch.Backlog{}, fmt.Errorf("jetstream: read consumer state: %w", err)
	}
	b := batch.Backlog{Pending: int(info.NumPending), AckPending: info.NumAckPending}
	if b.Pending == 0 {
		return b, nil
	}
	b.Oldest, err = q.oldestAfter(ctx, info.Delivered.Stream)
	return b, err
}

// oldestAfter returns the publish time of the first request after the
// consumer's last delivered stream sequence.
func (q *Queue) oldestAfter(ctx context.Context, delivered uint64) (time.Time, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.cachedAfter == delivered && !q.oldestCached.IsZero() {
		return q.oldestCached, nil
	}
	var oldest time.Time
	for _, f := range q.filters {
		m, err := q.stream.GetMsg(ctx, delivered+1, jetstream.WithGetMsgSubject(f))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("jetstream: read oldest pending request: %w", err)
		}
		if oldest.IsZero() || m.Time.Before(oldest) {
			oldest = m.Time
		}
	}
	q.cachedAfter, q.oldestCached = delivered, oldest
	return oldest, nil
}

// Fetch returns up to max requests available now without waiting.
func (q *Queue) Fetch(ctx context.Context, max int) ([]batch.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	mb, err := q.consumer.FetchNoWait(max)
	if err != nil {
		return nil, fmt.Errorf("jetstream: fetch requests: %w", err)
	}
	return collect(mb, max)
}

// waitSlice bounds one long poll in Wait, so a lost pull request is renewed;
// waitHeartbeat is how often the server confirms the poll is alive.
// nats.go refuses heartbeats on a poll shorter than two of them, and gives
// the server 90% of the context's remaining time, so a poll shorter than
// heartbeatPoll goes without.
const (
	waitSlice     = 30 * time.Second
	waitHeartbeat = time.Second
	heartbeatPoll = 3 * waitHeartbeat
)

// Wait blocks until a request arrives or ctx ends, then returns it with
// whatever else is available at that moment, up to max.
func (q *Queue) Wait(ctx context.Context, max int) ([]batch.Message, error) {
	// nats.go may send the pull request before it looks at the context,
	// and then hand back a request to a caller that had already given up.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, waitSlice)
	defer cancel()
	opts := []jetstream.FetchOpt{jetstream.FetchContext(wctx)}
	// Heartbeats every second notice a pull request lost with a restarted
	// server within seconds rather than at the end of the long poll.
	if deadline, _ := wctx.Deadline(); time.Until(deadline) >= heartbeatPoll {
		opts = append(opts, jetstream.FetchHeartbeat(waitHeartbeat))
	}
	first, err := q.consumer.Next(opts...)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// nats.go refuses a context whose deadline has passed a moment
		// before the context itself reports it.
		if deadlinePassed(ctx) {
			return nil, context.DeadlineExceeded
		}
		// The long poll ended without a request: not an error.
		if wctx.Err() != nil || deadlinePassed(wctx) || errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) {
			return nil, nil
		}
		return nil, fmt.Errorf("jetstream: wait for requests: %w", err)
	}
	m, err := adapt(first)
	if err != nil {
		return nil, err
	}
	out := []batch.Message{m}
	if max > 1 {
		more, err := q.Fetch(ctx, max-1)
		if err != nil {
			// The first request is ours already; send it alone.
			return out, nil
		}
		out = append(out, more...)
	}
	return out, nil
}

// deadlinePassed reports whether ctx has a deadline that is not in the
// future.
func deadlinePassed(ctx context.Context) bool {
	deadline, ok := ctx.Deadline()
	return ok && !time.Now().Before(deadline)
}

func collect(mb jetstream.MessageBatch, max int) ([]batch.Message, error) {
	out := make([]batch.Message, 0, max)
	for m := range mb.Messages() {
		am, err := adapt(m)
		if err != nil {
			return out, err
		}
		out = append(out, am)
	}
	if err := mb.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && len(out) == 0 {
		return nil, fmt.Errorf("jetstream: fetch requests: %w", err)
	}
	return out, nil
}
