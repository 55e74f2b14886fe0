package batch

import (
	"time"

	"github.com/aibatch/aibatch/wire"
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
	// paused is true while the provider can serve no one (its breaker is
	// open): only requests past RequestTTL are fetched, to end them.
	paused bool
	// expireAt is when the first request this worker deferred passes
	// RequestTTL; zero when there is none.
	expireAt time.Time
	// drainLeft is how many requests the last backlog read said still wait
	// behind the batches sent since: while it holds a full batch, the lane
	// fetches without reading the backlog again, so a backlog drains at the
	// speed of the fetches.
	drainLeft int
}

// due decides whether the batch lane sends now, and why. The first rule that
// holds wins: size, max_wait, retry, interval. While the lane is paused (the
// provider is unavailable) only a request past RequestTTL makes a fetch, so
// that it ends as expired.
func due(now time.Time, b Backlog, s schedule, c Config) (wire.Trigger, bool) {
	if s.paused {
		switch {
		case b.Pending > 0 && !b.Oldest.IsZero() && now.Sub(b.Oldest) >= c.RequestTTL:
			return wire.TriggerMaxWait, true
		case !s.expireAt.IsZero() && !now.Before(s.expireAt):
			return wire.TriggerRetry, true
		}
		return "", false
	}
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
