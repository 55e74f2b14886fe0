package anthropictest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aibatch/aibatch/provider/internal/fake"
)

// BatchesPath is where the fake serves the Message Batches API: POST
// creates a batch; BatchesPath + "/{id}" gets it, + "/{id}/cancel" (POST)
// cancels it and + "/{id}/results" streams its results as JSONL once it
// has ended.
const BatchesPath = "/v1/messages/batches"

// Processing statuses of a Message Batch. A batch is created "in_progress"
// and ends ("ended") with CompleteBatches, ExpireBatch, FailBatch or
// WithCompleteAfter; a cancel call makes it "canceling", and "ended" from
// the next GET on.
const (
	StatusInProgress = "in_progress"
	StatusCanceling  = "canceling"
	StatusEnded      = "ended"
)

// customIDPattern is what the API accepts as a custom_id.
var customIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// WithCompleteAfter makes every batch end (as CompleteBatches does) on the
// polls-th GET of it; polls <= 0 leaves batches running until
// CompleteBatches.
func WithCompleteAfter(polls int) Option {
	return func(s *Server) { s.completeAfter = max(polls, 0) }
}

// BatchRequest is one request of a Message Batch, decoded.
type BatchRequest struct {
	// CustomID is the request's custom_id.
	CustomID string
	// Request is the request's params. Its Header is the header of the call
	// that created the batch.
	Request
}

// batchEntry is one request of a batch as the fake keeps it.
type batchEntry struct {
	BatchRequest
	wire wireRequest
}

// msgBatch is one Message Batch and its progress.
type msgBatch struct {
	id                                    string
	status                                string
	entries                               []batchEntry
	results                               []byte // JSONL, once ended
	succeeded, errored, canceled, expired int
	polls                                 int
	created, ended, cancelInitiated       time.Time
}

type wireBatch struct {
	ID                string            `json:"id"`
	Type              string            `json:"type"`
	ProcessingStatus  string            `json:"processing_status"`
	RequestCounts     wireRequestCounts `json:"request_counts"`
	EndedAt           *string           `json:"ended_at"`
	CreatedAt         string            `json:"created_at"`
	ExpiresAt         string            `json:"expires_at"`
	ArchivedAt        *string           `json:"archived_at"`
	CancelInitiatedAt *string           `json:"cancel_initiated_at"`
	ResultsURL        *string           `json:"results_url"`
}

type wireRequestCounts struct {
	Processing int `json:"processing"`
	Succeeded  int `json:"succeeded"`
	Errored    int `json:"errored"`
	Canceled   int `json:"canceled"`
	Expired    int `json:"expired"`
}

// wireResultLine is one line of a batch's results.
type wireResultLine struct {
	CustomID string     `json:"custom_id"`
	Result   wireResult `json:"result"`
}

type wireResult struct {
	Type    string          `json:"type"`
	Message *wireAnswer     `json:"message,omitempty"`
	Error   *wireErrorReply `json:"error,omitempty"`
}

// wireErrorReply is the API's error JSON, as an errored result holds it.
type wireErrorReply struct {
	Type      string            `json:"type"`
	Error     map[string]string `json:"error"`
	RequestID *string           `json:"request_id"`
}

// Jobs returns how many Message Batches the server has created.
func (s *Server) Jobs() int64 { return s.batchesMade.Load() }

// Cancelled returns how many batches a cancel call moved to canceling (a
// cancel call for a batch already canceling or ended does not count).
func (s *Server) Cancelled() int64 { return s.cancelled.Load() }

// BatchRequests returns the requests of batch id in the order they were
// sent, and nil for an unknown id.
func (s *Server) BatchRequests(id string) []BatchRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.batches[id]
	if !ok {
		return nil
	}
	out := make([]BatchRequest, len(b.entries))
	for i, e := range b.entries {
		out[i] = e.BatchRequest
	}
	return out
}

// FailRequests makes the batch requests whose user message is one of
// inputs end "errored" with the API error type errType (e.g.
// "invalid_request_error", "overloaded_error", "api_error"). An empty
// errType stops failing them. Messages calls are not affected.
func (s *Server) FailRequests(errType string, inputs ...string) {
	s.failRequests.Set(errType, inputs...)
}

// CompleteBatches ends every batch in progress. Each request gets a result
// (except those OmitInput leaves out): "succeeded" with a message whose
// text is Answer(input), or "errored" (RejectInput: invalid_request_error,
// or overloaded_error when retryable; FailRequests; an unknown model:
// not_found_error; params the Messages API would refuse:
// invalid_request_error).
func (s *Server) CompleteBatches() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.batches {
		if b.status == StatusInProgress {
			s.endLocked(b, len(b.entries), "")
		}
	}
}

