// Package httpapitest runs a fake bulk endpoint for the http provider
// (package provider/httpapi) in tests, in the manner of net/http/httptest.
//
// The fake implements the endpoint contract documented in package httpapi:
// it accepts POST {"max_output_tokens":N,"items":[{"id","input",
// "instructions","model","max_output_tokens"}]} and answers
// {"results":[{"id","output","usage"}],"truncated":false}, with per-item
// {"id","error","retryable"} entries for items it refuses, "truncated": true
// for an answer cut off at an output limit, and {"error":"..."} bodies with
// the HTTP status for whole-call failures ({"error":"...","code":
// "model_not_found"} with 404 for an unknown model). It answers
// deterministically: the output for an input is always Answer(input).
//
// Wire format 1.1: an item may have "messages" instead of "input"
// (answered for its last user message); a call's "stop" cuts each answer,
// and its "response_format" makes each output a JSON value (an instance of
// the json_schema, or {"output":...}); a call with "kind": "embedding" is
// answered with each input's Vector(input, dimensions), the answer
// controls applying as to a chat call, and WrongDimensionsNext spoiling the
// lengths.
//
// Behaviour controls are methods on *Server and are safe to call while the
// server runs:
//
//   - answers: DropItems, OmitInput, RejectInput, Shuffle, RepeatIDs,
//     SetResultsFunc, SetMalformedNext;
//   - faults of real endpoints: SetOutputCap (an answer cut off, "truncated":
//     true; a call's max_output_tokens is honoured too), SetWrongAfter
//     (wrong answers past a position of a call of several items),
//     RefuseInput (the item's own non-retryable "error"), RequireKey (401;
//     the token may rotate), FailFor (an outage of 5xx for a while), HangFor
//     (no answer for a while), FailNext and SetDelay;
//   - rate limits: SetRateLimit makes calls keep to requests and tokens per
//     minute, with OpenAI's x-ratelimit-* headers on every answer (or
//     Anthropic's anthropic-ratelimit-* ones, WithAnthropicRateHeaders) and
//     429 with Retry-After when a call finds a bucket empty (RateLimited
//     counts them);
//   - unknown models (WithUnknownModels, and any model named "unknown...")
//     get 404 model_not_found;
//   - records: Calls, MaxConcurrent, CallSizes, Requests.
package httpapitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/aibatch/aibatch/provider/internal/fake"
)

// Path is the path the fake serves the bulk endpoint on.
const Path = "/v1/batch"

// Answer is the fake model's deterministic answer to input.
func Answer(input string) string { return "processed: " + input }

// Item is one entry of a request's "items".
type Item struct {
	ID              string          `json:"id"`
	Input           string          `json:"input,omitempty"`
	Messages        []Message       `json:"messages,omitempty"`
	Instructions    string          `json:"instructions"`
	Model           string          `json:"model"`
	MaxOutputTokens int             `json:"max_output_tokens,omitempty"`
	ProviderOptions json.RawMessage `json:"provider_options,omitempty"`
}

