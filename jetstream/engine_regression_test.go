package jetstream_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/wire"
)

// TestLongReplySubjectIsRefused is the end-to-end regression test for what
// FuzzSubjects' corpus entry reply-over-control-line guards: a
// Batch-Reply-To longer than a NATS protocol line used to be accepted, and
// publishing its result made the server close the worker's connection
// ("maximum control line exceeded") on every delivery. Now the request fails
// alone, its error result goes to ai.results.<topic>, the rest of the batch
// is answered, and the connection stays up.
func TestLongReplySubjectIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	long := "replies." + strings.Repeat("x", 5000)
	b.publish(t,
		req{subject: "ai.requests.t", body: `{"id":"long-reply","input":"a"}`, header: map[string]string{wire.HeaderReplyTo: long}},
		req{subject: "ai.requests.t", body: `{"id":"fine","input":"b"}`, header: map[string]string{wire.HeaderReplyTo: "ai.results.client.7"}},
		req{subject: "ai.requests.t", body: `{"id":"plain","input":"c"}`},
	)
	cfg := testConfig()
	cfg.MaxBatchSize = 3
	cfg.MaxWait = 200 * time.Millisecond
	b.start(t, cfg)

	got := b.waitResults(t, 3, 15*time.Second)
	b.waitDrained(t, 10*time.Second)
	if r := got["long-reply"]; r.Status != wire.StatusError || !strings.Contains(r.Error, "Batch-Reply-To is 5008 bytes") || r.subject != "ai.results.t" {
		t.Errorf("long-reply: status %q error %q on %s, want an error result on ai.results.t", r.Status, r.Error, r.subject)
	}
	if r := got["fine"]; r.Status != wire.StatusOK || r.subject != "ai.results.client.7" {
		t.Errorf("fine: status %q on %s, want ok on its reply subject", r.Status, r.subject)
	}
	if r := got["plain"]; r.Status != wire.StatusOK {
		t.Errorf("plain: status %q error %q", r.Status, r.Error)
	}
	if n := jetstreamtest.Count(t, b.js, b.topo.DeadStream); n != 1 {
		t.Errorf("dead letters = %d, want 1", n)
	}
	if s := b.nc.Status(); s != nats.CONNECTED {
		t.Errorf("worker connection is %v, want CONNECTED", s)
	}
}
