package batch

import (
	"testing"
	"time"

	"github.com/aibatch/aibatch/wire"
)

// t0 is an arbitrary fixed instant the scheduler tests measure from.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestFetchDue(t *testing.T) {
	t.Parallel()
	c := Config{MaxBatchSize: 10, Interval: time.Hour, MaxWait: 5 * time.Minute, RequestTTL: 24 * time.Hour}
	now := t0
	recent := now.Add(-time.Minute)
	tests := []struct {
		name string
		b    Backlog
		s    schedule
		want fetchReason
	}{
		{"nothing waits", Backlog{}, schedule{lastFlush: recent}, fetchNone},
		{"requests held by workers are not fetched", Backlog{AckPending: 100}, schedule{lastFlush: recent}, fetchNone},
		{"one new request is held at once", Backlog{Pending: 1, Oldest: now}, schedule{lastFlush: recent}, fetchNew},
		{"many new requests", Backlog{Pending: 1000, Oldest: now}, schedule{lastFlush: recent}, fetchNew},
		{"a retry due", Backlog{}, schedule{retryAt: now}, fetchBack},
		{"a retry 1ns away", Backlog{}, schedule{retryAt: now.Add(time.Nanosecond)}, fetchNone},
		{"a retry due wins over new requests", Backlog{Pending: 3}, schedule{retryAt: now}, fetchBack},
		{"orphan check due with nothing pending", Backlog{AckPending: 5}, schedule{orphanCheckAt: now}, fetchBack},
		{"orphan check waits for new requests to bring the orphans along", Backlog{Pending: 3, AckPending: 5}, schedule{orphanCheckAt: now}, fetchNew},
		{"orphan check not yet due", Backlog{AckPending: 5}, schedule{orphanCheckAt: now.Add(time.Nanosecond)}, fetchNone},
		{"follower: a few new requests are left to the holder", Backlog{Pending: 19, Oldest: recent}, schedule{follower: true}, fetchNone},
		{"follower: a backlog of two calls' worth is shared", Backlog{Pending: 20, Oldest: recent}, schedule{follower: true}, fetchNew},
		{"follower: its own retries are its own", Backlog{Pending: 3}, schedule{follower: true, retryAt: now}, fetchBack},
		{"holder: looks for what followers handed back", Backlog{AckPending: 30}, schedule{lastFlush: recent, gather: true}, fetchBack},
		{"holder: new requests bring handed-back ones along", Backlog{Pending: 3, AckPending: 30}, schedule{lastFlush: recent, gather: true}, fetchNew},
		{"paused: new requests wait", Backlog{Pending: 50, Oldest: recent}, schedule{paused: true}, fetchNone},
		{"paused: a retry waits", Backlog{}, schedule{paused: true, retryAt: now}, fetchNone},
		{"paused: the oldest past RequestTTL is fetched to end it", Backlog{Pending: 50, Oldest: now.Add(-24 * time.Hour)}, schedule{paused: true}, fetchNew},
		{"paused: 1ns before RequestTTL", Backlog{Pending: 50, Oldest: now.Add(-24*time.Hour + time.Nanosecond)}, schedule{paused: true}, fetchNone},
		{"paused: a deferred request past RequestTTL", Backlog{}, schedule{paused: true, expireAt: now}, fetchBack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := fetchDue(now, tt.b, tt.s, c); got != tt.want {
				t.Errorf("fetchDue() = %d, want %d", got, tt.want)
			}
		})
	}
}

// held builds a held group of n requests, the oldest published at oldest,
// retries of them delivered before.
func held(n int, oldest time.Time, retries int) heldGroup {
	g := heldGroup{oldest: oldest, retries: retries}
	for range n {
		g.items = append(g.items, &item{})
	}
	return g
}

