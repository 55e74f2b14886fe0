// Package providertest is the conformance suite every provider.Provider in
// this module runs against its fake server: Run(t, target) checks the
// contract of provider.Provider (matching answers to requests, missing and
// repeated answers, malformed answers, error classification and scope,
// timeouts, per-request failures, one call per batch or per request)
// through real HTTP, and how the provider reports the faults of real APIs
// (see Faults): an answer cut off at the output limit, a refused input, a
// wrong key, an outage, a hang, an unknown model, and what a call sends
// (the enum of ids, the output budget); and wire format 1.1 (see
// wire11.go): conversations, structured output (also under an outage and
// an unreadable answer) and embeddings (exact vectors, their faults, or
// their refusal without a call when Target.Embeddings is false).
//
// A provider's test builds a Target: how to start a fresh fake server and a
// provider talking to it, and what the provider can express. Capabilities
// that differ between providers and modes are stated in the Target
// (Mode, PerItemErrors, IDEnum), and the suite checks the documented
// behaviour of each case for every combination instead of skipping a case.
// Target.Sent reads what the fake received, so the suite can check what
// the calls carried. The failure scopes the suite expects are in the doc of
// provider.Scope and summed up in faults.go:
//
//   - Combined mode with a per-item error channel (the http provider): a
//     request refused alone is that request's Result.Err, permanent unless
//     the endpoint said it is retryable.
//   - Combined mode without one (OpenAI, Anthropic): the fake leaves a refused
//     item out of the answer, and the provider must return no result for it,
//     so the caller retries it as missing.
//   - Single mode: every request is its own call; a failed call is that
//     request's Result.Err, classified like a batch failure, and the other
//     requests are answered.
//
// RunAsync(t, target) checks the contract of provider.AsyncProvider (Batch
// API jobs: submit, poll, results matched by key, per-request errors,
// expiry, cancellation, error classification) against a fake that also
// implements AsyncFake.
package providertest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
)

// Mode is how a provider turns a batch into calls.
type Mode int

const (
	// Combined: one call per batch, answers matched to requests by id.
	Combined Mode = iota + 1
	// Single: one call per request.
	Single
)

