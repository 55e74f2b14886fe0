package providertest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
)

// AsyncFake is the fake API behind an AsyncTarget: a Fake that also runs
// Batch API jobs. A job must stay running (its PollJob not Done) until the
// test ends it with CompleteJobs or ExpireJob, or cancels it; a job
// cancelled while running answers none of its requests.
//
// The Fake controls apply to jobs as follows: FailNext, SetDelay, FailFor,
// HangFor and RequireKey to every call (submitting, polling, cancelling,
// downloading results);
// SetMalformedNext to the next download of a job's results; OmitInput
// leaves the request out of the job's results; RejectInput makes the
// job's result for the request an error (transient when retryable,
// permanent otherwise); Shuffle lists results out of request order.
type AsyncFake interface {
	Fake
	// CompleteJobs ends every running job, answering each request with
	// Answer(input) unless a control says otherwise.
	CompleteJobs()
	// ExpireJob ends job id as expired: its first answered requests (in
	// the order they were submitted) are answered as CompleteJobs would,
	// the others never are. It errors for an unknown or ended job.
	ExpireJob(id string, answered int) error
	// FailJob ends job id without answering any of its requests, in the
	// API's own way: a batch that failed as a whole where the API has such
	// a state, every request errored where it has not. It errors for an
	// unknown or ended job.
	FailJob(id string) error
	// Jobs counts the jobs created.
	Jobs() int64
	// Cancelled counts the jobs that a cancel call stopped while they ran.
	Cancelled() int64
}

// AsyncTarget is one provider.AsyncProvider as RunAsync runs it.
type AsyncTarget struct {
	// Name is the provider's expected Name().
	Name string
	// Secret is the credential the provider was built with, if any; no error
	// the provider returns, for a job or for one request, may contain it.
	Secret string
	// Answer is the fake model's deterministic answer to an input.
	Answer func(input string) string
	// New starts a fresh fake server and a provider in async mode that
	// talks to it; it registers their clean-up with t.Cleanup.
	New func(t *testing.T) (provider.AsyncProvider, AsyncFake)
}

func (tg AsyncTarget) validate() error {
	switch {
	case tg.Name == "":
		return errors.New("AsyncTarget.Name is empty")
	case tg.Answer == nil || tg.New == nil:
		return errors.New("AsyncTarget.Answer and AsyncTarget.New are required")
	}
	return nil
}

// RunAsync runs the conformance suite of provider.AsyncProvider against tg
// as parallel subtests: a job's life from submission to its answers,
// requests failed or left out alone, expiry, cancellation, error
// classification of submit and poll, unreadable results, timeouts and
// jobs running side by side. Run the Provider suite (Run) on the same
// provider as well: Complete is the engine's synchronous fallback.
func RunAsync(t *testing.T, tg AsyncTarget) {
	t.Helper()
	if err := tg.validate(); err != nil {
		t.Fatalf("providertest: %v", err)
	}
	s := asyncSuite{tg: tg, suite: suite{tg: Target{Name: tg.Name, Secret: tg.Secret, Answer: tg.Answer}}}
	t.Run("Lifecycle", s.testLifecycle)
	t.Run("RequestAlone", s.testRequestAlone)
	t.Run("Expired", s.testExpired)
	t.Run("Failed", s.testFailed)
	t.Run("Cancel", s.testCancel)
	t.Run("SubmitErrors", s.testSubmitErrors)
	t.Run("InvalidBatch", s.testInvalidBatch)
	t.Run("PollErrors", s.testPollErrors)
	t.Run("MalformedResults", s.testMalformedResults)
	t.Run("Timeout", s.testSubmitTimeout)
	t.Run("ConcurrentJobs", s.testConcurrentJobs)
}

type asyncSuite struct {
	tg    AsyncTarget
	suite // check and checkError
}

// submit submits b and checks it got a job id.
func (s asyncSuite) submit(t *testing.T, p provider.AsyncProvider, b provider.Batch) string {
	t.Helper()
	id, err := p.SubmitJob(t.Context(), b)
	if err != nil {
		t.Fatalf("SubmitJob: %v", err)
	}
	if id == "" {
		t.Fatal("SubmitJob returned an empty job id")
	}
	return id
}