// Message is one chat turn of an item, in OpenAI's shape.
type Message struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content,omitempty"`
	Name       string          `json:"name,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
	ToolCalls  json.RawMessage `json:"tool_calls,omitempty"`
}

// Prompt is what the fake model answers for the item: its input, or the
// text of its last user message.
func (it Item) Prompt() string {
	if len(it.Messages) == 0 {
		return it.Input
	}
	for i := len(it.Messages) - 1; i >= 0; i-- {
		if m := it.Messages[i]; m.Role == "user" {
			var text string
			if json.Unmarshal(m.Content, &text) == nil {
				return text
			}
			var parts []struct {
				Type, Text string
			}
			_ = json.Unmarshal(m.Content, &parts)
			var texts []string
			for _, p := range parts {
				if p.Type == "text" {
					texts = append(texts, p.Text)
				}
			}
			return strings.Join(texts, "\n")
		}
	}
	return ""
}

// Result is one entry of an answer's "results". Exactly one of Output
// (OutputJSON for structured output, Embedding for an embedding) and Error
// is set by the fake; SetResultsFunc may write any combination.
type Result struct {
	ID string `json:"id"`
	// Output is a text answer, written as a JSON string.
	Output *string `json:"-"`
	// OutputJSON is a structured answer, written as the JSON value it is.
	OutputJSON   json.RawMessage `json:"-"`
	FinishReason string          `json:"finish_reason,omitempty"`
	Embedding    []float32       `json:"embedding,omitempty"`
	Error        string          `json:"error,omitempty"`
	Retryable    bool            `json:"retryable,omitempty"`
	Usage        *Usage          `json:"usage,omitempty"`
}

// MarshalJSON writes "output" from OutputJSON when set, else from Output.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	var output json.RawMessage
	switch {
	case r.OutputJSON != nil:
		output = r.OutputJSON
	case r.Output != nil:
		output = fake.MarshalJSON(*r.Output)
	}
	return json.Marshal(struct {
		plain
		Output json.RawMessage `json:"output,omitempty"`
	}{plain(r), output})
}

// Usage is a result's token counts.
type Usage struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
}

// UnmarshalJSON reads an "output" that is a string into Output, and any
// other JSON into OutputJSON.
func (r *Result) UnmarshalJSON(data []byte) error {
	type plain Result
	var raw struct {
		plain
		Output json.RawMessage `json:"output"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	*r = Result(raw.plain)
	if len(raw.Output) == 0 || string(raw.Output) == "null" {
		return nil
	}
	var text string
	if json.Unmarshal(raw.Output, &text) == nil {
		r.Output = &text
	} else {
		r.OutputJSON = raw.Output
	}
	return nil
}

// Request is one decoded call, as Requests returns it.
type Request struct {
	// Kind is the call's "kind": "" (chat) or "embedding".
	Kind string
	// MaxOutputTokens is the call's top-level max_output_tokens; 0 when
	// absent.
	MaxOutputTokens int
	// Temperature, TopP, Seed and Stop are the call's sampling
	// parameters; nil when absent.
	Temperature *float64
	TopP        *float64
	Seed        *int64
	Stop        []string
	// ResponseFormat is the raw response_format; nil when absent.
	ResponseFormat json.RawMessage
	// Dimensions is an embedding call's "dimensions"; 0 when absent.
	Dimensions int
	// Items are the call's items in order.
	Items []Item
	// Header holds the call's HTTP headers.
	Header http.Header
	// Body is the raw request body.
	Body []byte
}

// Server is a fake bulk endpoint. Create it with NewServer; all methods are
// safe for concurrent use.
type Server struct {
	// URL is the endpoint's full URL (as HTTP_PROVIDER_URL), e.g.
	// "http://127.0.0.1:12345/v1/batch".
	URL string

	ts *httptest.Server

	ctl           fake.Controls[Result]
	requests      fake.Log[Request]
	wrongDims     fake.Countdown
	unknownModels map[string]bool // models answered with 404 model_not_found

	// anthropicHeaders writes rate-limit headers as Anthropic does.
	anthropicHeaders bool

	mu    sync.Mutex // guards token
	token string     // required bearer token; "" requires none
}

// Option configures a Server at construction.
type Option func(*Server)

// WithToken makes the server require "Authorization: Bearer token"; other
// calls get 401. By default no authorization is required. RequireKey
// changes the token while the server runs.
func WithToken(token string) Option {
	return func(s *Server) { s.token = token }
}

// WithUnknownModels makes the server answer 404 {"error":...,"code":
// "model_not_found"} for calls whose model is one of models, in addition to
// every model whose name starts with "unknown".
func WithUnknownModels(models ...string) Option {
	return func(s *Server) {
		for _, m := range models {
			s.unknownModels[m] = true
		}
	}
}

// WithAnthropicRateHeaders makes the server report SetRateLimit's limits in
// Anthropic's anthropic-ratelimit-* headers instead of OpenAI's
// x-ratelimit-* ones.
func WithAnthropicRateHeaders() Option {
	return func(s *Server) { s.anthropicHeaders = true }
}