// ExpireBatch ends batch id as the 24 hours running out would: its first
// answered requests (in the order they were sent) get results as
// CompleteBatches gives them, every other one an "expired" result. It fails
// for an unknown id and for a batch that is not in progress.
func (s *Server) ExpireBatch(id string, answered int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.batches[id]
	switch {
	case !ok:
		return fmt.Errorf("anthropictest: no batch %q", id)
	case b.status != StatusInProgress:
		return fmt.Errorf("anthropictest: batch %q is %s", id, b.status)
	}
	s.endLocked(b, answered, "expired")
	return nil
}

// FailBatch ends batch id with every request "errored" with the API error
// type errType (e.g. "api_error", "overloaded_error"), as a batch the API
// could not run: the Message Batches API has no failed state for a whole
// batch, its requests fail one by one. It fails for an unknown id and for a
// batch that is not in progress.
func (s *Server) FailBatch(id, errType string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.batches[id]
	switch {
	case !ok:
		return fmt.Errorf("anthropictest: no batch %q", id)
	case b.status != StatusInProgress:
		return fmt.Errorf("anthropictest: batch %q is %s", id, b.status)
	}
	lines := make([]wireResultLine, len(b.entries))
	for i, e := range b.entries {
		rid := "req_fake" + strconv.FormatInt(s.seq.Add(1), 10)
		lines[i] = wireResultLine{CustomID: e.CustomID, Result: wireResult{Type: "errored", Error: &wireErrorReply{
			Type: "error", Error: map[string]string{"type": errType, "message": "Injected batch failure."}, RequestID: &rid,
		}}}
	}
	b.errored = len(lines)
	b.results, b.status, b.ended = fake.JSONL(lines, s.ctl.Shuffling()), StatusEnded, time.Now().UTC()
	return nil
}

