package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
	"go.uber.org/zap"
)

// item is one delivered request on its way through the stages. The intake
// fills in what the request asks; the planner and the caller record what
// happened to it (its outcome); the settler alone acts on its message.
type item struct {
	msg     Message
	d       Delivery
	req     wire.Request
	id      string
	topic   string
	replyTo string
	// groupTopic is the topic in the item's group key: its topic, or ""
	// when topics may share a call.
	groupTopic string
	// params is the request's wire.Request.ParamsKey; alone says it is
	// sent in a call of its own (see request.go). Both are part of its
	// group key.
	params string
	alone  bool

	// attempts is what earlier deliveries spent, as the AttemptStore
	// recorded it; stored says whether it holds a record to delete.
	attempts AttemptRecord
	stored   bool
	// uncertain is true when an earlier delivery ended without an outcome
	// on record: its worker may have stored a result and died before the
	// ack.
	uncertain bool

	outcome    outcome
	err        error
	retryAfter time.Duration
	output     string
	// finishReason, embedding and message are the rest of the answer (see
	// provider.Result).
	finishReason string
	embedding    []float32
	message      json.RawMessage
	usage        provider.Usage
	batch        wire.BatchInfo
	// position is the request's index in the call that answered it.
	position int
	queued   time.Duration
	// ended says the settler stored the request's outcome and acked it.
	ended bool
	// spent says the answer's usage was added to the topic's budget.
	spent bool
}

// outcome is what the stages found out about a request. What each outcome
// does to the request's message is decided in settler.go, and only there.
type outcome int

const (
	// outcomeNone: no answer and no failure of the request's own. The
	// request was not called, or its call was cut short by a shutdown.
	outcomeNone outcome = iota
	// outcomeAnswered: the provider answered; output and usage are set.
	outcomeAnswered
	// outcomeRejected: the request can never succeed (invalid, refused for
	// good, too large); err says why.
	outcomeRejected
	// outcomeFailed: the request failed in a way a later attempt may not;
	// err says why, and retryAfter is the provider's requested wait. It
	// spends one of the request's attempts.
	outcomeFailed
	// outcomeDeferred: the provider cannot serve anyone now (a breaker is
	// open); the request waits in the stream until retryAfter, without
	// spending an attempt.
	outcomeDeferred
)

// answered records the provider's answer, r.
func (it *item) answered(r provider.Result) {
	it.outcome, it.output, it.usage, it.err = outcomeAnswered, r.Output, r.Usage, nil
	it.finishReason, it.embedding, it.message = r.FinishReason, r.Embedding, r.Message
	if it.finishReason == "" && !it.req.IsEmbedding() {
		it.finishReason = "stop"
	}
}

// defer records that the request waits for the provider to come back.
func (it *item) deferUntil(err error, wait time.Duration) {
	it.outcome, it.err, it.retryAfter = outcomeDeferred, err, wait
}

// reject records that the request can never succeed.
func (it *item) reject(err error) { it.outcome, it.err = outcomeRejected, err }

// failed records a failure: permanent provider errors reject the request,
// anything else may pass on a later attempt.
func (it *item) failed(err error) {
	if provider.IsPermanent(err) {
		it.reject(err)
		return
	}
	it.outcome, it.err, it.retryAfter = outcomeFailed, err, provider.RetryAfter(err)
}

// intake reads delivered messages into items. Requests that can never
// succeed (invalid bodies, forbidden reply subjects, models or output
// lengths outside the allowed ones, topics over their budget) are rejected
// here, before any call.
type intake struct {
	maxRequestBytes int
	defaultModel    string
	embeddingModel  string
	maxDeliver      int
	ttl             time.Duration
	attempts        AttemptStore // nil: NumDelivered counts every attempt
	budget          Budget       // nil: no topic has a budget
	log             *zap.Logger
	// laneFilters are the request and urgent subject filters; a request's
	// topic is what their > covers. forbiddenReplies adds the dead-letter
	// subjects: no result may be sent there. allowedReplies are the filters
	// a reply subject must match (REPLY_SUBJECTS).
	laneFilters      []string
	forbiddenReplies []string
	allowedReplies   []string
	// allowedModels is nil when any model is allowed.
	allowedModels        []string
	maxOutputTokensLimit int
	mixTopics            bool
	// can says what the provider serves and combines.
	can capabilities
}

