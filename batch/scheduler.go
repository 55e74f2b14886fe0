package batch

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/aibatch/aibatch/wire"
	"go.uber.org/zap"
)

// schedule is the batch lane's memory between polls.
type schedule struct {
	// lastFlush is when the lane last sent, or last found nothing to send
	// when Interval passed.
	lastFlush time.Time
	// retryAt is when the earliest request this worker handed back for a
	// retry becomes deliverable again; zero when there is none.
	retryAt time.Time
	// orphanCheckAt is when to look for requests a dead worker held, when
	// nothing else would fetch them; zero when no look is planned.
	orphanCheckAt time.Time
	// drainLeft is how many requests the last backlog read said still wait
	// behind the batches sent since: while it holds a full batch, the lane
	// fetches without reading the backlog again, so a backlog drains at the
	// speed of the fetches.
	drainLeft int
}

// retryGrace is added to a hand-back's delay before the scheduler looks for
// the request again, so the broker has made it deliverable by then.
const retryGrace = 50 * time.Millisecond

// retrySchedule remembers when requests this worker handed back become
// deliverable again, earliest first. Times within retryGrace of each other
// are kept once: a batch's retries come back together.
type retrySchedule struct {
	mu  sync.Mutex
	due []time.Time
}

func (r *retrySchedule) add(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := sort.Search(len(r.due), func(i int) bool { return !r.due[i].Before(t) })
	if (i < len(r.due) && r.due[i].Sub(t) < retryGrace) || (i > 0 && t.Sub(r.due[i-1]) < retryGrace) {
		return
	}
	r.due = slices.Insert(r.due, i, t)
}

// next returns the earliest time, or zero.
func (r *retrySchedule) next() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.due) == 0 {
		return time.Time{}
	}
	return r.due[0]
}

// takeDue forgets every time up to now.
func (r *retrySchedule) takeDue(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := sort.Search(len(r.due), func(i int) bool { return r.due[i].After(now) })
	r.due = r.due[i:]
}

// due decides whether the batch lane sends now, and why. The first rule that
// holds wins: size, max_wait, retry, interval.
func due(now time.Time, b Backlog, s schedule, c Config) (wire.Trigger, bool) {
	switch {
	case b.Pending >= c.MaxBatchSize:
		return wire.TriggerSize, true
	case b.Pending > 0 && !b.Oldest.IsZero() && now.Sub(b.Oldest) >= c.MaxWait:
		return wire.TriggerMaxWait, true
	case !s.retryAt.IsZero() && !now.Before(s.retryAt):
		return wire.TriggerRetry, true
	case b.Pending == 0 && !s.orphanCheckAt.IsZero() && !now.Before(s.orphanCheckAt):
		// Only with nothing new pending, so the fetch takes nothing but
		// redeliveries; new requests bring the orphans along when they go.
		return wire.TriggerRetry, true
	case b.Pending > 0 && now.Sub(s.lastFlush) >= c.Interval:
		return wire.TriggerInterval, true
	}
	return "", false
}

// nextDue is the earliest time a batch becomes due by the clock, assuming no
// more requests arrive: the interval, the oldest request's MaxWait, or a
// retry. It is zero when nothing waits.
func nextDue(b Backlog, s schedule, c Config) time.Time {
	var next time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if b.Pending > 0 {
		earliest(s.lastFlush.Add(c.Interval))
		if !b.Oldest.IsZero() {
			earliest(b.Oldest.Add(c.MaxWait))
		}
	}
	earliest(s.retryAt)
	return next
}

// runBatchLane polls the batch lane's backlog and sends batches when due,
// until ctx ends.
func (e *Engine) runBatchLane(ctx context.Context) {
	ticker := time.NewTicker(e.cfg.PollInterval)
	defer ticker.Stop()
	s := schedule{lastFlush: time.Now()}
	// Requests held by a worker that died come back after AckWait; look for
	// them then rather than at the next interval.
	if b, err := e.queue.Backlog(ctx); err == nil && b.AckPending > 0 {
		e.retries.add(time.Now().Add(e.cfg.AckWait + retryGrace))
	}
	for {
		again := e.pollOnce(ctx, &s)
		if again {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case req := <-e.flushes:
			req.reply <- e.forceFlush(ctx, &s)
		}
	}
}

