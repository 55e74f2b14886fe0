package batch_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/batch/batchtest"
	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// publishBodies publishes one request per body on subject.
func publishBodies(t *testing.T, b *batchtest.Broker, subject string, reqs ...wire.Request) {
	t.Helper()
	for _, r := range reqs {
		body, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		mustPublish(t, b, subject, string(body), nil)
	}
}

// providerItems counts the items the provider was sent.
func providerItems(p *batchtest.Provider) int {
	n := 0
	for _, b := range p.Batches() {
		n += len(b.Requests)
	}
	return n
}

// repeated returns n requests with ids <prefix>-<i> over the inputs
// "q <i mod distinct>".
func repeated(prefix string, n, distinct int) []wire.Request {
	out := make([]wire.Request, n)
	for i := range out {
		out[i] = wire.Request{ID: prefix + "-" + strconv.Itoa(i), Input: "q " + strconv.Itoa(i%distinct)}
	}
	return out
}

func TestCacheAnswersRepeatsWithoutAProviderCall(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p, cache := batchtest.NewBroker(), batchtest.NewProvider(), batchtest.NewCache()
		publishBodies(t, b, reqSubject, repeated("first", 100, 100)...)
		e, _ := startEngine(t, b, p, engineConfig(b), batch.WithResponseCache(cache))
		synctest.Wait()
		if got := results(t, b); len(got) != 100 || providerItems(p) != 100 {
			t.Fatalf("%d results from %d provider items, want 100 from 100", len(got), providerItems(p))
		}
		if cache.Len() != 100 {
			t.Fatalf("%d cache entries after 100 ok answers", cache.Len())
		}
		// The same inputs under new ids: answered from the cache at once,
		// without waiting for their group to fill or MAX_WAIT.
		publishBodies(t, b, reqSubject, repeated("second", 100, 100)...)
		time.Sleep(2 * batch.DefaultPollInterval)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 200 || b.Requests() != 0 {
			t.Fatalf("%d results, %d requests left", len(got), b.Requests())
		}
		if n := providerItems(p); n != 100 {
			t.Fatalf("%d provider items in all, want the first 100 only", n)
		}
		for i := range 100 {
			first, second := got["first-"+strconv.Itoa(i)], got["second-"+strconv.Itoa(i)]
			if first.Cached || first.Batch.Trigger == wire.TriggerCache {
				t.Fatalf("first-%d came from the cache: %+v", i, first)
			}
			if second.Status != wire.StatusOK || second.Output != first.Output || !second.Cached ||
				second.Usage != (wire.Usage{}) || second.Batch.Trigger != wire.TriggerCache || second.Attempts != 1 {
				t.Fatalf("second-%d: %+v, want ok, %q, cached, usage 0, trigger cache", i, second, first.Output)
			}
		}
		s := e.Stats()
		if s.Cache.Hits != 100 || s.Cache.Misses != 100 || s.Cache.Writes != 100 || s.Cache.BytesRead == 0 || s.ResultsOK != 200 {
			t.Fatalf("stats %+v, cache %+v", s, s.Cache)
		}
		if s.Triggers[wire.TriggerCache] == 0 {
			t.Errorf("no set dispatched with trigger cache: %v", s.Triggers)
		}
	})
}

func TestCacheAnswersTheUrgentLane(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p, cache := batchtest.NewBroker(), batchtest.NewProvider(), batchtest.NewCache()
		startEngine(t, b, p, engineConfig(b), batch.WithResponseCache(cache))
		publishBodies(t, b, urgentSubject, wire.Request{ID: "u-1", Input: "same"})
		synctest.Wait()
		publishBodies(t, b, urgentSubject, wire.Request{ID: "u-2", Input: "same"})
		synctest.Wait()
		got := results(t, b)
		if r := got["u-2"]; !r.Cached || r.Output != batchtest.Echo("same") || p.Calls() != 1 {
			t.Fatalf("u-2: %+v after %d calls, want the cached answer after one", r, p.Calls())
		}
	})
}

func TestDuplicatesInABatchAreSentOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		// No cache: duplicates are collapsed anyway.
		publishBodies(t, b, reqSubject, repeated("dup", 100, 10)...)
		e, _ := startEngine(t, b, p, engineConfig(b))
		synctest.Wait()
		got := results(t, b)
		if len(got) != 100 || b.Requests() != 0 {
			t.Fatalf("%d results, %d requests left", len(got), b.Requests())
		}
		if n, calls := providerItems(p), p.Calls(); n > 20 || calls > 2 {
			t.Fatalf("%d provider items in %d calls, want at most 20 in at most 2", n, calls)
		}
		var usage wire.Usage
		for i := range 100 {
			r := got["dup-"+strconv.Itoa(i)]
			input := "q " + strconv.Itoa(i%10)
			if r.Status != wire.StatusOK || r.Output != batchtest.Echo(input) || r.Cached {
				t.Fatalf("dup-%d: %+v", i, r)
			}
			usage.InputTokens += r.Usage.InputTokens
			usage.OutputTokens += r.Usage.OutputTokens
		}
		// The batchtest provider counts a token per byte: the duplicates
		// share their item's usage, so the results add up to the calls'.
		if s := e.Stats(); usage.InputTokens != s.Usage.InputTokens || usage.OutputTokens != s.Usage.OutputTokens {
			t.Errorf("results' usage %+v, calls' %+v", usage, s.Usage)
		}
		if s := e.Stats(); s.Duplicates != 80 || s.ProviderItems != 20 {
			t.Errorf("duplicates %d, provider items %d; want 80 and 20", s.Duplicates, s.ProviderItems)
		}
	})
}

func TestDuplicatesShareAFailure(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		p.Refuse("q 1")
		publishBodies(t, b, urgentSubject, repeated("dup", 4, 2)...)
		startEngine(t, b, p, engineConfig(b))
		synctest.Wait()
		got := results(t, b)
		if len(got) != 4 || b.Requests() != 0 {
			t.Fatalf("%d results, %d left", len(got), b.Requests())
		}
		for _, id := range []string{"dup-1", "dup-3"} {
			if r := got[id]; r.Status != wire.StatusError {
				t.Errorf("%s: %+v, want the refusal", id, r)
			}
		}
		if dead := b.DeadLetters(); len(dead) != 2 {
			t.Errorf("%d dead letters, want one per refused request", len(dead))
		}
	})
}

func TestSamplesAreNeitherCachedNorShared(t *testing.T) {
	t.Parallel()
	hot, zero := 0.7, 0.0
	for _, tt := range []struct {
		name             string
		nondeterministic bool
		temperature      *float64
		wantShared       bool
	}{
		{"temperature above 0", false, &hot, false},
		{"temperature above 0, nondeterministic allowed", true, &hot, true},
		{"temperature 0", false, &zero, true},
		{"temperature unset", false, nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				b, p, cache := batchtest.NewBroker(), batchtest.NewProvider(), batchtest.NewCache()
				cfg := engineConfig(b)
				cfg.CacheNondeterministic = tt.nondeterministic
				startEngine(t, b, p, cfg, batch.WithResponseCache(cache))
				req := func(id string) wire.Request { return wire.Request{ID: id, Input: "poem", Temperature: tt.temperature} }
				publishBodies(t, b, urgentSubject, req("a"), req("b"))
				synctest.Wait()
				publishBodies(t, b, urgentSubject, req("c"))
				synctest.Wait()
				got := results(t, b)
				items := providerItems(p)
				if tt.wantShared && (items != 1 || !got["c"].Cached) {
					t.Fatalf("%d provider items, c cached %v; want 1 item and c from the cache", items, got["c"].Cached)
				}
				if !tt.wantShared && (items != 3 || got["c"].Cached || cache.Len() != 0) {
					t.Fatalf("%d provider items, c cached %v, %d entries; want 3 items and nothing cached", items, got["c"].Cached, cache.Len())
				}
			})
		})
	}
}

