// Package anthropictest runs a fake Anthropic Messages API for tests, in the
// manner of net/http/httptest.
//
// The fake speaks the real wire format: POST /v1/messages with the
// x-api-key and anthropic-version headers, message objects with typed content
// blocks and usage {input_tokens, output_tokens}, and the API's error JSON
// {"type":"error","error":{"type":...,"message":...}} with its status codes
// (400 invalid_request_error, 401 authentication_error, 403
// permission_error, 404 not_found_error, 429 rate_limit_error with
// retry-after, 500 api_error, 529 overloaded_error). It answers
// deterministically: the output for an input is always Answer(input).
//
// Two request shapes are accepted:
//
//   - batch mode: tool_choice is {"type":"tool","name":"batch_results"}, tools
//     holds that tool with the batch input_schema, and the last user message
//     is {"items":[{"id","input"}]} (or "messages" instead of "input", and
//     "max_output_tokens"). The answer's content is one tool_use block for
//     the tool whose input is {"results":[{"id","output"}]}, and stop_reason
//     is "tool_use". An output schema of its own (structured output) is
//     answered with an instance of it (fake.Instance).
//   - plain mode: no batch tool; the last user message is answered as one
//     request with a text block, stop_reason "end_turn" (or
//     "stop_sequence", cut at the first of stop_sequences); when a tool is
//     forced (tool_choice "tool"), or tools are declared with tool_choice
//     "auto" or "any", with a tool_use block of that (or the first) tool
//     whose input is an instance of its input_schema, stop_reason
//     "tool_use".
//
// It also serves the Message Batches API (see batches.go): POST
// /v1/messages/batches, GET /v1/messages/batches/{id}, POST
// /v1/messages/batches/{id}/cancel and GET /v1/messages/batches/{id}/results
// (JSONL). A batch's requests are plain requests, answered like plain calls
// once the test ends the batch with CompleteBatches or ExpireBatch (or
// WithCompleteAfter does).
//
// Behaviour controls are methods on *Server and are safe to call while the
// server runs. Each says what it does to batch answers, to plain answers and
// to Message Batches:
//
//   - answers: DropItems, OmitInput, RejectInput, Shuffle, RepeatIDs,
//     SetResultsFunc, SetMalformedNext, RefuseNext, TruncateNext, NoToolNext;
//   - faults of real providers: SetOutputCap (a batch answer cut off,
//     stop_reason "max_tokens"; a call's max_tokens is honoured too),
//     SetWrongAfter (wrong answers past a position of a combined call),
//     RefuseInput (stop_reason "refusal"), RequireKey (401
//     authentication_error; the key may rotate), FailFor (an outage of 5xx
//     or 529 for a while), HangFor (no answer for a while), FailNext and
//     SetDelay;
//   - rate limits: SetRateLimit makes Messages calls keep to requests and
//     tokens per minute, with Anthropic's anthropic-ratelimit-* headers on
//     every answer and 429 rate_limit_error with retry-after when a call
//     finds a bucket empty (RateLimited counts them); SetQueueLimit bounds
//     the requests of the Message Batches in progress, refusing a batch
//     that would pass it with 429;
//   - unknown models (WithUnknownModels, and any model named "unknown...")
//     get 404 not_found_error "model: <name>";
//   - records: Calls, MaxConcurrent, CallSizes, Requests, and for Message
//     Batches Jobs, Cancelled, BatchRequests;
//   - Message Batches: CompleteBatches, ExpireBatch, FailBatch,
//     FailRequests.
package anthropictest

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aibatch/aibatch/provider/internal/fake"
)

// MessagesPath is the path the fake serves the Messages API on.
const MessagesPath = "/v1/messages"

// Version is the anthropic-version header value the fake requires.
const Version = "2023-06-01"

// Answer is the fake model's deterministic answer to input.
func Answer(input string) string { return "processed: " + input }

