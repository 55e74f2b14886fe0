// Package openaitest runs a fake OpenAI-compatible Chat Completions API for
// tests, in the manner of net/http/httptest.
//
// The fake speaks the real wire format (POST /v1/chat/completions, bearer
// auth, OpenAI's error JSON, chat.completion objects) and answers
// deterministically: the output for an input is always Answer(input), so a
// test can check that every output belongs to its own input.
//
// Two request shapes are accepted:
//
//   - batch mode: response_format is the strict json_schema named
//     "batch_results" and the last user message is {"items":[{"id","input"}]}
//     (an item may have "messages" instead of "input", answered for its last
//     user turn, and "max_output_tokens"); the content of the answer is
//     {"results":[{"id","output"}]}. When the schema gives "output" a schema
//     of its own (structured output), each output is a small instance of it
//     (see fake.Instance: every property, strings holding the answer), valid
//     against it; when the system message asks for JSON objects, each output
//     is the text of one.
//   - plain mode: any other response_format, or none; the last user message
//     is answered as one request: with text content (cut at the first "stop"
//     sequence), an instance of a json_schema, {"output":...} for
//     json_object, or, when the request declares "tools" (and tool_choice is
//     not "none"), a call of the first tool with an instance of its
//     parameters (finish_reason "tool_calls"). "n" repeats the choice and
//     "logprobs" adds an empty logprobs object. This is what the openai
//     provider's single mode sends.
//
// It also serves embeddings (POST /v1/embeddings, see embeddings.go:
// Vector and Embedding are the fake model's vector of a text, so a test
// can check every vector; the call fails as the real one does) and the
// Batch API (see
// jobs.go): file upload, download and deletion (POST /v1/files, GET
// /v1/files/{id}/content, DELETE /v1/files/{id}) and batches (POST /v1/batches, GET /v1/batches/{id}, POST
// /v1/batches/{id}/cancel). A job's lines are plain requests, answered like
// plain calls once the test ends the job with CompleteJobs or ExpireJob (or
// WithCompleteAfter does), unless FailJob fails it whole.
//
// Behaviour controls are methods on *Server and are safe to call while the
// server runs. Each says what it does to batch answers, to plain answers and
// to Batch API jobs:
//
//   - answers: DropItems, OmitInput, RejectInput, Shuffle, RepeatIDs,
//     SetResultsFunc, SetMalformedNext, RefuseNext, TruncateNext;
//   - faults of real providers: SetOutputCap (a combined answer cut off,
//     finish_reason "length"; a call's max_completion_tokens is honoured
//     too), SetWrongAfter (wrong answers past a position of a combined
//     call), RefuseInput (message.refusal), RequireKey (401
//     invalid_api_key; the key may rotate), FailFor (an outage of 5xx for a
//     while), HangFor (no answer for a while), FailNext and SetDelay;
//   - rate limits: SetRateLimit makes chat completions keep to requests
//     and tokens per minute, with OpenAI's x-ratelimit-* headers on every
//     answer and 429 rate_limit_exceeded with Retry-After when a call finds
//     a bucket empty (RateLimited counts them);
//   - unknown models (WithUnknownModels, and any model named "unknown...")
//     get 404 model_not_found;
//   - records: Calls, MaxConcurrent, CallSizes, Requests, for embeddings
//     EmbeddingCalls and EmbeddingRequests, and for jobs Jobs, JobIDs,
//     Cancelled, JobRequests, DeletedFiles, HasFile;
//   - embeddings: NoDataNext, WrongDimensionsNext, and the answer controls
//     above (see serveEmbeddings);
//   - jobs: CompleteJobs, ExpireJob, FailJob, FailLines, and
//     SetEnqueuedTokenLimit (a batch over the model's enqueued token limit
//     fails with token_limit_exceeded; QueueRefused counts them);
//   - costs (costs.go): service_tier answered back, RejectTier,
//     FlexUnavailableNext, and usage.prompt_tokens_details.cached_tokens
//     for a repeated prefix of 1,024 tokens or more.
package openaitest

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aibatch/aibatch/provider/internal/fake"
)

// ChatCompletionsPath is the path the fake serves chat completions on.
const ChatCompletionsPath = "/v1/chat/completions"

// Answer is the fake model's deterministic answer to input.
func Answer(input string) string { return "processed: " + input }

