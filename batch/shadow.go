package batch

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// The shadow stage measures what combining does to answers. After a
// combined call's requests are settled (their results stored and acked,
// so nothing waits for it), it picks each answered request with
// probability ShadowConfig.Rate and sends it again alone, as the plain
// call the request would have had on its own: the same model, instructions
// and output limit, through the same provider (and so its rate limits).
// Then it compares the two answers (agreement.go) and records the score by
// group, batch size and position (quality.go), where the guard may shrink
// the group's calls.
//
// Shadow calls come after real work: a bounded queue and a few workers
// carry them, a sample that finds the queue full, a breaker open or (with
// a rate-limited provider) no capacity free at once is dropped, never
// waited for. They never touch a request's message, attempts or result,
// and their failures are only counted.

// ShadowSample is one request answered in a combined call and again alone,
// as the shadow stage compared them.
type ShadowSample struct {
	Model string
	// Topic is empty when topics may share a call; Instructions is the
	// instructions' short hash (GroupState's).
	Topic, Instructions string
	// Size is the number of requests in the combined call, Position the
	// request's place in it (from 1); SizeBucket names Size's bucket
	// (QualityBucketOf).
	Size, Position int
	SizeBucket     string
	// Score is how alike the answers were, from 0 to 1; Agree says it
	// reached ShadowConfig.AgreeAt.
	Score float64
	Agree bool
	// Method is how they were compared: MethodExact, MethodJSON,
	// MethodEmbedding or MethodTokens.
	Method string
}

// QualityChange is a change the quality guard made to a group's call size.
type QualityChange struct {
	Model, Topic, Instructions string
	// From and To are the group's call size before and after.
	From, To int
	// Limit is the guard's new limit; 0 when it lifted it.
	Limit int
	// Agreement is the share of the last Window samples that agreed, which
	// Floor it was judged against.
	Agreement, Floor float64
	Window           int
}

// Shrinks reports whether the change made the group's calls smaller (else
// it let them grow back).
func (c QualityChange) Shrinks() bool { return c.Limit > 0 && c.Limit < c.From }

// ShadowStats is what shadow sampling did (Stats.Shadow).
type ShadowStats struct {
	// Rate, AgreeAt, QualityFloor and Window are the settings in effect;
	// Rate 0 means sampling is off.
	Rate         float64 `json:"rate"`
	AgreeAt      float64 `json:"agree_at"`
	QualityFloor float64 `json:"quality_floor"`
	Window       int     `json:"window"`
	// Picked counts the requests picked for a sample; Calls the shadow
	// calls made for them; Samples those compared. Dropped were picked but
	// not called (the queue was full, a breaker open, the rate limits
	// taken, or the worker stopping); Failed were called and not answered.
	Picked  int64 `json:"picked"`
	Calls   int64 `json:"calls"`
	Samples int64 `json:"samples"`
	Dropped int64 `json:"dropped"`
	Failed  int64 `json:"failed"`
	// Groups holds each group's figures.
	Groups []GroupQuality `json:"groups"`
}

// spareCaller is a provider that paces its calls and can make one only
// when that needs no wait (provider/ratelimit): a shadow call then takes
// spare capacity and never a turn a real call waits for.
type spareCaller interface {
	TryComplete(ctx context.Context, b provider.Batch) (results []provider.Result, called bool, err error)
}

// sample is a picked request on its way to its shadow call.
type sample struct {
	key            groupKey
	req            wire.Request
	combined       string
	size, position int
	trigger        wire.Trigger
}

// shadow is the shadow stage.
type shadow struct {
	cfg         ShadowConfig
	provider    provider.Provider
	spare       spareCaller // nil: the provider does not pace its calls
	timeout     time.Duration
	outputLimit func(model string) int
	breakers    *breakers
	agreement   agreement
	quality     *quality
	ids         *batchIDs
	workers     int
	observer    Observer
	log         *zap.Logger

	queue chan sample
	// mu serialises cfg.Random.
	mu                                      sync.Mutex
	picked, calls, samples, dropped, failed atomic.Int64
}

// newShadow builds the stage for cfg (defaults filled in).
func newShadow(cfg ShadowConfig, e *Engine) *shadow {
	if cfg.Random == nil {
		cfg.Random = rand.Float64
	}
	s := &shadow{
		cfg: cfg, provider: e.provider, timeout: e.cfg.CallTimeout, outputLimit: e.planner.outputLimit,
		breakers: e.breakers, agreement: agreement{embedder: cfg.Embedder, model: cfg.EmbeddingModel},
		ids: e.caller.ids, workers: e.cfg.MaxInflight, observer: e.observer, log: e.log,
		queue: make(chan sample, cfg.QueueSize),
	}
	s.spare, _ = e.provider.(spareCaller)
	s.quality = newQuality(cfg.AgreeAt, cfg.QualityFloor, cfg.Window, e.groups, e.qualityLimited)
	return s
}

