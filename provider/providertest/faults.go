package providertest

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
)

// The Faults subtests drive the provider through the ways real APIs fail
// and check whose failure it reports (provider.Scope):
//
//	fault                          combined call of 5            each request alone
//	output cap of 2 items          error, ScopeBatch, permanent  answered
//	call's budget too small        error, ScopeBatch, permanent  answer cut short, no error
//	refused input                  error, ScopeBatch, permanent  that request: Result.Err,
//	                               (per-item channel: that       ScopeRequest, permanent;
//	                               item's Result.Err)            the others answered
//	wrong key (401)                error, ScopeProvider, 401     error, ScopeProvider, 401
//	outage (FailFor 500/503)       error, ScopeProvider, status  error, ScopeProvider, status
//	hang (HangFor, short ctx)      error, ScopeProvider          error, ScopeProvider
//	unknown model                  error wrapping ErrUnknownModel, permanent
//
// In Single mode every request is its own call: the "combined" column then
// reads as the "alone" one, except that a refused input fails alone while
// the batch's other requests are answered, and a provider-wide failure of
// every call is the batch's error. Each fault is lifted afterwards, and the
// batch must then be answered: nothing stays behind.

// fault is one case of the Faults subtests.
type fault struct {
	name string
	// arrange sets the fault up on f for batch b (whose requests it may
	// change); lift, when set, ends it.
	arrange func(f Fake, b *provider.Batch)
	lift    func(f Fake)
	// batch checks what Complete returned for the whole batch, and alone
	// what it returned for request i of b sent as a batch of its own.
	batch func(s suite, t *testing.T, b provider.Batch, results []provider.Result, err error)
	alone func(s suite, t *testing.T, b provider.Batch, i int, results []provider.Result, err error)
	// timeout, when set, bounds each Complete.
	timeout time.Duration
}

// testFaults runs the fault cases; see the table above.
func (s suite) testFaults(t *testing.T) {
	t.Parallel()
	for _, fc := range s.faults() {
		t.Run(fc.name, func(t *testing.T) {
			t.Parallel()
			p, f := s.tg.New(t)
			b := newBatch(batchSize)
			fc.arrange(f, &b)
			complete := func(b provider.Batch) ([]provider.Result, error) {
				ctx := t.Context()
				if fc.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, fc.timeout)
					defer cancel()
				}
				return p.Complete(ctx, b)
			}
			results, err := complete(b)
			fc.batch(s, t, b, results, err)
			for i, r := range b.Requests {
				one := b
				one.Requests = []provider.Request{r}
				results, err := complete(one)
				fc.alone(s, t, one, i, results, err)
			}
			if fc.lift == nil {
				return
			}
			fc.lift(f)
			results, err = p.Complete(t.Context(), b)
			if err != nil {
				t.Fatalf("after the fault was lifted: Complete: %v", err)
			}
			s.check(t, b, results, nil)
		})
	}
	t.Run("outage ends", s.testOutageEnds)
}

