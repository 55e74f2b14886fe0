package main

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/wire"
)

// A worker killed while it holds partial groups (fetched, unacked, waiting
// for their groups to fill) loses nothing and doubles nothing: the broker
// redelivers them after ACK_WAIT, and the next worker answers each once.
func TestProcessKillWhileHoldingPartialGroups(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	logQueueOnFailure(t, js)
	fake := newFake(t)
	env := map[string]string{
		"NATS_URL":        ns.ClientURL(),
		"OPENAI_BASE_URL": fake.URL,
		"OPENAI_API_KEY":  procSecret,
		"MAX_BATCH_SIZE":  "10",
		"MAX_WAIT":        "1h", // nothing is due: the groups are held
		"ACK_WAIT":        "2s",
	}
	first := startWorker(t, "", env)
	waitStreams(t, js)
	// 25 requests over 5 templates: 5 groups of 5, none fills a call of 10.
	const n = 25
	for i := range n {
		body, _ := json.Marshal(wire.Request{ID: "r-" + strconv.Itoa(i), Input: "in " + strconv.Itoa(i),
			Instructions: "template " + strconv.Itoa(i%5)})
		if _, err := js.Publish(t.Context(), "ai.requests.proc", body); err != nil {
			t.Fatal(err)
		}
	}
	consumer, err := js.Consumer(t.Context(), "AI_REQUESTS", "aibatch")
	if err != nil {
		t.Fatal(err)
	}
	jetstreamtest.Eventually(t, 20*time.Second, "the worker holding all 25", func() bool {
		info, err := consumer.Info(t.Context())
		return err == nil && info.NumAckPending == n && info.NumPending == 0
	})
	// Held past several ack waits: the worker keeps them alive.
	time.Sleep(3 * 2 * time.Second) // checking nothing happens, not waiting for an outcome
	if info, err := consumer.Info(t.Context()); err != nil || info.NumRedelivered != 0 || fake.Calls() != 0 {
		t.Fatalf("while held: %+v, %v, %d calls; want no redelivery and no call", info, err, fake.Calls())
	}
	first.kill(t)
	if got := jetstreamtest.Count(t, js, "AI_RESULTS"); got != 0 {
		t.Fatalf("%d results before the kill, want none", got)
	}

	env["MAX_WAIT"] = "1s"
	second := startWorker(t, "", env)
	got := waitResults(t, js, n, 30*time.Second) // fails on a second result for any id
	for id, r := range got {
		if r.Attempts < 2 {
			t.Errorf("%s: attempt %d, want a redelivery", id, r.Attempts)
		}
	}
	// Every request was paid for once: the killed worker made no call, and
	// the redeliveries (which come back as their ack waits run out, and go
	// at once: they have waited) are not called twice.
	var items int
	for _, size := range fake.CallSizes() {
		items += size
	}
	if items != n {
		t.Errorf("the provider was sent %d items for %d requests", items, n)
	}
	second.stop(t)
}
