package batch

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"

	"github.com/aibatch/aibatch/wire"
)

// The settler is the only code that ends a request's message. Every request
// fetched ends in exactly one of these ways:
//
//   - answered: the result (status ok) is stored, then the message is acked.
//   - failed for good: the error result is stored on the reply subject and a
//     copy of the request goes to the dead-letter stream, then the message is
//     acked. Rejected requests, and failed ones out of attempts (MaxDeliver),
//     end so.
//   - retried: the message is handed back (Nak) with exponential backoff,
//     honouring the provider's Retry-After. Failures a later attempt may
//     not meet (transient provider errors, requests missing from an answer)
//     are retried.
//   - waiting for the provider: a breaker is open (the provider cannot serve
//     anyone); the message is handed back until the next probe, without
//     spending an attempt.
//   - handed back at once: nothing concerning the request was found (the
//     worker is shutting down, or a bug stopped its batch); another delivery
//     takes it without waiting, and no attempt is spent.
//
// Attempts are counted apart from the broker's delivery count, in the
// AttemptStore: a retry spends one, a hand-back that was not the request's
// fault is recorded as free.
//
// Nothing is acked before its outcome is stored: a publish the broker does
// not confirm hands the message back. Results and dead letters carry a
// Nats-Msg-Id derived from the request's stream sequence, so a redelivered
// request never stores a second one, and when the broker reports the result
// as already stored the settler follows what that stored result says.

// step is the next thing the settler does with one message.
type step int

const (
	// stepStoreResult: publish the result (ok, or error with a dead letter
	// to follow).
	stepStoreResult step = iota + 1
	// stepStoreDeadLetter: publish the dead letter of a stored error result.
	stepStoreDeadLetter
	// stepAck: the outcome is stored; end the message.
	stepAck
	// stepRetryLater: hand the message back after the retry backoff.
	stepRetryLater
	// stepHandBack: hand the message back for an immediate redelivery,
	// without spending an attempt.
	stepHandBack
	// stepWaitForProvider: hand the message back until the provider's next
	// probe, without spending an attempt.
	stepWaitForProvider
	// stepRetryStore: storing failed; hand the message back after
	// RetryBackoff so the next delivery stores it.
	stepRetryStore
)

// stored is what became of one publish.
type stored int

const (
	notStored    stored = iota // not published yet
	storedNow                  // the broker stored it
	storedBefore               // the broker already held it (a redelivery)
	storeFailed                // the broker did not confirm it
)

// facts is what the settler knows about one message at a point of its
// settling.
type facts struct {
	outcome    outcome
	attempts   int // the request's own attempts including this one
	maxDeliver int
	result     stored
	// resultIsError says whether the stored result (this attempt's, or an
	// earlier one's when result is storedBefore) has status error.
	resultIsError bool
	dead          stored
}

// verdict is the settler's decision for one message.
type verdict struct {
	step step
	// giveUp marks an error result for a request out of attempts.
	giveUp bool
}

// decide is the settler's rule book: from what is known about a message, the
// next step. It is called again after each publish until it says ack or hand
// back.
func decide(f facts) verdict {
	switch f.result {
	case notStored:
		switch f.outcome {
		case outcomeAnswered, outcomeRejected:
			return verdict{step: stepStoreResult}
		case outcomeFailed:
			if f.attempts >= f.maxDeliver {
				return verdict{step: stepStoreResult, giveUp: true}
			}
			return verdict{step: stepRetryLater}
		case outcomeDeferred:
			return verdict{step: stepWaitForProvider}
		default:
			return verdict{step: stepHandBack}
		}
	case storeFailed:
		return verdict{step: stepRetryStore}
	}
	if !f.resultIsError {
		return verdict{step: stepAck}
	}
	switch f.dead {
	case notStored:
		return verdict{step: stepStoreDeadLetter}
	case storeFailed:
		return verdict{step: stepRetryStore}
	default:
		return verdict{step: stepAck}
	}
}

