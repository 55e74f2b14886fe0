package batch_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/batch/batchtest"
	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/ratelimit"
	"github.com/aibatch/aibatch/wire"
)

// Shadow sampling on the doubles, on the fake clock: a fake whose combined
// answers go wrong after position 10 (batchtest.Provider.WrongAfter) while
// a request alone is answered right. These are the acceptance
// tests; jetstream/engine_shadow_test.go runs the same through NATS and
// the openai provider.

// seeded is a deterministic source of sample picks.
func seeded(seed uint64) func() float64 { return rand.New(rand.NewPCG(seed, seed+1)).Float64 }

// shadowGroup returns the engine's only group's shadow figures.
func shadowGroup(t *testing.T, e *batch.Engine) batch.GroupQuality {
	t.Helper()
	g := e.Stats().Shadow.Groups
	if len(g) != 1 {
		t.Fatalf("shadow groups %+v, want one", g)
	}
	return g[0]
}

// Degradation seen: with SHADOW_RATE=1 and calls of 50 whose answers go
// wrong after position 10, the measured disagreement is the true 80%, it
// rises with position, and the results are the combined answers, unchanged.
func TestShadowMeasuresDegradationByPosition(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		p.WrongAfter(10)
		publishInputs(t, b, reqSubject, "deg", 500)
		// Every sample fits the queue: the doubles answer the combined calls
		// at once, before any shadow call is made.
		e, _ := startEngine(t, b, p, engineConfig(b), batch.WithShadow(batch.ShadowConfig{Rate: 1, QueueSize: 500}))
		synctest.Wait()

		got := results(t, b)
		if len(got) != 500 || len(b.DeadLetters()) != 0 {
			t.Fatalf("%d results, %d dead letters", len(got), len(b.DeadLetters()))
		}
		for i := range 500 {
			r := got["deg-"+strconv.Itoa(i)]
			want := batchtest.Echo("deg " + strconv.Itoa(i))
			if i%50 >= 10 {
				want = batchtest.WrongAnswer // the combined call's answer, which the sample does not replace
			}
			if r.Status != wire.StatusOK || r.Output != want || r.Batch.Size != 50 || r.Attempts != 1 {
				t.Fatalf("deg-%d: %+v, want ok %q from a call of 50", i, r, want)
			}
		}
		s := e.Stats().Shadow
		if s.Picked != 500 || s.Calls != 500 || s.Samples != 500 || s.Dropped != 0 || s.Failed != 0 {
			t.Fatalf("shadow stats %+v, want every request sampled", s)
		}
		if p.Calls() != 10+500 {
			t.Fatalf("%d provider calls, want 10 combined and 500 alone", p.Calls())
		}
		g := shadowGroup(t, e)
		disagreement := 1 - g.Agreement
		t.Logf("measured disagreement %.1f%% (true 80%%), mean score %.3f; by position:", 100*disagreement, g.MeanScore)
		for _, bk := range g.ByPosition {
			t.Logf("  positions %-6s %3d samples, agreement %.2f", bk.Name, bk.Samples, bk.Agreement)
		}
		if disagreement < 0.7 || disagreement > 0.9 {
			t.Fatalf("disagreement %.3f, want 0.8 ± 0.1", disagreement)
		}
		// It rises with position: every bucket up to 10 agrees, every one
		// past it does not.
		var last float64 = 2
		for _, bk := range g.ByPosition {
			want := 1.0
			if bk.From > 10 {
				want = 0
			}
			if bk.Agreement != want || bk.Agreement > last {
				t.Fatalf("positions %s: agreement %.2f, want %.0f and no rise with position (%+v)", bk.Name, bk.Agreement, want, g.ByPosition)
			}
			last = bk.Agreement
		}
		if len(g.ByPosition) != 6 || g.ByPosition[5].Name != "21-50" || g.ByPosition[5].Samples != 300 {
			t.Fatalf("position buckets %+v, want 1, 2, 3-5, 6-10, 11-20, 21-50", g.ByPosition)
		}
		if len(g.BySize) != 1 || g.BySize[0].Name != "21-50" || g.BySize[0].Samples != 500 {
			t.Fatalf("size buckets %+v, want every sample in 21-50", g.BySize)
		}
		if g.Recent.Samples != batch.DefaultShadowWindow || g.Limit != 0 {
			t.Fatalf("recent %+v, limit %d: want a window of %d and no guard", g.Recent, g.Limit, batch.DefaultShadowWindow)
		}
	})
}

