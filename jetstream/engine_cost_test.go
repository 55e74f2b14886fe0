package jetstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/respcache"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

// These tests run the cost savings through the real adapter: a real
// embedded server with the AI_CACHE bucket, and the real openai provider
// against the fake OpenAI server.

// startCached runs an engine with the response cache in a real bucket and
// returns the store.
func (b *bundle) startCached(t *testing.T, cfg batch.Config) *respcache.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := respcache.Open(ctx, b.js, respcache.Config{TTL: time.Hour})
	if err != nil {
		t.Fatalf("open the response cache: %v", err)
	}
	p, err := openai.New(openai.Config{APIKey: "test-key", BaseURL: b.fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	b.startWith(t, cfg, p, batch.WithResponseCache(store))
	return store
}

// sentItems is how many items the fake server was sent in all.
func sentItems(s *openaitest.Server) int {
	n := 0
	for _, size := range s.CallSizes() {
		n += size
	}
	return n
}

// over makes n requests on subject with ids <prefix>-<i> over the inputs
// "obs <i mod distinct>".
func over(subject, prefix string, n, distinct int) []req {
	out := make([]req, n)
	for i := range out {
		body, _ := json.Marshal(wire.Request{ID: prefix + "-" + strconv.Itoa(i), Input: "obs " + strconv.Itoa(i%distinct)})
		out[i] = req{subject: subject, body: string(body)}
	}
	return out
}

func TestEngineAnswersRepeatsFromTheCache(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := testConfig()
	cfg.MaxWait = 300 * time.Millisecond
	b.startCached(t, cfg)
	b.publish(t, over("ai.requests.t", "first", 100, 100)...)
	first := b.waitResults(t, 100, 30*time.Second)
	b.waitDrained(t, 10*time.Second)
	if n := sentItems(b.fake); n != 100 {
		t.Fatalf("first 100 requests cost %d provider items", n)
	}
	// Every entry is written after its ok result was stored.
	jetstreamEventuallyStats(t, b, func(s batch.Stats) bool { return s.Cache.Writes == 100 })

	b.publish(t, over("ai.requests.t", "second", 100, 100)...)
	all := b.waitResults(t, 200, 30*time.Second)
	b.waitDrained(t, 10*time.Second)
	if n := sentItems(b.fake); n != 100 {
		t.Fatalf("the same 100 inputs again cost %d more provider items, want 0", n-100)
	}
	for i := range 100 {
		f, s := first["first-"+strconv.Itoa(i)], all["second-"+strconv.Itoa(i)]
		if s.Status != wire.StatusOK || !s.Cached || s.Output != f.Output || s.Output == "" ||
			s.Usage != (wire.Usage{}) || s.Batch.Trigger != wire.TriggerCache {
			t.Fatalf("second-%d: %+v; want ok, cached, %q, usage 0, trigger cache", i, s.Result, f.Output)
		}
	}
	if s := b.engine.Stats(); s.Cache.Hits != 100 || s.Cache.BytesRead == 0 || s.Cache.BytesWritten == 0 {
		t.Fatalf("cache stats %+v", s.Cache)
	}
}

// jetstreamEventuallyStats waits until the engine's stats satisfy cond.
func jetstreamEventuallyStats(t *testing.T, b *bundle, cond func(batch.Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond(b.engine.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("stats never as wanted: %+v", b.engine.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEngineSendsDuplicatesOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := testConfig()
	cfg.MaxWait = 300 * time.Millisecond
	p, err := openai.New(openai.Config{APIKey: "test-key", BaseURL: b.fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	// No cache: duplicates are sent once anyway.
	b.startWith(t, cfg, p)
	b.publish(t, over("ai.requests.t", "dup", 100, 10)...)
	got := b.waitResults(t, 100, 30*time.Second)
	b.waitDrained(t, 10*time.Second)
	if n, calls := sentItems(b.fake), len(b.fake.CallSizes()); n > 20 || calls > 2 {
		t.Fatalf("100 requests over 10 inputs cost %d provider items in %d calls, want at most 20 in 2", n, calls)
	}
	for i := range 100 {
		r := got["dup-"+strconv.Itoa(i)]
		if r.Status != wire.StatusOK || r.Output != openaitest.Answer("obs "+strconv.Itoa(i%10)) {
			t.Fatalf("dup-%d: %+v", i, r.Result)
		}
	}
}

func TestEngineFallsBackToTheProviderOnABadCacheEntry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startCached(t, testConfig())
	ask := func(id string) req {
		return req{subject: "ai.urgent.t", body: fmt.Sprintf(`{"id":%q,"input":"same"}`, id)}
	}
	b.publish(t, ask("a"))
	b.waitResults(t, 1, 10*time.Second)
	jetstreamEventuallyStats(t, b, func(s batch.Stats) bool { return s.Cache.Writes == 1 })

	// Every entry overwritten with bytes that are not an entry.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := b.js.KeyValue(ctx, respcache.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for k := range keys.Keys() {
		if _, err := kv.Put(ctx, k, []byte("{corrupt")); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d entries, want 1", n)
	}
	b.publish(t, ask("b"))
	got := b.waitResults(t, 2, 10*time.Second)
	if r := got["b"]; r.Status != wire.StatusOK || r.Cached || r.Output != openaitest.Answer("same") || b.fake.Calls() != 2 {
		t.Fatalf("b: %+v after %d calls, want the provider's answer", r.Result, b.fake.Calls())
	}
	// Its ok answer replaced the corrupt entry; purged, the next asks the
	// provider again.
	jetstreamEventuallyStats(t, b, func(s batch.Stats) bool { return s.Cache.Writes == 2 })
	b.publish(t, ask("c"))
	if r := b.waitResults(t, 3, 10*time.Second)["c"]; !r.Cached {
		t.Fatalf("c: %+v, want the repaired entry", r.Result)
	}
	if _, err := respcache.Purge(ctx, b.js, ""); err != nil {
		t.Fatal(err)
	}
	b.publish(t, ask("d"))
	if r := b.waitResults(t, 4, 10*time.Second)["d"]; r.Cached || r.Status != wire.StatusOK || b.fake.Calls() != 3 {
		t.Fatalf("d: %+v after %d calls, want a provider call after the purge", r.Result, b.fake.Calls())
	}
}

// startCombinedAsync runs an engine in async mode with ASYNC_COMBINE, the
// real openai provider in ModeAsync against the fake.
func (b *bundle) startCombinedAsync(t *testing.T, cfg batch.Config) {
	t.Helper()
	p, err := openai.New(openai.Config{APIKey: "test-key", BaseURL: b.fake.URL, Mode: openai.ModeAsync})
	if err != nil {
		t.Fatal(err)
	}
	cfg.AsyncCombine = true
	b.startWith(t, cfg, p, batch.WithJobStore(b.jobStore(t)))
}

func TestAsyncCombineSendsACombinedCallPerLine(t *testing.T) {
	t.Parallel()
	b := setup(t, openaitest.WithCompleteAfter(1))
	b.publish(t, over("ai.requests.t", "line", 20, 20)...)
	b.startCombinedAsync(t, asyncConfig())
	got := b.waitResults(t, 20, 20*time.Second)
	for i := range 20 {
		r := got["line-"+strconv.Itoa(i)]
		if r.Status != wire.StatusOK || r.Output != openaitest.Answer("obs "+strconv.Itoa(i)) || r.Attempts != 1 {
			t.Fatalf("line-%d: %+v", i, r.Result)
		}
	}
	// Two jobs of one line of 10 each, and no synchronous call.
	if jobs, calls := b.fake.Jobs(), b.fake.Calls(); jobs != 2 || len(b.fake.CallSizes()) != 0 {
		t.Fatalf("%d jobs, %d calls (sizes %v); want 2 jobs and no synchronous call", jobs, calls, b.fake.CallSizes())
	}
	b.waitDrained(t, 5*time.Second)
}

func TestAsyncCombineCallsACutOffLineAgainWithoutSpendingAttempts(t *testing.T) {
	t.Parallel()
	b := setup(t, openaitest.WithCompleteAfter(1))
	// Lines and calls of more than 4 items are cut off after about 4.
	b.fake.SetOutputCap(4)
	b.publish(t, over("ai.requests.t", "cut", 10, 10)...)
	b.startCombinedAsync(t, asyncConfig())
	got := b.waitResults(t, 10, 20*time.Second)
	for i := range 10 {
		r := got["cut-"+strconv.Itoa(i)]
		if r.Status != wire.StatusOK || r.Output != openaitest.Answer("obs "+strconv.Itoa(i)) || r.Attempts != 1 {
			t.Fatalf("cut-%d: %+v; want answered on its first attempt", i, r.Result)
		}
	}
	if len(b.fake.CallSizes()) == 0 {
		t.Fatal("no synchronous call for the requests the cut-off line left")
	}
	if dead := jetstreamtest.Count(t, b.js, b.topo.DeadStream); dead != 0 {
		t.Fatalf("%d dead letters", dead)
	}
	b.waitDrained(t, 5*time.Second)
}

func TestEngineSharesAndCachesEmbeddingsWithTheirExactVectors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := testConfig()
	cfg.MaxWait = 300 * time.Millisecond
	b.startCached(t, cfg)
	embeddings := func(prefix string, n, distinct int) []req {
		out := make([]req, n)
		for i := range out {
			body, _ := json.Marshal(wire.Request{ID: prefix + "-" + strconv.Itoa(i), Kind: wire.KindEmbedding, Input: "doc " + strconv.Itoa(i%distinct)})
			out[i] = req{subject: "ai.requests.t", body: string(body)}
		}
		return out
	}
	// 30 requests over 10 inputs: each input is embedded once.
	b.publish(t, embeddings("first", 30, 10)...)
	b.waitResults(t, 30, 30*time.Second)
	b.waitDrained(t, 10*time.Second)
	var sent []string
	for _, r := range b.fake.EmbeddingRequests() {
		sent = append(sent, r.Inputs...)
	}
	if len(sent) != 10 {
		t.Fatalf("30 requests over 10 inputs sent %d inputs to the Embeddings API, want 10", len(sent))
	}
	jetstreamEventuallyStats(t, b, func(s batch.Stats) bool { return s.Cache.Writes == 10 })

	// The same inputs again: every vector from the cache, number for number.
	calls := b.fake.EmbeddingCalls()
	b.publish(t, embeddings("second", 10, 10)...)
	all := b.waitResults(t, 40, 30*time.Second)
	b.waitDrained(t, 10*time.Second)
	if n := b.fake.EmbeddingCalls(); n != calls {
		t.Fatalf("%d more embeddings calls for inputs in the cache, want none", n-calls)
	}
	for i := range 30 {
		in := "doc " + strconv.Itoa(i%10)
		want := openaitest.Vector(in, 0)
		for _, id := range []string{"first-" + strconv.Itoa(i), "second-" + strconv.Itoa(i%10)} {
			if r := all[id]; r.Status != wire.StatusOK || !slices.Equal(r.Embedding, want) {
				t.Fatalf("%s: status %s, %d numbers, error %q; want the %d numbers of %q exactly", id, r.Status, len(r.Embedding), r.Error, len(want), in)
			}
		}
	}
	if r := all["second-0"]; !r.Cached || r.Batch.Trigger != wire.TriggerCache {
		t.Fatalf("second-0: cached %v, trigger %s; want it from the cache", r.Cached, r.Batch.Trigger)
	}
}