// faults lists the fault cases for the target's mode.
func (s suite) faults() []fault {
	single := s.tg.Mode == Single
	answeredAlone := func(s suite, t *testing.T, b provider.Batch, _ int, results []provider.Result, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("request %q alone: Complete: %v", b.Requests[0].Key, err)
		}
		s.check(t, b, results, nil)
	}
	// wholeError checks the batch failed as a whole with scope, status and
	// permanence as given.
	wholeError := func(scope provider.Scope, status int, permanent bool) func(suite, *testing.T, provider.Batch, []provider.Result, error) {
		return func(s suite, t *testing.T, b provider.Batch, results []provider.Result, err error) {
			t.Helper()
			if err == nil {
				t.Fatalf("Complete(%d requests) = %+v, nil; want an error for the whole batch", len(b.Requests), results)
			}
			if results != nil {
				t.Errorf("Complete returned results %+v with its error", results)
			}
			pe := s.checkError(t, err, permanent)
			if pe.Scope != scope || pe.StatusCode != status {
				t.Errorf("error %v: Scope %v, StatusCode %d; want %v, %d", err, pe.Scope, pe.StatusCode, scope, status)
			}
		}
	}
	wholeAlone := func(scope provider.Scope, status int, permanent bool) func(suite, *testing.T, provider.Batch, int, []provider.Result, error) {
		check := wholeError(scope, status, permanent)
		return func(s suite, t *testing.T, b provider.Batch, _ int, results []provider.Result, err error) {
			t.Helper()
			check(s, t, b, results, err)
		}
	}
	// cutOff checks an answer cut off at the output limit: a permanent
	// ScopeBatch error wrapping provider.ErrCutOff, and only the results
	// the answer completed before the cut, each right, at most cap of them.
	cutOff := func(cap int) func(suite, *testing.T, provider.Batch, []provider.Result, error) {
		return func(s suite, t *testing.T, b provider.Batch, results []provider.Result, err error) {
			t.Helper()
			if !errors.Is(err, provider.ErrCutOff) {
				t.Fatalf("Complete(%d requests) = %+v, %v; want an error wrapping provider.ErrCutOff", len(b.Requests), results, err)
			}
			pe := s.checkError(t, err, true)
			if pe.Scope != provider.ScopeBatch {
				t.Errorf("error %v: Scope %v, want batch", err, pe.Scope)
			}
			if len(results) > cap {
				t.Errorf("%d results kept from an answer cut off after %d", len(results), cap)
			}
			byKey := map[string]provider.Request{}
			for _, r := range b.Requests {
				byKey[r.Key] = r
			}
			for _, r := range results {
				req, ok := byKey[r.Key]
				if !ok || r.Err != nil || r.Output != s.tg.Answer(req.Input) {
					t.Errorf("kept result %+v: want the whole answer to a request of the batch", r)
				}
				delete(byKey, r.Key)
			}
		}
	}
	const refused = 2 // the request RefuseInput names

	cases := []fault{
		{
			name:    "output cap",
			arrange: func(f Fake, _ *provider.Batch) { f.SetOutputCap(2) },
			lift:    func(f Fake) { f.SetOutputCap(0) },
			batch: func(s suite, t *testing.T, b provider.Batch, results []provider.Result, err error) {
				t.Helper()
				if single {
					answeredAlone(s, t, b, 0, results, err)
					return
				}
				cutOff(2)(s, t, b, results, err)
			},
			alone: answeredAlone,
		},
		{
			name: "budget too small",
			arrange: func(_ Fake, b *provider.Batch) {
				b.MaxOutputTokens = 3 // 12 bytes: every answer is longer
			},
			batch: func(s suite, t *testing.T, b provider.Batch, results []provider.Result, err error) {
				t.Helper()
				if single {
					s.checkCutShort(t, b, results, err)
					return
				}
				cutOff(0)(s, t, b, results, err)
			},
			alone: func(s suite, t *testing.T, b provider.Batch, _ int, results []provider.Result, err error) {
				t.Helper()
				s.checkCutShort(t, b, results, err)
			},
		},
		{
			name:    "refused input",
			arrange: func(f Fake, b *provider.Batch) { f.RefuseInput(b.Requests[refused].Input) },
			batch: func(s suite, t *testing.T, b provider.Batch, results []provider.Result, err error) {
				t.Helper()
				if single || s.tg.PerItemErrors {
					if err != nil {
						t.Fatalf("Complete: %v; want the other requests answered", err)
					}
					s.check(t, b, results, map[int]outcome{refused: permanent})
					s.wantScope(t, b, results, refused, provider.ScopeRequest)
					return
				}
				wholeError(provider.ScopeBatch, 0, true)(s, t, b, results, err)
			},
			alone: func(s suite, t *testing.T, b provider.Batch, i int, results []provider.Result, err error) {
				t.Helper()
				if i != refused {
					answeredAlone(s, t, b, i, results, err)
					return
				}
				if err != nil {
					t.Fatalf("refused request alone: Complete: %v; want its own Result.Err", err)
				}
				s.check(t, b, results, map[int]outcome{0: permanent})
				s.wantScope(t, b, results, 0, provider.ScopeRequest)
			},
		},
		{
			name:    "wrong key",
			arrange: func(f Fake, _ *provider.Batch) { f.RequireKey("rotated-" + s.tg.Name + "-key") },
			lift:    func(f Fake) { f.RequireKey(s.tg.Secret) },
			batch:   wholeError(provider.ScopeProvider, http.StatusUnauthorized, false),
			alone:   wholeAlone(provider.ScopeProvider, http.StatusUnauthorized, false),
		},
		{
			name:    "hang",
			arrange: func(f Fake, _ *provider.Batch) { f.HangFor(time.Hour) },
			lift:    func(f Fake) { f.HangFor(0) },
			timeout: 100 * time.Millisecond,
			batch:   wholeError(provider.ScopeProvider, 0, false),
			alone:   wholeAlone(provider.ScopeProvider, 0, false),
		},
		{
			name:    "unknown model",
			arrange: func(_ Fake, b *provider.Batch) { b.Model = "unknown-model" },
			batch:   unknownModel,
			alone: func(s suite, t *testing.T, b provider.Batch, _ int, results []provider.Result, err error) {
				t.Helper()
				unknownModel(s, t, b, results, err)
			},
		},
	}
	for _, status := range []int{http.StatusInternalServerError, http.StatusServiceUnavailable} {
		cases = append(cases, fault{
			name:    "outage " + http.StatusText(status),
			arrange: func(f Fake, _ *provider.Batch) { f.FailFor(time.Hour, status) },
			lift:    func(f Fake) { f.FailFor(0, 0) },
			batch:   wholeError(provider.ScopeProvider, status, false),
			alone:   wholeAlone(provider.ScopeProvider, status, false),
		})
	}
	return cases
}