// poll polls job id once and fails the test on an error.
func poll(t *testing.T, p provider.AsyncProvider, id string) provider.JobStatus {
	t.Helper()
	st, err := p.PollJob(t.Context(), id)
	if err != nil {
		t.Fatalf("PollJob(%q): %v", id, err)
	}
	if st.State == "" {
		t.Errorf("PollJob(%q): empty State", id)
	}
	return st
}

// pollUntilDone polls job id until it is done, for at most 10 seconds.
func pollUntilDone(t *testing.T, p provider.AsyncProvider, id string) provider.JobStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		st := poll(t, p, id)
		if st.Done {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %q not done after 10s (state %q)", id, st.State)
		}
		<-tick.C
	}
}

// checkRunning checks a job that is not done: any result it already has
// must answer its request correctly.
func (s asyncSuite) checkRunning(t *testing.T, b provider.Batch, st provider.JobStatus) {
	t.Helper()
	if st.Done {
		t.Fatalf("job done (state %q) before the fake ended it", st.State)
	}
	want := map[int]outcome{}
	answered := map[string]bool{}
	for _, r := range st.Results {
		answered[r.Key] = true
	}
	for i, r := range b.Requests {
		if !answered[r.Key] {
			want[i] = missing
		}
	}
	s.check(t, b, st.Results, want)
}

// checkUsage checks every answered result carries its own tokens.
func checkUsage(t *testing.T, results []provider.Result) {
	t.Helper()
	for _, r := range results {
		if r.Err == nil && (r.Usage.InputTokens <= 0 || r.Usage.OutputTokens <= 0) {
			t.Errorf("key %q: usage %+v, want the request's own tokens", r.Key, r.Usage)
		}
	}
}

// testLifecycle covers a job from submission to its answers.
func (s asyncSuite) testLifecycle(t *testing.T) {
	t.Parallel()
	for _, shuffle := range []bool{false, true} {
		t.Run(fmt.Sprintf("shuffle=%v", shuffle), func(t *testing.T) {
			t.Parallel()
			p, f := s.tg.New(t)
			if got := p.Name(); got != s.tg.Name {
				t.Errorf("Name() = %q, want %q", got, s.tg.Name)
			}
			f.Shuffle(shuffle)
			b := newBatch(batchSize)
			id := s.submit(t, p, b)
			if got := f.Jobs(); got != 1 {
				t.Errorf("fake has %d jobs, want 1", got)
			}
			for range 2 {
				s.checkRunning(t, b, poll(t, p, id))
			}

			f.CompleteJobs()
			st := poll(t, p, id)
			if !st.Done {
				t.Fatalf("job not done after CompleteJobs (state %q)", st.State)
			}
			s.check(t, b, st.Results, nil)
			checkUsage(t, st.Results)
			if st.Failed || st.Errors != nil {
				t.Errorf("a completed job: Failed %v, Errors %q; want neither", st.Failed, st.Errors)
			}

			again := poll(t, p, id)
			if !again.Done {
				t.Errorf("second poll: not done (state %q)", again.State)
			}
			s.check(t, b, again.Results, nil)
			if f.Calls() != 0 {
				t.Errorf("a job made %d synchronous calls, want 0", f.Calls())
			}
		})
	}
}

// testRequestAlone covers requests that fail or are left out while the rest
// of their job is answered.
func (s asyncSuite) testRequestAlone(t *testing.T) {
	t.Parallel()
	b := newBatch(batchSize)
	tests := []struct {
		name    string
		arrange func(AsyncFake)
		want    map[int]outcome
	}{
		{"rejected", func(f AsyncFake) { f.RejectInput(b.Requests[2].Input, false) }, map[int]outcome{2: permanent}},
		{"rejected retryable", func(f AsyncFake) { f.RejectInput(b.Requests[2].Input, true) }, map[int]outcome{2: transient}},
		{"left out", func(f AsyncFake) { f.OmitInput(b.Requests[0].Input); f.OmitInput(b.Requests[4].Input) },
			map[int]outcome{0: missing, 4: missing}},
		{"mixed", func(f AsyncFake) {
			f.RejectInput(b.Requests[1].Input, false)
			f.RejectInput(b.Requests[2].Input, true)
			f.OmitInput(b.Requests[3].Input)
		}, map[int]outcome{1: permanent, 2: transient, 3: missing}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, f := s.tg.New(t)
			tt.arrange(f)
			id := s.submit(t, p, b)
			f.CompleteJobs()
			st := poll(t, p, id)
			if !st.Done {
				t.Fatalf("job not done after CompleteJobs (state %q)", st.State)
			}
			s.check(t, b, st.Results, tt.want)
			checkUsage(t, st.Results)
		})
	}
}