// budgetTimeout bounds one read of a topic's budget at intake.
const budgetTimeout = 5 * time.Second

func newIntake(cfg Config, p provider.Provider, attempts AttemptStore, budget Budget, log *zap.Logger) intake {
	lanes := append(append([]string{}, cfg.RequestSubjects...), cfg.UrgentSubjects...)
	return intake{
		maxRequestBytes:      cfg.MaxRequestBytes,
		defaultModel:         cfg.DefaultModel,
		embeddingModel:       cfg.EmbeddingModel,
		maxDeliver:           cfg.MaxDeliver,
		ttl:                  cfg.RequestTTL,
		attempts:             attempts,
		budget:               budget,
		log:                  log,
		laneFilters:          lanes,
		mixTopics:            cfg.MixTopics,
		forbiddenReplies:     append(append([]string{}, lanes...), cfg.DeadPrefix+".>"),
		allowedReplies:       cfg.ReplySubjects,
		allowedModels:        allowedModels(cfg.AllowedModels, cfg.DefaultModel),
		maxOutputTokensLimit: cfg.MaxOutputTokensLimit,
		can:                  capabilitiesOf(p),
	}
}

// allowedModels is the allow-list the intake checks: nil (any model) when
// the setting is empty or holds AnyModel, else the setting with the
// default models added.
func allowedModels(setting []string, defaults ...string) []string {
	if len(setting) == 0 || slices.Contains(setting, AnyModel) {
		return nil
	}
	out := setting
	for _, m := range defaults {
		if m != "" && !slices.Contains(out, m) {
			out = append(slices.Clone(out), m)
		}
	}
	return out
}

// read turns one message into an item.
func (in intake) read(ctx context.Context, m Message) *item {
	it := &item{msg: m, d: m.Delivery()}
	it.topic = topicOf(m.Subject(), in.laneFilters)
	if !in.mixTopics {
		it.groupTopic = it.topic
	}
	req, err := wire.DecodeRequest(m.Data(), in.maxRequestBytes)
	it.req = req
	it.id = requestID(req, m, it.d)
	if it.req.Model == "" {
		it.req.Model = in.defaultModel
		if it.req.IsEmbedding() {
			it.req.Model = in.embeddingModel
		}
	}
	if reply := m.Header(wire.HeaderReplyTo); reply != "" {
		rerr := checkReplySubject(reply, in.forbiddenReplies)
		if rerr == nil {
			rerr = checkReplyAllowed(reply, in.allowedReplies)
		}
		if rerr != nil && err == nil {
			err = rerr
		} else if rerr == nil {
			it.replyTo = reply
		}
	}
	if err == nil {
		err = in.checkAsks(it.req)
	}
	if err == nil {
		err = in.classify(it)
	}
	unexplained := in.readAttempts(ctx, it)
	it.uncertain = unexplained > 0 || (in.attempts == nil && it.d.NumDelivered > 1)
	switch {
	case err != nil:
		it.reject(err)
	case in.ttl > 0 && !it.d.Published.IsZero() && time.Since(it.d.Published) >= in.ttl:
		it.reject(fmt.Errorf("expired: waited %s, over REQUEST_TTL (%s)", time.Since(it.d.Published).Round(time.Second), in.ttl))
	case in.attempts == nil && int(it.d.NumDelivered) > in.maxDeliver:
		// Attempts were used up, by failures or by workers that stopped
		// mid-call.
		it.reject(fmt.Errorf("gave up after %d deliveries (MAX_DELIVER is %d)", it.d.NumDelivered-1, in.maxDeliver))
	case unexplained >= in.maxDeliver:
		it.reject(fmt.Errorf("gave up after %d deliveries that ended without an outcome: workers stopped mid-call (MAX_DELIVER is %d)", unexplained, in.maxDeliver))
	case it.attempts.Spent >= in.maxDeliver:
		it.reject(fmt.Errorf("gave up after %d attempts (MAX_DELIVER is %d)", it.attempts.Spent, in.maxDeliver))
	default:
		in.checkBudget(ctx, it)
	}
	return it
}

