package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/fanout"
)

func requests(n int) []provider.Request {
	reqs := make([]provider.Request, n)
	for i := range reqs {
		reqs[i] = provider.Request{Key: strconv.Itoa(i), Input: "in" + strconv.Itoa(i)}
	}
	return reqs
}

func failWith(key string, err error) error { return fmt.Errorf("request %q: %w", key, err) }

func wholeWith(err error) error { return fmt.Errorf("batch: %w", err) }

// Complete runs the calls up to the limit at once, never more, and returns
// the results in request order.
func TestCompleteLimit(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ n, limit int }{{1, 1}, {5, 1}, {12, 3}, {4, 8}} {
		t.Run(fmt.Sprintf("%d requests, limit %d", tt.n, tt.limit), func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var inFlight, maxInFlight int
			full := make(chan struct{}) // closed once min(n, limit) calls run at once
			one := func(r provider.Request) provider.Result {
				mu.Lock()
				inFlight++
				if inFlight > maxInFlight {
					maxInFlight = inFlight
					if maxInFlight == min(tt.n, tt.limit) {
						close(full)
					}
				}
				mu.Unlock()
				defer func() {
					mu.Lock()
					inFlight--
					mu.Unlock()
				}()
				select { // hold the slot until the limit was reached once
				case <-full:
				case <-time.After(10 * time.Second):
					t.Error("the limit was never reached")
				}
				return provider.Result{Key: r.Key, Output: "out " + r.Input}
			}
			results, err := fanout.Complete(t.Context(), requests(tt.n), tt.limit, one, failWith, wholeWith)
			if err != nil {
				t.Fatal(err)
			}
			if maxInFlight != min(tt.n, tt.limit) {
				t.Errorf("%d calls at once, want %d", maxInFlight, min(tt.n, tt.limit))
			}
			if len(results) != tt.n {
				t.Fatalf("%d results, want %d", len(results), tt.n)
			}
			for i, r := range results {
				if want := strconv.Itoa(i); r.Key != want || r.Output != "out in"+want || r.Err != nil {
					t.Errorf("results[%d] = %+v, want key %s answered", i, r, want)
				}
			}
		})
	}
}

// A request still waiting for a slot when ctx ends is not called: its
// result is fail's error around a transient ctx error. The results are
// returned because one call succeeded.
func TestCompleteCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	started := make(chan struct{})
	var skipped atomic.Int64
	allSkipped := make(chan struct{})
	fail := func(key string, err error) error {
		if skipped.Add(1) == 2 {
			close(allSkipped)
		}
		return failWith(key, err)
	}
	var calls atomic.Int64
	one := func(r provider.Request) provider.Result {
		calls.Add(1)
		close(started)
		<-ctx.Done()
		select { // keep the only slot until the others were skipped
		case <-allSkipped:
		case <-time.After(10 * time.Second):
			t.Error("the waiting requests were not skipped")
		}
		return provider.Result{Key: r.Key, Output: "answered"}
	}
	go func() {
		<-started
		cancel()
	}()
	results, err := fanout.Complete(ctx, requests(3), 1, one, fail, wholeWith)
	if err != nil {
		t.Fatalf("Complete: %v, want the results since one call succeeded", err)
	}
	if calls.Load() != 1 {
		t.Errorf("%d calls, want 1", calls.Load())
	}
	if len(results) != 3 || results[0].Output != "answered" || results[0].Err != nil {
		t.Fatalf("results %+v, want the first answered", results)
	}
	for _, r := range results[1:] {
		var pe *provider.Error
		if r.Err == nil || !errors.As(r.Err, &pe) || pe.Permanent || pe.Scope != provider.ScopeProvider || !errors.Is(r.Err, context.Canceled) {
			t.Errorf("result %+v, want a transient ScopeProvider error wrapping context.Canceled", r)
		}
		if !strings.HasPrefix(r.Err.Error(), fmt.Sprintf("request %q: ", r.Key)) {
			t.Errorf("error %q does not come from fail", r.Err)
		}
	}
}

// When ctx ended and no call succeeded, Complete returns no results and
// whole's transient ScopeProvider error wrapping ctx's error.
func TestCompleteCancelledWithoutAnswer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	one := func(r provider.Request) provider.Result {
		return provider.Result{Key: r.Key, Err: provider.Transient(ctx.Err())}
	}
	results, err := fanout.Complete(ctx, requests(4), 2, one, failWith, wholeWith)
	if results != nil {
		t.Errorf("results %+v, want none", results)
	}
	if err == nil || provider.IsPermanent(err) || provider.ScopeOf(err) != provider.ScopeProvider || !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want a transient ScopeProvider one wrapping context.Canceled", err)
	}
	if !strings.HasPrefix(err.Error(), "batch: ") {
		t.Errorf("error %q does not come from whole", err)
	}
}

// Failed calls do not make Complete fail while ctx is alive, unless every
// one of them failed for a reason beyond its request (the provider, the
// model): then the first request's error is the whole batch's.
func TestCompleteAllFailed(t *testing.T) {
	t.Parallel()
	request := &provider.Error{Permanent: true, Scope: provider.ScopeRequest, Err: errors.New("refused")}
	outage := &provider.Error{Scope: provider.ScopeProvider, StatusCode: 500, Err: errors.New("outage")}
	model := &provider.Error{Permanent: true, Err: fmt.Errorf("%w: gpt-x", provider.ErrUnknownModel)}
	shape := &provider.Error{Scope: provider.ScopeBatch, Err: errors.New("too long")}
	plain := errors.New("boom")
	tests := []struct {
		name      string
		errs      []error // by request; nil answers
		wantWhole error
	}{
		{"an unscoped error", []error{plain, plain, plain}, nil},
		{"all refused", []error{request, request, request}, nil},
		{"all batch-scoped", []error{shape, shape, shape}, nil},
		{"all outage", []error{outage, outage, outage}, outage},
		{"all unknown model", []error{model, model, model}, model},
		{"outage and model", []error{model, outage, outage}, model},
		{"an outage and a refusal", []error{outage, request, outage}, nil},
		{"an outage and an answer", []error{outage, nil, outage}, nil},
		{"one request, outage", []error{outage}, outage},
		{"one request, refused", []error{request}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			one := func(r provider.Request) provider.Result {
				i, _ := strconv.Atoi(r.Key)
				if e := tt.errs[i]; e != nil {
					return provider.Result{Key: r.Key, Err: failWith(r.Key, e)}
				}
				return provider.Result{Key: r.Key, Output: "answered"}
			}
			results, err := fanout.Complete(t.Context(), requests(len(tt.errs)), 2, one, failWith, wholeWith)
			if tt.wantWhole != nil {
				if results != nil || !errors.Is(err, tt.wantWhole) || err.Error() != failWith("0", tt.errs[0]).Error() {
					t.Fatalf("Complete = %d results, %v; want no results and the first request's error", len(results), err)
				}
				return
			}
			if err != nil || len(results) != len(tt.errs) {
				t.Fatalf("Complete = %d results, %v; want %d results and no error", len(results), err, len(tt.errs))
			}
			for i, r := range results {
				if tt.errs[i] != nil && !errors.Is(r.Err, tt.errs[i]) || tt.errs[i] == nil && r.Err != nil {
					t.Errorf("result %+v, want its call's error %v", r, tt.errs[i])
				}
			}
		})
	}
}
