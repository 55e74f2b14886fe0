package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
)

// The first SIGTERM lets a call in flight finish within SHUTDOWN_TIMEOUT; a
// second one ends the process at once. Nothing is lost: the broker still
// holds the requests, and the next worker answers them.
func TestProcessSecondSignalExitsAtOnce(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	logQueueOnFailure(t, js)
	fake := newFake(t)
	fake.SetDelay(time.Hour) // the call never finishes by itself
	env := map[string]string{
		"NATS_URL":         ns.ClientURL(),
		"OPENAI_BASE_URL":  fake.URL,
		"OPENAI_API_KEY":   procSecret,
		"MAX_BATCH_SIZE":   "10",
		"SHUTDOWN_TIMEOUT": "1h",
		"ACK_WAIT":         "2s",
	}
	w := startWorker(t, "", env)
	waitStreams(t, js)
	publishRequests(t, js, "ai.requests.proc", 10)
	jetstreamtest.Eventually(t, 20*time.Second, "a call in flight", func() bool { return fake.Calls() == 1 })

	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	jetstreamtest.Eventually(t, 10*time.Second, "the worker draining", func() bool {
		return strings.Contains(w.output.String(), "shutting down")
	})
	if w.exited() {
		t.Fatal("the worker exited on the first signal with a call in flight and SHUTDOWN_TIMEOUT=1h")
	}
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := w.wait(t, 10*time.Second); code == 0 {
		t.Fatalf("exit code %d after the second signal, want the signal's", code)
	}

	fake.SetDelay(0)
	w = startWorker(t, "", env)
	waitResults(t, js, 10, 30*time.Second)
	w.stop(t)
}
