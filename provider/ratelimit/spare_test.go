package ratelimit_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/provider/ratelimit"
)

// TryComplete calls only when every bucket is full and no call waits,
// takes nothing when it does not call, and never waits.
func TestTryComplete(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		limits  ratelimit.Limits
		batches []int  // estimated tokens of each call, in order
		want    []bool // whether each call went out
	}{
		{"no limits", ratelimit.Limits{}, []int{5, 5, 5}, []bool{true, true, true}},
		// 4 a minute: a call every 15s; the first takes the bucket's call.
		{"RPM: a full bucket only", ratelimit.Limits{RPM: 4}, []int{1, 1, 1}, []bool{true, false, false}},
		{"TPM: a full bucket only", ratelimit.Limits{TPM: 600}, []int{300, 1}, []bool{true, false}},
		{"RPM and TPM", ratelimit.Limits{RPM: 4, TPM: 100}, []int{50, 10}, []bool{true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, inner := httpTarget(t)
			clock := newFakeClock()
			p, err := ratelimit.New(inner, tt.limits, ratelimit.WithClock(clock))
			if err != nil {
				t.Fatal(err)
			}
			var want int64
			for i, n := range tt.batches {
				results, called, err := p.TryComplete(t.Context(), batch(n))
				if called != tt.want[i] || err != nil {
					t.Fatalf("call %d (%d tokens): called %v, %v; want called %v", i, n, called, err, tt.want[i])
				}
				if called {
					want++
					if len(results) != 1 || results[0].Err != nil {
						t.Fatalf("call %d: results %+v", i, results)
					}
				}
			}
			if got := clock.takeSleeps(); len(got) != 0 {
				t.Errorf("TryComplete slept %v", got)
			}
			if got := srv.Calls(); got != want {
				t.Errorf("endpoint got %d calls, want %d", got, want)
			}
		})
	}

	// A TryComplete the token bucket refuses takes no call either. At 60
	// calls and 60 tokens a minute, with a token bucket of 10, a Complete
	// of 10 tokens empties both buckets; a second later the call bucket is
	// full again and the token bucket is not, so TryComplete refuses, and
	// the next Complete finds its call, and its token, at once.
	_, inner := httpTarget(t)
	clock := newFakeClock()
	p, err := ratelimit.New(inner, ratelimit.Limits{RPM: 60, TPM: 60}, ratelimit.WithClock(clock), ratelimit.WithBurst(1, 10))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Complete(t.Context(), batch(10)); err != nil {
		t.Fatal(err)
	}
	if err := clock.Sleep(t.Context(), time.Second); err != nil {
		t.Fatal(err)
	}
	clock.takeSleeps()
	if _, called, _ := p.TryComplete(t.Context(), batch(1)); called {
		t.Fatal("TryComplete called with the token bucket not full")
	}
	if _, err := p.Complete(t.Context(), batch(1)); err != nil {
		t.Fatal(err)
	}
	if got := clock.takeSleeps(); len(got) != 0 {
		t.Errorf("a Complete after a refused TryComplete slept %v: the refusal kept the call", got)
	}
}

// While an answer's Retry-After pauses the calls, TryComplete calls
// nothing; the pause an answer to it asks for holds Complete back too.
func TestTryCompleteDuringAPause(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	inner, err := openai.New(openai.Config{APIKey: "sk-test", BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	p, err := ratelimit.New(inner, ratelimit.Limits{}, ratelimit.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	b := provider.Batch{ID: "b", Model: "gpt-test", Requests: []provider.Request{{Key: "0", Input: "a"}}}
	srv.FailNext(1, http.StatusTooManyRequests)
	results, called, err := p.TryComplete(t.Context(), b)
	if !called || (err == nil && (len(results) != 1 || results[0].Err == nil)) {
		t.Fatalf("TryComplete = %+v, %v, %v; want the injected 429", results, called, err)
	}
	if got := p.PausedUntil(); !got.After(clock.Now()) {
		t.Fatalf("PausedUntil() = %v: the 429's Retry-After set no pause", got)
	}
	calls := srv.Calls()
	if _, called, _ := p.TryComplete(t.Context(), b); called || srv.Calls() != calls {
		t.Fatalf("TryComplete called during the pause")
	}
	if _, err := p.Complete(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if got := clock.takeSleeps(); len(got) != 1 || got[0] != time.Second {
		t.Errorf("Complete slept %v, want [1s] (the Retry-After)", got)
	}
}