// Server is a fake Anthropic API. Create it with NewServer (listening) or
// NewUnstartedServer (handler only); all methods are safe for concurrent use.
type Server struct {
	// URL is the base URL to give an Anthropic client (as
	// ANTHROPIC_BASE_URL), e.g. "http://127.0.0.1:12345"; the client appends
	// /v1/messages. It is empty for an unstarted server.
	URL string

	ts      *httptest.Server
	handler http.Handler

	unknownModels map[string]bool // models answered with 404 not_found_error

	// Behaviour controls and records, each safe for concurrent use.
	ctl          fake.Controls[Result]
	refuse       fake.Countdown
	truncate     fake.Countdown
	noTool       fake.Countdown
	requests     fake.Log[Request]
	failRequests fake.PerInput[string] // batch request input -> error type

	seq         atomic.Int64 // message, tool_use, request and batch ids
	batchesMade atomic.Int64 // Message Batches created
	cancelled   atomic.Int64 // batches moved to canceling

	completeAfter int // a batch ends on this GET of it; 0: only CompleteBatches

	prompts promptCache // prefixes marked with cache_control (promptcache.go)

	mu           sync.Mutex // guards what follows
	batches      map[string]*msgBatch
	queueLimit   int   // requests of the batches in progress at most; 0: none
	queueRefused int64 // batch creations refused by queueLimit
}

// Option configures a Server at construction.
type Option func(*Server)

// WithAPIKey makes the server accept only "x-api-key: key"; any other key
// gets 401 authentication_error. By default any non-empty key is accepted.
// RequireKey changes the key while the server runs.
func WithAPIKey(key string) Option {
	return func(s *Server) { s.ctl.RequireKey(key) }
}

// WithUnknownModels makes the server answer 404 not_found_error for the
// given models, in addition to every model whose name starts with "unknown".
func WithUnknownModels(models ...string) Option {
	return func(s *Server) {
		for _, m := range models {
			s.unknownModels[m] = true
		}
	}
}

// NewServer starts a fake Anthropic API on a loopback port. Call Close when
// done.
func NewServer(opts ...Option) *Server {
	s := NewUnstartedServer(opts...)
	s.ts = httptest.NewServer(s.handler)
	s.URL = s.ts.URL
	return s
}

// NewUnstartedServer returns a Server that does not listen: serve its
// Handler yourself. Its URL is empty and Close does nothing.
func NewUnstartedServer(opts ...Option) *Server {
	s := &Server{
		unknownModels: map[string]bool{},
		batches:       map[string]*msgBatch{},
	}
	for _, o := range opts {
		o(s)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+MessagesPath, s.ctl.Counted(s.apiCall(s.serveMessages)))
	mux.HandleFunc("POST "+BatchesPath, s.apiCall(s.serveBatchCreate))
	mux.HandleFunc("GET "+BatchesPath+"/{id}", s.apiCall(s.serveBatchGet))
	mux.HandleFunc("POST "+BatchesPath+"/{id}/cancel", s.apiCall(s.serveBatchCancel))
	mux.HandleFunc("GET "+BatchesPath+"/{id}/results", s.apiCall(s.serveBatchResults))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found_error", "Not found: "+r.Method+" "+r.URL.Path)
	})
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("request-id", "req_fake"+strconv.FormatInt(s.seq.Add(1), 10))
		mux.ServeHTTP(w, r)
	})
	return s
}

// Close shuts the listening server down, blocking until all outstanding
// requests on it have completed. It is a no-op for an unstarted server.
func (s *Server) Close() {
	if s.ts != nil {
		s.ts.Close()
	}
}

// Handler returns the HTTP handler that implements the fake API. It serves
// /v1/messages, so mount it at the root of a server.
func (s *Server) Handler() http.Handler { return s.handler }

// Calls returns how many Messages calls the server has received, including
// the ones it answered with an error.
func (s *Server) Calls() int64 { return s.ctl.Calls() }

// MaxConcurrent returns the largest number of Messages calls the server was
// handling at the same moment.
func (s *Server) MaxConcurrent() int64 { return s.ctl.MaxConcurrent() }

// FailNext makes the next n calls answer status with the API's error JSON:
// 429 rate_limit_error carries "retry-after: 1", 529 is overloaded_error.
// Message Batches calls count too (they are not counted by Calls). It
// replaces any failures still pending; n <= 0 cancels them.
func (s *Server) FailNext(n int, status int) { s.ctl.FailNext(n, status) }

// SetDelay makes each call wait d before it is answered, or until the
// request's context ends (then nothing is answered); Message Batches calls
// too. 0 removes the delay.
func (s *Server) SetDelay(d time.Duration) { s.ctl.SetDelay(d) }

