package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// What each request's answer does to its message. Every request fetched ends
// in exactly one of these:
//
//   - answered:  the result (status ok) is stored, then the request is acked.
//   - failed:    the error result is stored on the reply subject and a copy of
//     the request goes to the dead-letter stream, then the request is acked.
//     Invalid requests, per-request refusals, permanent provider errors and
//     requests out of attempts (MaxDeliver) fail.
//   - retried:   the request is handed back (Nak) with exponential backoff,
//     honouring the provider's Retry-After. Transient provider errors and
//     requests missing from an answer are retried.
//   - handed back at once: the worker is shutting down and the call did not
//     finish; another worker takes the request without waiting.
//
// A publish the broker does not confirm hands the request back, so nothing
// is acked before its outcome is stored. Results and dead letters carry a
// Nats-Msg-Id derived from the request's stream sequence, so a redelivered
// request never stores a second one.
type outcome int

const (
	outcomePending outcome = iota
	outcomeAnswered
	outcomeFailed
	outcomeRetry
	outcomeHandBack
)

// settleTimeout is the least time settling a batch's outcomes may take.
const settleTimeout = 30 * time.Second

// errMissing is the cause recorded for a request the provider's answer left out.
var errMissing = errors.New("the provider's answer has no item for this request")

// item is one request on its way through a call.
type item struct {
	msg     Message
	d       Delivery
	req     wire.Request
	id      string
	topic   string
	replyTo string

	outcome    outcome
	output     string
	usage      provider.Usage
	err        error
	retryAfter time.Duration
	batch      wire.BatchInfo
	queued     time.Duration
}

func (it *item) answer(output string, u provider.Usage) {
	it.outcome, it.output, it.usage = outcomeAnswered, output, u
}

func (it *item) fail(err error) { it.outcome, it.err = outcomeFailed, err }

// failOrRetry ends the request when retrying cannot help or it has used its
// attempts, and hands it back for a retry otherwise.
func (it *item) failOrRetry(err error, maxDeliver int) {
	switch {
	case provider.IsPermanent(err):
		it.fail(err)
	case int(it.d.NumDelivered) >= maxDeliver:
		it.fail(fmt.Errorf("gave up after %d attempts: %w", it.d.NumDelivered, err))
	default:
		it.outcome, it.err, it.retryAfter = outcomeRetry, err, provider.RetryAfter(err)
	}
}

// process takes one fetched set of requests through calls and settlement.
func (e *Engine) process(ctx context.Context, trigger wire.Trigger, msgs []Message) {
	now := time.Now()
	e.stats.batchSent(trigger, len(msgs), now)
	e.observer.BatchFetched(trigger, len(msgs))
	stopProgress := e.reportProgress(msgs)
	defer stopProgress()

	items := make([]*item, len(msgs))
	for i, m := range msgs {
		items[i] = e.decode(m)
	}
	if e.async != nil && trigger != wire.TriggerUrgent {
		e.processAsync(ctx, trigger, items)
		return
	}
	var wg sync.WaitGroup
	for _, g := range groupForCalls(items) {
		for _, part := range e.splitForTokens(g) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.call(ctx, trigger, part)
			}()
		}
	}
	wg.Wait()
	e.settle(items)
}

// decode reads one message into an item; invalid requests fail at once.
func (e *Engine) decode(m Message) *item {
	it := &item{msg: m, d: m.Delivery()}
	it.topic = topicOf(m.Subject(), e.laneFilters)
	req, err := wire.DecodeRequest(m.Data(), e.cfg.MaxRequestBytes)
	it.req = req
	it.id = requestID(req, m, it.d)
	if it.req.Model == "" {
		it.req.Model = e.cfg.DefaultModel
	}
	if reply := m.Header(wire.HeaderReplyTo); reply != "" {
		if rerr := checkReplySubject(reply, e.forbiddenReplies); rerr != nil && err == nil {
			err = rerr
		} else if rerr == nil {
			it.replyTo = reply
		}
	}
	switch {
	case err != nil:
		it.fail(err)
	case int(it.d.NumDelivered) > e.cfg.MaxDeliver:
		// Attempts were used up by workers that died mid-call.
		it.fail(fmt.Errorf("gave up after %d deliveries (MAX_DELIVER is %d)", it.d.NumDelivered-1, e.cfg.MaxDeliver))
	}
	return it
}