// settleTimeout is the least time settling a batch's outcomes may take.
const settleTimeout = 30 * time.Second

// recordTimeout bounds one attempt-record write; a write that fails counts
// the delivery as one that ended without an outcome.
const recordTimeout = 5 * time.Second

// settler carries out decide's verdicts: it publishes results and dead
// letters, and acks or hands back messages.
type settler struct {
	pub        Publisher
	out        outgoing
	retry      retryPolicy
	maxDeliver int
	attempts   AttemptStore // nil: NumDelivered counts attempts
	budget     Budget       // nil: no topic has a budget
	ackWait    time.Duration
	handBack   *handBacks
	// dedupeWindow is how long the result stream remembers a Nats-Msg-Id
	// (Config.RedeliveryWindow); older uncertain results are looked up.
	dedupeWindow time.Duration
	// expiries learns when deferred requests pass requestTTL, so that a
	// paused lane fetches them to end them.
	expiries   *handBacks
	requestTTL time.Duration
	// cache, when on, is given the answers whose ok result was stored.
	cache    *responseCache
	stats    *stats
	observer Observer
	log      *zap.Logger
}

// settle ends or hands back every item's message according to its outcome.
// Publishing is given at least settleTimeout, past ctx's end: the outcome
// was paid for, and progress reports keep the messages from redelivery
// meanwhile.
func (s *settler) settle(ctx context.Context, items []*item) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(s.ackWait, settleTimeout))
	defer cancel()
	s.spend(ctx, items)

	// One jitter per settlement keeps a batch's retries together, so they
	// come back as one batch, while batches of a fleet spread out.
	jitter := 0.8 + 0.4*rand.Float64()
	storing := make([]*item, 0, len(items))
	results := make([]Outgoing, 0, len(items))
	for _, it := range items {
		v := decide(s.facts(it))
		switch v.step {
		case stepStoreResult:
			if v.giveUp {
				it.err = fmt.Errorf("gave up after %d attempts: %w", it.attempt(), it.err)
			}
			storing = append(storing, it)
			results = append(results, s.out.result(it))
		case stepRetryLater:
			s.stats.retries.Add(1)
			s.observer.RequestRetried()
			it.attempts.Spent++
			s.record(ctx, it)
			s.nak(it, s.retry.delay(it.attempt()-1, it.retryAfter, jitter))
		case stepWaitForProvider:
			s.stats.deferred.Add(1)
			s.observer.RequestDeferred()
			it.attempts.Free++
			s.record(ctx, it)
			s.nak(it, it.retryAfter)
			s.expiries.add(it.d.Published.Add(s.requestTTL + retryGrace))
		default:
			it.attempts.Free++
			s.record(ctx, it)
			s.nak(it, 0)
		}
	}
	if len(storing) == 0 {
		return
	}
	acks := s.publishResults(ctx, storing, results)
	recycleResultBodies(results, acks)
	var remember []*item
	if s.cache != nil {
		// After the acks: a slow cache must not hold the messages.
		defer func() { s.cache.remember(ctx, remember) }()
	}

	var deadFor []*item
	var deadLetters []Outgoing
	for i, it := range storing {
		f := s.facts(it)
		f.result, f.resultIsError = stored(0), it.outcome != outcomeAnswered
		switch ack := acks[i]; {
		case ack.Err != nil:
			s.log.Warn("store result", zap.String("id", it.id), zap.Error(ack.Err))
			f.result = storeFailed
		case ack.Duplicate:
			// An earlier delivery stored a result: follow what it says.
			f.result = storedBefore
			f.resultIsError = s.storedResultIsError(ctx, ack.Sequence, it)
		default:
			f.result = storedNow
			if f.resultIsError {
				s.stats.resultsError.Add(1)
			} else {
				s.stats.resultsOK.Add(1)
			}
		}
		switch decide(f).step {
		case stepAck:
			s.ack(ctx, it, wire.StatusOK, false)
			if f.result == storedNow {
				remember = append(remember, it)
			}
		case stepStoreDeadLetter:
			deadFor = append(deadFor, it)
			deadLetters = append(deadLetters, s.out.deadLetter(it))
		default:
			s.nak(it, s.retry.base)
		}
	}
	if len(deadLetters) == 0 {
		return
	}
	for i, ack := range s.pub.Publish(ctx, deadLetters) {
		it := deadFor[i]
		f := s.facts(it)
		f.result, f.resultIsError, f.dead = storedNow, true, storedNow
		switch {
		case ack.Err != nil:
			s.log.Warn("store dead letter", zap.String("id", it.id), zap.Error(ack.Err))
			f.dead = storeFailed
		case ack.Duplicate:
			f.dead = storedBefore
		default:
			s.stats.deadLetters.Add(1)
			s.log.Warn("request dead-lettered", zap.String("id", it.id), zap.String("subject", it.msg.Subject()),
				zap.Uint64("stream_seq", it.d.StreamSeq), zap.Uint64("attempts", it.d.NumDelivered),
				zap.String("error", deadLetters[i].HeaderValue(wire.HeaderError)))
		}
		if decide(f).step == stepAck {
			s.ack(ctx, it, wire.StatusError, true)
		} else {
			s.nak(it, s.retry.base)
		}
	}
}