// DropItems makes each batch answer leave out the last n items of its
// request (in request order). 0 restores complete answers. Plain answers are
// not affected.
func (s *Server) DropItems(n int) { s.ctl.DropItems(n) }

// Shuffle makes batch answers list their results in random order, makes
// each plain answer wait a random 0-10ms first, so that concurrent plain
// calls finish out of order, and makes a Message Batch's results come in
// random order.
func (s *Server) Shuffle(on bool) { s.ctl.Shuffle(on) }

// SetMalformedNext makes the next n successful answers unreadable: the HTTP
// body is cut off, so it is not valid JSON. This applies to both modes, and
// to a download of a Message Batch's results (it ends in the middle of a
// line).
func (s *Server) SetMalformedNext(n int) { s.ctl.SetMalformedNext(n) }

// RefuseNext makes the next n successful answers a refusal: stop_reason
// "refusal" and no content blocks.
func (s *Server) RefuseNext(n int) { s.refuse.Set(n) }

// TruncateNext makes the next n successful answers stop at max_tokens:
// stop_reason "max_tokens"; a plain answer's text is cut in half, a batch
// answer's tool_use input is the empty object {}.
func (s *Server) TruncateNext(n int) { s.truncate.Set(n) }

// NoToolNext makes the next n successful batch answers ignore the forced
// tool: the content is a text block with the results JSON and stop_reason is
// "end_turn". Plain answers are not affected (but use up the count).
func (s *Server) NoToolNext(n int) { s.noTool.Set(n) }

// SetResultsFunc installs f to rewrite each batch answer's results after
// DropItems, OmitInput and Shuffle were applied. nil removes it.
func (s *Server) SetResultsFunc(f func([]Result) []Result) { s.ctl.SetResultsFunc(f) }

// RepeatIDs makes each batch answer (after SetResultsFunc) start with a
// result for the id "not-asked" and end with a second result for its first
// id, whose output is "repeated: " + the first output. Plain answers are not
// affected: they carry no ids.
func (s *Server) RepeatIDs(on bool) { s.ctl.RepeatIDs(on) }

// OmitInput makes answers leave out every request whose input is input: a
// batch answer has no result for its item; a plain answer has no content
// blocks at all (stop_reason "end_turn"); a Message Batch's results have no
// line for it.
func (s *Server) OmitInput(input string) { s.ctl.OmitInput(input) }

// RejectInput makes the API refuse every request whose input is input, on
// its own. A plain call for it is answered with HTTP 400
// invalid_request_error, or with HTTP 529 overloaded_error when retryable;
// its request in a Message Batch ends "errored" with the same error type.
// A tool_use answer has no way to refuse one item, so a batch answer leaves
// the item out (as OmitInput does) and answers the rest.
func (s *Server) RejectInput(input string, retryable bool) { s.ctl.RejectInput(input, retryable) }

// Requests returns the Messages requests received so far whose body could
// be decoded, oldest first.
func (s *Server) Requests() []Request { return s.requests.All() }

// SetOutputCap makes the fake model stop at its output limit in any batch
// call carrying more than items requests, as the real API answers a model
// that reached max_tokens while writing a tool call: stop_reason
// "max_tokens" and a tool_use block whose input is what the model had
// written, parsed as far as it goes: the results that fitted in about items
// requests' worth, and the next one with its output cut short. items <= 0
// removes the cap.
//
// Whatever the cap, a call's own max_tokens is honoured: an answer longer
// than it (counting a token per 4 bytes) is cut off the same way, a plain
// answer's text too (its first max_tokens*4 bytes), with stop_reason
// "max_tokens". Message Batches are not affected.
func (s *Server) SetOutputCap(items int) { s.ctl.SetOutputCap(items) }

// WrongAnswer is the output SetWrongAfter gives the items past its
// position.
const WrongAnswer = fake.WrongAnswer

// SetWrongAfter makes each batch answer wrong for every item after position n
// of its call (positions count from 1, in request order): their output is
// WrongAnswer instead of Answer(input), as a model that lost track of the
// items of a long prompt answers. A call of one request stays right, so a
// test can tell what combining did to the answers. Plain answers and Message Batches are not affected. n <= 0 turns it off.
func (s *Server) SetWrongAfter(n int) { s.ctl.SetWrongAfter(n) }