// checkAsks refuses a request for a model outside ALLOWED_MODELS (an
// embedding request may always name EMBEDDING_MODEL), or for
// more output tokens than MAX_OUTPUT_TOKENS_LIMIT: what it asks would be
// paid with the organisation's key.
func (in intake) checkAsks(r wire.Request) error {
	embeddingDefault := r.IsEmbedding() && r.Model == in.embeddingModel
	if in.allowedModels != nil && !slices.Contains(in.allowedModels, r.Model) && !embeddingDefault {
		return fmt.Errorf("%w: model %q is not in ALLOWED_MODELS (%s)", wire.ErrInvalidRequest, r.Model, strings.Join(in.allowedModels, ","))
	}
	if in.maxOutputTokensLimit > 0 && r.MaxOutputTokens > in.maxOutputTokensLimit {
		return fmt.Errorf("%w: \"max_output_tokens\" is %d, over MAX_OUTPUT_TOKENS_LIMIT (%d)", wire.ErrInvalidRequest, r.MaxOutputTokens, in.maxOutputTokensLimit)
	}
	return nil
}

// checkBudget rejects a request whose topic has spent its budget. When the
// budget cannot be read the request goes on: a budget is a limit on spend,
// not a reason to stop serving.
func (in intake) checkBudget(ctx context.Context, it *item) {
	if in.budget == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, budgetTimeout)
	defer cancel()
	err := in.budget.Allow(ctx, it.topic)
	switch {
	case err == nil:
	case errors.Is(err, ErrBudgetExceeded):
		it.reject(err)
	default:
		in.log.Warn("read the topic's budget; the request goes on", zap.String("id", it.id), zap.String("topic", it.topic), zap.Error(err))
	}
}

// readAttempts fills in what earlier deliveries of a redelivered request
// spent, and returns how many of them ended without an outcome (their worker
// stopped). Without a store, or when it cannot be read, every earlier
// delivery counts as spent.
func (in intake) readAttempts(ctx context.Context, it *item) (unexplained int) {
	earlier := int(it.d.NumDelivered) - 1
	if earlier <= 0 {
		return 0
	}
	if in.attempts != nil {
		rec, err := in.attempts.Get(ctx, it.d.Stream, it.d.StreamSeq)
		if err == nil {
			it.attempts, it.stored = rec, rec != (AttemptRecord{})
			return max(0, earlier-rec.Spent-rec.Free)
		}
		in.log.Warn("read attempt record; counting every earlier delivery as spent",
			zap.String("id", it.id), zap.Uint64("stream_seq", it.d.StreamSeq), zap.Error(err))
	}
	it.attempts = AttemptRecord{Spent: earlier}
	return 0
}

// attempt is the number of the request's current attempt, 1 on the first:
// the attempts earlier deliveries spent, plus this one.
func (it *item) attempt() int { return it.attempts.Spent + 1 }

// requestID is the id a result carries: the producer's, else the
// Batch-Request-Id header (set on a replayed dead letter), else Nats-Msg-Id,
// else the stream sequence.
func requestID(r wire.Request, m Message, d Delivery) string {
	if r.ID != "" {
		return r.ID
	}
	if id := m.Header(wire.HeaderRequestID); id != "" {
		return id
	}
	if id := m.Header(wire.HeaderMsgID); id != "" {
		return id
	}
	return strconv.FormatUint(d.StreamSeq, 10)
}