// checkCutShort checks every request of b was answered with the start of
// its answer, cut short at the call's output limit, and no error.
func (s suite) checkCutShort(t *testing.T, b provider.Batch, results []provider.Result, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("Complete: %v; a plain answer cut off at its limit is still the request's answer", err)
	}
	byKey := map[string]provider.Result{}
	for _, r := range results {
		byKey[r.Key] = r
	}
	for _, req := range b.Requests {
		r, ok := byKey[req.Key]
		full := s.tg.Answer(req.Input)
		switch {
		case !ok:
			t.Errorf("key %q: no result", req.Key)
		case r.Err != nil:
			t.Errorf("key %q: Err = %v, want the answer cut short", req.Key, r.Err)
		case r.Output == "" || len(r.Output) >= len(full) || !strings.HasPrefix(full, r.Output):
			t.Errorf("key %q: Output = %q, want the start of %q", req.Key, r.Output, full)
		}
	}
}

// wantScope checks the result for request i of b has an error of scope.
func (s suite) wantScope(t *testing.T, b provider.Batch, results []provider.Result, i int, scope provider.Scope) {
	t.Helper()
	for _, r := range results {
		if r.Key == b.Requests[i].Key && provider.ScopeOf(r.Err) != scope {
			t.Errorf("key %q: Err %v: Scope %v, want %v", r.Key, r.Err, provider.ScopeOf(r.Err), scope)
		}
	}
}

// testOutageEnds covers an outage of a set length by the fake's clock: the
// calls fail while it lasts, and a retry once it has passed is answered.
func (s suite) testOutageEnds(t *testing.T) {
	t.Parallel()
	p, f := s.tg.New(t)
	b := newBatch(batchSize)
	const outage = 200 * time.Millisecond
	start := time.Now()
	f.FailFor(outage, http.StatusBadGateway)
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var failures int
	for {
		results, err := p.Complete(t.Context(), b)
		if err == nil && straddled(results) {
			// Single mode: the outage ended while its calls were in flight;
			// some answered, the rest failed on their own. Go again.
			failures++
			<-tick.C
			continue
		}
		if err == nil {
			if took := time.Since(start); took < outage {
				t.Errorf("answered %v after an outage of %v began", took, outage)
			}
			s.check(t, b, results, nil)
			break
		}
		failures++
		if pe := s.checkError(t, err, false); pe.Scope != provider.ScopeProvider || pe.StatusCode != http.StatusBadGateway {
			t.Fatalf("during the outage: %v, want ScopeProvider, 502", err)
		}
		select {
		case <-deadline:
			t.Fatalf("still failing 10s after an outage of %v began", outage)
		case <-tick.C:
		}
	}
	if failures == 0 {
		t.Error("no call failed during the outage")
	}
}

