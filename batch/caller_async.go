package batch

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// Async mode sends batches through the provider's Batch API (half the price,
// answers within minutes to a day) instead of a combined call:
//
//   - A fetched group becomes one job. The job's id and the requests it holds
//     are recorded in a JobStore before the engine waits, and the requests
//     stay un-acked, kept from redelivery by progress reports.
//   - The job is polled every JobPollInterval; each answer that arrives is
//     stored and its request acked at once.
//   - Fallback: a request that has waited MaxWait since it was published
//     stops waiting for the job and goes through a combined synchronous call
//     (trigger max_wait). When no request waits for the job any more, the
//     job is cancelled. Whichever answer comes first is stored; a later one
//     finds its request settled (or its result deduplicated) and is dropped.
//   - A worker that restarts gets the requests redelivered, finds their job
//     in the JobStore and polls it again instead of paying for a second job.

// asyncCaller sends the planned groups through Batch API jobs and settles
// each request as its answer arrives; requests that reach MaxWait fall back
// to a synchronous call.
type asyncCaller struct {
	api      provider.AsyncProvider
	jobs     JobStore
	sync     *caller
	settler  *settler
	poll     time.Duration
	maxWait  time.Duration
	ids      *batchIDs
	stats    *stats
	observer Observer
	log      *zap.Logger
}

// callAll runs one job per group (or resumes the job a group's requests are
// recorded in) and returns when every request is settled or handed back.
func (a *asyncCaller) callAll(ctx context.Context, trigger wire.Trigger, items []*item) {
	var parts []jobPart
	for _, g := range groupForCalls(items) {
		parts = append(parts, a.partitionByJob(ctx, g)...)
	}
	together(parts, func(part jobPart) { a.runJob(ctx, trigger, part) })
}

// jobPart is a set of items that one job answers: a recorded job to resume,
// or (jobID "") a new one to submit.
type jobPart struct {
	batchID   string
	jobID     string
	submitted time.Time
	items     []*item
	keys      []string
}

// partitionByJob splits a group by the job each item is recorded in.
func (a *asyncCaller) partitionByJob(ctx context.Context, group []*item) []jobPart {
	byJob := map[string]*jobPart{}
	var order []string
	for _, it := range group {
		rec, ok, err := a.jobs.Lookup(ctx, it.d.Stream, it.d.StreamSeq)
		if err != nil {
			a.log.Warn("look up recorded job", zap.String("id", it.id), zap.Error(err))
		}
		// A record without a job is a batch whose worker stopped before the
		// API named its job: it is submitted again.
		id := ""
		if ok && rec.JobID != "" {
			id = rec.JobID
		}
		p, seen := byJob[id]
		if !seen {
			p = &jobPart{batchID: rec.BatchID, jobID: id, submitted: rec.Submitted}
			byJob[id] = p
			order = append(order, id)
		}
		p.items = append(p.items, it)
		p.keys = append(p.keys, rec.Key)
	}
	out := make([]jobPart, 0, len(order))
	for _, id := range order {
		out = append(out, *byJob[id])
	}
	return out
}

// runJob submits (or resumes) one job and waits for its answers, falling
// back to a synchronous call for requests that reach MaxWait.
func (a *asyncCaller) runJob(ctx context.Context, trigger wire.Trigger, part jobPart) {
	batchID := a.ids.next()
	for _, it := range part.items {
		it.batch = wire.BatchInfo{ID: batchID, Size: len(part.items), Trigger: trigger}
	}
	waiting := make(map[string]*item, len(part.items))
	var recs []JobRecord
	resumed := part.jobID != ""
	if !resumed {
		var b provider.Batch
		b, waiting = newBatch(batchID, part.items, 0)
		for key, it := range waiting {
			recs = append(recs, JobRecord{BatchID: batchID, Key: key, Stream: it.d.Stream, StreamSeq: it.d.StreamSeq})
		}
		if err := a.jobs.Reserve(ctx, recs); err != nil {
			// Without the records a restart submits a second job; the
			// results are still stored once.
			a.log.Warn("record batch before submitting", zap.String("batch", batchID), zap.Error(err))
		}
		start := time.Now()
		id, err := a.api.SubmitJob(ctx, b)
		a.stats.apiCalls.Add(1)
		if err != nil {
			a.observer.CallFinished(CallReport{Provider: a.api.Name(), Model: b.Model, Trigger: trigger, Size: len(b.Requests),
				Latency: time.Now().Sub(start), Err: err, Async: true, SoloPromptTokens: soloPromptTokens(b)})
			a.log.Warn("submit batch job", zap.String("batch", batchID), zap.Int("size", len(b.Requests)), zap.Error(err))
			for _, it := range part.items {
				if ctx.Err() == nil {
					it.failed(err)
				}
			}
			a.settler.settle(ctx, part.items)
			if err := a.jobs.Delete(context.WithoutCancel(ctx), recs); err != nil {
				a.log.Warn("forget batch", zap.String("batch", batchID), zap.Error(err))
			}
			return
		}
		part.jobID, part.submitted = id, start
		if err := a.jobs.Bind(context.WithoutCancel(ctx), batchID, id, start); err != nil {
			a.log.Warn("record batch job", zap.String("job", id), zap.Error(err))
		}
		a.log.Info("batch job submitted", zap.String("job", id), zap.String("batch", batchID), zap.Int("size", len(b.Requests)), zap.String("model", b.Model))
	} else {
		for i, it := range part.items {
			waiting[part.keys[i]] = it
			recs = append(recs, JobRecord{BatchID: part.batchID, JobID: part.jobID, Key: part.keys[i], Stream: it.d.Stream, StreamSeq: it.d.StreamSeq, Submitted: part.submitted})
		}
		a.log.Info("batch job resumed", zap.String("job", part.jobID), zap.Int("size", len(part.items)))
	}
	b := provider.Batch{Instructions: part.items[0].req.Instructions}
	for _, it := range part.items {
		it.queued = part.submitted.Sub(it.d.Published)
		b.Requests = append(b.Requests, provider.Request{Input: it.req.Input})
	}
	finished, usage := a.waitForJob(ctx, part.jobID, waiting)
	a.observer.CallFinished(CallReport{Provider: a.api.Name(), Model: part.items[0].req.Model, Trigger: trigger,
		Size: len(part.items), Latency: time.Now().Sub(part.submitted), Usage: usage,
		Async: true, Resumed: resumed, SoloPromptTokens: soloPromptTokens(b)})
	if !finished {
		return // handed back: the records let the next worker resume
	}
	if err := a.jobs.Delete(context.WithoutCancel(ctx), recs); err != nil {
		a.log.Warn("forget batch job", zap.String("job", part.jobID), zap.Error(err))
	}
}

