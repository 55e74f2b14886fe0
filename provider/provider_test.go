package provider

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestUsageSplit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		u    Usage
		n    int
		want []Usage
	}{
		{"n zero", Usage{InputTokens: 10, OutputTokens: 4}, 0, nil},
		{"n negative", Usage{InputTokens: 10, OutputTokens: 4}, -3, nil},
		{"one part is the whole", Usage{InputTokens: 10, OutputTokens: 4}, 1,
			[]Usage{{InputTokens: 10, OutputTokens: 4}}},
		{"even split", Usage{InputTokens: 9, OutputTokens: 6}, 3,
			[]Usage{{InputTokens: 3, OutputTokens: 2}, {InputTokens: 3, OutputTokens: 2}, {InputTokens: 3, OutputTokens: 2}}},
		// 10 = 4+3+3, 5 = 2+2+1: the first parts get the remainder.
		{"remainders go to the first parts", Usage{InputTokens: 10, OutputTokens: 5}, 3,
			[]Usage{{InputTokens: 4, OutputTokens: 2}, {InputTokens: 3, OutputTokens: 2}, {InputTokens: 3, OutputTokens: 1}}},
		// 7/4 = 1 r3; 2/4 = 0 r2.
		{"input and output remainders independent", Usage{InputTokens: 7, OutputTokens: 2}, 4,
			[]Usage{{InputTokens: 2, OutputTokens: 1}, {InputTokens: 2, OutputTokens: 1}, {InputTokens: 2, OutputTokens: 0}, {InputTokens: 1, OutputTokens: 0}}},
		{"more parts than tokens", Usage{InputTokens: 2, OutputTokens: 1}, 5,
			[]Usage{{InputTokens: 1, OutputTokens: 1}, {InputTokens: 1, OutputTokens: 0}, {InputTokens: 0, OutputTokens: 0}, {InputTokens: 0, OutputTokens: 0}, {InputTokens: 0, OutputTokens: 0}}},
		{"nothing to split", Usage{}, 3, []Usage{{}, {}, {}}},
		// Cached and cache-write tokens are parts of the input: split the
		// same way, a part's cached tokens never exceed its input.
		{"cached tokens split like the input", Usage{InputTokens: 7, CachedInputTokens: 5, CacheWriteTokens: 2, OutputTokens: 2}, 2,
			[]Usage{{InputTokens: 4, CachedInputTokens: 3, CacheWriteTokens: 1, OutputTokens: 1}, {InputTokens: 3, CachedInputTokens: 2, CacheWriteTokens: 1, OutputTokens: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.u.Split(tt.n)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%+v.Split(%d) = %+v, want %+v", tt.u, tt.n, got, tt.want)
			}
		})
	}
}

// TestUsageSplitProperties checks over many sizes that no token is lost or
// made up and that parts differ by at most one token, never increasing.
func TestUsageSplitProperties(t *testing.T) {
	t.Parallel()
	totals := []Usage{{}, {InputTokens: 1}, {OutputTokens: 1}, {InputTokens: 17, CachedInputTokens: 9, OutputTokens: 3},
		{InputTokens: 1000, CachedInputTokens: 1000, CacheWriteTokens: 0, OutputTokens: 999}, {InputTokens: 123456789, CacheWriteTokens: 7, OutputTokens: 987654321}}
	for _, u := range totals {
		for n := 1; n <= 13; n++ {
			parts := u.Split(n)
			if len(parts) != n {
				t.Fatalf("%+v.Split(%d) has %d parts", u, n, len(parts))
			}
			var sum Usage
			for i, p := range parts {
				sum = sum.Add(p)
				if p.CachedInputTokens+p.CacheWriteTokens > p.InputTokens {
					t.Errorf("%+v.Split(%d): part %d %+v has more cached than input tokens", u, n, i, p)
				}
				if i > 0 && (p.InputTokens > parts[i-1].InputTokens || p.OutputTokens > parts[i-1].OutputTokens) {
					t.Errorf("%+v.Split(%d): part %d %+v is above part %d %+v", u, n, i, p, i-1, parts[i-1])
				}
			}
			if sum != u {
				t.Errorf("%+v.Split(%d) sums to %+v", u, n, sum)
			}
			first, last := parts[0], parts[n-1]
			if first.InputTokens-last.InputTokens > 1 || first.OutputTokens-last.OutputTokens > 1 {
				t.Errorf("%+v.Split(%d): parts %+v and %+v differ by more than one token", u, n, first, last)
			}
		}
	}
}

