package wire

// Headers the worker reads on requests and writes on results and dead
// letters.
const (
	// HeaderReplyTo names the subject a request's result goes to.
	HeaderReplyTo = "Batch-Reply-To"
	// HeaderMsgID is JetStream's de-duplication header. On a request it is
	// the producer's id for it; on a result or dead letter the worker sets it
	// to ResultMsgID or DeadMsgID.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderError carries the reason on a dead letter.
	HeaderError = "Batch-Error"
	// HeaderAttempts carries the number of deliveries on a dead letter.
	HeaderAttempts = "Batch-Attempts"
	// HeaderSubject carries the original request subject on a dead letter.
	HeaderSubject = "Batch-Subject"
	// HeaderStreamSeq carries the request's stream sequence on results and
	// dead letters.
	HeaderStreamSeq = "Batch-Stream-Seq"
	// HeaderRequestID carries the request's id on dead letters, and on a
	// replayed request names the id its result keeps when the body has none.
	HeaderRequestID = "Batch-Request-Id"
)
