package batch

import (
	"slices"
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

func TestRetryScheduleAdd(t *testing.T) {
	t.Parallel()
	const g = retryGrace
	tests := []struct {
		name string
		adds []time.Duration // offsets from t0, in the order added
		want []time.Duration
	}{
		{name: "none", adds: nil, want: nil},
		{name: "kept earliest first", adds: []time.Duration{3 * time.Second, time.Second, 2 * time.Second},
			want: []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}},
		{name: "equal times kept once", adds: []time.Duration{time.Second, time.Second},
			want: []time.Duration{time.Second}},
		{name: "later time within grace coalesced", adds: []time.Duration{time.Second, time.Second + g - 1},
			want: []time.Duration{time.Second}},
		{name: "earlier time within grace coalesced", adds: []time.Duration{time.Second, time.Second - g + 1},
			want: []time.Duration{time.Second}},
		{name: "exactly grace apart both kept", adds: []time.Duration{time.Second, time.Second + g},
			want: []time.Duration{time.Second, time.Second + g}},
		{name: "exactly grace earlier both kept", adds: []time.Duration{time.Second, time.Second - g},
			want: []time.Duration{time.Second - g, time.Second}},
		{name: "between two, near the earlier", adds: []time.Duration{0, time.Second, g - 1},
			want: []time.Duration{0, time.Second}},
		{name: "between two, near the later", adds: []time.Duration{0, time.Second, time.Second - g + 1},
			want: []time.Duration{0, time.Second}},
		{name: "between two, far from both", adds: []time.Duration{0, time.Second, 500 * time.Millisecond},
			want: []time.Duration{0, 500 * time.Millisecond, time.Second}},
		{name: "a batch's retries come back together",
			adds: []time.Duration{0, g / 5, 2 * g / 5, 3 * g / 5, 4 * g / 5, 6 * g / 5},
			want: []time.Duration{0, 6 * g / 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var r retrySchedule
			for _, d := range tt.adds {
				r.add(t0.Add(d))
			}
			var want []time.Time
			for _, d := range tt.want {
				want = append(want, t0.Add(d))
			}
			if !slices.EqualFunc(r.due, want, time.Time.Equal) {
				t.Errorf("after adding %v: due = %v, want %v", tt.adds, r.due, want)
			}
			wantNext := time.Time{}
			if len(want) > 0 {
				wantNext = want[0]
			}
			if got := r.next(); !got.Equal(wantNext) {
				t.Errorf("next() = %v, want %v", got, wantNext)
			}
		})
	}
}

func TestRetryScheduleTakeDue(t *testing.T) {
	t.Parallel()
	sec := time.Second
	tests := []struct {
		name string
		now  time.Duration
		want []time.Duration // what remains
	}{
		{name: "before the first: nothing taken", now: 500 * time.Millisecond, want: []time.Duration{sec, 2 * sec, 3 * sec}},
		{name: "1ns before the first: nothing taken", now: sec - 1, want: []time.Duration{sec, 2 * sec, 3 * sec}},
		{name: "exactly at the first: it is taken", now: sec, want: []time.Duration{2 * sec, 3 * sec}},
		{name: "between: only the due ones taken", now: 2500 * time.Millisecond, want: []time.Duration{3 * sec}},
		{name: "at the last: all taken", now: 3 * sec, want: nil},
		{name: "long after: all taken", now: time.Hour, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var r retrySchedule
			for _, d := range []time.Duration{3 * sec, sec, 2 * sec} {
				r.add(t0.Add(d))
			}
			r.takeDue(t0.Add(tt.now))
			var want []time.Time
			for _, d := range tt.want {
				want = append(want, t0.Add(d))
			}
			if !slices.EqualFunc(r.due, want, time.Time.Equal) {
				t.Errorf("takeDue(t0+%v) left %v, want %v", tt.now, r.due, want)
			}
			wantNext := time.Time{}
			if len(want) > 0 {
				wantNext = want[0]
			}
			if got := r.next(); !got.Equal(wantNext) {
				t.Errorf("next() = %v, want %v", got, wantNext)
			}
		})
	}
}