// Server is a fake OpenAI API. Create it with NewServer (listening) or
// NewUnstartedServer (handler only); all methods are safe for concurrent use.
type Server struct {
	// URL is the base URL to give an OpenAI client (as OPENAI_BASE_URL),
	// e.g. "http://127.0.0.1:12345/v1". It is empty for an unstarted server.
	URL string

	ts      *httptest.Server
	handler http.Handler

	unknownModels map[string]bool // models answered with 404 model_not_found

	// Behaviour controls and records, each safe for concurrent use.
	ctl      fake.Controls[Result]
	refuse   fake.Countdown
	truncate fake.Countdown
	requests fake.Log[Request]

	embedCalls    atomic.Int64
	embedRequests fake.Log[EmbeddingRequest]
	noData        fake.Countdown
	wrongDims     fake.Countdown
	failLines     fake.PerInput[int] // job inputs answered with this status

	seq       atomic.Int64 // completion, file, batch and line ids
	jobsMade  atomic.Int64 // batches created
	cancelled atomic.Int64 // batches moved to cancelling

	completeAfter int // a job completes on this GET of it; 0: only CompleteJobs

	costs costs // service tiers and the prompt cache (costs.go)

	mu            sync.Mutex // guards what follows
	files         map[string]*storedFile
	jobs          map[string]*job
	deleted       []string // ids of the files a DELETE removed, in order
	enqueuedLimit int64    // prompt tokens per model in batches running; 0: none
	queueRefused  int64    // batches enqueuedLimit made fail
}

// Option configures a Server at construction.
type Option func(*Server)

// WithAPIKey makes the server accept only "Authorization: Bearer key"; any
// other token gets 401 invalid_api_key. By default any non-empty bearer token
// is accepted. RequireKey changes the key while the server runs.
func WithAPIKey(key string) Option {
	return func(s *Server) { s.ctl.RequireKey(key) }
}

// WithUnknownModels makes the server answer 404 model_not_found for the given
// models, in addition to every model whose name starts with "unknown".
func WithUnknownModels(models ...string) Option {
	return func(s *Server) {
		for _, m := range models {
			s.unknownModels[m] = true
		}
	}
}

// NewServer starts a fake OpenAI API on a loopback port. Call Close when done.
func NewServer(opts ...Option) *Server {
	s := NewUnstartedServer(opts...)
	s.ts = httptest.NewServer(s.handler)
	s.URL = s.ts.URL + "/v1"
	return s
}

// NewUnstartedServer returns a Server that does not listen: serve its
// Handler yourself (as cmd/fakeai does). Its URL is empty and Close does
// nothing.
func NewUnstartedServer(opts ...Option) *Server {
	s := &Server{
		unknownModels: map[string]bool{},
		files:         map[string]*storedFile{},
		jobs:          map[string]*job{},
	}
	for _, o := range opts {
		o(s)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+ChatCompletionsPath, s.ctl.Counted(s.apiCall(http.StatusBadRequest, "We could not read the body of your request.", s.serveChatCompletions)))
	mux.HandleFunc("POST "+EmbeddingsPath, s.ctl.Counted(func(w http.ResponseWriter, r *http.Request) {
		s.embedCalls.Add(1)
		s.apiCall(http.StatusBadRequest, "We could not read the body of your request.", s.serveEmbeddings)(w, r)
	}))
	mux.HandleFunc("POST "+FilesPath, s.jobCall(s.serveFileUpload))
	mux.HandleFunc("GET "+FilesPath+"/{id}/content", s.jobCall(s.serveFileContent))
	mux.HandleFunc("DELETE "+FilesPath+"/{id}", s.jobCall(s.serveFileDelete))
	mux.HandleFunc("POST "+BatchesPath, s.jobCall(s.serveBatchCreate))
	mux.HandleFunc("GET "+BatchesPath+"/{id}", s.jobCall(s.serveBatchGet))
	mux.HandleFunc("POST "+BatchesPath+"/{id}/cancel", s.jobCall(s.serveBatchCancel))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "Invalid URL ("+r.Method+" "+r.URL.Path+")", "invalid_request_error", "", "")
	})
	s.handler = mux
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
// paths under /v1, so mount it at the root of a server.
func (s *Server) Handler() http.Handler { return s.handler }

