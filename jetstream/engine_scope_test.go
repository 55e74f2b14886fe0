package jetstream_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

// The failure-scope rule on a real NATS server, with the openai provider
// calling the fake over HTTP: a request's attempts are spent only on
// failures of its own. batch/scope_test.go tests the same behaviours on
// in-memory doubles; these are the acceptance tests.

// A model whose answer fits 20 items, asked for 50 at a time: the cut-off
// answers keep what they completed, the group's size shrinks to what
// fitted, and nothing is dead-lettered.
func TestOutputCapShrinksTheBatchAndLosesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.SetOutputCap(20)
	b.publish(t, inputs("ai.requests.cap", "cap", 500)...)
	cfg := testConfig()
	cfg.MaxBatchSize = 50
	// What is left of the group after the size shrank is held for peers
	// until MaxWait; none will come.
	cfg.MaxWait = time.Second
	b.start(t, cfg)

	got := b.waitResults(t, 500, 30*time.Second)
	b.waitDrained(t, 10*time.Second)
	for i := range 500 {
		id := "cap-" + strconv.Itoa(i)
		r, ok := got[id]
		if !ok {
			t.Fatalf("no result for %s", id)
		}
		if want := openaitest.Answer("cap " + strconv.Itoa(i)); r.Status != wire.StatusOK || r.Output != want || r.Attempts != 1 {
			t.Fatalf("%s: %+v, want ok %q at the first attempt", id, r.Result, want)
		}
	}
	if n := jetstreamtest.Count(t, b.js, b.topo.DeadStream); n != 0 {
		t.Fatalf("dead letters = %d, want 0", n)
	}
	calls := b.fake.Calls()
	t.Logf("500 requests under an output cap of 20 items in %d calls (sizes %v)", calls, b.fake.CallSizes())
	if calls > 40 {
		t.Fatalf("%d calls for 500 requests, want at most 40", calls)
	}
	// The group's size shrinks and grows, never past MaxBatchSize.
	for _, n := range b.fake.CallSizes() {
		if n > cfg.MaxBatchSize {
			t.Fatalf("a call of %d requests, over MaxBatchSize %d", n, cfg.MaxBatchSize)
		}
	}
	if err := b.engine.ProviderHealth(); err != nil {
		t.Fatalf("ProviderHealth = %v: a cut-off is the batch's failure, not the provider's", err)
	}
}

// One input in 50 refused by the model: each refused request fails alone
// (one error result, one dead letter), the other 49 of its batch are
// answered, and splitting the refused calls stays within 150 calls.
func TestARefusedInputFailsAloneInARealBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	refused := map[string]bool{}
	for i := 7; i < 500; i += 50 {
		b.fake.RefuseInput("ref " + strconv.Itoa(i))
		refused["ref-"+strconv.Itoa(i)] = true
	}
	b.publish(t, inputs("ai.requests.ref", "ref", 500)...)
	cfg := testConfig()
	cfg.MaxBatchSize = 50
	b.start(t, cfg)

	got := b.waitResults(t, 500, 30*time.Second)
	b.waitDrained(t, 10*time.Second)
	var ok, failed int
	for i := range 500 {
		id := "ref-" + strconv.Itoa(i)
		r := got[id]
		switch {
		case refused[id]:
			if r.Status != wire.StatusError || !strings.Contains(r.Error, "refused") || r.Batch.Size != 1 {
				t.Errorf("%s: %+v, want an error result saying it was refused, from a call of its own", id, r.Result)
			}
			failed++
		default:
			if want := openaitest.Answer("ref " + strconv.Itoa(i)); r.Status != wire.StatusOK || r.Output != want || r.Attempts != 1 {
				t.Errorf("%s: %+v, want ok %q at the first attempt", id, r.Result, want)
			}
			ok++
		}
	}
	if ok != 490 || failed != 10 {
		t.Fatalf("%d ok, %d refused; want 490 and 10", ok, failed)
	}

	// Exactly one dead letter per refused request, none for the others.
	jetstreamtest.Eventually(t, 10*time.Second, "10 dead letters", func() bool {
		return jetstreamtest.Count(t, b.js, b.topo.DeadStream) >= 10
	})
	dead := map[string]int{}
	for _, m := range jetstreamtest.Messages(t, b.js, b.topo.DeadStream) {
		dead[m.Header.Get(wire.HeaderRequestID)]++
	}
	if len(dead) != 10 {
		t.Fatalf("dead letters for %d requests (%v), want the 10 refused", len(dead), dead)
	}
	for id, n := range dead {
		if !refused[id] || n != 1 {
			t.Fatalf("%d dead letters for %s (refused: %v), want exactly one for each refused request", n, id, refused[id])
		}
	}

	calls := b.fake.Calls()
	t.Logf("500 requests, 10 refused, in %d calls", calls)
	if calls > 150 {
		t.Fatalf("%d calls, want at most 150", calls)
	}
	// A refusal says nothing about size: the group keeps MaxBatchSize.
	if g := b.engine.Stats().Groups; len(g) != 1 || g[0].Size != cfg.MaxBatchSize {
		t.Fatalf("groups %+v: a refusal must not shrink the group", g)
	}
	if err := b.engine.ProviderHealth(); err != nil {
		t.Fatalf("ProviderHealth = %v: a refusal is the request's failure, not the provider's", err)
	}
}