func TestUsageAdd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b, want Usage
	}{
		{Usage{}, Usage{}, Usage{}},
		{Usage{InputTokens: 3, OutputTokens: 4}, Usage{}, Usage{InputTokens: 3, OutputTokens: 4}},
		{Usage{InputTokens: 3, OutputTokens: 4}, Usage{InputTokens: 10, OutputTokens: 20}, Usage{InputTokens: 13, OutputTokens: 24}},
		{Usage{InputTokens: 1 << 40}, Usage{OutputTokens: 1 << 40}, Usage{InputTokens: 1 << 40, OutputTokens: 1 << 40}},
	}
	for _, tt := range tests {
		if got := tt.a.Add(tt.b); got != tt.want {
			t.Errorf("%+v.Add(%+v) = %+v, want %+v", tt.a, tt.b, got, tt.want)
		}
		if got := tt.b.Add(tt.a); got != tt.want {
			t.Errorf("%+v.Add(%+v) = %+v, want %+v", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	t.Parallel()
	cause := errors.New("boom")
	tests := []struct {
		name          string
		err           error
		wantPermanent bool
		wantTransient bool
		wantRetry     time.Duration
		wantText      []string
	}{
		{name: "Permanent", err: Permanent(cause),
			wantPermanent: true, wantText: []string{"permanent provider error", "boom"}},
		{name: "Transient", err: Transient(cause),
			wantTransient: true, wantText: []string{"transient provider error", "boom"}},
		{name: "permanent with status", err: &Error{Permanent: true, StatusCode: 400, Err: cause},
			wantPermanent: true, wantText: []string{"permanent", "HTTP 400", "boom"}},
		{name: "transient with status and Retry-After", err: &Error{StatusCode: 429, RetryAfter: 12 * time.Second, Err: cause},
			wantTransient: true, wantRetry: 12 * time.Second, wantText: []string{"transient", "HTTP 429", "boom"}},
		{name: "wrapped once", err: fmt.Errorf("call batch b-1: %w", &Error{StatusCode: 503, RetryAfter: time.Minute, Err: cause}),
			wantTransient: true, wantRetry: time.Minute, wantText: []string{"call batch b-1", "HTTP 503"}},
		{name: "wrapped twice", err: fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", Permanent(cause))),
			wantPermanent: true, wantText: []string{"outer", "inner", "permanent"}},
		{name: "Retry-After on a permanent error still read", err: fmt.Errorf("x: %w", &Error{Permanent: true, RetryAfter: 5 * time.Second, Err: cause}),
			wantPermanent: true, wantRetry: 5 * time.Second},
		{name: "unmarked error is neither", err: cause},
		{name: "unmarked wrapped error is neither", err: fmt.Errorf("ctx: %w", cause)},
		{name: "formatted without %w loses the mark", err: fmt.Errorf("lost: %v", Permanent(cause)),
			wantText: []string{"lost", "permanent"}},
		{name: "nil", err: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := errors.Is(tt.err, ErrPermanent); got != tt.wantPermanent {
				t.Errorf("errors.Is(err, ErrPermanent) = %v, want %v", got, tt.wantPermanent)
			}
			if got := errors.Is(tt.err, ErrTransient); got != tt.wantTransient {
				t.Errorf("errors.Is(err, ErrTransient) = %v, want %v", got, tt.wantTransient)
			}
			if got := IsPermanent(tt.err); got != tt.wantPermanent {
				t.Errorf("IsPermanent = %v, want %v", got, tt.wantPermanent)
			}
			if got := RetryAfter(tt.err); got != tt.wantRetry {
				t.Errorf("RetryAfter = %v, want %v", got, tt.wantRetry)
			}
			for _, s := range tt.wantText {
				if !strings.Contains(tt.err.Error(), s) {
					t.Errorf("Error() = %q, want it to contain %q", tt.err, s)
				}
			}
		})
	}
}

func TestErrorUnwrap(t *testing.T) {
	t.Parallel()
	sentinel := errors.New("rate limited")
	err := fmt.Errorf("call: %w", Transient(fmt.Errorf("http: %w", sentinel)))
	if !errors.Is(err, sentinel) {
		t.Errorf("errors.Is(%v, cause) = false, want the cause reachable through *Error", err)
	}
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("errors.As(%v, *Error) = false", err)
	}
	if pe.Permanent {
		t.Error("Transient produced a permanent *Error")
	}
	// *Error.Is answers only for the two kinds, not for every target.
	if errors.Is(Permanent(errors.New("x")), errors.New("x")) {
		t.Error("a *Error matched an unrelated error")
	}
	// Both constructors keep the cause as is.
	if got := Permanent(sentinel).(*Error).Err; got != sentinel {
		t.Errorf("Permanent(err).Err = %v, want the cause", got)
	}
	if got := Transient(sentinel).(*Error).Err; got != sentinel {
		t.Errorf("Transient(err).Err = %v, want the cause", got)
	}
}