func TestEmbeddingsAreSharedAndCachedWithTheirVectors(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p, cache := batchtest.NewBroker(), batchtest.NewProvider(), batchtest.NewCache()
		embed := func(prefix string, n, distinct int) []wire.Request {
			reqs := repeated(prefix, n, distinct)
			for i := range reqs {
				reqs[i].Kind, reqs[i].Input = wire.KindEmbedding, "text to embed "+reqs[i].Input
			}
			return reqs
		}
		// 30 requests over 10 inputs, fetched together: each input is sent
		// once, and every request gets its input's vector.
		publishBodies(t, b, reqSubject, embed("first", 30, 10)...)
		e, _ := startEngine(t, b, p, engineConfig(b), batch.WithResponseCache(cache))
		time.Sleep(batch.DefaultMaxWait + batch.DefaultPollInterval) // the group is due (fake time)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 30 || providerItems(p) != 10 {
			t.Fatalf("%d results from %d provider items, want 30 from 10", len(got), providerItems(p))
		}
		for _, bt := range p.Batches() {
			if bt.Kind != wire.KindEmbedding {
				t.Fatalf("a call of kind %q, want embeddings only", bt.Kind)
			}
		}
		for i := range 30 {
			input := "text to embed q " + strconv.Itoa(i%10)
			if r := got["first-"+strconv.Itoa(i)]; r.Status != wire.StatusOK || r.Cached || !slices.Equal(r.Embedding, batchtest.Vector(input)) {
				t.Fatalf("first-%d: %+v, want the vector of %q", i, r, input)
			}
		}
		if cache.Len() != 10 || e.Stats().Duplicates != 20 {
			t.Fatalf("%d cache entries, %d duplicates; want 10 and 20", cache.Len(), e.Stats().Duplicates)
		}
		// The same inputs again: every vector from the cache, exactly.
		publishBodies(t, b, urgentSubject, embed("second", 10, 10)...)
		synctest.Wait()
		got = results(t, b)
		if providerItems(p) != 10 {
			t.Fatalf("%d provider items in all, want the first 10 only", providerItems(p))
		}
		for i := range 10 {
			input := "text to embed q " + strconv.Itoa(i)
			r := got["second-"+strconv.Itoa(i)]
			if r.Status != wire.StatusOK || !r.Cached || r.Batch.Trigger != wire.TriggerCache || r.FinishReason != "" ||
				!slices.Equal(r.Embedding, batchtest.Vector(input)) {
				t.Fatalf("second-%d: %+v, want the cached vector of %q", i, r, input)
			}
		}
	})
}

func TestProviderOptionsAreNeverCached(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p, cache := batchtest.NewBroker(), batchtest.NewProvider(), batchtest.NewCache()
		startEngine(t, b, p, engineConfig(b), batch.WithResponseCache(cache))
		req := func(id string) wire.Request {
			return wire.Request{ID: id, Input: "tools", ProviderOptions: json.RawMessage(`{"n":2}`)}
		}
		publishBodies(t, b, urgentSubject, req("a"))
		synctest.Wait()
		publishBodies(t, b, urgentSubject, req("b"))
		synctest.Wait()
		if got := results(t, b); len(got) != 2 || got["b"].Cached || cache.Len() != 0 || providerItems(p) != 2 {
			t.Fatalf("results %+v, %d entries, %d items", got, cache.Len(), providerItems(p))
		}
	})
}