// qualityRecorder records the guard's changes and the sizes reported with
// them.
type qualityRecorder struct {
	batch.NopObserver
	mu      sync.Mutex
	changes []batch.QualityChange
	sizes   []int
	samples int
}

func (r *qualityRecorder) QualityLimited(c batch.QualityChange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, c)
}

func (r *qualityRecorder) GroupResized(g batch.GroupState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sizes = append(r.sizes, g.Size)
}

func (r *qualityRecorder) ShadowSampled(batch.ShadowSample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples++
}

func (r *qualityRecorder) all() ([]batch.QualityChange, []int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]batch.QualityChange(nil), r.changes...), append([]int(nil), r.sizes...), r.samples
}

// Guard: with QUALITY_FLOOR=0.9 in the same setup, the group's call size
// falls to at most 12 within 300 requests and agreement recovers; each
// change is one log line and one report.
func TestQualityGuardShrinksTheBatch(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		p.WrongAfter(10)
		core, logs := observer.New(zap.InfoLevel)
		rec := &qualityRecorder{}
		e, _ := startEngine(t, b, p, engineConfig(b), batch.WithLogger(zap.New(core)), batch.WithObserver(rec),
			batch.WithShadow(batch.ShadowConfig{Rate: 1, QualityFloor: 0.9}))

		// 300 requests in waves of 50, each answered and sampled before
		// the next: the traffic of a steady producer.
		var sizes []int
		for wave := range 6 {
			publishInputs(t, b, reqSubject, fmt.Sprintf("g%d", wave), 50)
			time.Sleep(batch.DefaultPollInterval) // the lane's next poll
			synctest.Wait()
			sizes = append(sizes, e.Stats().Groups[0].Size)
		}
		t.Logf("the group's call size after each 50 requests: %v", sizes)
		g := shadowGroup(t, e)
		if sizes[5] > 12 || g.Limit == 0 || g.Limit > 12 {
			t.Fatalf("call size %d (limit %d) after 300 requests, want at most 12", sizes[5], g.Limit)
		}
		if g.Recent.Agreement < 0.9 {
			t.Fatalf("agreement over the last %d samples %.2f: did not recover to the floor", g.Recent.Samples, g.Recent.Agreement)
		}
		t.Logf("agreement over the last %d samples %.2f; over all %d, %.2f", g.Recent.Samples, g.Recent.Agreement, g.Samples, g.Agreement)
		// Every call after a change kept to the limit then in force.
		changes, reported, _ := rec.all()
		if len(changes) < 3 || !changes[0].Shrinks() || changes[0].From != 50 || changes[0].To != 25 {
			t.Fatalf("guard changes %+v, want 50 halved to 25 first", changes)
		}
		lines := logs.FilterMessage("group call size changed for answer quality").All()
		if len(lines) != len(changes) || len(reported) != len(changes) {
			t.Fatalf("%d guard changes, %d log lines, %d size reports: want one of each per change", len(changes), len(lines), len(reported))
		}
		for i, c := range changes {
			if reported[i] != c.To || lines[i].ContextMap()["to"] != int64(c.To) {
				t.Fatalf("change %d %+v: reported size %d, logged %v", i, c, reported[i], lines[i].ContextMap())
			}
		}

		// It grows back only while agreement stays at or above the floor:
		// while combined answers stay wrong past position 10 it never gets
		// far past 10...
		wave := 6
		for ; wave < 16; wave++ {
			publishInputs(t, b, reqSubject, fmt.Sprintf("g%d", wave), 50)
			time.Sleep(batch.DefaultPollInterval)
			synctest.Wait()
			if size := e.Stats().Groups[0].Size; size > 13 {
				t.Fatalf("call size %d after %d requests, with combined answers still wrong past position 10", size, 50*(wave+1))
			}
		}
		// ...and once the model answers combined calls right again, it
		// grows back, a step per window, until the limit is lifted.
		p.WrongAfter(0)
		for ; shadowGroup(t, e).Limit != 0; wave++ {
			if wave == 60 {
				t.Fatalf("the limit is still %d after %d requests answered right", shadowGroup(t, e).Limit, 50*(wave-16))
			}
			publishInputs(t, b, reqSubject, fmt.Sprintf("g%d", wave), 50)
			time.Sleep(batch.DefaultPollInterval)
			synctest.Wait()
		}
		changes, _, _ = rec.all()
		t.Logf("the limit was lifted after %d requests answered right; %d guard changes in all", 50*(wave-16), len(changes))
		for i, c := range changes {
			if c.Shrinks() != (c.Agreement < 0.9) {
				t.Fatalf("change %d %+v: shrank or grew against its agreement", i, c)
			}
		}

		// No request is lost or doubled on the way; the leftovers of the
		// last wave go at MaxWait.
		time.Sleep(batch.DefaultMaxWait)
		synctest.Wait()
		if got := results(t, b); len(got) != 50*wave || len(b.DeadLetters()) != 0 {
			t.Fatalf("%d results of %d, %d dead letters", len(got), 50*wave, len(b.DeadLetters()))
		}
		if size := e.Stats().Groups[0].Size; size != batch.DefaultMaxBatchSize {
			t.Fatalf("call size %d once the limit was lifted, want %d", size, batch.DefaultMaxBatchSize)
		}
		for _, call := range p.Batches() {
			if len(call.Requests) > 50 {
				t.Fatalf("a call of %d", len(call.Requests))
			}
		}
	})
}