// testExpired covers a job that ran out of time part way: the requests it
// answered are answered, the others are missing (retried by the caller).
func (s asyncSuite) testExpired(t *testing.T) {
	t.Parallel()
	for _, answered := range []int{0, 2} {
		t.Run(fmt.Sprintf("answered=%d", answered), func(t *testing.T) {
			t.Parallel()
			p, f := s.tg.New(t)
			b := newBatch(batchSize)
			id := s.submit(t, p, b)
			if err := f.ExpireJob(id, answered); err != nil {
				t.Fatalf("ExpireJob: %v", err)
			}
			st := poll(t, p, id)
			if !st.Done {
				t.Fatalf("expired job not done (state %q)", st.State)
			}
			want := map[int]outcome{}
			for i := answered; i < len(b.Requests); i++ {
				want[i] = missing
			}
			s.check(t, b, st.Results, want)
			s.checkFailed(t, st)
		})
	}
}

// checkFailed checks a job that ended without running some requests says
// so: Failed, with short Errors that hide the secret.
func (s asyncSuite) checkFailed(t *testing.T, st provider.JobStatus) {
	t.Helper()
	if !st.Done || !st.Failed || len(st.Errors) == 0 {
		t.Errorf("job (state %q): Done %v, Failed %v, Errors %q; want Done, Failed and why", st.State, st.Done, st.Failed, st.Errors)
	}
	for _, e := range st.Errors {
		if e == "" || len(e) > 1024 || (s.tg.Secret != "" && strings.Contains(e, s.tg.Secret)) {
			t.Errorf("job error %q: want a short message without the secret", e)
		}
	}
}

// testFailed covers a job that ended without answering any request: every
// request is either an error result or missing, and when some are missing
// the job is Failed and says why.
func (s asyncSuite) testFailed(t *testing.T) {
	t.Parallel()
	p, f := s.tg.New(t)
	b := newBatch(batchSize)
	id := s.submit(t, p, b)
	s.checkRunning(t, b, poll(t, p, id))
	if err := f.FailJob(id); err != nil {
		t.Fatalf("FailJob: %v", err)
	}
	st := poll(t, p, id)
	if !st.Done {
		t.Fatalf("failed job not done (state %q)", st.State)
	}
	want := map[int]outcome{}
	byKey := map[string]bool{}
	for _, r := range st.Results {
		byKey[r.Key] = true
	}
	var left int
	for i, r := range b.Requests {
		want[i] = failed
		if !byKey[r.Key] {
			want[i], left = missing, left+1
		}
	}
	s.check(t, b, st.Results, want)
	if left > 0 {
		s.checkFailed(t, st)
	}
	if err := f.FailJob(id); err == nil {
		t.Error("FailJob of an ended job: nil error")
	}
}

