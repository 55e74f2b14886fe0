package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/aibatch/aibatch/internal/admin"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
)

// TestProcessCostInTheOpen runs the worker binary with the response cache
// and PRICES: the same inputs asked twice are answered once by the provider
// and then from the cache, and /admin/batch-stats shows per model the
// requests served, provider items, cache hits and the estimated cost next
// to the one-by-one cost.
func TestProcessCostInTheOpen(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	fake := newFake(t)
	w := startWorker(t, "", map[string]string{
		"NATS_URL":           ns.ClientURL(),
		"OPENAI_BASE_URL":    fake.URL,
		"OPENAI_API_KEY":     procSecret,
		"PRICES":             "gpt-4o-mini=0.15/0.60/0.075",
		"RESPONSE_CACHE_TTL": "1h",
		"MAX_WAIT":           "200ms",
		"POLL_INTERVAL":      "20ms",
	})
	api := workerAdmin(t, w)
	api.waitReady(t, 20*time.Second)
	publish := func(prefix string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// 10 requests over 5 inputs: duplicates share an item.
		for i := range 10 {
			body := fmt.Sprintf(`{"id":"%s-%d","input":"same %d"}`, prefix, i, i%5)
			if _, err := js.Publish(ctx, "ai.requests.cost", []byte(body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish("first")
	jetstreamtest.Eventually(t, 20*time.Second, "10 results and their answers cached", func() bool {
		s := api.stats(t)
		return s.ResultsOK == 10
	})
	// The cache is written after the acks; wait until the second round
	// finds all 5 answers.
	var st admin.StatsResponse
	round := 0
	jetstreamtest.Eventually(t, 20*time.Second, "a round answered from the cache alone", func() bool {
		before := fake.Calls()
		round++
		publish(fmt.Sprintf("again%d", round))
		jetstreamtest.Eventually(t, 20*time.Second, "the round's results", func() bool {
			return api.stats(t).ResultsOK == int64(10+10*round)
		})
		return fake.Calls() == before
	})
	code, body := api.get(t, "/admin/batch-stats")
	if code != http.StatusOK {
		t.Fatalf("/admin/batch-stats = %d", code)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Models) != 1 {
		t.Fatalf("models %+v, want gpt-4o-mini alone", st.Models)
	}
	m := st.Models[0]
	served := int64(10 + 10*round)
	if m.Model != "gpt-4o-mini" || m.Requests != served || m.CacheHits < 10 || m.ProviderItems > served-10 || !m.Priced ||
		m.Cost <= 0 || m.OneByOne <= m.Cost {
		t.Fatalf("model figures %+v, want %d requests served, at least 10 from the cache, fewer items, a cost below one by one", m, served)
	}
	if st.EstimatedSaving == nil || *st.EstimatedSaving <= 0 || st.Worker.Cache.Hits < 10 || st.Worker.Duplicates == 0 {
		t.Fatalf("saving %v, cache %+v, duplicates %d", st.EstimatedSaving, st.Worker.Cache, st.Worker.Duplicates)
	}
	w.stop(t)
}