// RefuseInput makes the fake model refuse every Messages call that contains
// input, as the API's classifiers stop one: stop_reason "refusal",
// stop_details {"type":"refusal","category":...,"explanation":...} and no
// content blocks. A batch call with input among its items is refused whole;
// a plain call for input is refused too. Message Batches are not affected.
func (s *Server) RefuseInput(input string) { s.ctl.RefuseInput(input) }

// AcceptInput undoes RefuseInput for input: the model answers it again.
func (s *Server) AcceptInput(input string) { s.ctl.AcceptInput(input) }

// RequireKey makes the server accept only "x-api-key: key" from now on, as
// WithAPIKey does at construction ("" accepts any non-empty key): other
// calls, Message Batches calls too, get 401
// {"type":"error","error":{"type":"authentication_error","message":"invalid
// x-api-key"}}. Call it again to rotate the key.
func (s *Server) RequireKey(key string) { s.ctl.RequireKey(key) }

// FailFor makes every call (Message Batches calls too) answer status with
// the API's error JSON (500 api_error, 529 overloaded_error, 429
// rate_limit_error with retry-after, ...) until d has passed from now by
// the server's clock (time.Now): an outage. It replaces a failure set
// before; d <= 0 or status 0 ends it. FailNext, when pending, is taken
// first.
func (s *Server) FailFor(d time.Duration, status int) { s.ctl.FailFor(d, status) }

// HangFor makes every call (Message Batches calls too) get no answer until
// d has passed from now by the server's clock, or until the client gives
// up; a call still waiting when d has passed is then answered as usual.
// d <= 0 ends the hang for calls that arrive after.
func (s *Server) HangFor(d time.Duration) { s.ctl.HangFor(d) }

// CallSizes returns the number of requests each Messages call carried (the
// items of a batch call, 1 for a plain call), oldest first, for the calls
// that reached the model: past the key, failure and hang controls, with a
// valid body and a known model.
func (s *Server) CallSizes() []int { return s.ctl.CallSizes() }

// SetRateLimit makes Messages calls keep to an account's limits of rpm
// requests and tpm input tokens a minute (0: no limit of that kind; both 0
// remove the limits), as Anthropic counts them: each limit is a bucket
// holding a minute's worth, full at first, refilled continuously, that
// each call draws one request and its input tokens from (a token per 4
// bytes of the system prompt and messages). Every answer then carries
// anthropic-ratelimit-requests-limit, -requests-remaining and
// -requests-reset (an RFC 3339 time when the bucket is full again), and the
// same for -tokens- and -input-tokens-; a call that finds a bucket too low
// is answered 429 rate_limit_error with retry-after, the whole seconds until
// it would pass, and takes nothing. Message Batches calls are not limited
// by it (see SetQueueLimit).
func (s *Server) SetRateLimit(rpm, tpm int) { s.ctl.SetRateLimit(rpm, tpm) }

// RateLimited returns how many Messages calls SetRateLimit's limits refused
// (429) since it was last called.
func (s *Server) RateLimited() int64 { return s.ctl.RateLimited() }

// LowestRemaining returns the fewest requests the RPM bucket held after a
// call it admitted since SetRateLimit, or -1 before the first admitted
// call or without an RPM limit.
func (s *Server) LowestRemaining() int64 { return s.ctl.LowestRemaining() }

// behaviour is what one call does.
type behaviour struct {
	fake.Behaviour[Result]
	malformed bool
	refuse    bool
	truncate  bool
	noTool    bool
}

// takeBehaviour reads the controls and consumes at most one pending
// refusal, truncation or tool-less answer (in that order of precedence),
// and a pending malformed answer whatever else it takes.
func (s *Server) takeBehaviour() behaviour {
	b := behaviour{Behaviour: s.ctl.Behaviour()}
	b.refuse = s.refuse.Take()
	b.truncate = !b.refuse && s.truncate.Take()
	b.noTool = !b.refuse && !b.truncate && s.noTool.Take()
	b.malformed = s.ctl.TakeMalformed()
	return b
}

// isUnknownModel reports whether model gets 404 not_found_error.
func (s *Server) isUnknownModel(model string) bool {
	return strings.HasPrefix(model, "unknown") || s.unknownModels[model]
}