// groupForCalls splits the valid items into groups that may share one call:
// same model and same instructions, in arrival order.
func groupForCalls(items []*item) [][]*item {
	type key struct{ model, instructions string }
	var order []key
	groups := make(map[key][]*item)
	for _, it := range items {
		if it.outcome != outcomePending {
			continue
		}
		k := key{it.req.Model, it.req.Instructions}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], it)
	}
	out := make([][]*item, 0, len(order))
	for _, k := range order {
		out = append(out, groups[k])
	}
	return out
}

// call makes one provider call for a group and records each item's outcome.
func (e *Engine) call(ctx context.Context, trigger wire.Trigger, group []*item) {
	b := provider.Batch{
		ID:           e.newBatchID(),
		Model:        group[0].req.Model,
		Instructions: group[0].req.Instructions,
		Requests:     make([]provider.Request, len(group)),
	}
	byKey := make(map[string]*item, len(group))
	start := time.Now()
	for i, it := range group {
		key := strconv.Itoa(i)
		b.Requests[i] = provider.Request{Key: key, Input: it.req.Input, MaxOutputTokens: it.req.MaxOutputTokens}
		byKey[key] = it
		it.batch = wire.BatchInfo{ID: b.ID, Size: len(group), Trigger: trigger}
		it.queued = start.Sub(it.d.Published)
	}
	callCtx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
	results, err := e.provider.Complete(callCtx, b)
	cancel()
	e.stats.apiCalls.Add(1)
	latency := time.Now().Sub(start)
	report := CallReport{Provider: e.provider.Name(), Model: b.Model, Trigger: trigger, Size: len(group), Latency: latency, Err: err,
		SoloPromptTokens: soloPromptTokens(b)}
	defer func() { e.observer.CallFinished(report) }()

	if err != nil {
		for _, it := range group {
			if ctx.Err() != nil {
				it.outcome, it.err = outcomeHandBack, err
				continue
			}
			it.failOrRetry(err, e.cfg.MaxDeliver)
		}
		e.log.Warn("batch call failed",
			zap.String("batch", b.ID), zap.String("trigger", string(trigger)), zap.Int("size", len(group)),
			zap.String("model", b.Model), zap.Duration("latency", latency),
			zap.Bool("permanent", provider.IsPermanent(err)), zap.Error(err))
		return
	}
	answered, unknown, usage := e.applyResults(byKey, results)
	report.Usage = usage
	for _, it := range byKey {
		it.failOrRetry(errMissing, e.cfg.MaxDeliver)
	}
	e.log.Info("batch sent",
		zap.String("batch", b.ID), zap.String("trigger", string(trigger)), zap.Int("size", len(group)),
		zap.String("model", b.Model), zap.Duration("latency", latency),
		zap.Int("answered", answered), zap.Int("missing", len(byKey)), zap.Int("ignored", unknown))
}

// applyResults records each result's outcome on the item waiting for it and
// removes that item from waiting. Results for unknown or already answered
// keys are ignored and counted. It returns how many items it settled, the
// ignored count, and the usage the results reported.
func (e *Engine) applyResults(waiting map[string]*item, results []provider.Result) (answered, ignored int, usage provider.Usage) {
	for _, r := range results {
		it, ok := waiting[r.Key]
		if !ok {
			ignored++
			continue
		}
		delete(waiting, r.Key)
		answered++
		e.stats.usage(r.Usage)
		usage = usage.Add(r.Usage)
		if r.Err != nil {
			it.failOrRetry(r.Err, e.cfg.MaxDeliver)
			continue
		}
		it.answer(r.Output, r.Usage)
	}
	return answered, ignored, usage
}