// providerCalls runs n requests through an engine with opts and returns
// the provider's calls and the engine's shadow figures.
func providerCalls(t *testing.T, n int, opts ...batch.Option) (int, batch.ShadowStats) {
	t.Helper()
	var calls int
	var st batch.ShadowStats
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		publishInputs(t, b, reqSubject, "cost", n)
		e, _ := startEngine(t, b, p, engineConfig(b), opts...)
		synctest.Wait()
		if got := results(t, b); len(got) != n {
			t.Fatalf("%d results of %d", len(got), n)
		}
		calls, st = p.Calls(), e.Stats().Shadow
	})
	return calls, st
}

// Costs: SHADOW_RATE=0 makes exactly the calls the engine makes without the
// feature; SHADOW_RATE=0.01 adds 1% ± 50% of the requests, over 5,000.
func TestShadowCosts(t *testing.T) {
	t.Parallel()
	const n = 5000
	without, _ := providerCalls(t, n)
	off, st := providerCalls(t, n, batch.WithShadow(batch.ShadowConfig{Rate: 0}))
	if off != without || without != n/batch.DefaultMaxBatchSize || st.Picked != 0 {
		t.Fatalf("%d calls with SHADOW_RATE=0, %d without the feature (%d picked); want both %d", off, without, st.Picked, n/batch.DefaultMaxBatchSize)
	}
	for _, seed := range []uint64{1, 2, 3} {
		with, st := providerCalls(t, n, batch.WithShadow(batch.ShadowConfig{Rate: 0.01, Random: seeded(seed)}))
		extra := with - without
		t.Logf("seed %d: SHADOW_RATE=0.01 over %d requests: %d calls, %d extra (%.2f%% of the requests)", seed, n, with, extra, 100*float64(extra)/n)
		if extra < 25 || extra > 75 || int64(extra) != st.Calls || st.Samples != st.Calls || st.Dropped != 0 {
			t.Fatalf("%d extra calls (shadow stats %+v), want 50 ± 25, all of them samples", extra, st)
		}
	}
}

// A call of one request is never sampled: there is nothing to compare.
func TestShadowSamplesCombinedCallsOnly(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		publishInputs(t, b, reqSubject, "alone", 20)
		cfg := engineConfig(b)
		cfg.Immediate = true
		e, _ := startEngine(t, b, p, cfg, batch.WithShadow(batch.ShadowConfig{Rate: 1}))
		synctest.Wait()
		if n := len(results(t, b)); n != 20 {
			t.Fatalf("%d results", n)
		}
		if s := e.Stats().Shadow; s.Picked != 0 || p.Calls() != 20 {
			t.Fatalf("%d picked, %d calls for 20 requests sent alone", s.Picked, p.Calls())
		}
	})
}

// aloneProvider answers combined calls itself and hands calls of one
// request to alone.
type aloneProvider struct {
	*batchtest.Provider
	alone func(ctx context.Context, b provider.Batch) ([]provider.Result, error)
}

func (p aloneProvider) Complete(ctx context.Context, b provider.Batch) ([]provider.Result, error) {
	if len(b.Requests) == 1 {
		return p.alone(ctx, b)
	}
	return p.Provider.Complete(ctx, b)
}

