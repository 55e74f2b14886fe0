package batch

import (
	"fmt"
	"strconv"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
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

	outcome    outcome
	err        error
	retryAfter time.Duration
	output     string
	usage      provider.Usage
	batch      wire.BatchInfo
	queued     time.Duration
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
	// err says why, and retryAfter is the provider's requested wait.
	outcomeFailed
)

// answered records the provider's answer.
func (it *item) answered(output string, u provider.Usage) {
	it.outcome, it.output, it.usage, it.err = outcomeAnswered, output, u, nil
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
// succeed (invalid bodies, forbidden reply subjects) are rejected here, before
// any call.
type intake struct {
	maxRequestBytes int
	defaultModel    string
	maxDeliver      int
	// laneFilters are the request and urgent subject filters; a request's
	// topic is what their > covers. forbiddenReplies adds the dead-letter
	// subjects: no result may be sent there.
	laneFilters      []string
	forbiddenReplies []string
}

func newIntake(cfg Config) intake {
	lanes := append(append([]string{}, cfg.RequestSubjects...), cfg.UrgentSubjects...)
	return intake{
		maxRequestBytes:  cfg.MaxRequestBytes,
		defaultModel:     cfg.DefaultModel,
		maxDeliver:       cfg.MaxDeliver,
		laneFilters:      lanes,
		forbiddenReplies: append(append([]string{}, lanes...), cfg.DeadPrefix+".>"),
	}
}

// read turns one message into an item.
func (in intake) read(m Message) *item {
	it := &item{msg: m, d: m.Delivery()}
	it.topic = topicOf(m.Subject(), in.laneFilters)
	req, err := wire.DecodeRequest(m.Data(), in.maxRequestBytes)
	it.req = req
	it.id = requestID(req, m, it.d)
	if it.req.Model == "" {
		it.req.Model = in.defaultModel
	}
	if reply := m.Header(wire.HeaderReplyTo); reply != "" {
		if rerr := checkReplySubject(reply, in.forbiddenReplies); rerr != nil && err == nil {
			err = rerr
		} else if rerr == nil {
			it.replyTo = reply
		}
	}
	switch {
	case err != nil:
		it.reject(err)
	case int(it.d.NumDelivered) > in.maxDeliver:
		// Attempts were used up by workers that stopped mid-call.
		it.reject(fmt.Errorf("gave up after %d deliveries (MAX_DELIVER is %d)", it.d.NumDelivered-1, in.maxDeliver))
	}
	return it
}

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
