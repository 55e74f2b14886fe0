package batch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Headers the engine reads on requests and writes on results and dead letters.
const (
	// HeaderReplyTo names the subject a request's result goes to.
	HeaderReplyTo = "Batch-Reply-To"
	// HeaderMsgID is JetStream's deduplication header.
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

// Request is the JSON body producers publish.
type Request struct {
	// ID identifies the request to its producer. It defaults to the
	// Nats-Msg-Id header, else to the stream sequence.
	ID string `json:"id,omitempty"`
	// Input is the prompt; required.
	Input string `json:"input"`
	// Instructions is the system prompt; requests are combined only with
	// others that have the same Instructions and Model.
	Instructions string `json:"instructions,omitempty"`
	// Model defaults to the worker's MODEL.
	Model string `json:"model,omitempty"`
	// MaxOutputTokens caps the answer; 0 means the provider's default.
	MaxOutputTokens int `json:"max_output_tokens,omitempty"`
	// Metadata is returned unchanged in the result.
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// Status values of a Result.
const (
	StatusOK    = "ok"
	StatusError = "error"
)

// Result is the JSON body the engine publishes for every request.
type Result struct {
	ID       string          `json:"id"`
	Status   string          `json:"status"`
	Output   string          `json:"output,omitempty"`
	Error    string          `json:"error,omitempty"`
	Model    string          `json:"model,omitempty"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	Usage    UsageJSON       `json:"usage"`
	Batch    BatchInfo       `json:"batch"`
	// QueuedMS is the time from the request's arrival in the stream to the
	// start of the call that answered it.
	QueuedMS int64 `json:"queued_ms"`
	// Attempts counts deliveries of the request, 1 on the first.
	Attempts int `json:"attempts"`
}

// UsageJSON is the token usage reported with a result.
type UsageJSON struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
}

// BatchInfo tells which call answered a request.
type BatchInfo struct {
	ID      string  `json:"id,omitempty"`
	Size    int     `json:"size"`
	Trigger Trigger `json:"trigger,omitempty"`
}

// ErrInvalidRequest is wrapped by every error decodeRequest returns: the
// request can never succeed and goes to the dead-letter stream.
var ErrInvalidRequest = errors.New("invalid request")

// decodeRequest parses and checks one request body. maxBytes <= 0 means no
// limit.
func decodeRequest(body []byte, maxBytes int) (Request, error) {
	var r Request
	if maxBytes > 0 && len(body) > maxBytes {
		return r, fmt.Errorf("%w: body is %d bytes, over MAX_REQUEST_BYTES (%d)", ErrInvalidRequest, len(body), maxBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return r, fmt.Errorf("%w: empty body, want a JSON object with \"input\"", ErrInvalidRequest)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("%w: body is not a JSON request object: %v", ErrInvalidRequest, err)
	}
	if strings.TrimSpace(r.Input) == "" {
		return r, fmt.Errorf("%w: \"input\" is missing or empty", ErrInvalidRequest)
	}
	if r.MaxOutputTokens < 0 {
		return r, fmt.Errorf("%w: \"max_output_tokens\" is %d, want 0 or more", ErrInvalidRequest, r.MaxOutputTokens)
	}
	return r, nil
}

// requestID is the id a result carries: the producer's, else the
// Batch-Request-Id header (set on a replayed dead letter), else Nats-Msg-Id,
// else the stream sequence.
func requestID(r Request, m Message, d Delivery) string {
	if r.ID != "" {
		return r.ID
	}
	if id := m.Header(HeaderRequestID); id != "" {
		return id
	}
	if id := m.Header(HeaderMsgID); id != "" {
		return id
	}
	return strconv.FormatUint(d.StreamSeq, 10)
}

// resultMsgID is the Nats-Msg-Id of a request's result: derived from the
// request's place in its stream, so two producers that reuse an id still get
// two results, and a redelivered request never gets a second one.
func resultMsgID(d Delivery) string {
	return "result:" + d.Stream + ":" + strconv.FormatUint(d.StreamSeq, 10)
}

// deadMsgID is the Nats-Msg-Id of a request's dead letter.
func deadMsgID(d Delivery) string {
	return "dead:" + d.Stream + ":" + strconv.FormatUint(d.StreamSeq, 10)
}
