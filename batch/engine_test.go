package batch_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/batch/batchtest"
	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// These tests run the real engine on the doubles inside synctest bubbles:
// they show the Broker is enough for the engine's schedule, redeliveries
// and failure paths, with the engine's default timings passing on the fake
// clock. synctest.Wait lets every goroutine settle before a check, so the
// checks are exact rather than eventual.

const (
	reqSubject    = "ai.requests.t"
	urgentSubject = "ai.urgent.t"
)

func mustPublish(t *testing.T, b *batchtest.Broker, subject, body string, header map[string]string) uint64 {
	t.Helper()
	seq, err := b.PublishRequest(subject, []byte(body), header)
	if err != nil {
		t.Fatalf("PublishRequest(%s): %v", subject, err)
	}
	return seq
}

// engineConfig is the engine's defaults with the Broker's AckWait.
func engineConfig(b *batchtest.Broker) batch.Config {
	return batch.Config{DefaultModel: "test-model", AckWait: b.AckWait()}
}

// startEngine runs an engine on b's two lanes and p until stop is called
// (or the test ends); stop waits for Run to return.
func startEngine(t *testing.T, b *batchtest.Broker, p provider.Provider, cfg batch.Config, opts ...batch.Option) (e *batch.Engine, stop func()) {
	t.Helper()
	opts = append([]batch.Option{
		batch.WithUrgentQueue(b.Queue(wire.UrgentSubjects)),
		batch.WithLogger(zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))),
	}, opts...)
	e, err := batch.New(cfg, b.Queue(wire.RequestSubjects), b.Publisher(), p, opts...)
	if err != nil {
		t.Fatalf("new engine: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("engine Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return e, stop
}

// publishInputs publishes n requests on subject with ids <prefix>-<i> and
// inputs "<prefix> <i>", and returns their sequences.
func publishInputs(t *testing.T, b *batchtest.Broker, subject, prefix string, n int) []uint64 {
	t.Helper()
	seqs := make([]uint64, n)
	for i := range n {
		body, _ := json.Marshal(wire.Request{ID: fmt.Sprintf("%s-%d", prefix, i), Input: prefix + " " + strconv.Itoa(i)})
		seqs[i] = mustPublish(t, b, subject, string(body), nil)
	}
	return seqs
}

// results decodes the stored results by request id, failing on a second
// result for any id.
func results(t *testing.T, b *batchtest.Broker) map[string]wire.Result {
	t.Helper()
	out := map[string]wire.Result{}
	for _, s := range b.Results() {
		var r wire.Result
		if err := json.Unmarshal(s.Data, &r); err != nil {
			t.Fatalf("result %d is not JSON: %v", s.Seq, err)
		}
		if _, dup := out[r.ID]; dup {
			t.Fatalf("two results for %q", r.ID)
		}
		out[r.ID] = r
	}
	return out
}

func TestEngineSendsFullBatchesThenTheRestAtMaxWait(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		publishInputs(t, b, reqSubject, "obs", 120)
		cfg := engineConfig(b)
		e, _ := startEngine(t, b, p, cfg)
		synctest.Wait()
		if got := results(t, b); len(got) != 100 || p.Calls() != 2 {
			t.Fatalf("%d results in %d calls, want two full batches at once", len(got), p.Calls())
		}
		// The other 20 wait for MaxWait (5m by default), not a moment less.
		time.Sleep(batch.DefaultMaxWait - batch.DefaultPollInterval)
		synctest.Wait()
		if n := len(b.Results()); n != 100 {
			t.Fatalf("%d results before MaxWait", n)
		}
		time.Sleep(2 * batch.DefaultPollInterval)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 120 || b.Requests() != 0 {
			t.Fatalf("%d results, %d requests left", len(got), b.Requests())
		}
		for i := range 120 {
			r := got["obs-"+strconv.Itoa(i)]
			wantTrigger, wantSize := wire.TriggerSize, 50
			if i >= 100 {
				wantTrigger, wantSize = wire.TriggerMaxWait, 20
			}
			if r.Status != wire.StatusOK || r.Output != batchtest.Echo("obs "+strconv.Itoa(i)) ||
				r.Batch.Trigger != wantTrigger || r.Batch.Size != wantSize || r.Attempts != 1 {
				t.Fatalf("obs-%d: %+v", i, r)
			}
		}
		if s := e.Stats(); s.ResultsOK != 120 || s.APICalls != 3 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestEngineLostAcksAreRedeliveredAndStoredOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		seqs := publishInputs(t, b, urgentSubject, "lost", 5)
		b.Inject(batchtest.LoseAck, 3)
		startEngine(t, b, p, engineConfig(b))
		synctest.Wait()
		if n, left := len(b.Results()), b.Requests(); n != 5 || left != 3 {
			t.Fatalf("%d results, %d requests left; want 5 and the 3 whose acks were lost", n, left)
		}
		// The broker redelivers them after AckWait; the urgent lane takes
		// them at once, and their results are duplicates.
		time.Sleep(b.AckWait())
		synctest.Wait()
		if left := b.Requests(); left != 0 {
			t.Fatalf("%d requests left after the redelivery", left)
		}
		got := results(t, b)
		if len(got) != 5 || p.Calls() != 2 {
			t.Fatalf("%d results from %d calls, want 5 from 2", len(got), p.Calls())
		}
		for i, seq := range seqs {
			want := 1
			if i < 3 {
				want = 2
			}
			if n := b.Deliveries(seq); n != want {
				t.Errorf("request %d delivered %d times, want %d", i, n, want)
			}
			if r := got["lost-"+strconv.Itoa(i)]; r.Attempts != 1 {
				t.Errorf("lost-%d: stored result is from attempt %d, want the first", i, r.Attempts)
			}
		}
	})
}