func TestCacheFallsBackToTheProvider(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		spoil func(*batchtest.Cache)
	}{
		{"entry not JSON", func(c *batchtest.Cache) { c.Corrupt([]byte("{not json")) }},
		{"entry of another layout", func(c *batchtest.Cache) { c.Corrupt([]byte(`{"v":99,"output":"stale"}`)) }},
		{"entry of another model", func(c *batchtest.Cache) { c.Corrupt([]byte(`{"v":2,"model":"other","output":"stale"}`)) }},
		{"entry missing", func(c *batchtest.Cache) { c.Clear() }},
		{"cache unreachable", func(c *batchtest.Cache) { c.FailGets(batchtest.ErrCacheDown) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				b, p, cache := batchtest.NewBroker(), batchtest.NewProvider(), batchtest.NewCache()
				e, _ := startEngine(t, b, p, engineConfig(b), batch.WithResponseCache(cache))
				publishBodies(t, b, urgentSubject, wire.Request{ID: "a", Input: "x"})
				synctest.Wait()
				tt.spoil(cache)
				publishBodies(t, b, urgentSubject, wire.Request{ID: "b", Input: "x"})
				synctest.Wait()
				got := results(t, b)
				if r := got["b"]; r.Status != wire.StatusOK || r.Cached || r.Output != batchtest.Echo("x") || p.Calls() != 2 {
					t.Fatalf("b: %+v after %d calls, want the provider's answer from a second call", r, p.Calls())
				}
				if s := e.Stats(); s.ResultsOK != 2 || b.Requests() != 0 {
					t.Fatalf("stats %+v, %d left", s, b.Requests())
				}
			})
		})
	}
}

func TestOnlyOkAnswersAreCached(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p, cache := batchtest.NewBroker(), batchtest.NewProvider(), batchtest.NewCache()
		p.Refuse("bad")
		startEngine(t, b, p, engineConfig(b), batch.WithResponseCache(cache))
		publishBodies(t, b, urgentSubject, wire.Request{ID: "a", Input: "bad"}, wire.Request{ID: "b", Input: "good"})
		synctest.Wait()
		if got := results(t, b); len(got) != 2 || got["a"].Status != wire.StatusError || cache.Len() != 1 {
			t.Fatalf("results %+v, %d entries; want one entry, for the ok answer", got, cache.Len())
		}
		for i := range 3 {
			publishBodies(t, b, urgentSubject, wire.Request{ID: fmt.Sprint("again-", i), Input: "bad"})
		}
		synctest.Wait()
		for i := range 3 {
			if r := results(t, b)[fmt.Sprint("again-", i)]; r.Cached || r.Status != wire.StatusError {
				t.Fatalf("again-%d: %+v", i, r)
			}
		}
	})
}

func TestLanesAskForTheirServiceTiers(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		cfg := engineConfig(b)
		cfg.BatchServiceTier, cfg.UrgentServiceTier = "flex", "priority"
		cfg.MaxBatchSize = 2
		startEngine(t, b, p, cfg)
		publishInputs(t, b, urgentSubject, "u", 1)
		publishInputs(t, b, reqSubject, "b", 2)
		time.Sleep(2 * batch.DefaultPollInterval)
		synctest.Wait()
		tiers := map[string]string{}
		for _, call := range p.Batches() {
			tiers[call.Requests[0].Input[:1]] = call.ServiceTier
		}
		if tiers["u"] != "priority" || tiers["b"] != "flex" {
			t.Fatalf("tiers asked %v, want priority for urgent, flex for the batch lane", tiers)
		}
	})
}

func TestAsyncDuplicatesFollowTheirJobsAnswer(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := batchtest.NewBroker()
		api := &jobAPI{Provider: batchtest.NewProvider(), jobs: map[string]provider.Batch{}, finished: true}
		cfg := engineConfig(b)
		cfg.Async, cfg.MaxBatchSize, cfg.JobPollInterval = true, 10, time.Second
		publishBodies(t, b, reqSubject, repeated("adup", 10, 2)...)
		startEngine(t, b, api, cfg, batch.WithJobStore(batchtest.NewJobStore()))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 10 || b.Requests() != 0 {
			t.Fatalf("%d results, %d requests left", len(got), b.Requests())
		}
		api.mu.Lock()
		jobs := api.jobs
		api.mu.Unlock()
		items := 0
		for _, j := range jobs {
			items += len(j.Requests)
		}
		if items != 2 {
			t.Fatalf("the jobs carried %d requests, want the 2 distinct ones", items)
		}
		for i := range 10 {
			if r := got["adup-"+strconv.Itoa(i)]; r.Status != wire.StatusOK || r.Output != batchtest.Echo("q "+strconv.Itoa(i%2)) {
				t.Fatalf("adup-%d: %+v", i, r)
			}
		}
	})
}