// pollOnce reads the backlog and sends one batch if one is due. It returns
// true when a full batch was sent for size, so the caller sends the next one
// at once instead of waiting for the next poll.
func (e *Engine) pollOnce(ctx context.Context, s *schedule) bool {
	if s.drainLeft >= e.cfg.MaxBatchSize {
		n, err := e.send(ctx, wire.TriggerSize)
		if err != nil || n < e.cfg.MaxBatchSize {
			// Another worker took some, or the fetch failed: read the
			// backlog again.
			s.drainLeft = 0
			return err == nil && n > 0
		}
		s.drainLeft -= n
		s.lastFlush = time.Now()
		return true
	}
	b, err := e.queue.Backlog(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("read backlog", zap.Error(err))
		}
		return false
	}
	now := time.Now()
	if b.Pending == 0 && b.AckPending > int(e.batchLaneInFlight.Load()) && s.orphanCheckAt.IsZero() {
		// Requests are delivered to some worker and not acked, and no new
		// request will trigger a fetch that would pick them up: if their
		// worker died (or a fetch reply was lost on the way), they become
		// deliverable again after AckWait. Look then.
		s.orphanCheckAt = now.Add(e.cfg.AckWait + retryGrace)
	}
	s.retryAt = e.retries.next()
	if b.Pending == 0 && now.Sub(s.lastFlush) >= e.cfg.Interval {
		s.lastFlush = now // an interval with nothing to send
	}
	e.stats.setSchedule(b, nextDue(b, *s, e.cfg))
	e.observer.BacklogRead(b)
	trigger, ok := due(now, b, *s, e.cfg)
	if !ok {
		return false
	}
	if trigger == wire.TriggerRetry {
		e.retries.takeDue(now)
	}
	if !s.orphanCheckAt.IsZero() && !now.Before(s.orphanCheckAt) {
		s.orphanCheckAt = time.Time{}
	}
	n, err := e.send(ctx, trigger)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("fetch batch", zap.String("trigger", string(trigger)), zap.Error(err))
		}
		return false
	}
	s.lastFlush = now
	full := n == e.cfg.MaxBatchSize
	if trigger == wire.TriggerSize && full {
		s.drainLeft = b.Pending - n
	}
	if trigger == wire.TriggerRetry && full {
		// More handed-back (or orphaned) requests may be waiting than one
		// batch took: look again at once.
		e.retries.add(now)
	}
	return trigger == wire.TriggerSize && full
}

// send takes an in-flight slot, fetches up to MaxBatchSize requests and hands
// them to a call. It returns how many requests it fetched.
func (e *Engine) send(ctx context.Context, trigger wire.Trigger) (int, error) {
	if err := e.batchSlots.acquire(ctx); err != nil {
		return 0, err
	}
	msgs, err := e.queue.Fetch(ctx, e.cfg.MaxBatchSize)
	if err != nil || len(msgs) == 0 {
		e.batchSlots.release()
		return 0, err
	}
	e.dispatch(trigger, msgs, e.batchSlots)
	return len(msgs), nil
}

// forceFlush sends everything that waited in the batch lane when it was
// called, in batches of MaxBatchSize.
func (e *Engine) forceFlush(ctx context.Context, s *schedule) FlushReport {
	var report FlushReport
	b, err := e.queue.Backlog(ctx)
	if err != nil {
		report.Err = err
		return report
	}
	for remaining := max(b.Pending, 1); remaining > 0; {
		n, err := e.send(ctx, wire.TriggerForced)
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

// runLane serves a lane that sends as soon as requests arrive: the urgent
// lane (one call for whatever urgent requests wait) and, with batching off,
// the batch lane (one call per request).
func (e *Engine) runLane(ctx context.Context, q Queue, trigger wire.Trigger, slots semaphore) {
	fetchMax := e.cfg.MaxBatchSize
	if trigger == wire.TriggerImmediate {
		fetchMax = 1
	}
	for {
		if err := slots.acquire(ctx); err != nil {
			return
		}
		msgs, err := q.Wait(ctx, fetchMax)
		if err != nil || len(msgs) == 0 {
			slots.release()
			if ctx.Err() != nil {
				return
			}
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				e.log.Warn("wait for requests", zap.String("trigger", string(trigger)), zap.Error(err))
				select {
				case <-ctx.Done():
					return
				case <-time.After(e.cfg.PollInterval):
				}
			}
			continue
		}
		e.dispatch(trigger, msgs, slots)
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