func TestEngineLostPublishAckStoresOneResult(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		publishInputs(t, b, urgentSubject, "once", 3)
		mustPublish(t, b, urgentSubject, `{"id":"bad"}`, nil)
		// The first result and the first dead letter are stored, but the
		// engine hears they failed.
		b.Inject(batchtest.LosePubAck, 1)
		startEngine(t, b, p, engineConfig(b))
		synctest.Wait()
		if left := b.Requests(); left != 1 {
			t.Fatalf("%d requests left, want the one whose result's ack was lost", left)
		}
		time.Sleep(batch.DefaultRetryBackoff * 2)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 4 || b.Requests() != 0 || p.Calls() != 2 {
			t.Fatalf("%d results, %d left, %d calls; want 4, 0 and 2 (the lost answer was paid twice)", len(got), b.Requests(), p.Calls())
		}
		if r := got["once-0"]; r.Attempts != 1 {
			t.Errorf("stored result from attempt %d, want the first", r.Attempts)
		}
		if dead := b.DeadLetters(); len(dead) != 1 || dead[0].Header[wire.HeaderRequestID] != "bad" {
			t.Errorf("dead letters %+v", dead)
		}
	})
}

func TestEngineRetriesARequestsOwnFailuresAndDeadLettersPermanentOnes(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		p.FailItem("retry 0", nil, 2)
		p.FailItem("retry 2", provider.Permanent(errors.New("content refused")), -1)
		publishInputs(t, b, urgentSubject, "retry", 3)
		startEngine(t, b, p, engineConfig(b), batch.WithAttemptStore(batchtest.NewAttemptStore()))
		// retry-0 fails on its own twice, backing off 1s then 2s (with
		// jitter); the others end in the first call.
		time.Sleep(5 * time.Second)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 3 || p.Calls() != 3 || b.Requests() != 0 {
			t.Fatalf("%d results from %d calls, %d left", len(got), p.Calls(), b.Requests())
		}
		if r := got["retry-0"]; r.Status != wire.StatusOK || r.Attempts != 3 {
			t.Errorf("retry-0: %+v, want ok on the third attempt", r)
		}
		if r := got["retry-1"]; r.Status != wire.StatusOK || r.Attempts != 1 {
			t.Errorf("retry-1: %+v, want ok at once", r)
		}
		if r := got["retry-2"]; r.Status != wire.StatusError || !strings.Contains(r.Error, "content refused") || r.Attempts != 1 {
			t.Errorf("retry-2: %+v", r)
		}
		dead := b.DeadLetters()
		if len(dead) != 1 || dead[0].Subject != "ai.dead.t" || dead[0].Header[wire.HeaderAttempts] != "1" {
			t.Fatalf("dead letters %+v", dead)
		}
	})
}

