package batch

import (
	"context"
	"errors"
	"strconv"
	"sync"
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

// JobRecord says which Batch API job holds a request. It is written in two
// steps: before the job is submitted the request is reserved for the
// engine's batch (BatchID, Key), and once the API named the job the batch is
// bound to it (JobID, Submitted). A record found without a JobID belongs to a
// worker that stopped between the two steps.
type JobRecord struct {
	// BatchID is the engine's id of the batch the request was sent in.
	BatchID string `json:"batch_id"`
	// JobID is the API's id of the job; empty until bound.
	JobID string `json:"job_id,omitempty"`
	// Key is the request's key inside the job.
	Key string `json:"key"`
	// Stream and StreamSeq name the request.
	Stream    string `json:"stream"`
	StreamSeq uint64 `json:"seq"`
	// Submitted is when the job was created.
	Submitted time.Time `json:"submitted"`
}

// JobStore records which job holds each request, so a restarted worker
// resumes polling instead of submitting again. The jetstream package keeps
// it in a key-value bucket.
type JobStore interface {
	// Reserve records, before submitting, that the requests go in batch
	// BatchID under their keys.
	Reserve(ctx context.Context, recs []JobRecord) error
	// Bind records that batch batchID became job jobID at submitted: one
	// write, so the time between the API creating the job and the engine
	// remembering it is as short as it can be.
	Bind(ctx context.Context, batchID, jobID string, submitted time.Time) error
	// Lookup returns the record for the request at seq in stream, with its
	// batch's JobID and Submitted filled in when bound, and false when
	// there is none.
	Lookup(ctx context.Context, stream string, seq uint64) (JobRecord, bool, error)
	// Delete forgets the requests' records once they are settled.
	Delete(ctx context.Context, recs []JobRecord) error
}

// ErrNoBatchAPI is returned by New when async mode is asked of a provider
// without a Batch API.
var ErrNoBatchAPI = errors.New("batch: the provider has no Batch API for async mode")

// WithJobStore sets where async mode records its jobs; required with
// Config.Async.
func WithJobStore(s JobStore) Option { return func(e *Engine) { e.jobs = s } }

// processAsync takes the decoded items of one fetch through Batch API jobs.
func (e *Engine) processAsync(ctx context.Context, trigger wire.Trigger, items []*item) {
	var pending, done []*item
	for _, it := range items {
		if it.outcome == outcomePending {
			pending = append(pending, it)
		} else {
			done = append(done, it)
		}
	}
	if len(done) > 0 {
		e.settle(done)
	}
	var wg sync.WaitGroup
	for _, g := range groupForCalls(pending) {
		for _, part := range e.partitionByJob(ctx, g) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.runJob(ctx, trigger, part)
			}()
		}
	}
	wg.Wait()
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
func (e *Engine) partitionByJob(ctx context.Context, group []*item) []jobPart {
	byJob := map[string]*jobPart{}
	var order []string
	for _, it := range group {
		rec, ok, err := e.jobs.Lookup(ctx, it.d.Stream, it.d.StreamSeq)
		if err != nil {
			e.log.Warn("look up recorded job", zap.String("id", it.id), zap.Error(err))
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
func (e *Engine) runJob(ctx context.Context, trigger wire.Trigger, part jobPart) {
	batchID := e.newBatchID()
	for _, it := range part.items {
		it.batch = wire.BatchInfo{ID: batchID, Size: len(part.items), Trigger: trigger}
	}
	waiting := make(map[string]*item, len(part.items))
	var recs []JobRecord
	resumed := part.jobID != ""
	if !resumed {
		b := provider.Batch{ID: batchID, Model: part.items[0].req.Model, Instructions: part.items[0].req.Instructions}
		for i, it := range part.items {
			key := strconv.Itoa(i)
			b.Requests = append(b.Requests, provider.Request{Key: key, Input: it.req.Input, MaxOutputTokens: it.req.MaxOutputTokens})
			waiting[key] = it
		}
		for key, it := range waiting {
			recs = append(recs, JobRecord{BatchID: batchID, Key: key, Stream: it.d.Stream, StreamSeq: it.d.StreamSeq})
		}
		if err := e.jobs.Reserve(ctx, recs); err != nil {
			// Without the records a restart submits a second job; the
			// results are still stored once.
			e.log.Warn("record batch before submitting", zap.String("batch", batchID), zap.Error(err))
		}
		start := time.Now()
		id, err := e.async.SubmitJob(ctx, b)
		e.stats.apiCalls.Add(1)
		if err != nil {
			e.observer.CallFinished(CallReport{Provider: e.provider.Name(), Model: b.Model, Trigger: trigger, Size: len(b.Requests),
				Latency: time.Now().Sub(start), Err: err, Async: true, SoloPromptTokens: soloPromptTokens(b)})
			e.log.Warn("submit batch job", zap.String("batch", batchID), zap.Int("size", len(b.Requests)), zap.Error(err))
			for _, it := range part.items {
				if ctx.Err() != nil {
					it.outcome, it.err = outcomeHandBack, err
				} else {
					it.failOrRetry(err, e.cfg.MaxDeliver)
				}
			}
			e.settle(part.items)
			if err := e.jobs.Delete(context.WithoutCancel(ctx), recs); err != nil {
				e.log.Warn("forget batch", zap.String("batch", batchID), zap.Error(err))
			}
			return
		}
		part.jobID, part.submitted = id, start
		if err := e.jobs.Bind(context.WithoutCancel(ctx), batchID, id, start); err != nil {
			e.log.Warn("record batch job", zap.String("job", id), zap.Error(err))
		}
		e.log.Info("batch job submitted", zap.String("job", id), zap.String("batch", batchID), zap.Int("size", len(b.Requests)), zap.String("model", b.Model))
	} else {
		for i, it := range part.items {
			waiting[part.keys[i]] = it
			recs = append(recs, JobRecord{BatchID: part.batchID, JobID: part.jobID, Key: part.keys[i], Stream: it.d.Stream, StreamSeq: it.d.StreamSeq, Submitted: part.submitted})
		}
		e.log.Info("batch job resumed", zap.String("job", part.jobID), zap.Int("size", len(part.items)))
	}
	b := provider.Batch{Instructions: part.items[0].req.Instructions}
	for _, it := range part.items {
		it.queued = part.submitted.Sub(it.d.Published)
		b.Requests = append(b.Requests, provider.Request{Input: it.req.Input})
	}
	finished, usage := e.waitForJob(ctx, part.jobID, waiting)
	e.observer.CallFinished(CallReport{Provider: e.provider.Name(), Model: part.items[0].req.Model, Trigger: trigger,
		Size: len(part.items), Latency: time.Now().Sub(part.submitted), Usage: usage,
		Async: true, Resumed: resumed, SoloPromptTokens: soloPromptTokens(b)})
	if !finished {
		return // handed back: the records let the next worker resume
	}
	if err := e.jobs.Delete(context.WithoutCancel(ctx), recs); err != nil {
		e.log.Warn("forget batch job", zap.String("job", part.jobID), zap.Error(err))
	}
}

// waitForJob polls the job until every waiting item is settled, moving
// items that reach MaxWait to a synchronous call. It returns false when ctx
// ended first and the items still waiting were handed back, and the usage
// the job's answers reported.
func (e *Engine) waitForJob(ctx context.Context, jobID string, waiting map[string]*item) (finished bool, usage provider.Usage) {
	ticker := time.NewTicker(e.cfg.JobPollInterval)
	defer ticker.Stop()
	for {
		status, err := e.async.PollJob(ctx, jobID)
		if err != nil && ctx.Err() == nil {
			e.log.Warn("poll batch job", zap.String("job", jobID), zap.Error(err))
		}
		var settled []*item
		if err == nil {
			before := make(map[string]*item, len(waiting))
			for k, it := range waiting {
				before[k] = it
			}
			_, _, u := e.applyResults(waiting, status.Results)
			usage = usage.Add(u)
			for k, it := range before {
				if _, still := waiting[k]; !still {
					settled = append(settled, it)
				}
			}
			if status.Done {
				for k, it := range waiting {
					it.failOrRetry(errMissing, e.cfg.MaxDeliver)
					settled = append(settled, it)
					delete(waiting, k)
				}
				e.log.Info("batch job done", zap.String("job", jobID), zap.String("state", status.State))
			}
		}
		if late := e.takeLate(waiting); len(late) > 0 {
			e.call(ctx, wire.TriggerMaxWait, late)
			e.stats.batchSent(wire.TriggerMaxWait, 0, time.Now())
			settled = append(settled, late...)
		}
		if len(settled) > 0 {
			e.settle(settled)
		}
		if len(waiting) == 0 {
			if err == nil && !status.Done {
				if err := e.async.CancelJob(context.WithoutCancel(ctx), jobID); err != nil {
					e.log.Warn("cancel batch job", zap.String("job", jobID), zap.Error(err))
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
				it.outcome = outcomeHandBack
				rest = append(rest, it)
			}
			e.settle(rest)
			return false, usage
		case <-ticker.C:
		}
	}
}

// takeLate removes and returns the items that have waited MaxWait since
// they were published.
func (e *Engine) takeLate(waiting map[string]*item) []*item {
	now := time.Now()
	var late []*item
	for k, it := range waiting {
		if now.Sub(it.d.Published) >= e.cfg.MaxWait {
			late = append(late, it)
			delete(waiting, k)
		}
	}
	return late
}