// NewServer starts a fake endpoint on a loopback port. Call Close when done.
func NewServer(opts ...Option) *Server {
	s := &Server{unknownModels: map[string]bool{}}
	for _, o := range opts {
		o(s)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(Path, s.ctl.Counted(s.serve))
	s.ts = httptest.NewServer(mux)
	s.URL = s.ts.URL + Path
	return s
}

// Close shuts the server down, blocking until all outstanding requests on it
// have completed.
func (s *Server) Close() { s.ts.Close() }

// Calls returns how many calls the endpoint has received, including the ones
// it answered with an error.
func (s *Server) Calls() int64 { return s.ctl.Calls() }

// MaxConcurrent returns the largest number of calls the endpoint was handling
// at the same moment.
func (s *Server) MaxConcurrent() int64 { return s.ctl.MaxConcurrent() }

// FailNext makes the next n calls answer status with {"error":"..."}; 429
// answers carry "Retry-After: 1". It replaces any failures still pending;
// n <= 0 cancels them.
func (s *Server) FailNext(n int, status int) { s.ctl.FailNext(n, status) }

// SetDelay makes each call wait d before it is answered, or until the
// request's context ends (then nothing is answered). 0 removes the delay.
func (s *Server) SetDelay(d time.Duration) { s.ctl.SetDelay(d) }

// DropItems makes each answer leave out the last n items of its request (in
// request order). 0 restores complete answers.
func (s *Server) DropItems(n int) { s.ctl.DropItems(n) }

// Shuffle makes answers list their results in random order.
func (s *Server) Shuffle(on bool) { s.ctl.Shuffle(on) }

// SetMalformedNext makes the next n successful answers' bodies cut off, so
// they are not valid JSON.
func (s *Server) SetMalformedNext(n int) { s.ctl.SetMalformedNext(n) }

// OmitInput makes answers leave out every item whose input is input.
func (s *Server) OmitInput(input string) { s.ctl.OmitInput(input) }

// RejectInput makes answers refuse every item whose input is input with a
// per-item {"id","error":"rejected by the fake endpoint","retryable":...}
// result, while the other items are answered.
func (s *Server) RejectInput(input string, retryable bool) { s.ctl.RejectInput(input, retryable) }

// RepeatIDs makes each answer (after SetResultsFunc) start with a result for
// the id "not-asked" and end with a second result for its first id, whose
// output is "repeated: " + the first output.
func (s *Server) RepeatIDs(on bool) { s.ctl.RepeatIDs(on) }

// SetResultsFunc installs f to rewrite each answer's results after
// DropItems, OmitInput, RejectInput and Shuffle were applied. nil removes it.
func (s *Server) SetResultsFunc(f func([]Result) []Result) { s.ctl.SetResultsFunc(f) }

// Requests returns the calls received so far whose body could be decoded,
// oldest first.
func (s *Server) Requests() []Request { return s.requests.All() }

// SetOutputCap makes the fake endpoint stop at its output limit in any call
// carrying more than items items: the answer holds the results of the
// first items items (as the endpoint produced them) and "truncated": true.
// items <= 0 removes the cap.
//
// Whatever the cap, a call's own max_output_tokens is honoured: an answer
// whose outputs are longer than it (counting a token per 4 bytes) holds the
// results that fitted and "truncated": true. A call of one item is cut to
// its own max_output_tokens, else the call's: its output is its first
// max_output_tokens*4 bytes, with "truncated": true.
func (s *Server) SetOutputCap(items int) { s.ctl.SetOutputCap(items) }

// WrongAnswer is the output SetWrongAfter gives the items past its
// position.
const WrongAnswer = fake.WrongAnswer

// SetWrongAfter makes each answer wrong for every item after position n of
// its call (positions count from 1, in request order): their output is
// WrongAnswer instead of Answer(input), as a model that lost track of the
// items of a long prompt answers. A call of one item stays right, so a test
// can tell what combining did to the answers. n <= 0 turns it off.
func (s *Server) SetWrongAfter(n int) { s.ctl.SetWrongAfter(n) }

// RefuseInput makes the fake model refuse every item whose input is input,
// alone: its result is {"id","error":"refused: ...","retryable":false}
// while the other items of the call are answered.
func (s *Server) RefuseInput(input string) { s.ctl.RefuseInput(input) }

// AcceptInput undoes RefuseInput for input: the model answers it again.
func (s *Server) AcceptInput(input string) { s.ctl.AcceptInput(input) }

// RequireKey makes the server require "Authorization: Bearer key" from now
// on, as WithToken does at construction; "" requires none. Other calls get
// 401 {"error":"invalid or missing bearer token"}. Call it again to rotate
// the token.
func (s *Server) RequireKey(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = key
}

// FailFor makes every call answer status with {"error":"..."} until d has
// passed from now by the server's clock (time.Now): an outage. 429 answers
// carry "Retry-After: 1". It replaces a failure set before; d <= 0 or
// status 0 ends it. FailNext, when pending, is taken first.
func (s *Server) FailFor(d time.Duration, status int) { s.ctl.FailFor(d, status) }

// HangFor makes every call get no answer until d has passed from now by the
// server's clock, or until the client gives up; a call still waiting when d
// has passed is then answered as usual. d <= 0 ends the hang for calls that
// arrive after.
func (s *Server) HangFor(d time.Duration) { s.ctl.HangFor(d) }

// CallSizes returns the number of items each call carried, oldest first,
// for the calls that reached the model: past the token, failure and hang
// controls, with a valid body and a known model.
func (s *Server) CallSizes() []int { return s.ctl.CallSizes() }

// SetRateLimit makes calls keep to an account's limits of rpm requests and
// tpm prompt tokens a minute (0: no limit of that kind; both 0 remove the
// limits): each limit is a bucket holding a minute's worth, full at first,
// refilled continuously, that each call draws one request and its prompt
// tokens from (a token per 4 bytes of its items' inputs and instructions).
// Every answer then carries the remaining requests and tokens and the time
// until each bucket is full again, in OpenAI's x-ratelimit-* headers (or
// Anthropic's, WithAnthropicRateHeaders); a call that finds a bucket too
// low is answered 429 with Retry-After, the whole seconds until it would
// pass, and takes nothing.
func (s *Server) SetRateLimit(rpm, tpm int) { s.ctl.SetRateLimit(rpm, tpm) }

// RateLimited returns how many calls SetRateLimit's limits refused (429)
// since it was last called.
func (s *Server) RateLimited() int64 { return s.ctl.RateLimited() }

// LowestRemaining returns the fewest requests the RPM bucket held after a
// call it admitted since SetRateLimit, or -1 before the first admitted
// call or without an RPM limit.
func (s *Server) LowestRemaining() int64 { return s.ctl.LowestRemaining() }

// authorized reports whether r carries the token RequireKey set.
func (s *Server) authorized(r *http.Request) bool {
	s.mu.Lock()
	token := s.token
	s.mu.Unlock()
	return token == "" || r.Header.Get("Authorization") == "Bearer "+token
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, bodyErr := io.ReadAll(http.MaxBytesReader(w, r.Body, fake.MaxBodyBytes))
	if !s.ctl.Wait(r) || !s.ctl.Hang(r) {
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	if !s.authorized(r) {
		writeError(w, http.StatusUnauthorized, "invalid or missing bearer token")
		return
	}
	status := s.ctl.TakeFailure()
	if status == 0 {
		status = s.ctl.Failing()
	}
	if status != 0 {
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		writeError(w, status, "injected failure: "+http.StatusText(status))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	if bodyErr != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "body too large")
		return
	}
	var req struct {
		Kind            string          `json:"kind"`
		MaxOutputTokens int             `json:"max_output_tokens"`
		Temperature     *float64        `json:"temperature"`
		TopP            *float64        `json:"top_p"`
		Seed            *int64          `json:"seed"`
		Stop            []string        `json:"stop"`
		ResponseFormat  json.RawMessage `json:"response_format"`
		Dimensions      int             `json:"dimensions"`
		Items           []Item          `json:"items"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body is not {\"items\":[...]}: "+err.Error())
		return
	}
	s.requests.Add(Request{Kind: req.Kind, MaxOutputTokens: req.MaxOutputTokens, Temperature: req.Temperature, TopP: req.TopP,
		Seed: req.Seed, Stop: req.Stop, ResponseFormat: req.ResponseFormat, Dimensions: req.Dimensions,
		Items: req.Items, Header: r.Header.Clone(), Body: body})
	if len(req.Items) == 0 {
		writeError(w, http.StatusBadRequest, "items is empty")
		return
	}
	if req.Kind != "" && req.Kind != "embedding" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("kind %q: want embedding, or none for chat", req.Kind))
		return
	}
	for i, it := range req.Items {
		if it.ID == "" || (it.Input == "") == (len(it.Messages) == 0) || it.Model == "" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("items[%d]: id, input or messages, and model are required", i))
			return
		}
	}
	f, err := readFormat(req.ResponseFormat)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if model := req.Items[0].Model; strings.HasPrefix(model, "unknown") || s.unknownModels[model] {
		fake.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "model " + model + " not found", "code": "model_not_found"})
		return
	}
	if !s.admit(w, req.Items) {
		return
	}
	s.ctl.RecordSize(len(req.Items))

	malformed := s.ctl.TakeMalformed()
	if req.Kind == "embedding" {
		dims := req.Dimensions
		if dims == 0 {
			dims = fake.EmbeddingDims
		}
		if s.wrongDims.Take() {
			dims--
		}
		fake.WriteAnswer(w, wireAnswer{Results: embed(req.Items, dims, s.ctl.Behaviour())}, malformed)
		return
	}
	results := answer(req.Items, f, req.Stop, s.ctl.Behaviour(), s.ctl.Refused, s.ctl.AnswerAt)
	results, truncated := s.limit(req.Items, req.MaxOutputTokens, results)
	fake.WriteAnswer(w, wireAnswer{Results: results, Truncated: truncated}, malformed)
}

// admit charges the call against SetRateLimit's limits, its prompt tokens
// a token per 4 bytes of its items' inputs (or messages' contents) and
// instructions, and writes the
// rate-limit headers in the style the server was built with. A refused call
// is answered 429 with Retry-After, and admit returns false.
func (s *Server) admit(w http.ResponseWriter, items []Item) bool {
	var prompt int
	for _, it := range items {
		prompt += len(it.Input) + len(it.Instructions)
		for _, m := range it.Messages {
			prompt += len(m.Content)
		}
	}
	st, ok := s.ctl.Admit(fake.Tokens(prompt))
	if s.anthropicHeaders {
		fake.AnthropicRateHeaders(w.Header(), st, time.Now())
	} else {
		fake.OpenAIRateHeaders(w.Header(), st)
	}
	if !ok {
		writeError(w, http.StatusTooManyRequests, "rate limit reached; try again later")
	}
	return ok
}

// WrongDimensionsNext makes the next n embedding answers hold vectors one
// number shorter than asked.
func (s *Server) WrongDimensionsNext(n int) { s.wrongDims.Set(n) }

// Vector is the fake model's vector for input: dims numbers (64 when
// dims <= 0), of length 1, the same as openaitest.Vector.
func Vector(input string, dims int) []float32 { return fake.Embedding(input, dims) }

// embed answers an embedding call: each item's vector, with the answer
// controls applied as to a chat call (a refused or rejected input gets its
// "error").
func embed(items []Item, dims int, b fake.Behaviour[Result]) []Result {
	results := make([]Result, 0, len(items))
	for _, it := range items[:b.Kept(len(items))] {
		switch retryable, rejected := b.Reject[it.Input]; {
		case rejected:
			results = append(results, Result{ID: it.ID, Error: "rejected by the fake endpoint", Retryable: retryable})
		case !b.Omit[it.Input]:
			results = append(results, Result{ID: it.ID, Embedding: Vector(it.Input, dims),
				Usage: &Usage{InputTokens: fake.Tokens(len(it.Input))}})
		}
	}
	return b.Finish(results, func(x, y Result) bool { return x.ID == y.ID }, func(first Result) (Result, Result) {
		return Result{ID: "not-asked", Embedding: Vector("not asked", dims)}, first
	})
}

// format is what a call's response_format asks: "text" (also when
// absent), "json_object", or "json_schema" with its schema.
type format struct {
	typ    string
	schema json.RawMessage
}

func readFormat(raw json.RawMessage) (format, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return format{typ: "text"}, nil
	}
	var f struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return format{}, fmt.Errorf("response_format: %w", err)
	}
	switch {
	case f.Type == "text" || f.Type == "json_object":
		return format{typ: f.Type}, nil
	case f.Type == "json_schema" && f.JSONSchema != nil && len(f.JSONSchema.Schema) > 0:
		return format{typ: f.Type, schema: f.JSONSchema.Schema}, nil
	}
	return format{}, fmt.Errorf("response_format %s: want text, json_object or json_schema with a schema", raw)
}

// wireAnswer is a 2xx answer's body.
type wireAnswer struct {
	Results   []Result `json:"results"`
	Truncated bool     `json:"truncated,omitempty"`
}

// limit cuts results, the answer to items, as SetOutputCap and the call's
// max_output_tokens say, and reports whether it cut.
func (s *Server) limit(items []Item, maxTokens int, results []Result) ([]Result, bool) {
	if len(items) == 1 {
		limit := items[0].MaxOutputTokens
		if limit <= 0 {
			limit = maxTokens
		}
		var cut bool
		for i, r := range results {
			if r.Output == nil {
				continue
			}
			if out, c := fake.CutAnswer(*r.Output, 1, 0, false, int64(limit)); c {
				results[i].Output, cut = &out, true
				if u := results[i].Usage; u != nil {
					results[i].Usage = &Usage{InputTokens: u.InputTokens, OutputTokens: fake.Tokens(len(out))}
				}
			}
		}
		return results, cut
	}
	keep := len(results)
	if s.ctl.CutOff(len(items)) {
		keep = min(keep, s.ctl.OutputCap())
	}
	if maxTokens > 0 {
		var used int
		for i, r := range results {
			if r.Output != nil {
				used += len(*r.Output)
			}
			if fake.OverLimit(used, int64(maxTokens)) {
				keep = min(keep, i)
				break
			}
		}
	}
	if keep < len(results) {
		return results[:keep], true
	}
	return results, false
}

// answer builds the results for items as f (structured output: a JSON
// instance of the schema, or an object), the stop sequences, b, refused
// (RefuseInput) and answerAt (SetWrongAfter) say.
func answer(items []Item, f format, stop []string, b fake.Behaviour[Result], refused func(...string) bool,
	answerAt func(i, n int, right string) string) []Result {
	results := make([]Result, 0, len(items))
	for i, it := range items[:b.Kept(len(items))] {
		prompt := it.Prompt()
		switch retryable, rejected := b.Reject[prompt]; {
		case refused(prompt):
			results = append(results, Result{ID: it.ID, Error: "refused: the model declined to answer this input"})
		case rejected:
			results = append(results, Result{ID: it.ID, Error: "rejected by the fake endpoint", Retryable: retryable})
		case !b.Omit[prompt]:
			out := answerAt(i, len(items), Answer(prompt))
			r := Result{ID: it.ID, Output: &out, FinishReason: "stop", Usage: &Usage{
				InputTokens:  fake.Tokens(len(it.Instructions) + len(prompt)),
				OutputTokens: fake.Tokens(len(out)),
			}}
			switch f.typ {
			case "json_schema":
				v, err := fake.Instance(f.schema, nil, out)
				if err != nil {
					v = string(fake.MarshalJSON(err.Error()))
				}
				r.OutputJSON = json.RawMessage(v)
			case "json_object":
				r.OutputJSON = fake.MarshalJSON(map[string]string{"output": out})
			default:
				for _, s := range stop {
					if i := strings.Index(out, s); i >= 0 && s != "" {
						out = out[:i]
					}
				}
				r.Output = &out
			}
			results = append(results, r)
		}
	}
	return b.Finish(results, func(x, y Result) bool { return x.ID == y.ID }, func(first Result) (Result, Result) {
		notAsked := Answer("not asked")
		repeated := "repeated"
		if o := first.Output; o != nil {
			repeated += ": " + *o
		}
		return Result{ID: "not-asked", Output: &notAsked}, Result{ID: first.ID, Output: &repeated}
	})
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