func TestEngineGivesUpAfterMaxDeliverOwnFailures(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		p.FailItem("doomed 0", nil, -1)
		publishInputs(t, b, urgentSubject, "doomed", 2)
		cfg := engineConfig(b)
		cfg.MaxDeliver = 3
		startEngine(t, b, p, cfg, batch.WithAttemptStore(batchtest.NewAttemptStore()))
		time.Sleep(time.Minute)
		synctest.Wait()
		got := results(t, b)
		r := got["doomed-0"]
		if r.Status != wire.StatusError || r.Attempts != 3 || !strings.Contains(r.Error, "gave up after 3 attempts") {
			t.Fatalf("doomed-0: %+v", r)
		}
		if dead := b.DeadLetters(); len(dead) != 1 || dead[0].Header[wire.HeaderAttempts] != "3" {
			t.Fatalf("dead letters %+v", dead)
		}
		if got["doomed-1"].Status != wire.StatusOK || b.Requests() != 0 {
			t.Fatalf("doomed-1: %+v, %d left", got["doomed-1"], b.Requests())
		}
	})
}

func TestEngineCallsTheMissingAgainAtOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		p.Omit("part 1", 1)
		p.Omit("part 3", 1)
		publishInputs(t, b, urgentSubject, "part", 5)
		startEngine(t, b, p, engineConfig(b))
		synctest.Wait()
		got := results(t, b)
		if len(got) != 5 || p.Calls() != 2 {
			t.Fatalf("%d results from %d calls", len(got), p.Calls())
		}
		if second := p.Batches()[1]; len(second.Requests) != 2 {
			t.Fatalf("the second call carried %d requests, want the 2 left out", len(second.Requests))
		}
		// Left out is the call's failure, not the requests': same delivery,
		// no attempt spent.
		for _, id := range []string{"part-1", "part-3"} {
			if r := got[id]; r.Attempts != 1 || r.Status != wire.StatusOK || r.Batch.Size != 2 {
				t.Errorf("%s: %+v", id, r)
			}
		}
	})
}

func TestEngineShutdownHandsBackHeldCalls(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		release := p.Hold()
		defer release()
		publishInputs(t, b, urgentSubject, "slow", 5)
		cfg := engineConfig(b)
		cfg.ShutdownTimeout = time.Second
		_, stop := startEngine(t, b, p, cfg)
		// Held for longer than AckWait: progress reports keep the requests.
		time.Sleep(3 * b.AckWait())
		synctest.Wait()
		if p.Held() != 1 || p.Calls() != 1 {
			t.Fatalf("held %d of %d calls", p.Held(), p.Calls())
		}
		stop()
		if n := len(b.Results()); n != 0 || b.Requests() != 5 {
			t.Fatalf("%d results, %d requests after an interrupted call", n, b.Requests())
		}
		release()
		// A new worker takes them at once: they were handed back without delay.
		startEngine(t, b, p, cfg)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 5 {
			t.Fatalf("%d results after the restart", len(got))
		}
		for id, r := range got {
			if r.Attempts != 2 {
				t.Errorf("%s: attempt %d, want 2", id, r.Attempts)
			}
		}
	})
}

// jobAPI is an in-process Batch API on top of a batchtest.Provider: jobs
// finish when the test says so.
type jobAPI struct {
	*batchtest.Provider
	mu       sync.Mutex
	jobs     map[string]provider.Batch
	finished bool
	// failFirst makes the first job end failed (expired) without answers.
	failFirst bool
}

func (a *jobAPI) SubmitJob(_ context.Context, b provider.Batch) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	id := "job-" + strconv.Itoa(len(a.jobs)+1)
	a.jobs[id] = b
	return id, nil
}

func (a *jobAPI) PollJob(ctx context.Context, id string) (provider.JobStatus, error) {
	a.mu.Lock()
	b, ok := a.jobs[id]
	done := a.finished
	a.mu.Unlock()
	if !ok {
		return provider.JobStatus{}, fmt.Errorf("no job %s", id)
	}
	if a.failFirst && id == "job-1" {
		return provider.JobStatus{Done: true, Failed: true, State: "expired", Errors: []string{"token_limit_exceeded"}}, nil
	}
	if !done {
		return provider.JobStatus{State: "in_progress"}, nil
	}
	rs, err := a.Complete(ctx, b)
	return provider.JobStatus{Done: true, State: "completed", Results: rs}, err
}

func (a *jobAPI) CancelJob(context.Context, string) error { return nil }

func (a *jobAPI) submitted() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.jobs)
}