// During an outage longer than REQUEST_TTL, the waiting requests end as
// expired (an error result and a dead letter each) while the provider is
// still down, and none before its TTL.
func TestRequestsExpireDuringAnOutage(t *testing.T) {
	t.Parallel()
	const (
		n   = 20
		ttl = 5 * time.Second
	)
	b := setup(t)
	b.fake.FailFor(time.Minute, 500) // far longer than the test
	cfg := testConfig()
	cfg.MaxBatchSize = n // the requests make one full batch: it is called at once
	cfg.MaxDeliver = 1   // a spent attempt would end a request as "gave up"
	cfg.RequestTTL = ttl
	// The engine runs before the requests exist, so that their TTL does
	// not run out before the first call.
	b.start(t, cfg)
	b.publish(t, inputs("ai.requests.ttl", "ttl", n)...)
	// When the broker stored each request: a TTL counts from there. They
	// stay in the stream until they end.
	stored := map[string]time.Time{}
	for _, m := range jetstreamtest.Messages(t, b.js, b.topo.RequestStream) {
		stored[strconv.FormatUint(m.Sequence, 10)] = m.Time
	}
	if len(stored) != n {
		t.Fatalf("%d requests in the stream, want %d", len(stored), n)
	}

	jetstreamtest.Eventually(t, 10*time.Second, "the breaker open", func() bool {
		err := b.engine.ProviderHealth()
		return err != nil && strings.Contains(err.Error(), "HTTP 500")
	})
	b.waitResults(t, n, ttl+20*time.Second) // one result per request
	b.waitDrained(t, 10*time.Second)
	if err := b.engine.ProviderHealth(); err == nil {
		t.Fatal("ProviderHealth = nil: the requests must expire while the outage lasts")
	}
	if sizes := b.fake.CallSizes(); len(sizes) != 0 {
		t.Fatalf("calls reached the model during the outage: sizes %v", sizes)
	}
	for _, r := range b.results(t) {
		if r.Status != wire.StatusError || !strings.HasPrefix(r.Error, "expired") {
			t.Fatalf("%s: %+v, want an error result \"expired: ...\"", r.ID, r.Result)
		}
	}
	// None ended sooner than its TTL: compare when its result was stored
	// with when the request was.
	for _, m := range jetstreamtest.Messages(t, b.js, b.topo.ResultStream) {
		seq := m.Header.Get(wire.HeaderStreamSeq)
		published, ok := stored[seq]
		if !ok {
			t.Fatalf("result %s names request seq %q, which was never published", m.Data, seq)
		}
		if waited := m.Time.Sub(published); waited < ttl {
			t.Fatalf("request seq %s ended after %s, sooner than its TTL of %s: %s", seq, waited, ttl, m.Data)
		}
	}
	jetstreamtest.Eventually(t, 10*time.Second, "a dead letter per expired request", func() bool {
		return jetstreamtest.Count(t, b.js, b.topo.DeadStream) == n
	})
	for _, m := range jetstreamtest.Messages(t, b.js, b.topo.DeadStream) {
		if reason := m.Header.Get(wire.HeaderError); !strings.HasPrefix(reason, "expired") {
			t.Fatalf("dead letter of %s: reason %q, want expired", m.Header.Get(wire.HeaderRequestID), reason)
		}
	}
}

