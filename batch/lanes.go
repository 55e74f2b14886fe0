package batch

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/aibatch/aibatch/wire"
)

// dispatchFunc takes a set of requests on to the calls. It must call
// release when the set is done, to free the lane's in-flight slot.
type dispatchFunc func(trigger wire.Trigger, items []*item, release func())

// batchLane fetches requests when the scheduler's rules (scheduler.go) say
// so, holds them by group in its window (holding.go), and sends a group
// when it is due. It fetches only while it has an in-flight slot free to
// send what fills up, so a worker does not hoard requests its fleet could
// send.
type batchLane struct {
	queue    Queue
	cfg      Config
	intake   intake
	window   *window
	groups   *groups
	slots    semaphore
	dispatch dispatchFunc
	// abandon hands held requests back unspent: when the lane stops, and
	// partial groups a follower leaves to the holder.
	abandon  func(items []*item)
	flushes  chan flushRequest
	handBack *handBacks
	// expiries holds when requests this worker deferred pass RequestTTL.
	expiries *handBacks
	// paused reports whether the provider can serve no one now.
	paused func() bool
	// lease, when set, says whether this worker gathers partial groups.
	lease HoldLease
	// cache, when on, answers what it can as a fetch comes in.
	cache    *responseCache
	stats    *stats
	observer Observer
	log      *zap.Logger
	// inFlight counts this lane's requests in calls now.
	inFlight atomic.Int64
	// freed is told when a dispatched set releases its slot.
	freed chan struct{}
}

// run fetches, holds and sends until ctx ends; then it hands the held
// requests back.
func (l *batchLane) run(ctx context.Context) {
	ticker := time.NewTicker(l.cfg.PollInterval)
	defer ticker.Stop()
	keepAlive := time.NewTicker(l.cfg.AckWait / 3)
	defer keepAlive.Stop()
	s := schedule{lastFlush: time.Now()}
	// Requests held by a worker that died come back after AckWait; look for
	// them then rather than at the next interval.
	if b, err := l.queue.Backlog(ctx); err == nil && b.AckPending > 0 {
		l.handBack.add(time.Now().Add(l.cfg.AckWait + retryGrace))
	}
	for {
		l.pollOnce(ctx, &s)
		select {
		case <-ctx.Done():
			l.abandonHeld()
			return
		case <-ticker.C:
		case <-l.freed:
		case <-keepAlive.C:
			for _, m := range l.window.messages() {
				_ = m.InProgress()
			}
		case req := <-l.flushes:
			req.reply <- l.forceFlush(ctx, &s)
		}
	}
}

// abandonHeld hands every held request back at once, without spending an
// attempt: another worker (or this one, restarted) takes them.
func (l *batchLane) abandonHeld() {
	var items []*item
	for _, g := range l.window.snapshot() {
		items = append(items, l.window.take(g.key, len(g.items))...)
	}
	if len(items) > 0 {
		l.abandon(items)
	}
}

// pollOnce reads the backlog, fetches into the window while the rules say
// so, and sends every group that is due.
func (l *batchLane) pollOnce(ctx context.Context, s *schedule) {
	b, err := l.queue.Backlog(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		l.log.Warn("read backlog", zap.Error(err))
	}
	now := time.Now()
	s.paused = l.paused()
	s.follower = l.lease != nil && !l.lease.Held()
	s.drained = err == nil && b.Pending < 2*l.cfg.MaxBatchSize
	s.handsBack = l.intake.attempts != nil
	held := l.window.snapshot()
	heldCount := 0
	for _, g := range held {
		heldCount += len(g.items)
	}
	s.gather = err == nil && l.lease != nil && !s.follower && b.AckPending > int(l.inFlight.Load())+heldCount
	if err == nil && b.Pending == 0 && b.AckPending > int(l.inFlight.Load())+heldCount && s.orphanCheckAt.IsZero() {
		// Requests are delivered to some worker and not acked, and no new
		// request will trigger a fetch that would pick them up: if their
		// worker died (or a fetch reply was lost on the way), they become
		// deliverable again after AckWait. Look then.
		s.orphanCheckAt = now.Add(l.cfg.AckWait + retryGrace)
	}
	s.retryAt = l.handBack.next()
	s.expireAt = l.expiries.next()
	if b.Pending == 0 && heldCount == 0 && now.Sub(s.lastFlush) >= l.cfg.Interval {
		s.lastFlush = now // an interval with nothing to send
	}
	l.stats.setSchedule(b, nextDue(b, held, *s, l.cfg))
	l.observer.BacklogRead(b)

	reason := fetchNone
	if err == nil {
		reason = fetchDue(now, b, *s, l.cfg)
	}
	if reason == fetchBack {
		l.handBack.takeDue(now)
		l.expiries.takeDue(now)
		if !s.orphanCheckAt.IsZero() && !now.Before(s.orphanCheckAt) {
			s.orphanCheckAt = time.Time{}
		}
	}
	if s.paused && reason != fetchNone {
		l.log.Info("provider unavailable: fetching to end requests past REQUEST_TTL", zap.Duration("request_ttl", l.cfg.RequestTTL))
	}
	for fetching := reason != fetchNone; ; {
		l.sendDue(ctx, now, s)
		if !fetching || l.window.full() || !l.slots.free() || ctx.Err() != nil {
			return
		}
		fetching = l.fetch(ctx, l.window.room())
	}
}