func TestEngineAsyncRestartResumesTheRecordedJob(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := batchtest.NewBroker()
		api := &jobAPI{Provider: batchtest.NewProvider(), jobs: map[string]provider.Batch{}}
		store := batchtest.NewJobStore()
		cfg := engineConfig(b)
		cfg.Async, cfg.MaxBatchSize, cfg.ShutdownTimeout = true, 10, time.Second
		publishInputs(t, b, reqSubject, "job", 10)
		_, stop := startEngine(t, b, api, cfg, batch.WithJobStore(store))
		synctest.Wait()
		if api.submitted() != 1 || store.Len() != 11 {
			t.Fatalf("%d jobs, %d job records; want 1 job holding 10 requests", api.submitted(), store.Len())
		}
		stop() // the worker goes away while its job runs
		if n := len(b.Results()); n != 0 || b.Requests() != 10 {
			t.Fatalf("%d results, %d requests before the job finished", n, b.Requests())
		}

		startEngine(t, b, api, cfg, batch.WithJobStore(store))
		api.mu.Lock()
		api.finished = true
		api.mu.Unlock()
		// The new worker finds nothing pending but requests delivered and
		// unacked: it looks for them after AckWait (they were handed back
		// at once, so they are there) and polls their job at once.
		time.Sleep(b.AckWait() + time.Second)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 10 || b.Requests() != 0 || store.Len() != 0 {
			t.Fatalf("%d results, %d requests left, %d job records", len(got), b.Requests(), store.Len())
		}
		for id, r := range got {
			if r.Status != wire.StatusOK || r.Attempts != 2 {
				t.Errorf("%s: %+v", id, r)
			}
		}
		if n := api.submitted(); n != 1 {
			t.Fatalf("%d jobs submitted, want the recorded one resumed", n)
		}
	})
}

func TestEngineAsyncFailedJobSpendsNoAttempt(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := batchtest.NewBroker()
		api := &jobAPI{Provider: batchtest.NewProvider(), jobs: map[string]provider.Batch{}, failFirst: true, finished: true}
		store := batchtest.NewJobStore()
		attempts := batchtest.NewAttemptStore()
		cfg := engineConfig(b)
		cfg.Async, cfg.MaxBatchSize, cfg.MaxDeliver = true, 10, 1
		publishInputs(t, b, reqSubject, "job", 10)
		e, _ := startEngine(t, b, api, cfg, batch.WithJobStore(store), batch.WithAttemptStore(attempts))
		// The first job fails at its first poll; its requests come back
		// after JobPollInterval and go in a second job.
		time.Sleep(3 * batch.DefaultJobPollInterval)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 10 || len(b.DeadLetters()) != 0 || b.Requests() != 0 {
			t.Fatalf("%d results, %d dead letters, %d left", len(got), len(b.DeadLetters()), b.Requests())
		}
		for id, r := range got {
			if r.Status != wire.StatusOK {
				t.Errorf("%s: %+v", id, r)
			}
		}
		if n := api.submitted(); n != 2 {
			t.Fatalf("%d jobs submitted, want the failed one and a second", n)
		}
		if s := e.Stats(); s.JobsFailed != 1 || store.Len() != 0 || attempts.Len() != 0 {
			t.Fatalf("jobs failed %d, %d job records, %d attempt records", s.JobsFailed, store.Len(), attempts.Len())
		}
	})
}

