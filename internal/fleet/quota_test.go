package fleet_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/aibatch/aibatch/internal/fleet"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/provider/ratelimit"
)

// quotaWorker is one worker's Quota, running until stop.
type quotaWorker struct {
	q    *fleet.Quota
	stop func()
}

// openQuota opens worker's Quota of scope on ns with its own connection,
// runs it, and waits until it is Ready.
func openQuota(t *testing.T, ns *server.Server, scope, worker string, heartbeat time.Duration) *quotaWorker {
	t.Helper()
	ctx := testCtx(t)
	_, js := jetstreamtest.Connect(t, ns)
	totals, err := fleet.Open(ctx, js, fleet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	q, err := fleet.OpenQuota(ctx, totals, fleet.QuotaConfig{Scope: scope, Worker: worker, Heartbeat: heartbeat})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { q.Run(runCtx, func(err error) { t.Logf("quota %s: %v", worker, err) }) })
	var once sync.Once
	w := &quotaWorker{q: q, stop: func() { once.Do(func() { cancel(); wg.Wait() }) }}
	t.Cleanup(w.stop)
	select {
	case <-q.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("quota %s not ready after 10s", worker)
	}
	return w
}

func workersSeen(ws ...*quotaWorker) []int {
	out := make([]int, len(ws))
	for i, w := range ws {
		out[i] = w.q.Workers()
	}
	return out
}

func allSee(n int, ws ...*quotaWorker) func() bool {
	return func() bool {
		for _, w := range ws {
			if w.q.Workers() != n {
				return false
			}
		}
		return true
	}
}

func TestQuotaCountsTheLiveWorkers(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	const hb = 200 * time.Millisecond
	a := openQuota(t, ns, "acct", "a", hb)
	if got := a.q.Workers(); got != 1 {
		t.Fatalf("a alone counts %d workers", got)
	}
	b := openQuota(t, ns, "acct", "b", hb)
	// b counts a before its first call: Ready means it has read the bucket.
	if got := b.q.Workers(); got != 2 {
		t.Fatalf("b counts %d workers once ready, want 2", got)
	}
	c := openQuota(t, ns, "acct", "c", hb)
	jetstreamtest.Eventually(t, 5*time.Second, "every worker counts 3", allSee(3, a, b, c))
	// Another scope is another account: not counted.
	other := openQuota(t, ns, "other", "d", hb)
	if got := other.q.Workers(); got != 1 {
		t.Errorf("a worker of another scope counts %d workers, want 1", got)
	}
	if got := workersSeen(a, b, c); got[0] != 3 || got[1] != 3 || got[2] != 3 {
		t.Errorf("a worker of another scope was counted: %v", got)
	}

	// A worker that stops deletes its heartbeat: its share is back at once.
	c.stop()
	start := time.Now()
	jetstreamtest.Eventually(t, 5*time.Second, "a and b count 2 after c stopped", allSee(2, a, b))
	if took := time.Since(start); took >= hb {
		t.Errorf("a clean stop took %v to be seen, want less than a heartbeat (%v)", took, hb)
	}
}

