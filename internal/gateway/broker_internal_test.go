package gateway

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap/zaptest"

	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/wire"
)

// TestCatchUpReadsWhatTheSubscriptionMissed stands for a result the
// subscription missed (published while the connection was down): it is
// stored, and catching up hands it to its waiter, without counting the
// copies it reads again as unclaimed.
func TestCatchUpReadsWhatTheSubscriptionMissed(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	nc, js := jetstreamtest.Connect(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, _, err := jetstream.Ensure(ctx, js, jetstream.Topology{}.WithDefaults()); err != nil {
		t.Fatal(err)
	}
	b, err := startBroker(ctx, nc, instanceSubject("catchup"), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.stop()
	before := time.Now()
	publish := func(id string) {
		body, _ := json.Marshal(wire.Result{ID: id, Status: wire.StatusOK, Output: "answer " + id})
		m := nats.NewMsg(b.reply)
		m.Data = body
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// Published before anyone waits: the subscription passes them over.
	publish("early-1")
	publish("early-2")
	jetstreamtest.Eventually(t, 10*time.Second, "the subscription saw both", func() bool { return b.unclaimed.Load() == 2 })
	c := newCollector([]string{"early-2", "late"})
	b.register(c)
	defer b.unregister(c)
	b.catchUp(before, "test")
	publish("late")
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the collector has %d of 2 results after catching up", c.n)
	}
	if c.results[0].Output != "answer early-2" || c.results[1].Output != "answer late" {
		t.Errorf("results %+v", c.results)
	}
	if n := b.unclaimed.Load(); n != 2 {
		t.Errorf("unclaimed %d, want the 2 the subscription passed over: catching up counts none", n)
	}
}
