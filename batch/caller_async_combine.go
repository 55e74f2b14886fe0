package batch

import (
	"context"
	"errors"
	"strings"

	"go.uber.org/zap"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// Async mode lays out a job in one of two ways:
//
//   - plain (the default): one line per request, the plain call a request
//     alone would make.
//   - combined (Config.AsyncCombine): one line per call the planner would
//     make of the group (up to the group's call size, within its token and
//     output budgets), each line the combined call: the Batch API's
//     discount and the prompt cache of the shared instructions add up.
//     Groups that cannot be read back from a combined line (combinesInJob)
//     are laid out plain.
//
// A combined line that fails as a whole (cut off at the output limit,
// refused, not the expected answer, or rejected) has batch scope, as a
// synchronous combined call would: the requests it did not answer are
// called again at once through the synchronous caller, which splits them
// down to one-request calls as need be, and spend no attempt. A cut-off
// line also shrinks the group's call size, so later lines are smaller.

// jobLayout is a new job: its requests' keys, what to submit, and the
// requests the planner rejected (too large for any call), which are not in
// it.
type jobLayout struct {
	// batch holds every request of the job, for reports.
	batch   provider.Batch
	waiting map[string]*item
	lines   int
	submit  func(ctx context.Context) (string, error)
	// unplanned holds items that ended before the job (too large).
	unplanned []*item
}

// layout lays out a new job for items, which share a group; plain unless
// Config.AsyncCombine is set and the group may go in combined lines
// (combinesInJob).
func (a *asyncCaller) layout(batchID string, items []*item) jobLayout {
	first := items[0]
	if a.combine == nil || !combinesInJob(first) {
		b, waiting := newBatch(batchID, items, 0)
		return jobLayout{batch: b, waiting: waiting, lines: len(items),
			submit: func(ctx context.Context) (string, error) { return a.api.SubmitJob(ctx, b) }}
	}
	job := jobLayout{
		batch:   withParams(provider.Batch{ID: batchID, Model: first.req.Model, Instructions: first.req.Instructions}, first.req),
		waiting: make(map[string]*item, len(items)),
	}
	calls := a.sync.planner.planGroup(items)
	lines := make([]provider.Batch, len(calls))
	for n, cl := range calls {
		lines[n] = withParams(provider.Batch{ID: batchID, Model: first.req.Model, Instructions: first.req.Instructions, MaxOutputTokens: cl.maxOutputTokens}, first.req)
		for i, it := range cl.items {
			r := providerRequest(provider.CombinedKey(n, i), it.req)
			lines[n].Requests = append(lines[n].Requests, r)
			job.batch.Requests = append(job.batch.Requests, r)
			job.waiting[r.Key] = it
		}
	}
	for _, it := range items {
		if it.outcome != outcomeNone {
			job.unplanned = append(job.unplanned, it)
		}
	}
	job.lines = len(lines)
	job.submit = func(ctx context.Context) (string, error) { return a.combine.SubmitCombinedJob(ctx, lines) }
	return job
}

// combinesInJob reports whether the requests of it's group may go in
// combined job lines. Not those sent alone (request.go): they cannot share a
// call. Nor those with a response format or stop sequences: a combined
// line's answer is read back from the line's index and size alone (a
// restarted worker knows no more), so it cannot be read by a format or cut
// at stop sequences, whereas a plain line carries them to the API as the
// request gave them.
func combinesInJob(it *item) bool {
	f := it.req.ResponseFormat
	return !it.alone && (f == nil || f.Type == wire.FormatText) && len(it.req.Stop) == 0
}

// takeLineFailures removes from status the results whose line failed as a
// whole (ScopeBatch) and from waiting their items, and returns those items
// with no outcome, for a synchronous call. A cut-off line shrinks its
// group's call size to what it answered.
func (a *asyncCaller) takeLineFailures(waiting map[string]*item, status *provider.JobStatus) []*item {
	var failed []*item
	kept := status.Results[:0:0]
	type line struct {
		group groupKey
		left  int
	}
	cutOff := map[string]*line{} // by line: the keys' part before "-"
	for _, r := range status.Results {
		it, ok := waiting[r.Key]
		if !ok || r.Err == nil || provider.ScopeOf(r.Err) != provider.ScopeBatch {
			kept = append(kept, r)
			continue
		}
		delete(waiting, r.Key)
		it.outcome, it.err = outcomeNone, nil
		failed = append(failed, it)
		if errors.Is(r.Err, provider.ErrCutOff) {
			n, _, _ := strings.Cut(r.Key, "-")
			if cutOff[n] == nil {
				cutOff[n] = &line{group: keyOf(it)}
			}
			cutOff[n].left++
		}
	}
	status.Results = kept
	for n, l := range cutOff {
		// The line answered what fitted before the cut; the group's next
		// calls are no larger than that.
		size := a.sync.groups.size(l.group)
		a.sync.groups.cutOff(l.group, size, max(size-l.left, 0))
		a.log.Info("combined line cut off: its unanswered requests are called again",
			zap.String("line", n), zap.Int("unanswered", l.left))
	}
	if len(failed) > 0 {
		a.log.Info("combined lines failed: their requests are called again in smaller calls", zap.Int("requests", len(failed)))
	}
	return failed
}