// offer picks samples among settled items: those answered in combined
// calls, each with probability Rate (embeddings aside: a vector does not
// depend on its neighbours). It never blocks.
func (s *shadow) offer(items []*item) {
	for _, it := range items {
		// A cached answer came from no call: there is nothing to compare.
		if it.outcome != outcomeAnswered || !it.ended || it.cached || it.batch.Size < 2 || it.req.IsEmbedding() {
			continue
		}
		s.mu.Lock()
		picked := s.cfg.Random() < s.cfg.Rate
		s.mu.Unlock()
		if !picked {
			continue
		}
		s.picked.Add(1)
		smp := sample{key: keyOf(it), req: it.req, combined: it.output, size: it.batch.Size, position: it.position + 1, trigger: it.batch.Trigger}
		select {
		case s.queue <- smp:
		default:
			s.dropped.Add(1)
		}
	}
}

// run makes the shadow calls until ctx ends; samples still queued then are
// dropped.
func (s *shadow) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range s.workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case smp := <-s.queue:
					s.take(ctx, smp)
				}
			}
		})
	}
	wg.Wait()
	s.dropped.Add(int64(len(s.queue)))
	st := s.stats()
	s.log.Info("shadow sampling stopped", zap.Int64("picked", st.Picked), zap.Int64("calls", st.Calls),
		zap.Int64("samples", st.Samples), zap.Int64("dropped", st.Dropped), zap.Int64("failed", st.Failed))
}

// take makes one shadow call and records how its answer compares.
func (s *shadow) take(ctx context.Context, smp sample) {
	model := smp.key.model
	if _, open := s.breakers.open(model); open || ctx.Err() != nil {
		s.dropped.Add(1)
		return
	}
	b := withParams(provider.Batch{
		ID:              "shadow-" + s.ids.next(),
		Model:           model,
		Instructions:    smp.key.instructions,
		Requests:        []provider.Request{providerRequest("0", smp.req)},
		MaxOutputTokens: s.outputLimit(model),
	}, smp.req)
	callCtx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	start := time.Now()
	var (
		results []provider.Result
		err     error
	)
	if s.spare != nil {
		var called bool
		if results, called, err = s.spare.TryComplete(callCtx, b); !called {
			s.dropped.Add(1)
			return
		}
	} else {
		results, err = s.provider.Complete(callCtx, b)
	}
	s.calls.Add(1)
	report := CallReport{Provider: s.provider.Name(), Model: model, Trigger: smp.trigger, Size: 1,
		Latency: time.Since(start), Err: err, Shadow: true}
	var alone *provider.Result
	for i := range results {
		report.Usage = report.Usage.Add(results[i].Usage)
		if results[i].Key == "0" && results[i].Err == nil {
			alone = &results[i]
		}
	}
	s.observer.CallFinished(report)
	if err != nil || alone == nil {
		s.failed.Add(1)
		if err == nil && len(results) > 0 {
			err = results[0].Err
		}
		s.log.Debug("shadow call failed", zap.String("batch", b.ID), zap.String("model", model), zap.Error(err))
		return
	}
	s.compare(ctx, smp, alone.Output)
}

// compare scores a sample's two answers and records the score.
func (s *shadow) compare(ctx context.Context, smp sample, alone string) {
	start := time.Now()
	score, method, usage, err := s.agreement.score(ctx, smp.combined, alone, answerKindOf(smp.req))
	if method == MethodEmbedding || err != nil {
		s.observer.CallFinished(CallReport{Provider: s.provider.Name(), Model: s.cfg.EmbeddingModel, Trigger: smp.trigger,
			Size: 2, Latency: time.Since(start), Err: err, Usage: usage, Shadow: true})
	}
	if err != nil {
		s.log.Warn("shadow sample scored by word overlap: embedding failed", zap.String("model", s.cfg.EmbeddingModel), zap.Error(err))
	}
	s.samples.Add(1)
	agree := s.quality.record(smp.key, smp.size, smp.position, score)
	_, _, bucket := QualityBucketOf(smp.size)
	s.observer.ShadowSampled(ShadowSample{Model: smp.key.model, Topic: smp.key.topic, Instructions: instructionsID(smp.key.instructions),
		Size: smp.size, Position: smp.position, SizeBucket: bucket, Score: score, Agree: agree, Method: method})
	s.log.Debug("shadow sample", zap.String("model", smp.key.model), zap.Int("size", smp.size), zap.Int("position", smp.position),
		zap.Float64("score", score), zap.Bool("agree", agree), zap.String("method", method))
}

// stats returns what the stage did so far.
func (s *shadow) stats() ShadowStats {
	return ShadowStats{Rate: s.cfg.Rate, AgreeAt: s.cfg.AgreeAt, QualityFloor: s.cfg.QualityFloor, Window: s.cfg.Window,
		Picked: s.picked.Load(), Calls: s.calls.Load(), Samples: s.samples.Load(), Dropped: s.dropped.Load(), Failed: s.failed.Load(),
		Groups: s.quality.states()}
}

// shadowStats is the engine's shadow figures: the settings in effect, and
// no groups while sampling is off.
func (e *Engine) shadowStats() ShadowStats {
	if e.shadow == nil {
		c := e.shadowCfg
		return ShadowStats{Rate: c.Rate, AgreeAt: c.AgreeAt, QualityFloor: c.QualityFloor, Window: c.Window, Groups: []GroupQuality{}}
	}
	return e.shadow.stats()
}
