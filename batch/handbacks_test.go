package batch

import (
	"slices"
	"testing"
	"time"
)

func TestHandBacksAdd(t *testing.T) {
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
			var r handBacks
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

func TestHandBacksTakeDue(t *testing.T) {
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
			var r handBacks
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

func TestHandBacksTakeDueEmpty(t *testing.T) {
	t.Parallel()
	var r handBacks
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