// waitForJob polls the job until every waiting item is settled, moving
// items that reach MaxWait to a synchronous call. It returns false when ctx
// ended first and the items still waiting were handed back, and the usage
// the job's answers reported.
func (a *asyncCaller) waitForJob(ctx context.Context, jobID string, waiting map[string]*item) (finished bool, usage provider.Usage) {
	ticker := time.NewTicker(a.poll)
	defer ticker.Stop()
	for {
		status, err := a.api.PollJob(ctx, jobID)
		if err != nil && ctx.Err() == nil {
			a.log.Warn("poll batch job", zap.String("job", jobID), zap.Error(err))
		}
		var settled []*item
		if err == nil {
			before := make(map[string]*item, len(waiting))
			for k, it := range waiting {
				before[k] = it
			}
			_, _, u := a.sync.record(waiting, status.Results)
			usage = usage.Add(u)
			for k, it := range before {
				if _, still := waiting[k]; !still {
					settled = append(settled, it)
				}
			}
			switch {
			case status.Done && status.Failed:
				// The job's failure, not its requests': they go back
				// without spending an attempt, and are sent again in a new
				// job once this one's records are gone.
				a.stats.jobsFailed.Add(1)
				a.log.Warn("batch job failed: its unanswered requests go back without spending an attempt",
					zap.String("job", jobID), zap.String("state", status.State), zap.Int("unanswered", len(waiting)),
					zap.Strings("errors", status.Errors))
				cause := fmt.Errorf("batch job %s ended %s without answering", jobID, status.State)
				for k, it := range waiting {
					it.deferUntil(cause, a.poll)
					settled = append(settled, it)
					delete(waiting, k)
				}
			case status.Done:
				for k, it := range waiting {
					it.failed(errMissing)
					settled = append(settled, it)
					delete(waiting, k)
				}
				a.log.Info("batch job done", zap.String("job", jobID), zap.String("state", status.State))
			}
		}
		if late := a.takeLate(waiting); len(late) > 0 {
			a.sync.callAll(ctx, wire.TriggerMaxWait, a.sync.planner.plan(late))
			a.stats.batchSent(wire.TriggerMaxWait, 0, time.Now())
			settled = append(settled, late...)
		}
		if len(settled) > 0 {
			a.settler.settle(ctx, settled)
		}
		if len(waiting) == 0 {
			if err == nil && !status.Done {
				if err := a.api.CancelJob(context.WithoutCancel(ctx), jobID); err != nil {
					a.log.Warn("cancel batch job", zap.String("job", jobID), zap.Error(err))
				}
			}
			return true, usage
		}
		select {
		case <-ctx.Done():
			// Shutting down: hand the rest back at once. Their records stay,
			// so the worker that takes them resumes this job.
			var rest []*item
			for _, it := range waiting {
				rest = append(rest, it)
			}
			a.settler.settle(ctx, rest)
			return false, usage
		case <-ticker.C:
		}
	}
}

// takeLate removes and returns the items that have waited MaxWait since
// they were published.
func (a *asyncCaller) takeLate(waiting map[string]*item) []*item {
	now := time.Now()
	var late []*item
	for k, it := range waiting {
		if now.Sub(it.d.Published) >= a.maxWait {
			late = append(late, it)
			delete(waiting, k)
		}
	}
	return late
}