// publishResults stores the results, except those a request's earlier
// delivery already stored longer ago than the duplicate window remembers:
// those are found and reported as duplicates, so a request never gets a
// second result.
func (s *settler) publishResults(ctx context.Context, storing []*item, results []Outgoing) []PublishAck {
	finder, _ := s.pub.(ResultFinder)
	if finder == nil || s.dedupeWindow <= 0 {
		return s.pub.Publish(ctx, results)
	}
	acks := make([]PublishAck, len(results))
	send := make([]Outgoing, 0, len(results))
	at := make([]int, 0, len(results))
	for i, it := range storing {
		if it.uncertain && time.Since(it.d.Published) > s.dedupeWindow {
			seq, found, err := finder.FindResult(ctx, results[i].Subject, results[i].MsgID, it.d.Published)
			switch {
			case err != nil:
				// Not knowing, storing is the safe side: a duplicate at
				// worst, never a lost result.
				s.log.Warn("look for an earlier result", zap.String("id", it.id), zap.Error(err))
			case found:
				acks[i] = PublishAck{Duplicate: true, Sequence: seq}
				continue
			}
		}
		send = append(send, results[i])
		at = append(at, i)
	}
	if len(send) > 0 {
		for j, a := range s.pub.Publish(ctx, send) {
			acks[at[j]] = a
		}
	}
	return acks
}

// spend adds what the answered items' calls used to their topics'
// budgets, once per item, in one update per topic.
func (s *settler) spend(ctx context.Context, items []*item) {
	if s.budget == nil {
		return
	}
	byTopic := map[string]int64{}
	var topics []string
	for _, it := range items {
		if it.outcome != outcomeAnswered || it.spent {
			continue
		}
		it.spent = true
		n := it.usage.InputTokens + it.usage.OutputTokens
		if n <= 0 {
			continue
		}
		if _, seen := byTopic[it.topic]; !seen {
			topics = append(topics, it.topic)
		}
		byTopic[it.topic] += n
	}
	for _, topic := range topics {
		if err := s.budget.Spend(ctx, topic, byTopic[topic]); err != nil {
			s.log.Warn("add usage to the topic's budget", zap.String("topic", topic), zap.Int64("tokens", byTopic[topic]), zap.Error(err))
		}
	}
}

func (s *settler) facts(it *item) facts {
	return facts{outcome: it.outcome, attempts: it.attempt(), maxDeliver: s.maxDeliver}
}

