package batch

import (
	"strconv"

	"github.com/aibatch/aibatch/wire"
)

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