func TestQuotaCountsOutAWorkerThatDied(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	const hb = 200 * time.Millisecond
	a := openQuota(t, ns, "acct", "a", hb)
	b := openQuota(t, ns, "acct", "b", hb)
	// A worker that crashes after its first heartbeat: it never runs,
	// never beats again, never deletes its key.
	ctx := testCtx(t)
	_, js := jetstreamtest.Connect(t, ns)
	totals, err := fleet.Open(ctx, js, fleet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.OpenQuota(ctx, totals, fleet.QuotaConfig{Scope: "acct", Worker: "crashed", Heartbeat: hb}); err != nil {
		t.Fatal(err)
	}
	jetstreamtest.Eventually(t, 5*time.Second, "a and b count the crashed worker", allSee(3, a, b))
	died := time.Now()
	jetstreamtest.Eventually(t, 5*time.Second, "a and b count it out", allSee(2, a, b))
	// Two heartbeat periods without a heartbeat, checked every quarter of
	// one, and the watch's round trip.
	if took := time.Since(died); took > 3*hb {
		t.Errorf("the crashed worker's share came back after %v, want within %v", took, 3*hb)
	}
	// Its key is deleted: a worker that starts now does not count it.
	kv, err := js.KeyValue(ctx, fleet.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	jetstreamtest.Eventually(t, 5*time.Second, "the crashed worker's heartbeat deleted", func() bool {
		_, err := kv.Get(ctx, "quota.acct.workers.crashed")
		return err != nil
	})
	late := openQuota(t, ns, "acct", "late", hb)
	if got := late.q.Workers(); got != 3 {
		t.Errorf("a worker started later counts %d workers, want 3 (a, b and itself)", got)
	}
}

func TestQuotaPauseReachesTheFleet(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	const hb = time.Second
	a := openQuota(t, ns, "acct", "a", hb)
	b := openQuota(t, ns, "acct", "b", hb)
	until := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	a.q.Pause(until)
	if got := a.q.PausedUntil(); !got.Equal(until) {
		t.Fatalf("a's own pause = %v, want %v at once", got, until)
	}
	jetstreamtest.Eventually(t, 5*time.Second, "b paused until a's Retry-After", func() bool { return b.q.PausedUntil().Equal(until) })
	// A shorter pause does not cut the longer one short, on either.
	b.q.Pause(until.Add(-30 * time.Second))
	a.q.Pause(until.Add(-10 * time.Second))
	longer := until.Add(time.Minute)
	b.q.Pause(longer)
	jetstreamtest.Eventually(t, 5*time.Second, "a paused until b's later pause", func() bool { return a.q.PausedUntil().Equal(longer) })
	if got := b.q.PausedUntil(); !got.Equal(longer) {
		t.Errorf("b's pause = %v, want %v", got, longer)
	}
	// A worker that starts during the pause pauses too.
	c := openQuota(t, ns, "acct", "c", hb)
	if got := c.q.PausedUntil(); !got.Equal(longer) {
		t.Errorf("a worker started during the pause is paused until %v, want %v", got, longer)
	}
}

func TestQuotaSharesTheNewestReading(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	const hb = 100 * time.Millisecond
	a := openQuota(t, ns, "acct", "a", hb)
	b := openQuota(t, ns, "acct", "b", hb)
	if got := b.q.Reading(); !got.IsZero() {
		t.Fatalf("b has a reading before anyone reported one: %+v", got)
	}
	at := time.Now().Truncate(time.Millisecond)
	r := ratelimit.Reading{At: at, Requests: ratelimit.Window{Limit: 60, Remaining: 7, Reset: at.Add(53 * time.Second)}}
	a.q.Report(r)
	jetstreamtest.Eventually(t, 5*time.Second, "b has a's reading", func() bool { return b.q.Reading().At.Equal(at) })
	if got := b.q.Reading().Requests; got.Remaining != 7 || got.Limit != 60 || !got.Reset.Equal(at.Add(53*time.Second)) {
		t.Errorf("b's reading = %+v, want a's", got)
	}
	// An older reading does not replace a newer one.
	b.q.Report(ratelimit.Reading{At: at.Add(-time.Second), Requests: ratelimit.Window{Remaining: 59, Reset: at.Add(time.Second)}})
	if got := b.q.Reading(); !got.At.Equal(at) {
		t.Errorf("an older reading replaced the newest: %+v", got)
	}
}

func TestQuotaJobsAddUpAcrossTheFleet(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	ctx := testCtx(t)
	const hb = time.Second
	a := openQuota(t, ns, "acct", "a", hb)
	b := openQuota(t, ns, "acct", "b", hb)
	now := time.Now()
	for i, q := range []*fleet.Quota{a.q, b.q, a.q} {
		if err := q.Enqueue(ctx, "batch_"+strconv.Itoa(i), ratelimit.Job{Model: "m", Tokens: 100, Requests: 10, Submitted: now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.q.Enqueue(ctx, "batch_other", ratelimit.Job{Model: "n", Tokens: 5, Requests: 1, Submitted: now}); err != nil {
		t.Fatal(err)
	}
	want := func(q *fleet.Quota, tokens int64) func() bool {
		return func() bool { m := q.Enqueued()["m"]; return m.Tokens == tokens && q.Enqueued()["n"].Requests == 1 }
	}
	jetstreamtest.Eventually(t, 5*time.Second, "a sees 300 tokens of m", want(a.q, 300))
	jetstreamtest.Eventually(t, 5*time.Second, "b sees 300 tokens of m", want(b.q, 300))
	// A job ends, seen by the worker that did not submit it.
	if err := b.q.Dequeue(ctx, "batch_0"); err != nil {
		t.Fatal(err)
	}
	jetstreamtest.Eventually(t, 5*time.Second, "a sees 200 tokens of m", want(a.q, 200))
	if j, ok := a.q.Job("batch_2"); !ok || j.Tokens != 100 {
		t.Errorf("Job(batch_2) = %+v, %v", j, ok)
	}
	// A worker that restarts finds the jobs in the bucket.
	c := openQuota(t, ns, "acct", "c", hb)
	if m := c.q.Enqueued()["m"]; m.Tokens != 200 || m.Requests != 20 {
		t.Errorf("a worker started later sees %+v of m, want 200 tokens, 20 requests", m)
	}
}

func TestOpenQuotaRefusesABadScope(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	ctx := testCtx(t)
	_, js := jetstreamtest.Connect(t, ns)
	totals, err := fleet.Open(ctx, js, fleet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []fleet.QuotaConfig{{Scope: "a.b", Worker: "w"}, {Scope: "", Worker: "w"}, {Scope: "a", Worker: ""}} {
		if _, err := fleet.OpenQuota(ctx, totals, cfg); err == nil {
			t.Errorf("OpenQuota(%+v) succeeded", cfg)
		}
	}
}

// TestQuotaKeepsTheFleetsJobsWithinTheQueue: two workers submit Batch API
// jobs of 100 tokens to one OpenAI organization that may hold 250 enqueued
// tokens of the model. The second worker sees the first one's jobs and
// waits for room: no job is refused.
func TestQuotaKeepsTheFleetsJobsWithinTheQueue(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetEnqueuedTokenLimit(250)
	queue := func(w *quotaWorker) *ratelimit.Queue {
		inner, err := openai.New(openai.Config{APIKey: "sk-test", BaseURL: srv.URL, Mode: openai.ModeAsync})
		if err != nil {
			t.Fatal(err)
		}
		q, err := ratelimit.NewQueue(inner, ratelimit.QueueLimits{Tokens: 250}, ratelimit.WithJobQueue(w.q))
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	a, b := openQuota(t, ns, "acct", "a", time.Second), openQuota(t, ns, "acct", "b", time.Second)
	qa, qb := queue(a), queue(b)
	job := provider.Batch{ID: "b", Model: "gpt-test"}
	for i := range 10 {
		job.Requests = append(job.Requests, provider.Request{Key: strconv.Itoa(i), Input: strings.Repeat("x", 40)})
	}
	var ids []string
	for range 2 {
		id, err := qa.SubmitJob(t.Context(), job)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	jetstreamtest.Eventually(t, 5*time.Second, "b sees a's jobs", func() bool { return b.q.Enqueued()["gpt-test"].Tokens == 200 })
	done := make(chan error, 1)
	go func() {
		_, err := qb.SubmitJob(t.Context(), job)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("b's job went out (%v) with a's 200 tokens in the queue; want it waiting", err)
	case <-time.After(1500 * time.Millisecond): // more than the queue's recheck
	}
	srv.CompleteJobs()
	if _, err := qa.PollJob(t.Context(), ids[0]); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b's job still waits after one of a's jobs ended")
	}
	if n := srv.QueueRefused(); n != 0 {
		t.Errorf("%d jobs refused for the enqueued token limit, want 0", n)
	}
}