func TestRetryScheduleTakeDueEmpty(t *testing.T) {
	t.Parallel()
	var r retrySchedule
	r.takeDue(t0)
	if got := r.next(); !got.IsZero() {
		t.Errorf("next() on an empty schedule = %v, want zero", got)
	}
	// A time taken is forgotten: adding it again keeps it again.
	r.add(t0)
	r.takeDue(t0)
	r.add(t0)
	if got := r.next(); !got.Equal(t0) {
		t.Errorf("next() after re-adding a taken time = %v, want %v", got, t0)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	small := Config{RetryBackoff: time.Second, RetryMaxBackoff: 10 * time.Second}
	odd := Config{RetryBackoff: 3 * time.Second, RetryMaxBackoff: 10 * time.Second}
	tests := []struct {
		name       string
		cfg        Config
		attempt    int
		retryAfter time.Duration
		jitter     float64
		want       time.Duration
	}{
		{name: "first attempt is RetryBackoff", cfg: small, attempt: 1, jitter: 1, want: time.Second},
		{name: "attempt 0 counts as the first", cfg: small, attempt: 0, jitter: 1, want: time.Second},
		{name: "second attempt doubles", cfg: small, attempt: 2, jitter: 1, want: 2 * time.Second},
		{name: "third attempt doubles again", cfg: small, attempt: 3, jitter: 1, want: 4 * time.Second},
		{name: "fourth attempt", cfg: small, attempt: 4, jitter: 1, want: 8 * time.Second},
		{name: "fifth attempt is capped (16s > 10s)", cfg: small, attempt: 5, jitter: 1, want: 10 * time.Second},
		{name: "many attempts stay capped", cfg: small, attempt: 1000, jitter: 1, want: 10 * time.Second},
		{name: "cap that is not a power of two", cfg: odd, attempt: 3, jitter: 1, want: 10 * time.Second},
		{name: "below a cap that is not a power of two", cfg: odd, attempt: 2, jitter: 1, want: 6 * time.Second},
		{name: "low jitter scales down", cfg: small, attempt: 3, jitter: 0.8, want: 3200 * time.Millisecond},
		{name: "high jitter scales up", cfg: small, attempt: 3, jitter: 1.2, want: 4800 * time.Millisecond},
		{name: "jitter scales the capped value", cfg: small, attempt: 9, jitter: 0.8, want: 8 * time.Second},
		{name: "Retry-After above the backoff wins", cfg: small, attempt: 1, retryAfter: 30 * time.Second, jitter: 1, want: 30 * time.Second},
		{name: "Retry-After above the cap wins", cfg: small, attempt: 20, retryAfter: time.Minute, jitter: 1.2, want: time.Minute},
		{name: "Retry-After below the backoff is a floor only", cfg: small, attempt: 2, retryAfter: 500 * time.Millisecond, jitter: 1, want: 2 * time.Second},
		{name: "Retry-After above the jittered backoff wins", cfg: small, attempt: 2, retryAfter: 1900 * time.Millisecond, jitter: 0.8, want: 1900 * time.Millisecond},
		{name: "defaults: first attempt 1s", cfg: Config{}, attempt: 1, jitter: 1, want: time.Second},
		{name: "defaults: seventh attempt capped at 1m (64s)", cfg: Config{}, attempt: 7, jitter: 1, want: time.Minute},
		{name: "defaults: sixth attempt 32s", cfg: Config{}, attempt: 6, jitter: 1, want: 32 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := &Engine{cfg: tt.cfg.WithDefaults()}
			if got := e.backoff(tt.attempt, tt.retryAfter, tt.jitter); got != tt.want {
				t.Errorf("backoff(%d, %v, %v) = %v, want %v", tt.attempt, tt.retryAfter, tt.jitter, got, tt.want)
			}
		})
	}
}

// TestBackoffNeverShrinks checks that a later attempt never waits less than
// an earlier one with the same jitter.
func TestBackoffNeverShrinks(t *testing.T) {
	t.Parallel()
	e := &Engine{cfg: Config{RetryBackoff: 700 * time.Millisecond, RetryMaxBackoff: 45 * time.Second}.WithDefaults()}
	prev := time.Duration(0)
	for attempt := 1; attempt <= 64; attempt++ {
		d := e.backoff(attempt, 0, 1)
		if d < prev {
			t.Fatalf("backoff(%d) = %v, below backoff(%d) = %v", attempt, d, attempt-1, prev)
		}
		if d > e.cfg.RetryMaxBackoff {
			t.Fatalf("backoff(%d) = %v, above RetryMaxBackoff %v", attempt, d, e.cfg.RetryMaxBackoff)
		}
		prev = d
	}
	if prev != 45*time.Second {
		t.Errorf("backoff after 64 attempts = %v, want the cap 45s", prev)
	}
}