// testCancel covers CancelJob on a running and on a finished job.
func (s asyncSuite) testCancel(t *testing.T) {
	t.Parallel()
	t.Run("running", func(t *testing.T) {
		t.Parallel()
		p, f := s.tg.New(t)
		b := newBatch(batchSize)
		id := s.submit(t, p, b)
		s.checkRunning(t, b, poll(t, p, id))
		if err := p.CancelJob(t.Context(), id); err != nil {
			t.Fatalf("CancelJob: %v", err)
		}
		if got := f.Cancelled(); got != 1 {
			t.Errorf("fake cancelled %d jobs, want 1", got)
		}
		st := pollUntilDone(t, p, id)
		// The fake answers nothing before a job ends: every request of a
		// cancelled job is missing, and the caller answers it elsewhere.
		want := map[int]outcome{}
		for i := range b.Requests {
			want[i] = missing
		}
		s.check(t, b, st.Results, want)
		s.checkFailed(t, st)
		if err := p.CancelJob(t.Context(), id); err != nil {
			t.Errorf("CancelJob of a cancelled job: %v, want nil", err)
		}
		f.CompleteJobs() // must not revive a cancelled job
		s.check(t, b, poll(t, p, id).Results, want)
	})
	t.Run("finished", func(t *testing.T) {
		t.Parallel()
		p, f := s.tg.New(t)
		b := newBatch(batchSize)
		id := s.submit(t, p, b)
		f.CompleteJobs()
		if err := p.CancelJob(t.Context(), id); err != nil {
			t.Errorf("CancelJob of a finished job: %v, want nil", err)
		}
		if got := f.Cancelled(); got != 0 {
			t.Errorf("fake cancelled %d jobs, want 0 (the job had ended)", got)
		}
		st := poll(t, p, id)
		if !st.Done {
			t.Fatalf("job not done (state %q)", st.State)
		}
		s.check(t, b, st.Results, nil)
		if st.Failed {
			t.Errorf("a job cancelled after it completed is Failed: %q", st.Errors)
		}
	})
}

// testSubmitErrors covers error statuses answered to a submission: the
// whole job fails, classified, and nothing is left behind.
func (s asyncSuite) testSubmitErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status         int
		wantPermanent  bool
		wantRetryAfter time.Duration
	}{
		{http.StatusBadRequest, true, 0},
		{http.StatusUnauthorized, false, 0},
		{http.StatusForbidden, false, 0},
		{http.StatusNotFound, true, 0},
		{http.StatusConflict, false, 0},
		{http.StatusTooManyRequests, false, time.Second},
		{http.StatusInternalServerError, false, 0},
		{http.StatusServiceUnavailable, false, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			t.Parallel()
			p, f := s.tg.New(t)
			f.FailNext(1, tt.status)
			b := newBatch(batchSize)
			id, err := p.SubmitJob(t.Context(), b)
			if err == nil {
				t.Fatalf("SubmitJob = %q, nil; want HTTP %d", id, tt.status)
			}
			pe := s.checkError(t, err, tt.wantPermanent)
			if pe.StatusCode != tt.status {
				t.Errorf("StatusCode = %d, want %d (error %v)", pe.StatusCode, tt.status, err)
			}
			if ra := provider.RetryAfter(err); ra != tt.wantRetryAfter {
				t.Errorf("RetryAfter = %v, want %v", ra, tt.wantRetryAfter)
			}
			if got := f.Jobs(); got != 0 {
				t.Errorf("a failed submission left %d jobs", got)
			}
			// The failure leaves no state behind.
			id = s.submit(t, p, b)
			f.CompleteJobs()
			s.check(t, b, poll(t, p, id).Results, nil)
		})
	}
}

// testInvalidBatch covers batches that cannot become a job: they fail
// permanently without reaching the API.
func (s asyncSuite) testInvalidBatch(t *testing.T) {
	t.Parallel()
	noModel := newBatch(2)
	noModel.Model = ""
	tests := []struct {
		name string
		b    provider.Batch
	}{
		{"no requests", provider.Batch{ID: "empty", Model: "test-model"}},
		{"no model", noModel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, f := s.tg.New(t)
			id, err := p.SubmitJob(t.Context(), tt.b)
			if err == nil {
				t.Fatalf("SubmitJob = %q, nil; want a permanent error", id)
			}
			s.checkError(t, err, true)
			if got := f.Jobs(); got != 0 {
				t.Errorf("fake has %d jobs, want 0", got)
			}
		})
	}
}