// String returns the mode's name, as subtests and messages spell it.
func (m Mode) String() string {
	switch m {
	case Combined:
		return "combined"
	case Single:
		return "single"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Fake is the fake API server behind a Target. The fakes of this module
// (openaitest, anthropictest, httpapitest) implement it; each documents how
// a control shows in its own wire format. Every method must be safe for
// concurrent use.
type Fake interface {
	// Calls counts the API calls received, failed ones included.
	Calls() int64
	// MaxConcurrent is the largest number of calls handled at one moment.
	MaxConcurrent() int64
	// FailNext makes the next n calls answer HTTP status with the API's
	// error body. A 429 must carry "Retry-After: 1".
	FailNext(n int, status int)
	// SetDelay makes every call wait d before it is answered, or until the
	// caller goes away.
	SetDelay(d time.Duration)
	// Shuffle makes batch answers list results out of request order and
	// makes single calls finish out of order.
	Shuffle(on bool)
	// SetMalformedNext makes the next n successful answers unparsable.
	SetMalformedNext(n int)
	// OmitInput makes answers leave out requests whose input is input: a
	// batch answer has no result for the item; a single call's answer has
	// no output at all.
	OmitInput(input string)
	// RejectInput makes the API refuse requests whose input is input, alone:
	// a single call is answered with a 4xx error (a 5xx or 529 when
	// retryable); a batch answer carries a per-item error when the wire
	// format has one, and otherwise leaves the item out.
	RejectInput(input string, retryable bool)
	// RepeatIDs makes batch answers add a result for an id that was not
	// asked for and a second result for an id already answered. Single
	// answers carry no ids and are not affected.
	RepeatIDs(on bool)

	// SetOutputCap makes a combined call carrying more than items requests
	// answered cut off at the output limit, in the API's own way; a call's
	// own output limit (the budget it sends) is honoured too, and a plain
	// call over its limit gets its answer cut short. items <= 0 removes the
	// cap.
	SetOutputCap(items int)
	// RefuseInput makes the model refuse any call containing input, in the
	// API's own way: a combined call without a per-item error channel is
	// refused whole; with one, only the item is.
	RefuseInput(input string)
	// RequireKey makes the fake accept only key from now on (a rotated
	// key): other calls get 401 with the API's error body.
	RequireKey(key string)
	// FailFor makes every call answer HTTP status with the API's error body
	// until d has passed by the fake's clock; d <= 0 or status 0 ends it.
	FailFor(d time.Duration, status int)
	// HangFor makes every call get no answer until d has passed or the
	// caller gives up; d <= 0 ends it.
	HangFor(d time.Duration)
	// CallSizes returns how many requests each call the model saw carried
	// (1 for a plain call), oldest first.
	CallSizes() []int
}

// Call is what one call to the fake asked for, as Target.Sent reads it
// from the fake's records.
type Call struct {
	// IDs is the enum of ids the call's answer schema allows; nil when
	// there is none (plain calls, APIs without a schema).
	IDs []string
	// MaxOutputTokens is the output limit the call sent (max_completion_tokens,
	// max_tokens, max_output_tokens); 0 when it sent none.
	MaxOutputTokens int
}

// Target is one provider in one mode, as the suite runs it.
type Target struct {
	// Name is the provider's expected Name().
	Name string
	// Mode is how the provider under test turns a batch into calls.
	Mode Mode
	// PerItemErrors reports whether a combined answer can refuse one
	// request while answering the others (see the package doc). Must be
	// false in Single mode, where every request has its own call.
	PerItemErrors bool
	// IDEnum reports whether a combined call's answer schema lists the
	// batch's keys as the enum of ids (Call.IDs), so that the model cannot
	// answer for an id it was not given.
	IDEnum bool
	// Embeddings reports whether the provider serves embedding batches
	// (wire.KindEmbedding); one that does not must refuse them, each
	// request for good, without a call.
	Embeddings bool
	// Concurrency is the bound on concurrent calls the provider was built
	// with in Single mode; the suite checks it is kept. Ignored in Combined.
	Concurrency int
	// Secret is the credential the provider was built with, if any; no error
	// the provider returns may contain it.
	Secret string
	// Answer is the fake model's deterministic answer to an input.
	Answer func(input string) string
	// New starts a fresh fake server and a provider that talks to it; it
	// registers their clean-up with t.Cleanup. The provider is built with
	// Secret as its key (the fake must accept it until RequireKey says
	// otherwise).
	New func(t *testing.T) (provider.Provider, Fake)
	// Sent reads what every call the fake New returned received, oldest
	// first, from the fake's own records.
	Sent func(f Fake) []Call
}

func (tg Target) validate() error {
	switch {
	case tg.Name == "":
		return errors.New("Target.Name is empty")
	case tg.Mode != Combined && tg.Mode != Single:
		return fmt.Errorf("Target.Mode %v is neither Combined nor Single", tg.Mode)
	case tg.Mode == Single && tg.PerItemErrors:
		return errors.New("Target.PerItemErrors is meaningless in Single mode")
	case tg.Mode == Single && tg.Concurrency < 2:
		return fmt.Errorf("Target.Concurrency %d: the suite needs a Single-mode bound of at least 2", tg.Concurrency)
	case tg.Answer == nil || tg.New == nil || tg.Sent == nil:
		return errors.New("Target.Answer, Target.New and Target.Sent are required")
	}
	return nil
}

// Run runs the conformance suite against tg as parallel subtests.
func Run(t *testing.T, tg Target) {
	t.Helper()
	if err := tg.validate(); err != nil {
		t.Fatalf("providertest: %v", err)
	}
	s := suite{tg: tg}
	t.Run("Name", s.testName)
	t.Run("EmptyBatch", s.testEmptyBatch)
	t.Run("Answers", s.testAnswers)
	t.Run("RequestAlone", s.testRequestAlone)
	t.Run("HTTPErrors", s.testHTTPErrors)
	t.Run("Malformed", s.testMalformed)
	t.Run("Timeout", s.testTimeout)
	t.Run("RecoversAfterFailure", s.testRecovers)
	t.Run("CallsPerBatch", s.testCallsPerBatch)
	t.Run("Faults", s.testFaults)
	t.Run("Sent", s.testSent)
	t.Run("Wire11", s.testWire11)
}

type suite struct{ tg Target }

// batchSize is the size of the batches the suite sends.
const batchSize = 5

// newBatch returns a batch of n requests with inputs that need escaping.
func newBatch(n int) provider.Batch {
	b := provider.Batch{ID: "conformance", Model: "test-model", Instructions: "Answer briefly."}
	for i := range n {
		b.Requests = append(b.Requests, provider.Request{
			Key:   fmt.Sprintf("key-%d", i),
			Input: fmt.Sprintf("input %d: <tag> & \"quotes\" \\ ünïcode", i),
		})
	}
	return b
}

// outcome is what the suite expects for one request.
type outcome int

const (
	answered  outcome = iota + 1 // a result with Output == Answer(Input)
	missing                      // no result at all: the caller retries it
	permanent                    // a result whose Err is permanent
	transient                    // a result whose Err is transient
	failed                       // a result with an Err of either kind
)

func (o outcome) String() string {
	return [...]string{"?", "answered", "missing", "permanent error", "transient error", "error"}[o]
}

// check checks results against want (by request index) and the common
// rules: no key twice, no key outside the batch, errors are *provider.Error
// and hide the secret.
func (s suite) check(t *testing.T, b provider.Batch, results []provider.Result, want map[int]outcome) {
	t.Helper()
	byKey := map[string]provider.Result{}
	known := map[string]bool{}
	for _, r := range b.Requests {
		known[r.Key] = true
	}
	for _, r := range results {
		if !known[r.Key] {
			t.Errorf("result for key %q, which is not in the batch", r.Key)
			continue
		}
		if _, dup := byKey[r.Key]; dup {
			t.Errorf("key %q answered twice", r.Key)
		}
		byKey[r.Key] = r
	}
	for i, req := range b.Requests {
		w := want[i]
		if w == 0 {
			w = answered
		}
		r, ok := byKey[req.Key]
		switch {
		case w == missing:
			if ok {
				t.Errorf("key %q: got %+v, want no result (missing, retried by the caller)", req.Key, r)
			}
		case !ok:
			t.Errorf("key %q: no result, want %v", req.Key, w)
		case w == answered:
			if r.Err != nil {
				t.Errorf("key %q: Err = %v, want an answer", req.Key, r.Err)
			} else if want := s.tg.Answer(req.Input); r.Output != want {
				t.Errorf("key %q: Output = %q, want %q", req.Key, r.Output, want)
			}
		default:
			if r.Err == nil {
				t.Errorf("key %q: answered %q, want a %v", req.Key, r.Output, w)
				continue
			}
			if w != failed {
				s.checkError(t, r.Err, w == permanent)
			}
		}
	}
}

// checkError checks err is a *provider.Error of the wanted kind that hides
// the secret, and returns it.
func (s suite) checkError(t *testing.T, err error, wantPermanent bool) *provider.Error {
	t.Helper()
	var pe *provider.Error
	if !errors.As(err, &pe) {
		t.Errorf("error %v is not a *provider.Error", err)
		return &provider.Error{}
	}
	if got := provider.IsPermanent(err); got != wantPermanent || errors.Is(err, provider.ErrTransient) == wantPermanent {
		t.Errorf("error %v: permanent = %v, want %v", err, got, wantPermanent)
	}
	if s.tg.Secret != "" && strings.Contains(err.Error(), s.tg.Secret) {
		t.Errorf("error %q contains the secret", err)
	}
	return pe
}

// wantCalls checks the fake got the calls b needs in the target's mode.
func (s suite) wantCalls(t *testing.T, f Fake, b provider.Batch) {
	t.Helper()
	want := int64(1)
	if s.tg.Mode == Single {
		want = int64(len(b.Requests))
	}
	if got := f.Calls(); got != want {
		t.Errorf("fake got %d calls, want %d (%v mode, %d requests)", got, want, s.tg.Mode, len(b.Requests))
	}
}

func (s suite) testName(t *testing.T) {
	t.Parallel()
	p, _ := s.tg.New(t)
	if got := p.Name(); got != s.tg.Name {
		t.Errorf("Name() = %q, want %q", got, s.tg.Name)
	}
}

func (s suite) testEmptyBatch(t *testing.T) {
	t.Parallel()
	p, f := s.tg.New(t)
	results, err := p.Complete(t.Context(), provider.Batch{ID: "empty", Model: "test-model"})
	if err != nil || len(results) != 0 {
		t.Errorf("Complete(empty batch) = %v, %v; want no results, no error", results, err)
	}
	if f.Calls() != 0 {
		t.Errorf("an empty batch made %d calls", f.Calls())
	}
}

// testAnswers covers how answers are matched to requests.
func (s suite) testAnswers(t *testing.T) {
	t.Parallel()
	single := s.tg.Mode == Single
	b := newBatch(batchSize)
	omitted := missing // Combined: the answer lacks the item; the caller retries it.
	if single {
		omitted = transient // Single: the call answered nothing; the request is retried.
	}
	tests := []struct {
		name    string
		arrange func(Fake)
		want    map[int]outcome
	}{
		{"in order", func(Fake) {}, nil},
		// Combined: results listed out of order. Single: calls finish out of
		// order. Either way each result must answer its own request.
		{"shuffled", func(f Fake) { f.Shuffle(true) }, nil},
		{"missing items", func(f Fake) { f.OmitInput(b.Requests[1].Input); f.OmitInput(b.Requests[4].Input) },
			map[int]outcome{1: omitted, 4: omitted}},
		// Combined: an unknown id is ignored and the first answer to an id
		// wins. Single: answers carry no ids (RepeatIDs has no effect), and
		// each result still answers its own request exactly once.
		{"repeated and unknown ids", func(f Fake) { f.RepeatIDs(true); f.Shuffle(true) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, f := s.tg.New(t)
			tt.arrange(f)
			results, err := p.Complete(t.Context(), b)
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			s.check(t, b, results, tt.want)
			s.wantCalls(t, f, b)
			var sum provider.Usage
			for _, r := range results {
				sum = sum.Add(r.Usage)
				if single && r.Err == nil && (r.Usage.InputTokens <= 0 || r.Usage.OutputTokens <= 0) {
					t.Errorf("key %q: usage %+v, want its own call's tokens", r.Key, r.Usage)
				}
			}
			if sum.InputTokens <= 0 || sum.OutputTokens <= 0 {
				t.Errorf("usage over the results = %+v, want the call's tokens", sum)
			}
		})
	}
}

// testRequestAlone covers one request refused while the rest of its batch
// succeeds.
func (s suite) testRequestAlone(t *testing.T) {
	t.Parallel()
	for _, retryable := range []bool{false, true} {
		t.Run(fmt.Sprintf("retryable=%v", retryable), func(t *testing.T) {
			t.Parallel()
			p, f := s.tg.New(t)
			b := newBatch(batchSize)
			f.RejectInput(b.Requests[2].Input, retryable)
			results, err := p.Complete(t.Context(), b)
			if err != nil {
				t.Fatalf("Complete: %v; want the rest of the batch answered", err)
			}
			var want outcome
			switch {
			case s.tg.Mode == Single || s.tg.PerItemErrors:
				want = permanent
				if retryable {
					want = transient
				}
			default:
				// No per-item error channel: the documented alternative is
				// that the item is missing, and the caller retries it.
				t.Logf("%s %v mode has no per-item error channel: a refused item must be missing", s.tg.Name, s.tg.Mode)
				want = missing
			}
			s.check(t, b, results, map[int]outcome{2: want})
			s.wantCalls(t, f, b)
		})
	}
}

// testHTTPErrors covers error statuses: the whole batch fails in Combined
// mode, the one request whose call failed in Single mode.
func (s suite) testHTTPErrors(t *testing.T) {
	t.Parallel()
	// The scope of a failure of one call of several requests; in Single
	// mode a permanent one is the request's own (ScopeRequest), unless it
	// is an unknown model (a fake may answer 404 model_not_found), whose
	// scope the caller decides (ScopeUnknown).
	tests := []struct {
		status         int
		wantPermanent  bool
		wantScope      provider.Scope
		wantRetryAfter time.Duration
	}{
		{http.StatusBadRequest, true, provider.ScopeUnknown, 0},
		{http.StatusUnauthorized, false, provider.ScopeProvider, 0},
		{http.StatusForbidden, false, provider.ScopeProvider, 0},
		{http.StatusNotFound, true, provider.ScopeUnknown, 0},
		{http.StatusRequestEntityTooLarge, true, provider.ScopeBatch, 0},
		{http.StatusUnprocessableEntity, true, provider.ScopeUnknown, 0},
		{http.StatusRequestTimeout, false, provider.ScopeProvider, 0},
		{http.StatusConflict, false, provider.ScopeProvider, 0},
		{http.StatusTooManyRequests, false, provider.ScopeProvider, time.Second},
		{http.StatusInternalServerError, false, provider.ScopeProvider, 0},
		{http.StatusBadGateway, false, provider.ScopeProvider, 0},
		{http.StatusServiceUnavailable, false, provider.ScopeProvider, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			t.Parallel()
			p, f := s.tg.New(t)
			f.FailNext(1, tt.status)
			b := newBatch(batchSize)
			results, err := p.Complete(t.Context(), b)
			var got error
			if s.tg.Mode == Combined {
				if err == nil {
					t.Fatalf("Complete = %v, nil; want HTTP %d for the whole batch", results, tt.status)
				}
				got = err
			} else {
				if err != nil {
					t.Fatalf("Complete: %v; in Single mode a failed call is its request's Result.Err", err)
				}
				got = s.oneFailed(t, b, results)
			}
			if got != nil {
				pe := s.checkError(t, got, tt.wantPermanent)
				if pe.StatusCode != tt.status {
					t.Errorf("StatusCode = %d, want %d (error %v)", pe.StatusCode, tt.status, got)
				}
				if ra := provider.RetryAfter(got); ra != tt.wantRetryAfter {
					t.Errorf("RetryAfter = %v, want %v", ra, tt.wantRetryAfter)
				}
				want := tt.wantScope
				if s.tg.Mode == Single && tt.wantPermanent && !errors.Is(got, provider.ErrUnknownModel) {
					want = provider.ScopeRequest
				}
				if pe.Scope != want {
					t.Errorf("Scope = %v, want %v (error %v)", pe.Scope, want, got)
				}
			}
			s.wantCalls(t, f, b)
		})
	}
}

// oneFailed checks that exactly one request of b has an error result and
// every other one is answered, and returns that error.
func (s suite) oneFailed(t *testing.T, b provider.Batch, results []provider.Result) error {
	t.Helper()
	var errs []error
	want := map[int]outcome{}
	for _, r := range results {
		if r.Err == nil {
			continue
		}
		errs = append(errs, r.Err)
		for i, req := range b.Requests {
			if req.Key == r.Key {
				want[i] = failed
			}
		}
	}
	if len(errs) != 1 {
		t.Errorf("%d requests failed, want exactly 1: %v", len(errs), errs)
		return nil
	}
	s.check(t, b, results, want)
	return errs[0]
}

// testMalformed covers an answer that cannot be parsed.
func (s suite) testMalformed(t *testing.T) {
	t.Parallel()
	p, f := s.tg.New(t)
	f.SetMalformedNext(1)
	b := newBatch(batchSize)
	results, err := p.Complete(t.Context(), b)
	if s.tg.Mode == Combined {
		if err == nil {
			t.Fatalf("Complete = %v, nil; want a transient error for the whole batch", results)
		}
		s.checkError(t, err, false)
	} else {
		if err != nil {
			t.Fatalf("Complete: %v; want only the malformed call's request to fail", err)
		}
		if got := s.oneFailed(t, b, results); got != nil {
			s.checkError(t, got, false)
		}
	}
	s.wantCalls(t, f, b)
}

// testTimeout covers calls that outlive the caller's deadline: the whole
// batch fails, transiently, wrapping context.DeadlineExceeded.
func (s suite) testTimeout(t *testing.T) {
	t.Parallel()
	p, f := s.tg.New(t)
	f.SetDelay(time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	results, err := p.Complete(ctx, newBatch(batchSize))
	if err == nil {
		t.Fatalf("Complete = %v, nil; want a timeout", results)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
	if pe := s.checkError(t, err, false); pe.StatusCode != 0 || pe.Scope != provider.ScopeProvider {
		t.Errorf("StatusCode = %d, Scope = %v; want 0, provider", pe.StatusCode, pe.Scope)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Complete returned after %v, long after its deadline", took)
	}
	if f.Calls() == 0 {
		t.Error("no call reached the fake")
	}
}

// testRecovers checks a failure leaves no state behind: the next Complete
// answers everything.
func (s suite) testRecovers(t *testing.T) {
	t.Parallel()
	p, f := s.tg.New(t)
	b := newBatch(batchSize)
	f.FailNext(1, http.StatusInternalServerError)
	results, err := p.Complete(t.Context(), b)
	if s.tg.Mode == Combined && err == nil {
		t.Fatalf("first Complete = %v, nil; want the injected 500", results)
	}
	if s.tg.Mode == Single && (err != nil || s.oneFailed(t, b, results) == nil) {
		t.Fatalf("first Complete = %v, %v; want the injected 500 on one request", results, err)
	}
	results, err = p.Complete(t.Context(), b)
	if err != nil {
		t.Fatalf("second Complete: %v", err)
	}
	s.check(t, b, results, nil)
}

// testCallsPerBatch checks the number of calls and, in Single mode, that
// calls run concurrently within the Target's bound.
func (s suite) testCallsPerBatch(t *testing.T) {
	t.Parallel()
	p, f := s.tg.New(t)
	n := 3 * max(s.tg.Concurrency, 2)
	b := newBatch(n)
	f.SetDelay(20 * time.Millisecond)
	results, err := p.Complete(t.Context(), b)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	s.check(t, b, results, nil)
	s.wantCalls(t, f, b)
	if s.tg.Mode == Single {
		if got := f.MaxConcurrent(); got < 2 || got > int64(s.tg.Concurrency) {
			t.Errorf("at most %d calls ran at once, want 2..%d (the Concurrency bound)", got, s.tg.Concurrency)
		}
	} else if got := f.MaxConcurrent(); got != 1 {
		t.Errorf("MaxConcurrent() = %d, want 1 in Combined mode", got)
	}
}