func (s *Server) serveBatchCreate(w http.ResponseWriter, r *http.Request, body []byte) {
	var req struct {
		Requests []struct {
			CustomID string          `json:"custom_id"`
			Params   json.RawMessage `json:"params"`
		} `json:"requests"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "There was an issue with the JSON body of your request.")
		return
	}
	if len(req.Requests) == 0 {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "requests: List should have at least 1 item after validation, not 0")
		return
	}
	entries := make([]batchEntry, len(req.Requests))
	seen := map[string]bool{}
	for i, rq := range req.Requests {
		if !customIDPattern.MatchString(rq.CustomID) {
			writeError(w, http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("requests.%d.custom_id: String should match pattern '%s'", i, customIDPattern))
			return
		}
		if seen[rq.CustomID] {
			writeError(w, http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("requests.%d.custom_id: custom_id %q is not unique within the batch", i, rq.CustomID))
			return
		}
		seen[rq.CustomID] = true
		var wr wireRequest
		if err := json.Unmarshal(rq.Params, &wr); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("requests.%d.params: Input should be a valid Messages request", i))
			return
		}
		rec, err := decodeRequest(wr, r.Header, rq.Params)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("requests.%d.params.%v", i, err))
			return
		}
		entries[i] = batchEntry{BatchRequest: BatchRequest{CustomID: rq.CustomID, Request: rec}, wire: wr}
	}
	b := &msgBatch{
		id:      "msgbatch_fake" + strconv.FormatInt(s.seq.Add(1), 10),
		status:  StatusInProgress,
		entries: entries,
		created: time.Now().UTC(),
	}
	s.mu.Lock()
	if s.queueLimit > 0 && s.queuedLocked()+len(entries) > s.queueLimit {
		s.queueRefused++
		s.mu.Unlock()
		w.Header().Set("retry-after", "1")
		writeError(w, http.StatusTooManyRequests, "rate_limit_error",
			fmt.Sprintf("Number of batch requests in the processing queue would exceed your organization's limit of %d.", s.queueLimit))
		return
	}
	s.batches[b.id] = b
	s.mu.Unlock()
	s.batchesMade.Add(1)
	fake.WriteJSON(w, http.StatusOK, b.wire(r))
}

// SetQueueLimit makes the Message Batches API keep the requests of the
// batches in progress (or canceling) to at most requests, as Anthropic
// limits the batch requests in its processing queue: the creation of a
// batch that would pass it is answered 429 rate_limit_error with
// retry-after: 1, and no batch is made. 0 removes the limit.
func (s *Server) SetQueueLimit(requests int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queueLimit = max(requests, 0)
}

// QueueRefused returns how many batch creations SetQueueLimit refused.
func (s *Server) QueueRefused() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queueRefused
}

// queuedLocked counts the requests of the batches that have not ended. It
// is called with s.mu held.
func (s *Server) queuedLocked() int {
	var n int
	for _, b := range s.batches {
		if b.status != StatusEnded {
			n += len(b.entries)
		}
	}
	return n
}

// batch returns batch id, or answers 404 and returns nil. It is called
// with s.mu held.
func (s *Server) batchLocked(w http.ResponseWriter, id string) *msgBatch {
	b, ok := s.batches[id]
	if !ok {
		writeError(w, http.StatusNotFound, "not_found_error", "Message batch not found: "+id)
		return nil
	}
	return b
}

func (s *Server) serveBatchGet(w http.ResponseWriter, r *http.Request, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.batchLocked(w, r.PathValue("id"))
	if b == nil {
		return
	}
	b.polls++
	switch {
	case b.status == StatusCanceling:
		s.endLocked(b, 0, "canceled")
	case b.status == StatusInProgress && s.completeAfter > 0 && b.polls >= s.completeAfter:
		s.endLocked(b, len(b.entries), "")
	}
	fake.WriteJSON(w, http.StatusOK, b.wire(r))
}

func (s *Server) serveBatchCancel(w http.ResponseWriter, r *http.Request, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.batchLocked(w, r.PathValue("id"))
	if b == nil {
		return
	}
	switch b.status {
	case StatusInProgress:
		b.status, b.cancelInitiated = StatusCanceling, time.Now().UTC()
		s.cancelled.Add(1)
	case StatusCanceling:
	default:
		writeError(w, http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("Message batch %s has already ended and cannot be canceled.", b.id))
		return
	}
	fake.WriteJSON(w, http.StatusOK, b.wire(r))
}

func (s *Server) serveBatchResults(w http.ResponseWriter, r *http.Request, _ []byte) {
	s.mu.Lock()
	b := s.batchLocked(w, r.PathValue("id"))
	if b == nil {
		s.mu.Unlock()
		return
	}
	if b.status != StatusEnded {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("Message batch %s is still %s; results are available once it has ended.", b.id, b.status))
		return
	}
	data := b.results
	s.mu.Unlock()
	if s.ctl.TakeMalformed() {
		// Cut in the middle of a line, whatever the cut point.
		data = append(slices.Clone(data[:len(data)/2]), `{"custom_id": `...)
	}
	w.Header().Set("Content-Type", "application/binary")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

// endLocked ends b: its first answered requests get results as the
// controls say, the others a result of type rest ("canceled" or "expired").
func (s *Server) endLocked(b *msgBatch, answered int, rest string) {
	var lines []wireResultLine
	for i, e := range b.entries {
		if i >= answered {
			lines = append(lines, wireResultLine{CustomID: e.CustomID, Result: wireResult{Type: rest}})
			if rest == "expired" {
				b.expired++
			} else {
				b.canceled++
			}
			continue
		}
		res, ok := s.resultLocked(e)
		if !ok {
			continue
		}
		if res.Type == "succeeded" {
			b.succeeded++
		} else {
			b.errored++
		}
		lines = append(lines, wireResultLine{CustomID: e.CustomID, Result: res})
	}
	b.results, b.status, b.ended = fake.JSONL(lines, s.ctl.Shuffling()), StatusEnded, time.Now().UTC()
}

// resultLocked is the result of one request as the controls say; false
// means the request gets no result line.
func (s *Server) resultLocked(e batchEntry) (wireResult, bool) {
	errored := func(typ, msg string) (wireResult, bool) {
		id := "req_fake" + strconv.FormatInt(s.seq.Add(1), 10)
		return wireResult{Type: "errored", Error: &wireErrorReply{Type: "error", Error: map[string]string{"type": typ, "message": msg}, RequestID: &id}}, true
	}
	wr, rec := e.wire, e.Request
	user := lastUser(rec.Messages)
	if user != nil && s.ctl.Omitted(user.Content) {
		return wireResult{}, false
	}
	switch {
	case wr.Model == "":
		return errored("invalid_request_error", "model: Field required")
	case wr.MaxTokens == nil:
		return errored("invalid_request_error", "max_tokens: Field required")
	case *wr.MaxTokens < 1:
		return errored("invalid_request_error", "max_tokens: Input should be greater than or equal to 1")
	case user == nil:
		return errored("invalid_request_error", "messages: the last message must have role \"user\"")
	case s.isUnknownModel(wr.Model):
		return errored("not_found_error", "model: "+wr.Model)
	}
	use, err := toolUse(wr)
	if err != nil {
		return errored("invalid_request_error", err.Error())
	}
	if use.batch {
		return s.combinedResultLocked(wr, rec, user.Content, use.answer, errored)
	}
	if rejected, retryable := s.ctl.Rejected(user.Content); rejected {
		if retryable {
			return errored("overloaded_error", "Overloaded")
		}
		return errored("invalid_request_error", "Output blocked by content filtering policy")
	}
	if typ := s.failRequests.Get(user.Content); typ != "" {
		return errored(typ, "Injected failure.")
	}
	out := Answer(user.Content)
	content, stop := []any{textBlock{Type: "text", Text: out}}, "end_turn"
	if use.tool != nil {
		input, err := fake.Instance(use.tool.InputSchema, nil, out)
		if err != nil {
			return errored("invalid_request_error", "tools: input_schema: "+err.Error())
		}
		out, content, stop = input, []any{s.toolUse(use.tool.Name, json.RawMessage(input))}, "tool_use"
	}
	prompt := len(rec.System)
	for _, m := range rec.Messages {
		prompt += len(m.Content)
	}
	return wireResult{Type: "succeeded", Message: &wireAnswer{
		ID:         "msg_fake" + strconv.FormatInt(s.seq.Add(1), 10),
		Type:       "message",
		Role:       "assistant",
		Model:      wr.Model,
		Content:    content,
		StopReason: stop,
		Usage:      s.batchUsage(wr, prompt, fake.Tokens(len(out))),
	}}, true
}

// wire is b as the API shows it; r is the call asking, for results_url.
func (b *msgBatch) wire(r *http.Request) wireBatch {
	ts := func(t time.Time) *string {
		if t.IsZero() {
			return nil
		}
		v := t.Format(time.RFC3339Nano)
		return &v
	}
	w := wireBatch{
		ID:                b.id,
		Type:              "message_batch",
		ProcessingStatus:  b.status,
		EndedAt:           ts(b.ended),
		CreatedAt:         b.created.Format(time.RFC3339Nano),
		ExpiresAt:         b.created.Add(24 * time.Hour).Format(time.RFC3339Nano),
		CancelInitiatedAt: ts(b.cancelInitiated),
		RequestCounts: wireRequestCounts{
			Succeeded: b.succeeded, Errored: b.errored, Canceled: b.canceled, Expired: b.expired,
		},
	}
	if b.status == StatusEnded {
		url := "http://" + r.Host + BatchesPath + "/" + b.id + "/results"
		w.ResultsURL = &url
	} else {
		w.RequestCounts.Processing = len(b.entries)
	}
	return w
}

// batchUsage is a batch request's usage: prompt caching applies to Message
// Batches too.
func (s *Server) batchUsage(wr wireRequest, prompt int, out int64) wireUsage {
	u := s.prompts.usage(wr, prompt, out)
	u.ServiceTier = "batch"
	return u
}

// combinedResultLocked answers a combined call in a Message Batch
// (ASYNC_COMBINE) as a synchronous combined call is answered: a tool_use
// of every item, but for those OmitInput leaves out; cut off at
// SetOutputCap or the request's max_tokens (stop_reason "max_tokens");
// refused whole when RefuseInput names an item's input.
func (s *Server) combinedResultLocked(wr wireRequest, rec Request, content string, format fake.BatchAnswer, errored func(typ, msg string) (wireResult, bool)) (wireResult, bool) {
	var wi struct {
		Items []Item `json:"items"`
	}
	if err := json.Unmarshal([]byte(content), &wi); err != nil || len(wi.Items) == 0 {
		return errored("invalid_request_error", `with the batch_results tool the user message must be {"items":[{"id":"...","input":"..."}]} (or "messages" instead of "input")`)
	}
	inputs := make([]string, len(wi.Items))
	for i, it := range wi.Items {
		if (it.Input == "") == (len(it.Messages) == 0) {
			return errored("invalid_request_error", fmt.Sprintf(`items[%d] must have "input" or "messages"`, i))
		}
		inputs[i] = it.Prompt()
	}
	answer := &wireAnswer{ID: "msg_fake" + strconv.FormatInt(s.seq.Add(1), 10), Type: "message", Role: "assistant", Model: wr.Model}
	var out string
	if s.ctl.Refused(inputs...) {
		answer.Content, answer.StopReason, answer.StopDetails = []any{}, "refusal", refusalDetails()
	} else {
		out = resultsJSON(wi.Items, format, strings.Contains(rec.System, "JSON object: a string"), behaviour{Behaviour: s.ctl.Behaviour()}, s.ctl.AnswerAt)
		written, cut := fake.CutAnswer(out, len(wi.Items), s.ctl.OutputCap(), s.ctl.CutOff(len(wi.Items)), rec.MaxTokens)
		input, stop := json.RawMessage(out), "tool_use"
		if cut {
			input, out, stop = partialInput(out, len(written)), written, "max_tokens"
		}
		answer.Content, answer.StopReason = []any{s.toolUse(ToolName, input)}, stop
	}
	prompt := len(rec.System)
	for _, m := range rec.Messages {
		prompt += len(m.Content)
	}
	answer.Usage = s.batchUsage(wr, prompt, fake.Tokens(len(out)))
	return wireResult{Type: "succeeded", Message: answer}, true
}