// Calls returns how many chat completion and embeddings calls the server
// has received, including the ones it answered with an error
// (EmbeddingCalls counts the embeddings calls alone).
func (s *Server) Calls() int64 { return s.ctl.Calls() }

// MaxConcurrent returns the largest number of chat completion and
// embeddings calls the server was handling at the same moment.
func (s *Server) MaxConcurrent() int64 { return s.ctl.MaxConcurrent() }

// FailNext makes the next n calls answer status with OpenAI's error JSON
// (429 answers also carry "Retry-After: 1"). Calls to the Files and Batch
// endpoints count too (they are not counted by Calls). It replaces any
// failures still pending; n <= 0 cancels them.
func (s *Server) FailNext(n int, status int) { s.ctl.FailNext(n, status) }

// SetDelay makes each call wait d before it is answered, or until the
// request's context ends (then nothing is answered); Files and Batch calls
// too. 0 removes the delay.
func (s *Server) SetDelay(d time.Duration) { s.ctl.SetDelay(d) }

// DropItems makes each batch answer leave out the last n items of its
// request (in request order). 0 restores complete answers. Plain answers are
// not affected.
func (s *Server) DropItems(n int) { s.ctl.DropItems(n) }

// Shuffle makes batch answers list their results in random order, makes
// each plain answer wait a random 0-10ms first, so that concurrent plain
// calls finish out of order, and makes a job's output and error files list
// their lines in random order.
func (s *Server) Shuffle(on bool) { s.ctl.Shuffle(on) }

// SetMalformedNext makes the next n successful answers unreadable: a batch
// answer's content is not valid JSON (finish_reason stays "stop"); a plain
// answer's HTTP body is cut off, so it is not valid JSON at all; a download
// of a job's output or error file ends in the middle of a line.
func (s *Server) SetMalformedNext(n int) { s.ctl.SetMalformedNext(n) }

// RefuseNext makes the next n successful answers a refusal: message.refusal
// is set and content is null.
func (s *Server) RefuseNext(n int) { s.refuse.Set(n) }

// TruncateNext makes the next n successful answers stop early: content is cut
// in half and finish_reason is "length".
func (s *Server) TruncateNext(n int) { s.truncate.Set(n) }

// SetResultsFunc installs f to rewrite each batch answer's results after
// DropItems and Shuffle were applied (to add unknown or duplicate ids, change
// outputs, ...). nil removes it.
func (s *Server) SetResultsFunc(f func([]Result) []Result) { s.ctl.SetResultsFunc(f) }

// RepeatIDs makes each batch answer (after DropItems, Shuffle and
// SetResultsFunc) start with a result for the id "not-asked" and end with a
// second result for its first id, whose output is "repeated: " + the first
// output. Plain answers are not affected: they carry no ids.
func (s *Server) RepeatIDs(on bool) { s.ctl.RepeatIDs(on) }

// OmitInput makes answers leave out every request whose input is input: a
// batch answer has no result for its item; a plain call is answered with an
// empty "choices" array; a job's output and error files have no line for it.
func (s *Server) OmitInput(input string) { s.ctl.OmitInput(input) }

// RejectInput makes the API refuse every request whose input is input, on
// its own. A plain call for it, and a job's line for it, is answered with
// HTTP 400 (code "invalid_prompt"), or with HTTP 503 when retryable; a job
// writes that line to its error file. Chat Completions has no way to refuse
// one item of a batch answer, so a batch answer leaves the item out (as
// OmitInput does) and answers the rest.
func (s *Server) RejectInput(input string, retryable bool) { s.ctl.RejectInput(input, retryable) }

// Requests returns the chat completion requests received so far whose body
// could be decoded, oldest first.
func (s *Server) Requests() []Request { return s.requests.All() }

// SetOutputCap makes the fake model stop at its output limit in any batch
// call carrying more than items requests: the answer's content is the
// results JSON cut off after about items results' worth (not valid JSON),
// with finish_reason "length", as the real API answers a model that reached
// max_completion_tokens or its own limit. items <= 0 removes the cap.
//
// Whatever the cap, a call's own max_completion_tokens is honoured: an
// answer longer than it (counting a token per 4 bytes) is cut off the same
// way, a plain answer's text too (its first max_completion_tokens*4
// bytes), with finish_reason "length". In Batch API jobs, combined lines
// (ASYNC_COMBINE) are cut off the same way; plain lines are not affected.
func (s *Server) SetOutputCap(items int) { s.ctl.SetOutputCap(items) }