func TestGroupDue(t *testing.T) {
	t.Parallel()
	c := Config{MaxBatchSize: 10, Interval: time.Hour, MaxWait: 5 * time.Minute}
	now := t0
	recent := now.Add(-time.Minute)
	fresh := schedule{lastFlush: recent}
	tests := []struct {
		name          string
		g             heldGroup
		size          int
		s             schedule
		full, longest bool
		want          wire.Trigger
		wantN         int
	}{
		{name: "empty", g: held(0, time.Time{}, 0), size: 10, s: fresh},
		{name: "one below its size waits", g: held(9, recent, 0), size: 10, s: fresh},
		{name: "exactly its size", g: held(10, now, 0), size: 10, s: fresh, want: wire.TriggerSize, wantN: 10},
		{name: "full calls go, the rest waits", g: held(27, now, 0), size: 10, s: fresh, want: wire.TriggerSize, wantN: 20},
		{name: "a shrunk size counts", g: held(7, now, 0), size: 4, s: fresh, want: wire.TriggerSize, wantN: 4},
		{name: "a redelivered request sends the whole group", g: held(3, recent, 1), size: 10, s: fresh, want: wire.TriggerRetry, wantN: 3},
		{name: "retry wins over size", g: held(12, now, 1), size: 10, s: fresh, want: wire.TriggerRetry, wantN: 12},
		{name: "max_wait: exactly MaxWait", g: held(2, now.Add(-5*time.Minute), 0), size: 10, s: fresh, want: wire.TriggerMaxWait, wantN: 2},
		{name: "max_wait: 1ns short", g: held(2, now.Add(-5*time.Minute+time.Nanosecond), 0), size: 10, s: fresh},
		{name: "size wins over max_wait", g: held(10, now.Add(-time.Hour), 0), size: 10, s: fresh, want: wire.TriggerSize, wantN: 10},
		{name: "interval: exactly Interval", g: held(1, recent, 0), size: 10, s: schedule{lastFlush: now.Add(-time.Hour)}, want: wire.TriggerInterval, wantN: 1},
		{name: "interval: 1ns short", g: held(1, recent, 0), size: 10, s: schedule{lastFlush: now.Add(-time.Hour + time.Nanosecond)}},
		{name: "window full: the longest waiting group goes", g: held(3, recent, 0), size: 10, s: fresh, full: true, longest: true, want: wire.TriggerWindowFull, wantN: 3},
		{name: "window full: other groups wait", g: held(3, recent, 0), size: 10, s: fresh, full: true},
		{name: "follower: a partial group goes once the backlog drained", g: held(3, recent, 0), size: 10, s: schedule{lastFlush: recent, follower: true, drained: true}, want: wire.TriggerMaxWait, wantN: 3},
		{name: "follower: a partial group waits while a backlog lasts", g: held(3, recent, 0), size: 10, s: schedule{lastFlush: recent, follower: true}},
		{name: "holder: a partial group waits when drained", g: held(3, recent, 0), size: 10, s: schedule{lastFlush: recent, drained: true}},
		{name: "follower that hands back: a partial group is not sent when drained", g: held(3, recent, 0), size: 10, s: schedule{lastFlush: recent, follower: true, drained: true, handsBack: true}},
		{name: "follower that hands back: full calls still go", g: held(13, recent, 0), size: 10, s: schedule{lastFlush: recent, follower: true, drained: true, handsBack: true}, want: wire.TriggerSize, wantN: 10},
		{name: "follower that hands back: its own retries go", g: held(3, recent, 1), size: 10, s: schedule{lastFlush: recent, follower: true, drained: true, handsBack: true}, want: wire.TriggerRetry, wantN: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, n, ok := groupDue(now, tt.g, tt.size, tt.s, c, tt.full, tt.longest)
			if got != tt.want || n != tt.wantN || ok != (tt.want != "") {
				t.Errorf("groupDue() = (%q, %d, %v), want (%q, %d)", got, n, ok, tt.want, tt.wantN)
			}
		})
	}
}

func TestHandBackDue(t *testing.T) {
	t.Parallel()
	recent := t0
	follower := schedule{follower: true, drained: true, handsBack: true}
	tests := []struct {
		name string
		g    heldGroup
		s    schedule
		want bool
	}{
		{"a follower's partial group once drained", held(3, recent, 0), follower, true},
		{"not while a backlog lasts", held(3, recent, 0), schedule{follower: true, handsBack: true}, false},
		{"not without an attempt store (a delivery would be spent)", held(3, recent, 0), schedule{follower: true, drained: true}, false},
		{"not by the holder", held(3, recent, 0), schedule{drained: true, handsBack: true}, false},
		{"not a full call", held(10, recent, 0), follower, false},
		{"not a group with retries (they go at once)", held(3, recent, 1), follower, false},
		{"not an empty group", held(0, recent, 0), follower, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := handBackDue(tt.g, 10, tt.s); got != tt.want {
				t.Errorf("handBackDue() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNextDue(t *testing.T) {
	t.Parallel()
	c := Config{MaxBatchSize: 10, Interval: 10 * time.Minute, MaxWait: 5 * time.Minute}
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	tests := []struct {
		name string
		b    Backlog
		held []heldGroup
		s    schedule
		want time.Time // zero: nothing becomes due by the clock
	}{
		{name: "nothing waits",
			b: Backlog{}, s: schedule{lastFlush: t0}},
		{name: "no pending requests: a stale oldest time is ignored",
			b: Backlog{Oldest: at(time.Minute)}, s: schedule{lastFlush: t0}},
		{name: "no pending requests: requests other workers hold do not count",
			b: Backlog{AckPending: 5}, s: schedule{lastFlush: t0}},
		{name: "interval comes before the oldest's MaxWait",
			b: Backlog{Pending: 1, Oldest: at(8 * time.Minute)}, s: schedule{lastFlush: t0},
			want: at(10 * time.Minute)},
		{name: "oldest's MaxWait comes before the interval",
			b: Backlog{Pending: 1, Oldest: at(time.Minute)}, s: schedule{lastFlush: t0},
			want: at(6 * time.Minute)},
		{name: "a held group's MaxWait",
			held: []heldGroup{held(3, at(2*time.Minute), 0), held(1, at(3*time.Minute), 0)}, s: schedule{lastFlush: t0},
			want: at(7 * time.Minute)},
		{name: "held requests make the interval count",
			held: []heldGroup{held(3, at(8*time.Minute), 0)}, s: schedule{lastFlush: t0},
			want: at(10 * time.Minute)},
		{name: "retry comes first",
			b: Backlog{Pending: 1, Oldest: at(time.Minute)}, s: schedule{lastFlush: t0, retryAt: at(2 * time.Minute)},
			want: at(2 * time.Minute)},
		{name: "only a retry waits",
			b: Backlog{}, s: schedule{lastFlush: t0, retryAt: at(45 * time.Minute)},
			want: at(45 * time.Minute)},
		{name: "overdue MaxWait is reported in the past",
			b: Backlog{Pending: 1, Oldest: at(-time.Hour)}, s: schedule{lastFlush: t0},
			want: at(-55 * time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := nextDue(tt.b, tt.held, tt.s, c); !got.Equal(tt.want) {
				t.Errorf("nextDue() = %v, want %v", got, tt.want)
			}
		})
	}
}
