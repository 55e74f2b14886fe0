package batch

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/aibatch/aibatch/wire"
)

// dispatchFunc takes a fetched set of requests on to the calls. It must
// call release when the set is done, to free the lane's in-flight slot.
type dispatchFunc func(trigger wire.Trigger, msgs []Message, release func())

// batchLane reads the batch lane's backlog every PollInterval and fetches a
// batch when the scheduler's rules (scheduler.go) say one is due.
type batchLane struct {
	queue    Queue
	cfg      Config
	slots    semaphore
	dispatch dispatchFunc
	flushes  chan flushRequest
	handBack *handBacks
	// expiries holds when requests this worker deferred pass RequestTTL.
	expiries *handBacks
	// paused reports whether the provider can serve no one now.
	paused   func() bool
	stats    *stats
	observer Observer
	log      *zap.Logger
	// inFlight counts this lane's requests in calls now.
	inFlight atomic.Int64
}

// run sends batches when due until ctx ends.
func (l *batchLane) run(ctx context.Context) {
	ticker := time.NewTicker(l.cfg.PollInterval)
	defer ticker.Stop()
	s := schedule{lastFlush: time.Now()}
	// Requests held by a worker that died come back after AckWait; look for
	// them then rather than at the next interval.
	if b, err := l.queue.Backlog(ctx); err == nil && b.AckPending > 0 {
		l.handBack.add(time.Now().Add(l.cfg.AckWait + retryGrace))
	}
	for {
		if l.pollOnce(ctx, &s) {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case req := <-l.flushes:
			req.reply <- l.forceFlush(ctx, &s)
		}
	}
}

// pollOnce reads the backlog and sends one batch if one is due. It returns
// true when a full batch was sent for size, so the caller sends the next one
// at once instead of waiting for the next poll.
func (l *batchLane) pollOnce(ctx context.Context, s *schedule) bool {
	s.paused = l.paused()
	if s.drainLeft >= l.cfg.MaxBatchSize && !s.paused {
		n, err := l.send(ctx, wire.TriggerSize)
		if err != nil || n < l.cfg.MaxBatchSize {
			// Another worker took some, or the fetch failed: read the
			// backlog again.
			s.drainLeft = 0
			return err == nil && n > 0
		}
		s.drainLeft -= n
		s.lastFlush = time.Now()
		return true
	}
	b, err := l.queue.Backlog(ctx)
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn("read backlog", zap.Error(err))
		}
		return false
	}
	now := time.Now()
	if b.Pending == 0 && b.AckPending > int(l.inFlight.Load()) && s.orphanCheckAt.IsZero() {
		// Requests are delivered to some worker and not acked, and no new
		// request will trigger a fetch that would pick them up: if their
		// worker died (or a fetch reply was lost on the way), they become
		// deliverable again after AckWait. Look then.
		s.orphanCheckAt = now.Add(l.cfg.AckWait + retryGrace)
	}
	s.retryAt = l.handBack.next()
	s.expireAt = l.expiries.next()
	if b.Pending == 0 && now.Sub(s.lastFlush) >= l.cfg.Interval {
		s.lastFlush = now // an interval with nothing to send
	}
	l.stats.setSchedule(b, nextDue(b, *s, l.cfg))
	l.observer.BacklogRead(b)
	trigger, ok := due(now, b, *s, l.cfg)
	if !ok {
		return false
	}
	if trigger == wire.TriggerRetry {
		l.handBack.takeDue(now)
	}
	if !s.expireAt.IsZero() && !now.Before(s.expireAt) {
		l.expiries.takeDue(now)
	}
	if s.paused {
		l.log.Info("provider unavailable: fetching to end requests past REQUEST_TTL", zap.Duration("request_ttl", l.cfg.RequestTTL))
	}
	if !s.orphanCheckAt.IsZero() && !now.Before(s.orphanCheckAt) {
		s.orphanCheckAt = time.Time{}
	}
	n, err := l.send(ctx, trigger)
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn("fetch batch", zap.String("trigger", string(trigger)), zap.Error(err))
		}
		return false
	}
	s.lastFlush = now
	full := n == l.cfg.MaxBatchSize
	if trigger == wire.TriggerSize && full {
		s.drainLeft = b.Pending - n
	}
	if trigger == wire.TriggerRetry && full {
		// More handed-back (or orphaned) requests may be waiting than one
		// batch took: look again at once.
		l.handBack.add(now)
	}
	return trigger == wire.TriggerSize && full
}

