package ratelimit_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/httpapi"
	"github.com/aibatch/aibatch/provider/httpapitest"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/provider/ratelimit"
	"github.com/aibatch/aibatch/wire"
)

// fakeClock is a Clock whose Sleep returns at once, moving the time on by
// the wait and recording it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.sleeps = append(c.sleeps, d)
	return nil
}

// takeSleeps returns the waits recorded since the last call.
func (c *fakeClock) takeSleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sleeps
	c.sleeps = nil
	return s
}

// batch returns a batch of one request whose estimate is tokens.
func batch(tokens int) provider.Batch {
	return provider.Batch{ID: "b", Model: "m", Requests: []provider.Request{{Key: "0", Input: strings.Repeat("a", 4*tokens)}}}
}

// httpTarget starts the fake bulk endpoint and an http provider for it.
func httpTarget(t *testing.T) (*httpapitest.Server, provider.Provider) {
	t.Helper()
	srv := httpapitest.NewServer()
	t.Cleanup(srv.Close)
	p, err := httpapi.New(httpapi.Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return srv, p
}

func TestNew(t *testing.T) {
	t.Parallel()
	_, inner := httpTarget(t)
	tests := []struct {
		name    string
		p       provider.Provider
		limits  ratelimit.Limits
		opts    []ratelimit.Option
		wantErr string
	}{
		{"no limits", inner, ratelimit.Limits{}, nil, ""},
		{"both", inner, ratelimit.Limits{RPM: 10, TPM: 1000}, []ratelimit.Option{ratelimit.WithBurst(1, 10)}, ""},
		{"burst of unused limit ignored", inner, ratelimit.Limits{RPM: 10}, []ratelimit.Option{ratelimit.WithBurst(2, 0)}, ""},
		{"nil provider", nil, ratelimit.Limits{}, nil, "nil"},
		{"negative RPM", inner, ratelimit.Limits{RPM: -1}, nil, "RPM"},
		{"negative TPM", inner, ratelimit.Limits{TPM: -1}, nil, "TPM"},
		{"zero call burst", inner, ratelimit.Limits{RPM: 10}, []ratelimit.Option{ratelimit.WithBurst(0, 5)}, "burst"},
		{"zero token burst", inner, ratelimit.Limits{TPM: 10}, []ratelimit.Option{ratelimit.WithBurst(5, 0)}, "burst"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := ratelimit.New(tt.p, tt.limits, tt.opts...)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New: %v", err)
			case tt.wantErr == "" && p.Name() != "http":
				t.Errorf("Name() = %q, want the wrapped provider's", p.Name())
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("New error = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestEstimateTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		b    provider.Batch
		want int
	}{
		{"empty", provider.Batch{}, 1},
		{"one byte", provider.Batch{Requests: []provider.Request{{Input: "a"}}}, 1},
		{"rounds up", provider.Batch{Requests: []provider.Request{{Input: "abcde"}}}, 2},
		{"instructions once", provider.Batch{Instructions: strings.Repeat("i", 8), Requests: []provider.Request{{Input: "abcd"}, {Input: "abcd"}}}, 4},
		{"bytes, not runes", provider.Batch{Requests: []provider.Request{{Input: "éééé"}}}, 2},
	}
	for _, tt := range tests {
		if got := ratelimit.EstimateTokens(tt.b); got != tt.want {
			t.Errorf("%s: EstimateTokens = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestPacing proves the waits with a fake clock: each Complete's sleeps are
// recorded, and the clock moves on by them. A call waiting for more tokens
// than the bucket holds sleeps once per bucketful: the test adds them up.
func TestPacing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		limits  ratelimit.Limits
		opts    []ratelimit.Option
		batches []int           // estimated tokens of each call, in order
		want    []time.Duration // total sleep before each call
	}{
		{"no limits", ratelimit.Limits{}, nil, []int{5, 5, 5}, []time.Duration{0, 0, 0}},
		// No start-up burst: the first call goes at once, the next ones
		// 60s/RPM apart.
		{"RPM evenly spaced from the start", ratelimit.Limits{RPM: 2}, nil, []int{1, 1, 1, 1},
			[]time.Duration{0, 30 * time.Second, 30 * time.Second, 30 * time.Second}},
		{"RPM burst then spaced", ratelimit.Limits{RPM: 2}, []ratelimit.Option{ratelimit.WithBurst(2, 1)}, []int{1, 1, 1, 1},
			[]time.Duration{0, 0, 30 * time.Second, 30 * time.Second}},
		{"RPM evenly spaced", ratelimit.Limits{RPM: 60}, []ratelimit.Option{ratelimit.WithBurst(1, 1)}, []int{1, 1, 1},
			[]time.Duration{0, time.Second, time.Second}},
		// 600 TPM: 10 tokens a second, and a bucket of 10 to start with.
		{"TPM", ratelimit.Limits{TPM: 600}, nil, []int{300, 300, 300, 150},
			[]time.Duration{29 * time.Second, 30 * time.Second, 30 * time.Second, 15 * time.Second}},
		{"TPM batch over the bucket is charged in full", ratelimit.Limits{TPM: 600}, []ratelimit.Option{ratelimit.WithBurst(1, 100)}, []int{500, 30},
			[]time.Duration{40 * time.Second, 3 * time.Second}},
		{"TPM small bucket", ratelimit.Limits{TPM: 600}, []ratelimit.Option{ratelimit.WithBurst(1, 100)}, []int{100, 500},
			[]time.Duration{0, 50 * time.Second}},
		// 6 RPM: a call every 10s; 120 TPM: 2 tokens a second. The second
		// call waits for its call slot (10s), then for tokens (20s more),
		// the third for tokens only (0.5s), the fourth for its call slot
		// (10s after the third).
		{"the longer wait wins", ratelimit.Limits{RPM: 6, TPM: 120}, []ratelimit.Option{ratelimit.WithBurst(1, 120)}, []int{120, 60, 1, 1},
			[]time.Duration{0, 30 * time.Second, 500 * time.Millisecond, 9500 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, inner := httpTarget(t)
			clock := newFakeClock()
			p, err := ratelimit.New(inner, tt.limits, append(tt.opts, ratelimit.WithClock(clock))...)
			if err != nil {
				t.Fatal(err)
			}
			for i, n := range tt.batches {
				results, err := p.Complete(t.Context(), batch(n))
				if err != nil || len(results) != 1 || results[0].Err != nil {
					t.Fatalf("call %d: Complete = %+v, %v", i, results, err)
				}
				var slept time.Duration
				for _, d := range clock.takeSleeps() {
					slept += d
				}
				// x/time/rate computes in floating point; the waits are
				// rounded up to the microsecond, once per sleep.
				if diff := slept - tt.want[i]; diff < -time.Microsecond || diff > time.Millisecond {
					t.Errorf("call %d (%d tokens): slept %v in all, want %v", i, n, slept, tt.want[i])
				}
			}
			if got := srv.Calls(); got != int64(len(tt.batches)) {
				t.Errorf("endpoint got %d calls, want %d", got, len(tt.batches))
			}
		})
	}
}

// TestPacingRealClock measures real waits with a short limit: 1200 calls per
// minute, one at a time, is one call every 50ms.
func TestPacingRealClock(t *testing.T) {
	t.Parallel()
	srv, inner := httpTarget(t)
	p, err := ratelimit.New(inner, ratelimit.Limits{RPM: 1200}, ratelimit.WithBurst(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	const calls, interval = 6, 50 * time.Millisecond
	start := time.Now()
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			if _, err := p.Complete(t.Context(), batch(1)); err != nil {
				t.Errorf("Complete: %v", err)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if min := (calls - 1) * interval; took < min-5*time.Millisecond {
		t.Errorf("%d concurrent calls took %v, want at least %v", calls, took, min)
	}
	if took > 5*time.Second {
		t.Errorf("%d calls took %v: far longer than the limit asks", calls, took)
	}
	if srv.Calls() != calls {
		t.Errorf("endpoint got %d calls, want %d", srv.Calls(), calls)
	}
}

// TestPauseAfter429 checks that a Retry-After answer holds the next calls
// back, with the real OpenAI provider against its fake (which answers 429
// with "Retry-After: 1"), in both modes: a failed batch, and a failed
// request of a single-mode batch.
func TestPauseAfter429(t *testing.T) {
	t.Parallel()
	for _, mode := range []openai.Mode{openai.ModeCombined, openai.ModeSingle} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			srv := openaitest.NewServer()
			t.Cleanup(srv.Close)
			inner, err := openai.New(openai.Config{APIKey: "sk-test", BaseURL: srv.URL, Mode: mode, Concurrency: 1})
			if err != nil {
				t.Fatal(err)
			}
			clock := newFakeClock()
			p, err := ratelimit.New(inner, ratelimit.Limits{}, ratelimit.WithClock(clock))
			if err != nil {
				t.Fatal(err)
			}
			srv.FailNext(1, http.StatusTooManyRequests)
			b := provider.Batch{ID: "b", Model: "gpt-test", Requests: []provider.Request{{Key: "0", Input: "a"}, {Key: "1", Input: "b"}}}
			start := clock.Now()
			results, err := p.Complete(t.Context(), b)
			failed := err != nil
			for _, r := range results {
				failed = failed || r.Err != nil
			}
			if !failed {
				t.Fatalf("first Complete = %+v, %v; want the injected 429", results, err)
			}
			if got, want := p.PausedUntil(), start.Add(time.Second); !got.Equal(want) {
				t.Errorf("PausedUntil() = %v, want %v", got, want)
			}
			if got := clock.takeSleeps(); len(got) != 0 {
				t.Errorf("first call slept %v", got)
			}
			calls := srv.Calls()
			if _, err := p.Complete(t.Context(), b); err != nil {
				t.Fatalf("second Complete: %v", err)
			}
			if got := clock.takeSleeps(); !slices.Equal(got, []time.Duration{time.Second}) {
				t.Errorf("second call slept %v, want [1s] (the Retry-After)", got)
			}
			if srv.Calls() <= calls {
				t.Error("second Complete did not reach the API")
			}
			if _, err := p.Complete(t.Context(), b); err != nil {
				t.Fatal(err)
			}
			if got := clock.takeSleeps(); len(got) != 0 {
				t.Errorf("third call slept %v, want no wait once the pause is over", got)
			}
		})
	}
}

// TestPauseRealClock measures the pause with the system clock against a
// real server that answers the first call 429 with retry-after-ms: 150.
func TestPauseRealClock(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var arrivals []time.Time
	fake := openaitest.NewUnstartedServer()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		first := len(arrivals) == 1
		mu.Unlock()
		if first {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("retry-after-ms", "150")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"error":{"message":"Rate limit reached.","type":"requests","param":null,"code":"rate_limit_exceeded"}}`))
			return
		}
		fake.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	inner, err := openai.New(openai.Config{APIKey: "sk-test", BaseURL: srv.URL + "/v1"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ratelimit.New(inner, ratelimit.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	b := provider.Batch{ID: "b", Model: "gpt-test", Requests: []provider.Request{{Key: "0", Input: "a"}}}
	if _, err := p.Complete(t.Context(), b); provider.RetryAfter(err) != 150*time.Millisecond {
		t.Fatalf("first Complete error = %v, want a 429 asking for 150ms", err)
	}
	// Two calls at once: both are held back by the pause.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := p.Complete(t.Context(), b); err != nil {
				t.Errorf("Complete after the pause: %v", err)
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(arrivals) != 3 {
		t.Fatalf("server got %d calls, want 3", len(arrivals))
	}
	for _, at := range arrivals[1:] {
		// The pause starts when the 429 was received, a little after it
		// was sent: the gap measured on the server is at least 150ms.
		if gap := at.Sub(arrivals[0]); gap < 150*time.Millisecond {
			t.Errorf("a call arrived %v after the 429, want at least 150ms", gap)
		}
	}
}

// TestPauseNeverShortens checks a shorter Retry-After does not cut a longer
// pause short.
func TestPauseNeverShortens(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	waits := []string{"10", "2"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		wait := waits[0]
		waits = waits[1:]
		mu.Unlock()
		w.Header().Set("Retry-After", wait)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"error":"slow down"}`))
	}))
	t.Cleanup(srv.Close)
	inner, err := httpapi.New(httpapi.Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	p, err := ratelimit.New(inner, ratelimit.Limits{}, ratelimit.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	start := clock.Now()
	if _, err := p.Complete(t.Context(), batch(1)); err == nil {
		t.Fatal("want the 429")
	}
	// The second call waits out the 10s pause, then gets a 2s Retry-After
	// from 10s on: the pause ends at 12s, not earlier.
	if _, err := p.Complete(t.Context(), batch(1)); err == nil {
		t.Fatal("want the second 429")
	}
	if got, want := p.PausedUntil(), start.Add(12*time.Second); !got.Equal(want) {
		t.Errorf("PausedUntil() = %v, want %v", got.Sub(start), want.Sub(start))
	}
}

// TestWaitEndsWithContext checks a caller that gives up while waiting gets
// a transient error at once and the API is not called.
func TestWaitEndsWithContext(t *testing.T) {
	t.Parallel()
	srv, inner := httpTarget(t)
	p, err := ratelimit.New(inner, ratelimit.Limits{RPM: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Complete(t.Context(), batch(1)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = p.Complete(ctx, batch(1)) // would wait a minute
	if !errors.Is(err, context.DeadlineExceeded) || provider.IsPermanent(err) {
		t.Fatalf("error = %v, want a transient one wrapping context.DeadlineExceeded", err)
	}
	if !strings.HasPrefix(err.Error(), "ratelimit: wait to call http: ") {
		t.Errorf("error %q does not say what was being done", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Complete returned after %v", took)
	}
	if srv.Calls() != 1 {
		t.Errorf("endpoint got %d calls, want 1", srv.Calls())
	}
}

func TestEmptyBatchPassesThrough(t *testing.T) {
	t.Parallel()
	srv, inner := httpTarget(t)
	clock := newFakeClock()
	p, err := ratelimit.New(inner, ratelimit.Limits{RPM: 1}, ratelimit.WithClock(clock), ratelimit.WithBurst(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if results, err := p.Complete(t.Context(), provider.Batch{Model: "m"}); err != nil || len(results) != 0 {
			t.Fatalf("Complete(empty) = %v, %v", results, err)
		}
	}
	if got := clock.takeSleeps(); len(got) != 0 || srv.Calls() != 0 {
		t.Errorf("empty batches slept %v and made %d calls", got, srv.Calls())
	}
}

// TestPassesOnWhatTheProviderSays checks that the wrapper answers the
// engine's planning questions as the wrapped provider does.
func TestPassesOnWhatTheProviderSays(t *testing.T) {
	t.Parallel()
	o, err := openai.New(openai.Config{APIKey: "k", BaseURL: "http://127.0.0.1:1/v1"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.New(httpapi.Config{URL: "http://127.0.0.1:1/"})
	if err != nil {
		t.Fatal(err)
	}
	loose := wire.ResponseFormat{Type: wire.FormatJSONSchema, JSONSchema: &wire.JSONSchema{Name: "x", Schema: json.RawMessage(`{"type":"object","properties":{"a":{"type":"string"}}}`)}}
	for _, inner := range []provider.Provider{o, h} {
		w, err := ratelimit.New(inner, ratelimit.Limits{RPM: 60})
		if err != nil {
			t.Fatal(err)
		}
		wantLimit := 0
		if l, ok := inner.(provider.OutputLimiter); ok {
			wantLimit = l.MaxOutputTokens("gpt-4o-mini")
		}
		if got := w.MaxOutputTokens("gpt-4o-mini"); got != wantLimit {
			t.Errorf("%s: MaxOutputTokens = %d, want %d", inner.Name(), got, wantLimit)
		}
		var wantCombine error
		if c, ok := inner.(provider.FormatCombiner); ok {
			wantCombine = c.CombinesFormat(loose)
		}
		if got := w.CombinesFormat(loose); (got == nil) != (wantCombine == nil) {
			t.Errorf("%s: CombinesFormat = %v, want %v", inner.Name(), got, wantCombine)
		}
		if err := w.Supports(wire.KindEmbedding); err != nil {
			t.Errorf("%s: Supports(embedding) = %v, want nil", inner.Name(), err)
		}
	}
}

// TestCallTimeoutStartsWhenTheCallGoes: with the call timeout handed over
// in the context (provider.CallContext, as the engine does), calls queued
// behind the quota for longer than the timeout still go and succeed; a
// call the API is slow to answer still times out.
func TestCallTimeoutStartsWhenTheCallGoes(t *testing.T) {
	t.Parallel()
	srv, inner := httpTarget(t)
	p, err := ratelimit.New(inner, ratelimit.Limits{RPM: 1200}, ratelimit.WithBurst(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	// 50ms between calls: the fourth waits about 150ms for its turn.
	const calls, timeout = 4, 40 * time.Millisecond
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			ctx, cancel := provider.CallContext(t.Context(), p, timeout)
			defer cancel()
			if _, err := p.Complete(ctx, batch(1)); err != nil {
				t.Errorf("a call queued for its turn failed: %v", err)
			}
		})
	}
	wg.Wait()
	if srv.Calls() != calls {
		t.Errorf("endpoint got %d calls, want %d", srv.Calls(), calls)
	}

	srv.SetDelay(time.Second)
	ctx, cancel := provider.CallContext(t.Context(), p, timeout)
	defer cancel()
	start := time.Now()
	if _, err := p.Complete(ctx, batch(1)); err == nil {
		t.Fatal("a call answered after a second, with a 40ms call timeout: no error")
	}
	if took := time.Since(start); took > 900*time.Millisecond {
		t.Errorf("the slow call returned after %v, want the 40ms timeout (plus its turn) to end it", took)
	}
}