// No harm: shadow calls that fail every way a call can fail leave every
// result as it was, spend no attempt, open no breaker and dead-letter
// nothing.
func TestFailingShadowCallsDoNoHarm(t *testing.T) {
	t.Parallel()
	failures := []error{
		batchtest.ProviderDown(),
		&provider.Error{Scope: provider.ScopeProvider, StatusCode: 401, Err: batchtest.ErrInjected},
		&provider.Error{Permanent: true, Scope: provider.ScopeRequest, Err: provider.ErrRefused},
	}
	for i, fail := range failures {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := batchtest.NewBroker()
				inner := batchtest.NewProvider()
				p := aloneProvider{Provider: inner, alone: func(_ context.Context, b provider.Batch) ([]provider.Result, error) {
					if i == 2 {
						return []provider.Result{{Key: b.Requests[0].Key, Err: fail}}, nil
					}
					return nil, fail
				}}
				attempts := batchtest.NewAttemptStore()
				publishInputs(t, b, reqSubject, "harm", 200)
				e, _ := startEngine(t, b, p, engineConfig(b), batch.WithAttemptStore(attempts), batch.WithShadow(batch.ShadowConfig{Rate: 1}))
				synctest.Wait()
				got := results(t, b)
				if len(got) != 200 || len(b.DeadLetters()) != 0 || b.Requests() != 0 || attempts.Len() != 0 {
					t.Fatalf("%d results, %d dead letters, %d requests left, %d attempt records", len(got), len(b.DeadLetters()), b.Requests(), attempts.Len())
				}
				for id, r := range got {
					if r.Status != wire.StatusOK || r.Attempts != 1 || !strings.HasPrefix(r.Output, "echo: ") {
						t.Fatalf("%s: %+v", id, r)
					}
				}
				s := e.Stats()
				if s.Retries != 0 || s.Deferred != 0 || len(s.Breakers) != 0 || e.ProviderHealth() != nil {
					t.Fatalf("retries %d, deferred %d, breakers %+v: a shadow call's failure reached real work", s.Retries, s.Deferred, s.Breakers)
				}
				if s.Shadow.Failed != 200 || s.Shadow.Samples != 0 {
					t.Fatalf("shadow stats %+v, want 200 failed", s.Shadow)
				}
			})
		})
	}
}

// No delay: results are stored while the shadow calls hang, and a stop
// does not wait for them.
func TestHangingShadowCallsDelayNothing(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := batchtest.NewBroker()
		var hanging sync.WaitGroup
		p := aloneProvider{Provider: batchtest.NewProvider(), alone: func(ctx context.Context, _ provider.Batch) ([]provider.Result, error) {
			hanging.Add(1)
			defer hanging.Done()
			<-ctx.Done()
			return nil, provider.Transient(ctx.Err())
		}}
		publishInputs(t, b, reqSubject, "slow", 100)
		start := time.Now()
		e, stop := startEngine(t, b, p, engineConfig(b), batch.WithShadow(batch.ShadowConfig{Rate: 1}))
		synctest.Wait()
		if got := results(t, b); len(got) != 100 || b.Requests() != 0 {
			t.Fatalf("%d results, %d requests left while the shadow calls hang", len(got), b.Requests())
		}
		if waited := time.Since(start); waited != 0 {
			t.Fatalf("the results took %s of the fake clock: the shadow calls delayed them", waited)
		}
		if s := e.Stats().Shadow; s.Picked != 100 || s.Calls != 0 {
			t.Fatalf("shadow stats %+v", s)
		}
		stop()
		if waited := time.Since(start); waited != 0 {
			t.Fatalf("stopping took %s: it waited for shadow calls", waited)
		}
		hanging.Wait()
		if s := e.Stats().Shadow; s.Calls+s.Dropped != 100 || s.Samples != 0 {
			t.Fatalf("shadow stats after the stop %+v: want every pick called (and failed) or dropped", s)
		}
	})
}