// fetch takes up to a call's worth of requests (at most room) into the
// window, and reports whether there may be more to fetch now.
func (l *batchLane) fetch(ctx context.Context, room int) bool {
	want := min(room, l.cfg.MaxBatchSize)
	msgs, err := l.queue.Fetch(ctx, want)
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn("fetch requests", zap.Error(err))
		}
		return false
	}
	l.hold(msgs)
	return len(msgs) == want
}

// hold reads msgs into the window; requests that can never succeed are
// settled at once.
func (l *batchLane) hold(msgs []Message) {
	var rejected, kept []*item
	for _, m := range msgs {
		it := l.intake.read(context.Background(), m)
		if it.outcome != outcomeNone {
			rejected = append(rejected, it)
			continue
		}
		kept = append(kept, it)
	}
	if l.cache != nil {
		// Looked up as the fetch comes in, so a hit does not wait for its
		// group in the window.
		if hits := l.cache.answer(context.Background(), kept); len(hits) > 0 {
			n := int64(len(hits))
			l.inFlight.Add(n)
			l.dispatch(wire.TriggerCache, hits, func() { l.inFlight.Add(-n) })
			kept = uncached(kept)
		}
	}
	for _, it := range kept {
		l.window.add(it)
	}
	if len(rejected) > 0 {
		n := int64(len(rejected))
		l.inFlight.Add(n)
		l.dispatch(wire.TriggerSize, rejected, func() { l.inFlight.Add(-n) })
	}
}

// sendDue sends every held group that is due, a call's worth per in-flight
// slot, oldest group first, until the slots run out.
func (l *batchLane) sendDue(ctx context.Context, now time.Time, s *schedule) {
	held := l.window.snapshot()
	full := l.window.full()
	intervalDue := now.Sub(s.lastFlush) >= l.cfg.Interval
	for i, g := range held {
		size := l.groups.size(g.key)
		trigger, n, ok := groupDue(now, g, size, *s, l.cfg, full, i == 0)
		if !ok {
			continue
		}
		if !l.send(ctx, g.key, trigger, n, size, false) {
			return
		}
	}
	l.handBackPartial(s)
	if intervalDue && l.window.empty() {
		s.lastFlush = now
	}
}

// handBackPartial hands the partial groups handBackDue names back to the
// broker, unspent, for the holder to gather.
func (l *batchLane) handBackPartial(s *schedule) {
	var back []*item
	for _, g := range l.window.snapshot() {
		if handBackDue(g, l.groups.size(g.key), *s) {
			back = append(back, l.window.take(g.key, len(g.items))...)
		}
	}
	if len(back) == 0 {
		return
	}
	for _, it := range back {
		it.attempts.Passed++
	}
	l.log.Debug("handing partial groups back to the holder", zap.Int("requests", len(back)))
	l.abandon(back)
}

// send dispatches n of group k's held requests, at most size per in-flight
// slot. It waits for slots when wait is set; otherwise it stops when none is
// free, and reports whether it sent all n.
func (l *batchLane) send(ctx context.Context, k groupKey, trigger wire.Trigger, n, size int, wait bool) bool {
	for n > 0 {
		if wait {
			if l.slots.acquire(ctx) != nil {
				return false
			}
		} else if !l.slots.tryAcquire() {
			return false
		}
		items := l.window.take(k, min(n, max(size, 1)))
		if len(items) == 0 {
			l.slots.release()
			return true
		}
		n -= len(items)
		count := int64(len(items))
		l.inFlight.Add(count)
		l.dispatch(trigger, items, func() {
			l.inFlight.Add(-count)
			l.slots.release()
			select {
			case l.freed <- struct{}{}:
			default:
			}
		})
	}
	return true
}

// FlushReport says what a forced flush sent.
type FlushReport struct {
	// Batches counts the sets of requests sent to calls.
	Batches int `json:"batches"`
	// Requests counts the requests in them.
	Requests int `json:"requests"`
	// Err is set when the flush stopped early.
	Err error `json:"-"`
}

type flushRequest struct{ reply chan FlushReport }

// forceFlush fetches what waits in the stream (as far as the window holds)
// and sends every held group, whatever the schedule says.
func (l *batchLane) forceFlush(ctx context.Context, s *schedule) FlushReport {
	var report FlushReport
	for !l.window.full() && l.fetch(ctx, l.window.room()) {
	}
	for _, g := range l.window.snapshot() {
		size := l.groups.size(g.key)
		n := len(g.items)
		for sent := 0; sent < n; {
			chunk := min(n-sent, max(size, 1))
			if !l.send(ctx, g.key, wire.TriggerForced, chunk, size, true) {
				report.Err = ctx.Err()
				return report
			}
			report.Batches++
			report.Requests += chunk
			sent += chunk
		}
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
	intake       intake
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
		items := make([]*item, len(msgs))
		for i, m := range msgs {
			items[i] = l.intake.read(ctx, m)
		}
		l.dispatch(l.trigger, items, l.slots.release)
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

// tryAcquire takes a slot if one is free now.
func (s semaphore) tryAcquire() bool {
	select {
	case s <- struct{}{}:
		return true
	default:
		return false
	}
}

// free reports whether a slot is free now.
func (s semaphore) free() bool { return len(s) < cap(s) }
