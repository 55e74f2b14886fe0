package main

import (
	"context"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/wire"
)

// The worker in async mode against the fake OpenAI Batch API over real HTTP:
// a worker killed while its job runs is replaced by one that resumes the
// recorded job instead of paying for a second.
func TestProcessAsyncResumesTheJobAfterACrash(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	logQueueOnFailure(t, js)
	fake := newFake(t)
	env := map[string]string{
		"NATS_URL":          ns.ClientURL(),
		"OPENAI_BASE_URL":   fake.URL,
		"OPENAI_API_KEY":    procSecret,
		"BATCH_MODE":        "async",
		"MAX_BATCH_SIZE":    "20",
		"JOB_POLL_INTERVAL": "50ms",
		"ACK_WAIT":          "2s",
		"POLL_INTERVAL":     "20ms",
	}
	w := startWorker(t, "", env)
	waitStreams(t, js)
	publishRequests(t, js, "ai.requests.proc", 20)
	// Killed once the job is submitted and recorded (a worker killed between
	// the API creating the job and the one write that records it submits
	// again: that window is documented).
	jetstreamtest.Eventually(t, 20*time.Second, "a Batch API job submitted and recorded", func() bool {
		return fake.Jobs() == 1 && jobBound(t, js)
	})
	w.kill(t)

	w = startWorker(t, "", env)
	fake.CompleteJobs()
	got := waitResults(t, js, 20, 40*time.Second)
	for id, r := range got {
		if r.Attempts != 2 || r.Batch.Trigger == wire.TriggerMaxWait {
			t.Fatalf("%s: attempts %d trigger %s; want the resumed job's answer on the second delivery", id, r.Attempts, r.Batch.Trigger)
		}
	}
	if n := fake.Jobs(); n != 1 {
		t.Fatalf("Batch API jobs = %d, want 1: the restarted worker must resume the recorded job", n)
	}
	if n := fake.Calls(); n != 0 {
		t.Fatalf("synchronous calls = %d, want 0", n)
	}
	w.stop(t)
}

// A job slower than MAX_WAIT: its requests go through one combined
// synchronous call, and the job is cancelled.
func TestProcessAsyncFallsBackAtMaxWait(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	logQueueOnFailure(t, js)
	fake := newFake(t)
	w := startWorker(t, "", map[string]string{
		"NATS_URL":          ns.ClientURL(),
		"OPENAI_BASE_URL":   fake.URL,
		"OPENAI_API_KEY":    procSecret,
		"BATCH_MODE":        "async",
		"MAX_BATCH_SIZE":    "10",
		"MAX_WAIT":          "1s",
		"JOB_POLL_INTERVAL": "50ms",
		"POLL_INTERVAL":     "20ms",
	})
	waitStreams(t, js)
	publishRequests(t, js, "ai.requests.proc", 10)
	got := waitResults(t, js, 10, 30*time.Second)
	for id, r := range got {
		if r.Batch.Trigger != wire.TriggerMaxWait || r.Attempts != 1 {
			t.Fatalf("%s: trigger %s attempts %d, want the max_wait fallback at the first attempt", id, r.Batch.Trigger, r.Attempts)
		}
	}
	if fake.Jobs() != 1 || fake.Calls() != 1 {
		t.Fatalf("jobs %d, synchronous calls %d; want 1 and 1", fake.Jobs(), fake.Calls())
	}
	jetstreamtest.Eventually(t, 10*time.Second, "the abandoned job cancelled", func() bool { return fake.Cancelled() == 1 })
	fake.CompleteJobs() // a late answer stores nothing more
	if n := jetstreamtest.Count(t, js, "AI_RESULTS"); n != 10 {
		t.Fatalf("results = %d, want 10", n)
	}
	w.stop(t)
}

// jobBound reports whether the job bucket records a batch bound to its job.
func jobBound(t *testing.T, js natsjs.JetStream) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "AI_JOBS")
	if err != nil {
		return false
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return false
	}
	bound := false
	for k := range keys.Keys() {
		bound = bound || strings.HasPrefix(k, "batch.")
	}
	return bound
}