// testPollErrors covers polls that fail: an unknown job, and a failed call
// that passes on the next poll.
func (s asyncSuite) testPollErrors(t *testing.T) {
	t.Parallel()
	t.Run("unknown job", func(t *testing.T) {
		t.Parallel()
		p, _ := s.tg.New(t)
		st, err := p.PollJob(t.Context(), "no-such-job")
		if err == nil {
			t.Fatalf("PollJob(unknown) = %+v, nil; want an error", st)
		}
		if pe := s.checkError(t, err, true); pe.StatusCode != http.StatusNotFound {
			t.Errorf("StatusCode = %d, want 404", pe.StatusCode)
		}
		if err := p.CancelJob(t.Context(), "no-such-job"); err == nil {
			t.Error("CancelJob(unknown) = nil, want an error")
		} else {
			s.checkError(t, err, true)
		}
	})
	for _, status := range []int{http.StatusTooManyRequests, http.StatusInternalServerError} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			p, f := s.tg.New(t)
			b := newBatch(batchSize)
			id := s.submit(t, p, b)
			f.CompleteJobs()
			f.FailNext(1, status)
			st, err := p.PollJob(t.Context(), id)
			if err == nil {
				t.Fatalf("PollJob = %+v, nil; want HTTP %d", st, status)
			}
			if pe := s.checkError(t, err, false); pe.StatusCode != status {
				t.Errorf("StatusCode = %d, want %d", pe.StatusCode, status)
			}
			s.check(t, b, poll(t, p, id).Results, nil)
		})
	}
}

// testMalformedResults covers results that cannot be read: the poll fails
// transiently, and the next one reads them.
func (s asyncSuite) testMalformedResults(t *testing.T) {
	t.Parallel()
	p, f := s.tg.New(t)
	b := newBatch(batchSize)
	id := s.submit(t, p, b)
	f.CompleteJobs()
	f.SetMalformedNext(1)
	st, err := p.PollJob(t.Context(), id)
	if err == nil {
		t.Fatalf("PollJob = %+v, nil; want a transient error for unreadable results", st)
	}
	s.checkError(t, err, false)
	st = poll(t, p, id)
	if !st.Done {
		t.Fatalf("job not done (state %q)", st.State)
	}
	s.check(t, b, st.Results, nil)
}

// testSubmitTimeout covers a submission that outlives the caller's
// deadline: a transient error wrapping context.DeadlineExceeded, and no job.
func (s asyncSuite) testSubmitTimeout(t *testing.T) {
	t.Parallel()
	p, f := s.tg.New(t)
	f.SetDelay(time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	id, err := p.SubmitJob(ctx, newBatch(batchSize))
	if err == nil {
		t.Fatalf("SubmitJob = %q, nil; want a timeout", id)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
	if pe := s.checkError(t, err, false); pe.StatusCode != 0 {
		t.Errorf("StatusCode = %d, want 0", pe.StatusCode)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("SubmitJob returned after %v, long after its deadline", took)
	}
	if got := f.Jobs(); got != 0 {
		t.Errorf("fake has %d jobs, want 0", got)
	}
}

// testConcurrentJobs covers jobs submitted at the same time: each gets its
// own id, and each job's results answer its own requests only.
func (s asyncSuite) testConcurrentJobs(t *testing.T) {
	t.Parallel()
	p, f := s.tg.New(t)
	const jobs = 4
	batches := make([]provider.Batch, jobs)
	ids := make([]string, jobs)
	errs := make([]error, jobs)
	var wg sync.WaitGroup
	for j := range jobs {
		b := newBatch(batchSize)
		b.ID = fmt.Sprintf("conformance-%d", j)
		for i := range b.Requests {
			// The same keys in every job; different inputs.
			b.Requests[i].Input = fmt.Sprintf("job %d %s", j, b.Requests[i].Input)
		}
		batches[j] = b
		wg.Go(func() { ids[j], errs[j] = p.SubmitJob(t.Context(), b) })
	}
	wg.Wait()
	seen := map[string]bool{}
	for j, err := range errs {
		if err != nil {
			t.Fatalf("SubmitJob %d: %v", j, err)
		}
		if seen[ids[j]] {
			t.Fatalf("job id %q returned twice", ids[j])
		}
		seen[ids[j]] = true
	}
	if got := f.Jobs(); got != jobs {
		t.Errorf("fake has %d jobs, want %d", got, jobs)
	}
	f.CompleteJobs()
	for j, id := range ids {
		st := poll(t, p, id)
		if !st.Done {
			t.Fatalf("job %q not done (state %q)", id, st.State)
		}
		s.check(t, batches[j], st.Results, nil)
	}
}