// A key the provider rejects makes every request wait, without a dead
// letter, while probes find the key still wrong; once the provider accepts
// the key the engine was given, every request is answered by the same
// engine.
func TestAWrongKeyWaitsForTheProviderToAcceptIt(t *testing.T) {
	t.Parallel()
	const n = 100
	b := setup(t)
	b.fake.RequireKey("right") // the engine's provider sends "test-key"
	b.publish(t, inputs("ai.requests.key", "key", n)...)
	cfg := testConfig()
	cfg.MaxBatchSize = 50
	cfg.MaxDeliver = 1 // a spent attempt would dead-letter a request
	cfg.ProbeInterval = 2 * time.Second
	b.start(t, cfg)

	jetstreamtest.Eventually(t, 10*time.Second, "ProviderHealth names the rejected key", func() bool {
		err := b.engine.ProviderHealth()
		return err != nil && strings.Contains(err.Error(), "rejected the API key (HTTP 401)")
	})
	// Probes after 1s, then every 2s (ProbeInterval): four of them span
	// several probe intervals.
	jetstreamtest.Eventually(t, 20*time.Second, "4 probes", func() bool { return b.engine.Stats().Probes >= 4 })
	if err := b.engine.ProviderHealth(); err == nil || !strings.Contains(err.Error(), "rejected the API key (HTTP 401)") {
		t.Fatalf("ProviderHealth after %d probes = %v", b.engine.Stats().Probes, err)
	}
	if d, r := jetstreamtest.Count(t, b.js, b.topo.DeadStream), jetstreamtest.Count(t, b.js, b.topo.ResultStream); d != 0 || r != 0 {
		t.Fatalf("%d dead letters, %d results with a rejected key; want none", d, r)
	}
	if q := jetstreamtest.Count(t, b.js, b.topo.RequestStream); q != n {
		t.Fatalf("%d requests in the stream, want all %d waiting", q, n)
	}

	b.fake.RequireKey("test-key") // the provider now accepts the engine's key
	got := b.waitResults(t, n, 20*time.Second)
	b.waitDrained(t, 10*time.Second)
	for i := range n {
		id := "key-" + strconv.Itoa(i)
		if want := openaitest.Answer("key " + strconv.Itoa(i)); got[id].Status != wire.StatusOK || got[id].Output != want {
			t.Fatalf("%s: %+v, want ok %q", id, got[id].Result, want)
		}
	}
	if d := jetstreamtest.Count(t, b.js, b.topo.DeadStream); d != 0 {
		t.Fatalf("dead letters = %d, want 0", d)
	}
	if err := b.engine.ProviderHealth(); err != nil {
		t.Fatalf("ProviderHealth after the key was accepted = %v", err)
	}
}

// TestTenTemplatesInOneBurst: 1,000 requests round-robin over 10
// instructions take about the ideal 10 × ceil(100/50) = 20 calls, because
// requests are held by group until their group fills a call.
func TestTenTemplatesInOneBurst(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var reqs []req
	for i := range 1000 {
		body, _ := json.Marshal(wire.Request{ID: fmt.Sprintf("tpl-%d", i), Input: fmt.Sprintf("observation %d", i),
			Instructions: fmt.Sprintf("template %d: answer briefly", i%10)})
		reqs = append(reqs, req{subject: "ai.requests.templates", body: string(body)})
	}
	b.publish(t, reqs...)
	cfg := testConfig()
	cfg.MaxBatchSize = 50
	b.start(t, cfg)
	got := b.waitResults(t, 1000, 30*time.Second)
	for id, r := range got {
		if r.Status != wire.StatusOK || r.Batch.Trigger != wire.TriggerSize || r.Batch.Size != 50 {
			t.Fatalf("%s: %+v", id, r.Result)
		}
	}
	if calls := b.fake.Calls(); calls > 22 {
		t.Fatalf("%d calls for 1,000 requests over 10 templates, want at most 22 (ideal 20)", calls)
	}
	t.Logf("1,000 requests over 10 templates in %d calls", b.fake.Calls())
}

// TestTopicsNeverShareACallByDefault: requests of two topics with the same
// instructions are never combined, unless ISOLATE_TOPICS is off.
func TestTopicsNeverShareACallByDefault(t *testing.T) {
	t.Parallel()
	for _, mix := range []bool{false, true} {
		t.Run(fmt.Sprintf("mix=%v", mix), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			var reqs []req
			for i := range 400 {
				tenant := []string{"tenant-a", "tenant-b"}[i%2]
				body, _ := json.Marshal(wire.Request{ID: fmt.Sprintf("%s-%d", tenant, i), Input: fmt.Sprintf("%s says %d", tenant, i)})
				reqs = append(reqs, req{subject: "ai.requests." + tenant, body: string(body)})
			}
			b.publish(t, reqs...)
			cfg := testConfig()
			cfg.MaxBatchSize = 50
			cfg.MixTopics = mix
			b.start(t, cfg)
			got := b.waitResults(t, 400, 30*time.Second)
			topicsOf := map[string]map[string]bool{} // batch id -> topics
			for id, r := range got {
				if r.Status != wire.StatusOK {
					t.Fatalf("%s: %+v", id, r.Result)
				}
				topic := id[:strings.LastIndexByte(id, '-')] // "tenant-a-12" is tenant-a's
				if topicsOf[r.Batch.ID] == nil {
					topicsOf[r.Batch.ID] = map[string]bool{}
				}
				topicsOf[r.Batch.ID][topic] = true
			}
			mixed := 0
			for _, topics := range topicsOf {
				if len(topics) > 1 {
					mixed++
				}
			}
			switch {
			case !mix && mixed > 0:
				t.Fatalf("%d calls carried requests of both topics", mixed)
			case mix && mixed == 0:
				t.Fatal("with ISOLATE_TOPICS=false no call mixed the topics; want them to share calls")
			}
			t.Logf("mix=%v: %d calls, %d of them mixed", mix, b.fake.Calls(), mixed)
		})
	}
}
