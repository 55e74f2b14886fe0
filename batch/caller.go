package batch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// errMissing is the cause recorded for a request the provider's answer left out.
var errMissing = errors.New("the provider's answer has no item for this request")

// caller makes the provider calls the planner asked for and records on each
// item what came back: its answer, or the failure that concerns it.
type caller struct {
	provider provider.Provider
	timeout  time.Duration
	ids      *batchIDs
	stats    *stats
	observer Observer
	log      *zap.Logger
}

// callAll makes the calls concurrently and returns when every one is done.
func (c *caller) callAll(ctx context.Context, trigger wire.Trigger, calls [][]*item) {
	var wg sync.WaitGroup
	for _, group := range calls {
		wg.Go(func() { c.call(ctx, trigger, group) })
	}
	wg.Wait()
}

// call makes one provider call for group. A whole-call failure is recorded
// on every item; when ctx ended (a shutdown) the items keep no outcome, so
// they are handed back untouched.
func (c *caller) call(ctx context.Context, trigger wire.Trigger, group []*item) {
	b := provider.Batch{
		ID:           c.ids.next(),
		Model:        group[0].req.Model,
		Instructions: group[0].req.Instructions,
		Requests:     make([]provider.Request, len(group)),
	}
	waiting := make(map[string]*item, len(group))
	start := time.Now()
	for i, it := range group {
		key := strconv.Itoa(i)
		b.Requests[i] = provider.Request{Key: key, Input: it.req.Input, MaxOutputTokens: it.req.MaxOutputTokens}
		waiting[key] = it
		it.batch = wire.BatchInfo{ID: b.ID, Size: len(group), Trigger: trigger}
		it.queued = start.Sub(it.d.Published)
	}
	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	results, err := c.provider.Complete(callCtx, b)
	cancel()
	c.stats.apiCalls.Add(1)
	latency := time.Since(start)
	report := CallReport{Provider: c.provider.Name(), Model: b.Model, Trigger: trigger, Size: len(group), Latency: latency, Err: err,
		SoloPromptTokens: soloPromptTokens(b)}
	defer func() { c.observer.CallFinished(report) }()

	if err != nil {
		if ctx.Err() == nil {
			for _, it := range group {
				it.failed(err)
			}
		}
		c.log.Warn("batch call failed",
			zap.String("batch", b.ID), zap.String("trigger", string(trigger)), zap.Int("size", len(group)),
			zap.String("model", b.Model), zap.Duration("latency", latency),
			zap.Bool("permanent", provider.IsPermanent(err)), zap.Error(err))
		return
	}
	answered, ignored, usage := c.record(waiting, results)
	report.Usage = usage
	for _, it := range waiting {
		it.failed(errMissing)
	}
	c.log.Info("batch sent",
		zap.String("batch", b.ID), zap.String("trigger", string(trigger)), zap.Int("size", len(group)),
		zap.String("model", b.Model), zap.Duration("latency", latency),
		zap.Int("answered", answered), zap.Int("missing", len(waiting)), zap.Int("ignored", ignored))
}

// record sets each result's outcome on the item waiting for it and removes
// that item from waiting. Results for unknown or already answered keys are
// ignored and counted. It returns how many items it recorded, the ignored
// count, and the usage the results reported.
func (c *caller) record(waiting map[string]*item, results []provider.Result) (recorded, ignored int, usage provider.Usage) {
	for _, r := range results {
		it, ok := waiting[r.Key]
		if !ok {
			ignored++
			continue
		}
		delete(waiting, r.Key)
		recorded++
		c.stats.usage(r.Usage)
		usage = usage.Add(r.Usage)
		if r.Err != nil {
			it.failed(r.Err)
			continue
		}
		it.answered(r.Output, r.Usage)
	}
	return recorded, ignored, usage
}

// batchIDs names the batches of one engine: a random instance id and a
// sequence, so ids from a fleet's workers do not collide.
type batchIDs struct {
	instance string
	seq      atomic.Uint64
}

func newBatchIDs() *batchIDs {
	var id [4]byte
	_, _ = rand.Read(id[:])
	return &batchIDs{instance: hex.EncodeToString(id[:])}
}

func (b *batchIDs) next() string { return fmt.Sprintf("%s-%d", b.instance, b.seq.Add(1)) }
