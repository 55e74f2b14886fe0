package batch

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/aibatch/aibatch/wire"
)

// outgoing builds the messages the settler publishes: a request's result
// and its dead letter.
type outgoing struct {
	resultPrefix   string
	deadPrefix     string
	maxResultBytes int
}

// result builds the result message of an item with an outcome to store: ok
// when answered, error otherwise. An answer too large for the broker rejects
// the item with an error that says so, which fits.
func (o outgoing) result(it *item) Outgoing {
	msg, err := o.resultMsg(it)
	if err != nil {
		// The provider's answer cannot be written as JSON (a NaN in an
		// embedding, say): the request fails rather than its result.
		it.reject(fmt.Errorf("encode the provider's answer: %w", err))
		msg, _ = o.resultMsg(it)
		return msg
	}
	if len(msg.Data) <= o.maxResultBytes {
		return msg
	}
	it.reject(fmt.Errorf("result is %d bytes, over the %d bytes the broker accepts (output %d bytes, metadata %d bytes)",
		len(msg.Data), o.maxResultBytes, len(it.output), len(it.req.Metadata)))
	msg, _ = o.resultMsg(it)
	if len(msg.Data) > o.maxResultBytes {
		it.req.Metadata = nil // the error result must get through
		msg, _ = o.resultMsg(it)
	}
	return msg
}

// resultMsg encodes it's result. It fails only when the answer cannot be
// encoded; an error result always can (Metadata that is not JSON is left
// out).
func (o outgoing) resultMsg(it *item) (Outgoing, error) {
	r := wire.Result{
		ID:     it.id,
		Status: wire.StatusOK,
		Output: it.output,
		// The rest of the answer (wire format 1.1).
		FinishReason: it.finishReason,
		Embedding:    it.embedding,
		Message:      it.message,
		Model:        it.req.Model,
		Metadata:     it.req.Metadata,
		Usage:        wire.Usage{InputTokens: it.usage.InputTokens, CachedInputTokens: it.usage.CachedInputTokens, OutputTokens: it.usage.OutputTokens},
		Batch:        it.batch,
		QueuedMS:     it.queued.Milliseconds(),
		Attempts:     int(it.d.NumDelivered),
		Cached:       it.cached,
	}
	if it.outcome != outcomeAnswered {
		r.Status, r.Output, r.Error, r.Cached = wire.StatusError, "", errText(it.err), false
		r.FinishReason, r.Embedding, r.Message = "", nil, nil
		if !json.Valid(r.Metadata) {
			r.Metadata = nil
		}
	}
	body, err := wire.AppendResult(*resultBodies.get(wire.EncodedResultSize(&r)), &r)
	if err != nil && r.Metadata != nil {
		// Metadata is checked on intake, so this is a safety net: drop it
		// rather than the result.
		r.Metadata = nil
		body, err = wire.AppendResult(body[:0], &r)
	}
	if err != nil {
		return Outgoing{}, err
	}
	subject := it.replyTo
	if subject == "" {
		subject = o.resultPrefix + "." + it.topic
	}
	return Outgoing{
		Subject: subject,
		MsgID:   wire.ResultMsgID(it.d.Stream, it.d.StreamSeq),
		Header:  []HeaderField{{wire.HeaderStreamSeq, strconv.FormatUint(it.d.StreamSeq, 10)}},
		Data:    body,
	}, nil
}

// deadLetter builds the dead-letter copy of a failed request: the original
// body, with the reason and attempts in headers.
func (o outgoing) deadLetter(it *item) Outgoing {
	h := []HeaderField{
		{wire.HeaderError, errText(it.err)},
		{wire.HeaderAttempts, strconv.FormatUint(it.d.NumDelivered, 10)},
		{wire.HeaderSubject, it.msg.Subject()},
		{wire.HeaderStreamSeq, strconv.FormatUint(it.d.StreamSeq, 10)},
		{wire.HeaderRequestID, it.id},
	}
	if reply := it.msg.Header(wire.HeaderReplyTo); reply != "" {
		h = append(h, HeaderField{wire.HeaderReplyTo, reply})
	}
	return Outgoing{
		Subject: o.deadPrefix + "." + it.topic,
		MsgID:   wire.DeadMsgID(it.d.Stream, it.d.StreamSeq),
		Header:  h,
		Data:    it.msg.Data(),
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// resultBodies holds result bodies the broker has stored, for the next
// results: allocating one per result was about a tenth of the worker's
// allocations end to end.
var resultBodies = bufferPool{max: 64 << 10}

// recycleResultBodies hands back the bodies of the results the broker
// acked without error: the Publisher contract says it keeps none of them.
func recycleResultBodies(results []Outgoing, acks []PublishAck) {
	for i, ack := range acks {
		if body := results[i].Data; ack.Err == nil {
			resultBodies.put(&body)
			results[i].Data = nil
		}
	}
}