// send takes an in-flight slot, fetches up to MaxBatchSize requests and
// dispatches them. It returns how many requests it fetched.
func (l *batchLane) send(ctx context.Context, trigger wire.Trigger) (int, error) {
	if err := l.slots.acquire(ctx); err != nil {
		return 0, err
	}
	msgs, err := l.queue.Fetch(ctx, l.cfg.MaxBatchSize)
	if err != nil || len(msgs) == 0 {
		l.slots.release()
		return 0, err
	}
	n := int64(len(msgs))
	l.inFlight.Add(n)
	l.dispatch(trigger, msgs, func() {
		l.inFlight.Add(-n)
		l.slots.release()
	})
	return len(msgs), nil
}

// FlushReport says what a forced flush sent.
type FlushReport struct {
	// Batches counts the fetches sent to calls.
	Batches int `json:"batches"`
	// Requests counts the requests in them.
	Requests int `json:"requests"`
	// Err is set when the flush stopped early.
	Err error `json:"-"`
}

type flushRequest struct{ reply chan FlushReport }

// forceFlush sends everything that waited in the batch lane when it was
// called, in batches of MaxBatchSize.
func (l *batchLane) forceFlush(ctx context.Context, s *schedule) FlushReport {
	var report FlushReport
	b, err := l.queue.Backlog(ctx)
	if err != nil {
		report.Err = err
		return report
	}
	for remaining := max(b.Pending, 1); remaining > 0; {
		n, err := l.send(ctx, wire.TriggerForced)
		if err != nil {
			report.Err = err
			break
		}
		if n == 0 {
			break
		}
		report.Batches++
		report.Requests += n
		remaining -= n
	}
	if report.Requests > 0 {
		s.lastFlush = time.Now()
	}
	return report
}

// eagerLane sends as soon as requests arrive: the urgent lane (one call for
// whatever urgent requests wait) and, with batching off, the batch lane
// (one call per request).
type eagerLane struct {
	queue        Queue
	trigger      wire.Trigger
	fetchMax     int
	slots        semaphore
	dispatch     dispatchFunc
	pollInterval time.Duration
	// paused reports whether the provider can serve no one now; the lane
	// then waits for it, leaving requests in the stream.
	paused func() bool
	log    *zap.Logger
}

// run waits for requests and dispatches them until ctx ends.
func (l *eagerLane) run(ctx context.Context) {
	for {
		if l.paused() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(l.pollInterval):
			}
			continue
		}
		if err := l.slots.acquire(ctx); err != nil {
			return
		}
		msgs, err := l.queue.Wait(ctx, l.fetchMax)
		if err != nil || len(msgs) == 0 {
			l.slots.release()
			if ctx.Err() != nil {
				return
			}
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				l.log.Warn("wait for requests", zap.String("trigger", string(l.trigger)), zap.Error(err))
				select {
				case <-ctx.Done():
					return
				case <-time.After(l.pollInterval):
				}
			}
			continue
		}
		l.dispatch(l.trigger, msgs, l.slots.release)
	}
}

// semaphore bounds the batches in calls at once.
type semaphore chan struct{}

func newSemaphore(n int) semaphore { return make(semaphore, n) }

func (s semaphore) acquire(ctx context.Context) error {
	select {
	case s <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s semaphore) release() { <-s }