// record stores how this delivery ended before the message is handed back,
// so the next delivery knows whether it spent an attempt. Without it the
// delivery counts as one that ended without an outcome.
func (s *settler) record(ctx context.Context, it *item) {
	if s.attempts == nil {
		return
	}
	// Bounded on its own: a write lost with a server restart must not hold
	// the rest of the batch's hand-backs.
	ctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	if err := s.attempts.Put(ctx, it.d.Stream, it.d.StreamSeq, it.attempts); err != nil {
		s.log.Warn("record attempts", zap.String("id", it.id), zap.Error(err))
		return
	}
	it.stored = true
}

// handBackAll returns the requests to the broker after delay, whatever
// happened to them: the way out of a batch that a bug stopped. A message
// already ended refuses the Nak, which is harmless.
func (s *settler) handBackAll(items []*item, delay time.Duration) {
	for _, it := range items {
		_ = it.msg.Nak(delay)
	}
	s.handBack.add(time.Now().Add(delay + retryGrace))
}

// nak returns the request to the broker for another delivery after delay,
// and tells the scheduler to look for it then.
func (s *settler) nak(it *item, delay time.Duration) {
	if err := it.msg.Nak(delay); err != nil {
		// Without the Nak the broker redelivers after AckWait instead.
		s.log.Warn("hand back request", zap.String("id", it.id), zap.Error(err))
		delay = s.ackWait
	}
	if delay > 0 {
		s.handBack.add(time.Now().Add(delay + retryGrace))
	}
}

// ack ends a request whose outcome is stored, and forgets its attempts.
func (s *settler) ack(ctx context.Context, it *item, status string, deadLettered bool) {
	it.ended = true
	if err := it.msg.Ack(); err != nil {
		// The outcome is stored; the redelivery after AckWait finds it by
		// its Nats-Msg-Id, so look for it then.
		s.log.Warn("ack request", zap.String("id", it.id), zap.Error(err))
		s.handBack.add(time.Now().Add(s.ackWait + retryGrace))
	} else if it.stored && s.attempts != nil {
		// Best effort: a record left behind expires with the bucket's TTL.
		if err := s.attempts.Delete(ctx, it.d.Stream, it.d.StreamSeq); err != nil {
			s.log.Debug("forget attempts", zap.String("id", it.id), zap.Error(err))
		}
	}
	s.observer.RequestFinished(RequestReport{Status: status, DeadLettered: deadLettered, QueueWait: it.queued, Attempts: int(it.d.NumDelivered)})
}

// storedResultIsError reads the result an earlier delivery stored and
// reports whether it was an error, taking its reason for the dead letter.
// When it cannot be read, this attempt's view stands.
func (s *settler) storedResultIsError(ctx context.Context, seq uint64, it *item) bool {
	mine := it.outcome != outcomeAnswered
	body, err := s.pub.StoredResult(ctx, seq)
	if err != nil {
		s.log.Warn("read stored result", zap.Uint64("seq", seq), zap.Error(err))
		return mine
	}
	var r wire.Result
	if err := json.Unmarshal(body, &r); err != nil {
		return mine
	}
	if r.Status == wire.StatusError {
		it.err = storedReason(r.Error)
	}
	return r.Status == wire.StatusError
}

// storedReason is the reason an earlier delivery stored, as an error.
type storedReason string

func (r storedReason) Error() string { return string(r) }

// retryPolicy is the delay before a request's next attempt: base doubled per
// attempt so far, capped at max, scaled by a jitter (0.8 to 1.2) so a
// fleet's retries do not arrive at once, and never shorter than the
// provider's Retry-After.
type retryPolicy struct{ base, max time.Duration }

func (p retryPolicy) delay(attempt int, retryAfter time.Duration, jitter float64) time.Duration {
	d := p.base
	for i := 1; i < attempt && d < p.max; i++ {
		d *= 2
	}
	d = min(d, p.max)
	d = time.Duration(float64(d) * jitter)
	return max(d, retryAfter)
}