// TestEngineTriggers runs each trigger rule on the engine, on the fake
// clock: what sends a batch, and that nothing sends it sooner.
func TestEngineTriggers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     func(*batch.Config)
		subject string
		act     func(t *testing.T, e *batch.Engine) // after the requests are published
		// before is how long nothing may be sent; after, when all three
		// results must be there.
		before, after time.Duration
		want          wire.Trigger
		wantCalls     int
	}{
		{name: "interval", cfg: func(c *batch.Config) { c.Interval, c.MaxWait = 10*time.Minute, time.Hour }, subject: reqSubject,
			before: 10*time.Minute - time.Second, after: 10*time.Minute + time.Second, want: wire.TriggerInterval, wantCalls: 1},
		{name: "max_wait", cfg: func(c *batch.Config) { c.MaxWait = 3 * time.Minute }, subject: reqSubject,
			before: 3*time.Minute - time.Second, after: 3*time.Minute + time.Second, want: wire.TriggerMaxWait, wantCalls: 1},
		{name: "size", cfg: func(c *batch.Config) { c.MaxBatchSize = 3 }, subject: reqSubject,
			after: time.Second, want: wire.TriggerSize, wantCalls: 1},
		{name: "urgent", subject: urgentSubject, after: time.Millisecond, want: wire.TriggerUrgent, wantCalls: 1},
		{name: "immediate", cfg: func(c *batch.Config) { c.Immediate = true }, subject: reqSubject,
			after: time.Millisecond, want: wire.TriggerImmediate, wantCalls: 3},
		{name: "forced", subject: reqSubject, before: time.Minute,
			act: func(t *testing.T, e *batch.Engine) {
				rep, err := e.Flush(t.Context())
				if err != nil || rep.Requests != 3 || rep.Batches != 1 {
					t.Fatalf("Flush = %+v, %v; want 3 requests in 1 batch", rep, err)
				}
			},
			after: time.Millisecond, want: wire.TriggerForced, wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				b, p := batchtest.NewBroker(), batchtest.NewProvider()
				cfg := engineConfig(b)
				if tt.cfg != nil {
					tt.cfg(&cfg)
				}
				e, _ := startEngine(t, b, p, cfg)
				publishInputs(t, b, tt.subject, tt.name, 3)
				if tt.before > 0 {
					time.Sleep(tt.before)
					synctest.Wait()
					if n := len(b.Results()); n != 0 || p.Calls() != 0 {
						t.Fatalf("%d results, %d calls after %v; want nothing yet", n, p.Calls(), tt.before)
					}
				}
				if tt.act != nil {
					tt.act(t, e)
				}
				time.Sleep(tt.after)
				synctest.Wait()
				got := results(t, b)
				if len(got) != 3 || p.Calls() != tt.wantCalls {
					t.Fatalf("%d results in %d calls, want 3 in %d", len(got), p.Calls(), tt.wantCalls)
				}
				for id, r := range got {
					if r.Batch.Trigger != tt.want || r.Status != wire.StatusOK {
						t.Errorf("%s: %+v, want trigger %s", id, r, tt.want)
					}
				}
			})
		})
	}
}

// TestEngineRetryTriggerFetchesHandedBackRequests: a request handed back
// for a retry is fetched when it is due again, by the retry rule, not at the
// next interval.
func TestEngineRetryTriggerFetchesHandedBackRequests(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		p.FailItem("again 0", nil, 1)
		cfg := engineConfig(b)
		cfg.MaxBatchSize = 2
		startEngine(t, b, p, cfg, batch.WithAttemptStore(batchtest.NewAttemptStore()))
		publishInputs(t, b, reqSubject, "again", 2)
		time.Sleep(2 * batch.DefaultRetryBackoff)
		synctest.Wait()
		got := results(t, b)
		if r := got["again-0"]; r.Batch.Trigger != wire.TriggerRetry || r.Attempts != 2 || r.Status != wire.StatusOK {
			t.Fatalf("again-0: %+v, want ok from a retry fetch", r)
		}
		if r := got["again-1"]; r.Batch.Trigger != wire.TriggerSize {
			t.Fatalf("again-1: %+v", r)
		}
	})
}

// fixedLease is a HoldLease that holds or not.
type fixedLease bool

func (l fixedLease) Held() bool { return bool(l) }

// TestAFleetGathersPartialGroupsInOneWorker: two engines on one stream at a
// low rate over 5 templates; only the holder gathers partial groups, so the
// fleet makes the calls one worker would, not twice as many.
func TestAFleetGathersPartialGroupsInOneWorker(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, leases ...batch.HoldLease) int {
		var calls int
		synctest.Test(t, func(t *testing.T) {
			b, p := batchtest.NewBroker(), batchtest.NewProvider()
			cfg := engineConfig(b)
			cfg.MaxWait = time.Minute
			for _, l := range leases {
				var opts []batch.Option
				if l != nil {
					opts = append(opts, batch.WithHoldLease(l))
				}
				startEngine(t, b, p, cfg, opts...)
			}
			// 5 templates, a request every 2s each, for 5 minutes.
			for i := range 750 {
				body, _ := json.Marshal(wire.Request{ID: fmt.Sprintf("r-%d", i), Input: fmt.Sprintf("in %d", i), Instructions: fmt.Sprintf("template %d", i%5)})
				mustPublish(t, b, reqSubject, string(body), nil)
				if i%5 == 4 {
					time.Sleep(2 * time.Second)
				}
			}
			time.Sleep(2 * cfg.MaxWait)
			synctest.Wait()
			if n := len(results(t, b)); n != 750 || b.Requests() != 0 {
				t.Fatalf("%d results, %d left", n, b.Requests())
			}
			calls = p.Calls()
		})
		return calls
	}
	one := run(t, nil)
	two := run(t, fixedLease(true), fixedLease(false))
	unled := run(t, nil, nil)
	t.Logf("calls: one worker %d, two with a holder %d, two without %d", one, two, unled)
	if float64(two) > 1.5*float64(one) {
		t.Fatalf("two workers with a holder made %d calls, one worker %d: over 1.5×", two, one)
	}
}