// Lower priority: with a rate-limited provider, shadow calls take only the
// capacity real calls leave, and are dropped rather than waited for.
func TestShadowCallsYieldToRateLimits(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, inner := batchtest.NewBroker(), batchtest.NewProvider()
		// 20 calls a minute, a minute's worth at once: the 10 real calls
		// fit at once.
		p, err := ratelimit.New(inner, ratelimit.Limits{RPM: 20}, ratelimit.WithBurst(20, 1))
		if err != nil {
			t.Fatal(err)
		}
		publishInputs(t, b, reqSubject, "lim", 500)
		start := time.Now()
		e, _ := startEngine(t, b, p, engineConfig(b), batch.WithShadow(batch.ShadowConfig{Rate: 1}))
		synctest.Wait()
		if got := results(t, b); len(got) != 500 {
			t.Fatalf("%d results", len(got))
		}
		if waited := time.Since(start); waited != 0 {
			t.Fatalf("the real calls waited %s for the rate limit: shadow calls took their turn", waited)
		}
		s := e.Stats().Shadow
		t.Logf("shadow stats with RPM 20: %d picked, %d calls, %d dropped", s.Picked, s.Calls, s.Dropped)
		if s.Picked != 500 || s.Calls > 10 || s.Calls+s.Dropped != 500 || inner.Calls() != 10+int(s.Calls) {
			t.Fatalf("shadow stats %+v, %d provider calls: want at most the 10 calls left to spare, the rest dropped", s, inner.Calls())
		}
	})
}

// wordEmbedder embeds a text as the counts of its words in a small
// vocabulary, and counts its calls.
type wordEmbedder struct {
	mu    sync.Mutex
	calls int
}

func (e *wordEmbedder) Embeddings(_ context.Context, model string, inputs []string) ([][]float64, provider.Usage, error) {
	e.mu.Lock()
	e.calls++
	e.mu.Unlock()
	vocab := []string{"the", "answer", "is", "long", "enough", "to", "be", "free", "text", "another", "item"}
	out := make([][]float64, len(inputs))
	for i, in := range inputs {
		v := make([]float64, len(vocab))
		for _, w := range strings.Fields(strings.ToLower(in)) {
			for j, word := range vocab {
				if w == word {
					v[j]++
				}
			}
		}
		out[i] = v
	}
	return out, provider.Usage{InputTokens: 10}, nil
}

// sampleRecorder records every shadow sample and shadow call reported.
type sampleRecorder struct {
	batch.NopObserver
	mu      sync.Mutex
	samples []batch.ShadowSample
	calls   []batch.CallReport
}

func (r *sampleRecorder) ShadowSampled(s batch.ShadowSample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, s)
}

func (r *sampleRecorder) CallFinished(c batch.CallReport) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.Shadow {
		r.calls = append(r.calls, c)
	}
}

// Free-text answers are scored by the cosine similarity of their
// embeddings when an Embedder is set, and its calls are shadow calls.
func TestShadowScoresFreeTextByEmbeddings(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		p.SetAnswer(func(string) string { return "the answer is long enough to be free text" })
		p.WrongAfter(5)
		emb, rec := &wordEmbedder{}, &sampleRecorder{}
		publishInputs(t, b, reqSubject, "emb", 50)
		e, _ := startEngine(t, b, p, engineConfig(b), batch.WithObserver(rec),
			batch.WithShadow(batch.ShadowConfig{Rate: 1, Embedder: emb, EmbeddingModel: "embed-test"}))
		synctest.Wait()
		if got := results(t, b); len(got) != 50 {
			t.Fatalf("%d results", len(got))
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.samples) != 50 || emb.calls != 50 {
			t.Fatalf("%d samples, %d embedding calls; want 50 of each", len(rec.samples), emb.calls)
		}
		for _, s := range rec.samples {
			// batchtest.WrongAnswer shares two words of the right answer: a low score.
			if s.Method != batch.MethodEmbedding || (s.Position <= 5) != s.Agree || (s.Position <= 5) != (s.Score > 0.99) {
				t.Fatalf("sample %+v: want scored by embedding, agreeing exactly up to position 5", s)
			}
		}
		var embeddingCalls int
		for _, c := range rec.calls {
			if c.Model == "embed-test" {
				embeddingCalls++
			}
		}
		if embeddingCalls != 50 || len(rec.calls) != 100 {
			t.Fatalf("%d shadow calls reported, %d of them embeddings; want 50 of each kind", len(rec.calls), embeddingCalls)
		}
		if g := shadowGroup(t, e); g.Agreement != 0.1 {
			t.Fatalf("agreement %.2f, want 5 of 50", g.Agreement)
		}
	})
}
