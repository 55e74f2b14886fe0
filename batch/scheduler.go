package batch

import (
	"time"

	"github.com/aibatch/aibatch/wire"
)

// The scheduler's rules: when the batch lane fetches, and when a held group
// is sent. The lane (lanes.go) applies them every PollInterval.

// schedule is the batch lane's memory between polls.
type schedule struct {
	// lastFlush is when the lane last sent every held group for Interval,
	// or found nothing to send when Interval passed.
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
	// follower is true when another worker of the fleet holds partial
	// groups (HoldLease): this one fetches new requests only once a backlog
	// builds up.
	follower bool
	// drained is true when fewer than two calls' worth wait in the stream:
	// a follower then hands the partial groups it holds back to the holder
	// (or, when it cannot, sends them) instead of keeping them until
	// MaxWait.
	drained bool
	// handsBack is true when the lane can hand requests back without
	// spending a delivery (an AttemptStore records them as free).
	handsBack bool
	// gather is true when this worker holds the lease and requests
	// delivered to other workers wait unacked: some may be partial groups
	// handed back to it, deliverable again.
	gather bool
}

// fetchReason says why the batch lane fetches.
type fetchReason int

const (
	fetchNone fetchReason = iota
	// fetchNew: requests wait in the stream; the lane holds them by group.
	fetchNew
	// fetchBack: requests handed back (for a retry, by a dead worker, or
	// deferred past their RequestTTL) are deliverable again.
	fetchBack
)

// fetchDue decides whether the batch lane fetches now. A follower (another
// worker gathers partial groups) fetches new requests only when two calls'
// worth wait; the holder also looks for requests followers handed back.
// While it is paused
// (the provider is unavailable) only requests past RequestTTL make a fetch,
// so that they end as expired.
func fetchDue(now time.Time, b Backlog, s schedule, c Config) fetchReason {
	due := func(t time.Time) bool { return !t.IsZero() && !now.Before(t) }
	if s.paused {
		switch {
		case b.Pending > 0 && !b.Oldest.IsZero() && now.Sub(b.Oldest) >= c.RequestTTL:
			return fetchNew
		case due(s.expireAt):
			return fetchBack
		}
		return fetchNone
	}
	switch {
	case due(s.retryAt):
		return fetchBack
	case b.Pending == 0 && due(s.orphanCheckAt):
		// Only with nothing new pending, so the fetch takes nothing but
		// redeliveries; new requests bring the orphans along when they go.
		return fetchBack
	case b.Pending > 0 && (!s.follower || b.Pending >= 2*c.MaxBatchSize):
		return fetchNew
	case b.Pending == 0 && s.gather:
		// Followers hand back what is left of a burst for the holder to
		// gather; JetStream does not count redeliveries as pending.
		return fetchBack
	}
	return fetchNone
}

// groupDue decides whether a held group is sent now, why, and how many of
// its requests. The first rule that holds wins:
//
//   - retry: it holds a request delivered before, which has waited already;
//     the whole group goes.
//   - size: it holds at least a call's worth (size, the group's current
//     call size); every full call's worth goes, the rest keeps waiting.
//   - max_wait: its oldest request has waited MaxWait, or this worker is a
//     follower that cannot hand requests back (handsBack) and the backlog
//     it helped with has drained; the whole group goes. A follower that can
//     hands such a group back to the holder instead (handBackDue).
//   - interval: Interval passed since the last such flush; the whole group
//     goes.
//   - window_full: the window is full and this group has waited longest;
//     the whole group goes, to make room.
func groupDue(now time.Time, g heldGroup, size int, s schedule, c Config, windowFull, longestWaiting bool) (wire.Trigger, int, bool) {
	n := len(g.items)
	switch {
	case n == 0:
		return "", 0, false
	case g.retries > 0:
		return wire.TriggerRetry, n, true
	case n >= size:
		return wire.TriggerSize, n - n%size, true
	case !g.oldest.IsZero() && now.Sub(g.oldest) >= c.MaxWait:
		return wire.TriggerMaxWait, n, true
	case s.follower && s.drained && !s.handsBack:
		// The backlog this follower helped with is gone: new requests go
		// to the holder, so nothing will fill this group here.
		return wire.TriggerMaxWait, n, true
	case now.Sub(s.lastFlush) >= c.Interval:
		return wire.TriggerInterval, n, true
	case windowFull && longestWaiting:
		return wire.TriggerWindowFull, n, true
	}
	return "", 0, false
}

// handBackDue reports whether a held group that is not due goes back to
// the broker for the holder to gather: this worker is a follower, the
// backlog it helped with has drained, so nothing will fill the group here,
// and it can hand requests back without spending their deliveries. With
// three workers sharing a burst, each held a third of every group: sent
// where they were, they made half as many calls again as one worker, and
// the holder's thirds waited for MaxWait.
func handBackDue(g heldGroup, size int, s schedule) bool {
	return s.follower && s.drained && s.handsBack && len(g.items) > 0 && len(g.items) < size && g.retries == 0
}

// nextDue is the earliest time a batch becomes due by the clock, assuming no
// more requests arrive: a held group's MaxWait, the interval, or a retry. It
// is zero when nothing waits.
func nextDue(b Backlog, held []heldGroup, s schedule, c Config) time.Time {
	var next time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if b.Pending > 0 || len(held) > 0 {
		earliest(s.lastFlush.Add(c.Interval))
	}
	if b.Pending > 0 && !b.Oldest.IsZero() {
		earliest(b.Oldest.Add(c.MaxWait))
	}
	for _, g := range held {
		earliest(g.oldest.Add(c.MaxWait))
	}
	earliest(s.retryAt)
	return next
}