// TestABurstToAFleetIsGatheredByTheHolder: the holder holds a third of
// every group of a burst over 3 templates and a follower takes the rest.
// The follower sends its full calls and hands what is left back, unspent;
// the holder gathers it into full calls: the fleet makes the calls one
// worker makes, and nothing waits for MaxWait (5m). Before, the follower
// sent its remainders as small calls and the holder's thirds waited for
// MaxWait.
func TestABurstToAFleetIsGatheredByTheHolder(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		cfg := engineConfig(b) // MaxBatchSize 50, MaxWait 5m
		attempts := batchtest.NewAttemptStore()
		publish := func(from, to int) {
			for i := from; i < to; i++ {
				body, _ := json.Marshal(wire.Request{ID: fmt.Sprintf("r-%d", i), Input: fmt.Sprintf("in %d", i), Instructions: fmt.Sprintf("template %d", i%3)})
				mustPublish(t, b, reqSubject, string(body), nil)
			}
		}
		// 300 requests, 100 per template: ideally 2 calls each.
		holder, _ := startEngine(t, b, p, cfg, batch.WithHoldLease(fixedLease(true)), batch.WithAttemptStore(attempts))
		publish(0, 100)
		time.Sleep(time.Second) // past a poll
		synctest.Wait()
		if held := holder.Stats().HeldRequests; held != 100 {
			t.Fatalf("the holder holds %d, want the first 100", held)
		}
		// The follower polls as it starts, before the holder's next poll,
		// and takes a share of the other 200 (a backlog of two calls' worth
		// and more).
		publish(100, 300)
		follower, _ := startEngine(t, b, p, cfg, batch.WithHoldLease(fixedLease(false)), batch.WithAttemptStore(attempts))
		synctest.Wait()
		if taken := follower.Stats().Requests; taken < 100 {
			t.Fatalf("the follower took %d, want a share of the other 200", taken)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 300 || b.Requests() != 0 || len(b.DeadLetters()) != 0 {
			t.Fatalf("%d results, %d left, %d dead letters 10s after the burst; want all 300 answered", len(got), b.Requests(), len(b.DeadLetters()))
		}
		for id, r := range got {
			if r.Status != wire.StatusOK || r.Batch.Trigger != wire.TriggerSize || r.Batch.Size != 50 {
				t.Fatalf("%s: %+v, want it in a full call", id, r)
			}
		}
		if calls := p.Calls(); calls != 6 {
			t.Errorf("%d calls, want the 6 one worker makes", calls)
		}
		if attempts.Len() != 0 {
			t.Errorf("%d attempt records left", attempts.Len())
		}
	})
}

// TestAFollowerDoesNotHoldWhatIsLeftOfABurst: a follower (another worker
// gathers partial groups) helps with a backlog; once it has drained, the
// follower sends the partial groups it holds instead of keeping them until
// MaxWait, since new requests go to the holder and nothing will fill them
// here.
func TestAFollowerDoesNotHoldWhatIsLeftOfABurst(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		cfg := engineConfig(b) // MaxWait 5m
		// 150 requests over 7 templates: a backlog of three calls' worth,
		// and no group fills a call of 50.
		for i := range 150 {
			body, _ := json.Marshal(wire.Request{ID: fmt.Sprintf("r-%d", i), Input: fmt.Sprintf("in %d", i), Instructions: fmt.Sprintf("template %d", i%7)})
			mustPublish(t, b, reqSubject, string(body), nil)
		}
		follower, _ := startEngine(t, b, p, cfg, batch.WithHoldLease(fixedLease(false)))
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n, held := len(results(t, b)), follower.Stats().HeldRequests; n != 150 || held != 0 {
			t.Fatalf("%d results, %d still held 10s after the backlog drained; want all 150 sent", n, held)
		}
		if calls := p.Calls(); calls != 7 {
			t.Fatalf("%d calls, want one per template", calls)
		}
	})
}