// settle stores each item's outcome and then acks or hands back its message.
func (e *Engine) settle(items []*item) {
	// Publishing must finish even while shutting down: the outcome was paid
	// for. Progress reports keep the requests from redelivery meanwhile, so
	// a slow broker gets more than one AckWait.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(e.procCtx), max(e.cfg.AckWait, settleTimeout))
	defer cancel()

	// One jitter per settlement keeps a batch's retries together, so they
	// come back as one batch, while batches of a fleet spread out.
	jitter := 0.8 + 0.4*rand.Float64()
	var final []*item
	var results []Outgoing
	for _, it := range items {
		switch it.outcome {
		case outcomeAnswered, outcomeFailed:
			final = append(final, it)
			results = append(results, e.fittingResultMsg(it))
		case outcomeRetry:
			e.stats.retries.Add(1)
			e.observer.RequestRetried()
			e.handBack(it, e.backoff(int(it.d.NumDelivered), it.retryAfter, jitter))
		default: // shutting down, or never called
			e.handBack(it, 0)
		}
	}
	if len(final) == 0 {
		return
	}
	acks := e.pub.Publish(ctx, results)

	// Failed requests also need a dead letter. A duplicate result means an
	// earlier delivery already stored one; the dead letter follows what
	// that stored result says, not what this attempt found.
	var dead []Outgoing
	var deadFor []*item
	var done []*item
	for i, it := range final {
		ack := acks[i]
		if ack.Err != nil {
			e.log.Warn("store result", zap.String("id", it.id), zap.Error(ack.Err))
			e.handBack(it, e.cfg.RetryBackoff)
			continue
		}
		failed, reason := it.outcome == outcomeFailed, errText(it.err)
		if ack.Duplicate {
			failed, reason = e.storedFailure(ctx, ack.Sequence, failed, reason)
		} else if failed {
			e.stats.resultsError.Add(1)
		} else {
			e.stats.resultsOK.Add(1)
		}
		if !failed {
			done = append(done, it)
			continue
		}
		dead = append(dead, e.deadLetter(it, reason))
		deadFor = append(deadFor, it)
	}
	if len(dead) > 0 {
		for i, ack := range e.pub.Publish(ctx, dead) {
			it := deadFor[i]
			if ack.Err != nil {
				e.log.Warn("store dead letter", zap.String("id", it.id), zap.Error(ack.Err))
				e.handBack(it, e.cfg.RetryBackoff)
				continue
			}
			if !ack.Duplicate {
				e.stats.deadLetters.Add(1)
				e.log.Warn("request dead-lettered", zap.String("id", it.id), zap.String("subject", it.msg.Subject()),
					zap.Uint64("stream_seq", it.d.StreamSeq), zap.Uint64("attempts", it.d.NumDelivered),
					zap.String("error", dead[i].Header[wire.HeaderError]))
			}
			e.finish(ctx, it, wire.StatusError, true)
		}
	}
	for _, it := range done {
		e.finish(ctx, it, wire.StatusOK, false)
	}
}

// handBack returns the request to the broker for another delivery after
// delay, and tells the scheduler to look for it then.
func (e *Engine) handBack(it *item, delay time.Duration) {
	if err := it.msg.Nak(delay); err != nil {
		// Without the Nak the broker redelivers after AckWait instead.
		e.log.Warn("hand back request", zap.String("id", it.id), zap.Error(err))
		delay = e.cfg.AckWait
	}
	if delay > 0 {
		e.retries.add(time.Now().Add(delay + retryGrace))
	}
}

// finish acks a request whose outcome is stored.
func (e *Engine) finish(ctx context.Context, it *item, status string, deadLettered bool) {
	if err := it.msg.Ack(); err != nil {
		// The outcome is stored; the redelivery after AckWait finds it by
		// its Nats-Msg-Id, so look for it then.
		e.log.Warn("ack request", zap.String("id", it.id), zap.Error(err))
		e.retries.add(time.Now().Add(e.cfg.AckWait + retryGrace))
	}
	e.observer.RequestFinished(RequestReport{Status: status, DeadLettered: deadLettered, QueueWait: it.queued, Attempts: int(it.d.NumDelivered)})
}

// storedFailure reads the result an earlier delivery stored and reports
// whether it was an error, and its reason. When it cannot be read, the
// current attempt's view stands.
func (e *Engine) storedFailure(ctx context.Context, seq uint64, failed bool, reason string) (bool, string) {
	body, err := e.pub.StoredResult(ctx, seq)
	if err != nil {
		e.log.Warn("read stored result", zap.Uint64("seq", seq), zap.Error(err))
		return failed, reason
	}
	var r wire.Result
	if err := json.Unmarshal(body, &r); err != nil {
		return failed, reason
	}
	return r.Status == wire.StatusError, r.Error
}

