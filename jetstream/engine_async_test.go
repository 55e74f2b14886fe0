package jetstream_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/jobstore"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// batchAPI is an in-process Batch API: jobs finish only when the test says
// so. The HTTP wire formats of the real Batch APIs are tested with the
// providers; here the engine's side of async mode is under test.
type batchAPI struct {
	mu        sync.Mutex
	jobs      map[string]provider.Batch
	finished  map[string]bool
	cancelled map[string]bool
	syncCalls atomic.Int64
	submitted atomic.Int64
}

var _ provider.AsyncProvider = (*batchAPI)(nil)

func newBatchAPI() *batchAPI {
	return &batchAPI{jobs: map[string]provider.Batch{}, finished: map[string]bool{}, cancelled: map[string]bool{}}
}

func answer(input string) string { return "async: " + input }

func (a *batchAPI) Name() string { return "fake-batch-api" }

func (a *batchAPI) Complete(_ context.Context, b provider.Batch) ([]provider.Result, error) {
	a.syncCalls.Add(1)
	out := make([]provider.Result, len(b.Requests))
	for i, r := range b.Requests {
		out[i] = provider.Result{Key: r.Key, Output: answer(r.Input)}
	}
	return out, nil
}

func (a *batchAPI) SubmitJob(_ context.Context, b provider.Batch) (string, error) {
	id := fmt.Sprintf("job-%d", a.submitted.Add(1))
	a.mu.Lock()
	defer a.mu.Unlock()
	a.jobs[id] = b
	return id, nil
}

func (a *batchAPI) PollJob(_ context.Context, id string) (provider.JobStatus, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b, ok := a.jobs[id]
	if !ok {
		return provider.JobStatus{}, fmt.Errorf("no job %s", id)
	}
	if !a.finished[id] {
		return provider.JobStatus{State: "in_progress"}, nil
	}
	st := provider.JobStatus{Done: true, State: "completed"}
	for _, r := range b.Requests {
		st.Results = append(st.Results, provider.Result{Key: r.Key, Output: answer(r.Input), Usage: provider.Usage{InputTokens: 3, OutputTokens: 5}})
	}
	return st, nil
}

func (a *batchAPI) CancelJob(_ context.Context, id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cancelled[id] = true
	return nil
}

func (a *batchAPI) finishAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id := range a.jobs {
		a.finished[id] = true
	}
}

func (a *batchAPI) wasCancelled(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cancelled[id]
}

func asyncConfig() batch.Config {
	cfg := testConfig()
	cfg.Async = true
	cfg.MaxBatchSize = 10
	cfg.JobPollInterval = 20 * time.Millisecond
	return cfg
}

func (b *bundle) jobStore(t *testing.T) *jobstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := jobstore.Open(ctx, b.js, jobstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// jobRecords counts the requests recorded as held by a job.
func (b *bundle) jobRecords(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := b.js.KeyValue(ctx, "AI_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	return n
}

func TestAsyncJobAnswersEveryRequestOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	api := newBatchAPI()
	b.publish(t, inputs("ai.requests.t", "job", 10)...)
	b.startWith(t, asyncConfig(), api, batch.WithJobStore(b.jobStore(t)))

	jetstreamtest.Eventually(t, 10*time.Second, "job submitted and recorded", func() bool {
		return api.submitted.Load() == 1 && b.jobRecords(t) > 0
	})
	api.finishAll()
	got := b.waitResults(t, 10, 10*time.Second)
	for id, r := range got {
		want := answer(strings.Replace(id, "-", " ", 1))
		if r.Status != wire.StatusOK || r.Output != want || r.Usage.OutputTokens != 5 || r.Batch.Size != 10 {
			t.Fatalf("%s: %+v", id, r.Result)
		}
	}
	if api.syncCalls.Load() != 0 || api.submitted.Load() != 1 {
		t.Fatalf("sync calls %d, jobs %d; want 0 and 1", api.syncCalls.Load(), api.submitted.Load())
	}
	b.waitDrained(t, 5*time.Second)
	jetstreamtest.Eventually(t, 5*time.Second, "job records forgotten", func() bool {
		return b.jobRecords(t) == 0
	})
}

func TestAsyncRestartResumesTheRecordedJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	api := newBatchAPI()
	store := b.jobStore(t)
	cfg := asyncConfig()
	cfg.ShutdownTimeout = 100 * time.Millisecond
	b.publish(t, inputs("ai.requests.t", "resume", 10)...)
	b.startWith(t, cfg, api, batch.WithJobStore(store))
	jetstreamtest.Eventually(t, 10*time.Second, "job submitted and recorded", func() bool {
		return api.submitted.Load() == 1 && b.jobRecords(t) == 11 // 10 requests and their batch
	})
	b.stop() // the worker goes away while its job runs

	if n := len(b.results(t)); n != 0 {
		t.Fatalf("results before the job finished: %d", n)
	}
	b.startWith(t, cfg, api, batch.WithJobStore(store))
	api.finishAll()
	got := b.waitResults(t, 10, 20*time.Second)
	for id, r := range got {
		if r.Status != wire.StatusOK || r.Attempts != 2 {
			t.Fatalf("%s: %+v", id, r.Result)
		}
	}
	if n := api.submitted.Load(); n != 1 {
		t.Fatalf("jobs submitted = %d, want 1: the restarted worker must resume the recorded job", n)
	}
}

func TestAsyncFallsBackToASynchronousCallAtMaxWait(t *testing.T) {
	t.Parallel()
	b := setup(t)
	api := newBatchAPI()
	cfg := asyncConfig()
	cfg.MaxWait = 500 * time.Millisecond
	b.publish(t, inputs("ai.requests.t", "late", 5)...)
	b.startWith(t, cfg, api, batch.WithJobStore(b.jobStore(t)))

	got := b.waitResults(t, 5, 15*time.Second)
	for id, r := range got {
		if r.Status != wire.StatusOK || r.Batch.Trigger != wire.TriggerMaxWait || r.Output != answer(strings.Replace(id, "-", " ", 1)) {
			t.Fatalf("%s: %+v", id, r.Result)
		}
	}
	if api.syncCalls.Load() != 1 {
		t.Fatalf("sync calls = %d, want 1 combined fallback call", api.syncCalls.Load())
	}
	jetstreamtest.Eventually(t, 5*time.Second, "the job nobody waits for is cancelled", func() bool {
		return api.wasCancelled("job-1")
	})
	// The job finishing late stores nothing more.
	api.finishAll()
	b.waitDrained(t, 5*time.Second)
	if n := len(b.results(t)); n != 5 {
		t.Fatalf("results = %d after the job finished late, want 5", n)
	}
}

func TestAsyncNeedsABatchAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bq, _, pub, err := jetstream.Ensure(ctx, b.js, b.topo)
	if err != nil {
		t.Fatal(err)
	}
	syncOnly := struct{ provider.Provider }{newBatchAPI()}
	if _, err := batch.New(asyncConfig(), bq, pub, syncOnly, batch.WithJobStore(b.jobStore(t))); err == nil || !strings.Contains(err.Error(), "Batch API") {
		t.Fatalf("New with a provider without a Batch API: %v", err)
	}
	if _, err := batch.New(asyncConfig(), bq, pub, newBatchAPI()); err == nil || !strings.Contains(err.Error(), "JobStore") {
		t.Fatalf("New without a JobStore: %v", err)
	}
}