// WrongAnswer is the output SetWrongAfter gives the items past its
// position.
const WrongAnswer = fake.WrongAnswer

// SetWrongAfter makes each batch answer wrong for every item after position n
// of its call (positions count from 1, in request order): their output is
// WrongAnswer instead of Answer(input), as a model that lost track of the
// items of a long prompt answers. A call of one request stays right, so a
// test can tell what combining did to the answers. Plain answers and Batch API jobs are not affected. n <= 0 turns it off.
func (s *Server) SetWrongAfter(n int) { s.ctl.SetWrongAfter(n) }

// RefuseInput makes the fake model refuse every call that contains input,
// as OpenAI answers a refusal: message.refusal holds the model's words,
// content is null and finish_reason is "stop". A batch call with input
// among its items is refused whole; a plain call for input is refused too.
// Batch API jobs are not affected.
func (s *Server) RefuseInput(input string) { s.ctl.RefuseInput(input) }

// AcceptInput undoes RefuseInput for input: the model answers it again.
func (s *Server) AcceptInput(input string) { s.ctl.AcceptInput(input) }

// RequireKey makes the server accept only "Authorization: Bearer key" from
// now on, as WithAPIKey does at construction ("" accepts any non-empty
// token): other calls, Files and Batch calls too, get 401 with OpenAI's
// error JSON (code "invalid_api_key", the presented key masked in the
// message). Call it again to rotate the key.
func (s *Server) RequireKey(key string) { s.ctl.RequireKey(key) }

// FailFor makes every call (Files and Batch calls too) answer status with
// OpenAI's error JSON until d has passed from now by the server's clock
// (time.Now): an outage. 429 answers carry "Retry-After: 1". It replaces a
// failure set before; d <= 0 or status 0 ends it. FailNext, when pending,
// is taken first.
func (s *Server) FailFor(d time.Duration, status int) { s.ctl.FailFor(d, status) }

// HangFor makes every call (Files and Batch calls too) get no answer until
// d has passed from now by the server's clock, or until the client gives
// up; a call still waiting when d has passed is then answered as usual.
// d <= 0 ends the hang for calls that arrive after.
func (s *Server) HangFor(d time.Duration) { s.ctl.HangFor(d) }

// CallSizes returns the number of requests each chat completion call
// carried (the items of a batch call, 1 for a plain call) and each
// embeddings call (its inputs), oldest first, for the calls that reached
// the model: past the key, failure and hang controls, with a valid body
// and a known model.
func (s *Server) CallSizes() []int { return s.ctl.CallSizes() }

// SetRateLimit makes chat completion calls keep to an account's limits of
// rpm requests and tpm prompt tokens a minute (0: no limit of that kind;
// both 0 remove the limits), as OpenAI counts them: each limit is a bucket
// holding a minute's worth, full at first, refilled continuously, that
// each call draws one request and its prompt tokens from (a token per 4
// bytes of the messages). Every answer then carries
// x-ratelimit-limit-requests, x-ratelimit-remaining-requests and
// x-ratelimit-reset-requests (the time until the bucket is full again, as
// "1s", "6m0s" or "250ms"), and the same for -tokens; a call that finds a
// bucket too low is answered 429 (type "requests", code
// rate_limit_exceeded) with Retry-After, the whole seconds until it would
// pass, and takes nothing. Files and Batch calls are not limited.
func (s *Server) SetRateLimit(rpm, tpm int) { s.ctl.SetRateLimit(rpm, tpm) }

// RateLimited returns how many calls SetRateLimit's limits refused (429)
// since it was last called.
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
}

// takeBehaviour reads the controls and consumes at most one pending one-shot
// answer control: a refusal first, then a truncation, then a malformed
// answer.
func (s *Server) takeBehaviour() behaviour {
	b := behaviour{Behaviour: s.ctl.Behaviour()}
	b.refuse = s.refuse.Take()
	b.truncate = !b.refuse && s.truncate.Take()
	b.malformed = !b.refuse && !b.truncate && s.ctl.TakeMalformed()
	return b
}

// isUnknownModel reports whether model gets 404 model_not_found.
func (s *Server) isUnknownModel(model string) bool {
	return strings.HasPrefix(model, "unknown") || s.unknownModels[model]
}