// fittingResultMsg builds the item's result message; an answer too large for
// the broker turns the item into a failure that says so, which fits.
func (e *Engine) fittingResultMsg(it *item) Outgoing {
	msg := e.resultMsg(it)
	if len(msg.Data) <= e.cfg.MaxResultBytes {
		return msg
	}
	it.fail(provider.Permanent(fmt.Errorf("result is %d bytes, over the %d bytes the broker accepts (output %d bytes, metadata %d bytes)",
		len(msg.Data), e.cfg.MaxResultBytes, len(it.output), len(it.req.Metadata))))
	msg = e.resultMsg(it)
	if len(msg.Data) > e.cfg.MaxResultBytes {
		it.req.Metadata = nil // the error result must get through
		msg = e.resultMsg(it)
	}
	return msg
}

// resultMsg builds the result message for an answered or failed item.
func (e *Engine) resultMsg(it *item) Outgoing {
	r := wire.Result{
		ID:       it.id,
		Status:   wire.StatusOK,
		Output:   it.output,
		Model:    it.req.Model,
		Metadata: it.req.Metadata,
		Usage:    wire.Usage{InputTokens: it.usage.InputTokens, OutputTokens: it.usage.OutputTokens},
		Batch:    it.batch,
		QueuedMS: it.queued.Milliseconds(),
		Attempts: int(it.d.NumDelivered),
	}
	if it.outcome == outcomeFailed {
		r.Status, r.Output, r.Error = wire.StatusError, "", errText(it.err)
		if !json.Valid(r.Metadata) {
			r.Metadata = nil
		}
	}
	body, err := json.Marshal(r)
	if err != nil {
		// Only Metadata can make this fail; drop it rather than the result.
		r.Metadata = nil
		body, _ = json.Marshal(r)
	}
	subject := it.replyTo
	if subject == "" {
		subject = e.cfg.ResultPrefix + "." + it.topic
	}
	return Outgoing{
		Subject: subject,
		MsgID:   wire.ResultMsgID(it.d.Stream, it.d.StreamSeq),
		Header:  map[string]string{wire.HeaderStreamSeq: strconv.FormatUint(it.d.StreamSeq, 10)},
		Data:    body,
	}
}

// deadLetter builds the dead-letter copy of a failed request: the original
// body, with the reason and attempts in headers.
func (e *Engine) deadLetter(it *item, reason string) Outgoing {
	h := map[string]string{
		wire.HeaderError:     reason,
		wire.HeaderAttempts:  strconv.FormatUint(it.d.NumDelivered, 10),
		wire.HeaderSubject:   it.msg.Subject(),
		wire.HeaderStreamSeq: strconv.FormatUint(it.d.StreamSeq, 10),
		wire.HeaderRequestID: it.id,
	}
	if reply := it.msg.Header(wire.HeaderReplyTo); reply != "" {
		h[wire.HeaderReplyTo] = reply
	}
	return Outgoing{
		Subject: e.cfg.DeadPrefix + "." + it.topic,
		MsgID:   wire.DeadMsgID(it.d.Stream, it.d.StreamSeq),
		Header:  h,
		Data:    it.msg.Data(),
	}
}

// backoff is the delay before the next attempt: RetryBackoff doubled per
// attempt so far, capped at RetryMaxBackoff, scaled by jitter (0.8 to 1.2)
// so a fleet's retries do not arrive at once, and never shorter than the
// provider's Retry-After.
func (e *Engine) backoff(attempt int, retryAfter time.Duration, jitter float64) time.Duration {
	d := e.cfg.RetryBackoff
	for i := 1; i < attempt && d < e.cfg.RetryMaxBackoff; i++ {
		d *= 2
	}
	d = min(d, e.cfg.RetryMaxBackoff)
	d = time.Duration(float64(d) * jitter)
	return max(d, retryAfter)
}

// reportProgress tells the broker every AckWait/3 that msgs are still being
// worked on, so a long call does not get them redelivered. The returned
// function stops it.
func (e *Engine) reportProgress(msgs []Message) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(e.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, m := range msgs {
					_ = m.InProgress()
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
