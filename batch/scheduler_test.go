package batch

import (
	"testing"
	"time"

	"github.com/aibatch/aibatch/wire"
)

// t0 is an arbitrary fixed instant the scheduler tests measure from.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestDue(t *testing.T) {
	t.Parallel()
	c := Config{MaxBatchSize: 10, Interval: time.Hour, MaxWait: 5 * time.Minute}
	now := t0
	recent := now.Add(-time.Minute) // a last flush or an arrival that triggers nothing

	tests := []struct {
		name   string
		b      Backlog
		s      schedule
		want   wire.Trigger
		wantOK bool
	}{
		// Nothing waits.
		{name: "empty backlog, nothing scheduled",
			b: Backlog{}, s: schedule{lastFlush: recent}},
		{name: "empty backlog long after the interval is not due",
			b: Backlog{}, s: schedule{lastFlush: now.Add(-3 * time.Hour)}},
		{name: "empty backlog with a stale oldest time is not max_wait",
			b: Backlog{Oldest: now.Add(-time.Hour)}, s: schedule{lastFlush: recent}},
		{name: "requests held by workers do not count as waiting",
			b: Backlog{AckPending: 100}, s: schedule{lastFlush: now.Add(-3 * time.Hour)}},

		// A look for requests a dead worker held.
		{name: "orphan check due with nothing pending",
			b: Backlog{AckPending: 5}, s: schedule{lastFlush: recent, orphanCheckAt: now},
			want: wire.TriggerRetry, wantOK: true},
		{name: "orphan check not yet due",
			b: Backlog{AckPending: 5}, s: schedule{lastFlush: recent, orphanCheckAt: now.Add(time.Nanosecond)}},
		{name: "orphan check waits for new requests to bring the orphans along",
			b: Backlog{Pending: 3, Oldest: recent, AckPending: 5}, s: schedule{lastFlush: recent, orphanCheckAt: now}},

		// size
		{name: "size: one below MaxBatchSize is not due",
			b: Backlog{Pending: 9, Oldest: recent}, s: schedule{lastFlush: recent}},
		{name: "size: exactly MaxBatchSize",
			b: Backlog{Pending: 10, Oldest: now}, s: schedule{lastFlush: now},
			want: wire.TriggerSize, wantOK: true},
		{name: "size: above MaxBatchSize",
			b: Backlog{Pending: 1000, Oldest: now}, s: schedule{lastFlush: now},
			want: wire.TriggerSize, wantOK: true},
		{name: "size wins over max_wait, retry and interval",
			b:    Backlog{Pending: 10, Oldest: now.Add(-time.Hour)},
			s:    schedule{lastFlush: now.Add(-2 * time.Hour), retryAt: now.Add(-time.Second)},
			want: wire.TriggerSize, wantOK: true},

		// max_wait
		{name: "max_wait: exactly MaxWait",
			b: Backlog{Pending: 1, Oldest: now.Add(-5 * time.Minute)}, s: schedule{lastFlush: recent},
			want: wire.TriggerMaxWait, wantOK: true},
		{name: "max_wait: 1ns short of MaxWait",
			b: Backlog{Pending: 1, Oldest: now.Add(-5*time.Minute + time.Nanosecond)}, s: schedule{lastFlush: recent}},
		{name: "max_wait: unknown oldest time never triggers it",
			b: Backlog{Pending: 3}, s: schedule{lastFlush: recent}},
		{name: "max_wait wins over retry and interval",
			b:    Backlog{Pending: 1, Oldest: now.Add(-6 * time.Minute)},
			s:    schedule{lastFlush: now.Add(-2 * time.Hour), retryAt: now},
			want: wire.TriggerMaxWait, wantOK: true},

		// retry
		{name: "retry: exactly at retryAt",
			b: Backlog{}, s: schedule{lastFlush: recent, retryAt: now},
			want: wire.TriggerRetry, wantOK: true},
		{name: "retry: after retryAt",
			b: Backlog{}, s: schedule{lastFlush: recent, retryAt: now.Add(-time.Minute)},
			want: wire.TriggerRetry, wantOK: true},
		{name: "retry: 1ns before retryAt",
			b: Backlog{}, s: schedule{lastFlush: recent, retryAt: now.Add(time.Nanosecond)}},
		{name: "retry wins over interval",
			b:    Backlog{Pending: 1, Oldest: recent},
			s:    schedule{lastFlush: now.Add(-2 * time.Hour), retryAt: now},
			want: wire.TriggerRetry, wantOK: true},

		// interval
		{name: "interval: exactly Interval since the last flush",
			b: Backlog{Pending: 1, Oldest: recent}, s: schedule{lastFlush: now.Add(-time.Hour)},
			want: wire.TriggerInterval, wantOK: true},
		{name: "interval: 1ns short of Interval",
			b: Backlog{Pending: 1, Oldest: recent}, s: schedule{lastFlush: now.Add(-time.Hour + time.Nanosecond)}},
		{name: "interval: with a retry not yet due",
			b:    Backlog{Pending: 2, Oldest: recent},
			s:    schedule{lastFlush: now.Add(-time.Hour), retryAt: now.Add(time.Second)},
			want: wire.TriggerInterval, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := due(now, tt.b, tt.s, c)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("due() = (%q, %v), want (%q, %v)", got, ok, tt.want, tt.wantOK)
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
		s    schedule
		want time.Time // zero: nothing becomes due by the clock
	}{
		{name: "nothing waits",
			b: Backlog{}, s: schedule{lastFlush: t0}},
		{name: "no pending requests: a stale oldest time is ignored",
			b: Backlog{Oldest: at(time.Minute)}, s: schedule{lastFlush: t0}},
		{name: "no pending requests: held requests do not count",
			b: Backlog{AckPending: 5}, s: schedule{lastFlush: t0}},
		{name: "interval comes before the oldest's MaxWait",
			b: Backlog{Pending: 1, Oldest: at(8 * time.Minute)}, s: schedule{lastFlush: t0},
			want: at(10 * time.Minute)},
		{name: "oldest's MaxWait comes before the interval",
			b: Backlog{Pending: 1, Oldest: at(time.Minute)}, s: schedule{lastFlush: t0},
			want: at(6 * time.Minute)},
		{name: "unknown oldest time: interval only",
			b: Backlog{Pending: 4}, s: schedule{lastFlush: t0},
			want: at(10 * time.Minute)},
		{name: "retry comes first",
			b: Backlog{Pending: 1, Oldest: at(time.Minute)}, s: schedule{lastFlush: t0, retryAt: at(2 * time.Minute)},
			want: at(2 * time.Minute)},
		{name: "retry comes last",
			b: Backlog{Pending: 1, Oldest: at(time.Minute)}, s: schedule{lastFlush: t0, retryAt: at(30 * time.Minute)},
			want: at(6 * time.Minute)},
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
			if got := nextDue(tt.b, tt.s, c); !got.Equal(tt.want) {
				t.Errorf("nextDue() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestNextDueAgreesWithDue checks the two halves of the scheduler against
// each other: just before nextDue nothing is due by the clock, and at nextDue
// something is.
func TestNextDueAgreesWithDue(t *testing.T) {
	t.Parallel()
	c := Config{MaxBatchSize: 10, Interval: 10 * time.Minute, MaxWait: 5 * time.Minute}
	cases := []struct {
		name string
		b    Backlog
		s    schedule
	}{
		{"interval", Backlog{Pending: 1}, schedule{lastFlush: t0}},
		{"max_wait", Backlog{Pending: 1, Oldest: t0.Add(time.Minute)}, schedule{lastFlush: t0}},
		{"retry", Backlog{}, schedule{lastFlush: t0, retryAt: t0.Add(3 * time.Minute)}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			next := nextDue(tt.b, tt.s, c)
			if next.IsZero() {
				t.Fatal("nextDue() is zero, want a time")
			}
			if trig, ok := due(next.Add(-time.Nanosecond), tt.b, tt.s, c); ok {
				t.Errorf("due 1ns before nextDue (%v): %q", next, trig)
			}
			if trig, ok := due(next, tt.b, tt.s, c); !ok || string(trig) != tt.name {
				t.Errorf("due at nextDue = (%q, %v), want (%q, true)", trig, ok, tt.name)
			}
		})
	}
}