// straddled reports whether some of results failed for a provider-scope
// reason: a fan-out that met the end of an outage.
func straddled(results []provider.Result) bool {
	for _, r := range results {
		if r.Err != nil && provider.ScopeOf(r.Err) == provider.ScopeProvider {
			return true
		}
	}
	return false
}

// testSent checks what the calls carry: a combined call's answer schema
// lists exactly the batch's keys (when the target says so), and the output
// limit sent is the batch's budget (Batch.MaxOutputTokens) for a combined
// call, the request's own cap or else the batch's budget for a plain one.
// It also checks the call sizes the fake recorded.
func (s suite) testSent(t *testing.T) {
	t.Parallel()
	const budget, own = 777, 55
	tests := []struct {
		name      string
		n         int  // requests
		capFirst  bool // the first request sets its own cap
		wantSizes []int
	}{
		{"batch", batchSize, false, []int{batchSize}},
		{"batch with a request's cap", batchSize, true, []int{batchSize}},
		{"one request", 1, false, []int{1}},
		{"one request with its cap", 1, true, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, f := s.tg.New(t)
			b := newBatch(tt.n)
			b.MaxOutputTokens = budget
			if tt.capFirst {
				b.Requests[0].MaxOutputTokens = own
			}
			results, err := p.Complete(t.Context(), b)
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			s.check(t, b, results, nil)
			wantSizes := tt.wantSizes
			if s.tg.Mode == Single {
				wantSizes = slices.Repeat([]int{1}, tt.n)
			}
			if got := f.CallSizes(); !slices.Equal(got, wantSizes) {
				t.Errorf("CallSizes() = %v, want %v", got, wantSizes)
			}
			calls := s.tg.Sent(f)
			if len(calls) != len(wantSizes) {
				t.Fatalf("Sent = %+v, want %d calls", calls, len(wantSizes))
			}
			plain := s.tg.Mode == Single || tt.n == 1
			var limits []int
			for _, c := range calls {
				limits = append(limits, c.MaxOutputTokens)
				if plain && c.IDs != nil {
					t.Errorf("a plain call sent an enum of ids %v", c.IDs)
				}
			}
			slices.Sort(limits)
			want := []int{budget}
			switch {
			case plain && tt.capFirst:
				want = append(slices.Repeat([]int{budget}, tt.n-1), own)
				slices.Sort(want)
			case plain:
				want = slices.Repeat([]int{budget}, tt.n)
			}
			if !slices.Equal(limits, want) {
				t.Errorf("output limits sent = %v, want %v (budget %d, the first request's cap %d)", limits, want, budget, own)
			}
			if plain || !s.tg.IDEnum {
				return
			}
			var keys []string
			for _, r := range b.Requests {
				keys = append(keys, r.Key)
			}
			got := slices.Clone(calls[0].IDs)
			slices.Sort(got)
			slices.Sort(keys)
			if !slices.Equal(got, keys) {
				t.Errorf("the schema's enum of ids = %q, want the batch's keys %q", calls[0].IDs, keys)
			}
		})
	}
}

// unknownModel checks the batch failed as a whole, permanently, with an
// error wrapping provider.ErrUnknownModel.
func unknownModel(s suite, t *testing.T, _ provider.Batch, results []provider.Result, err error) {
	t.Helper()
	if err == nil || results != nil {
		t.Fatalf("Complete = %+v, %v; want an error for the whole batch", results, err)
	}
	s.checkError(t, err, true)
	if !errors.Is(err, provider.ErrUnknownModel) {
		t.Errorf("error %v does not wrap provider.ErrUnknownModel", err)
	}
}
