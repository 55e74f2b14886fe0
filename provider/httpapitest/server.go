// Package httpapitest runs a fake bulk endpoint for the http provider
// (package provider/httpapi) in tests, in the manner of net/http/httptest.
//
// The fake implements the endpoint contract documented in package httpapi:
// it accepts POST {"items":[{"id","input","instructions","model",
// "max_output_tokens"}]} and answers {"results":[{"id","output","usage"}]},
// with per-item {"id","error","retryable"} entries for items it refuses, and
// {"error":"..."} bodies with the HTTP status for whole-call failures. It
// answers deterministically: the output for an input is always
// Answer(input).
//
// Behaviour controls (FailNext, SetDelay, DropItems, ...) are methods on
// *Server and are safe to call while the server runs.
package httpapitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/aibatch/aibatch/provider/internal/fake"
)

// Path is the path the fake serves the bulk endpoint on.
const Path = "/v1/batch"

// Answer is the fake model's deterministic answer to input.
func Answer(input string) string { return "processed: " + input }

// Item is one entry of a request's "items".
type Item struct {
	ID              string `json:"id"`
	Input           string `json:"input"`
	Instructions    string `json:"instructions"`
	Model           string `json:"model"`
	MaxOutputTokens int    `json:"max_output_tokens,omitempty"`
}

// Result is one entry of an answer's "results". Exactly one of Output and
// Error is set by the fake; SetResultsFunc may write any combination.
type Result struct {
	ID        string  `json:"id"`
	Output    *string `json:"output,omitempty"`
	Error     string  `json:"error,omitempty"`
	Retryable bool    `json:"retryable,omitempty"`
	Usage     *Usage  `json:"usage,omitempty"`
}

// Usage is a result's token counts.
type Usage struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
}

// Request is one decoded call, as Requests returns it.
type Request struct {
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

	ts    *httptest.Server
	token string // required bearer token; "" requires none

	ctl      fake.Controls[Result]
	requests fake.Log[Request]
}

// Option configures a Server at construction.
type Option func(*Server)

// WithToken makes the server require "Authorization: Bearer token"; other
// calls get 401. By default no authorization is required.
func WithToken(token string) Option {
	return func(s *Server) { s.token = token }
}

// NewServer starts a fake endpoint on a loopback port. Call Close when done.
func NewServer(opts ...Option) *Server {
	s := &Server{}
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

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, bodyErr := io.ReadAll(http.MaxBytesReader(w, r.Body, fake.MaxBodyBytes))
	if !s.ctl.Wait(r) {
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	if s.token != "" && r.Header.Get("Authorization") != "Bearer "+s.token {
		writeError(w, http.StatusUnauthorized, "invalid or missing bearer token")
		return
	}
	if status := s.ctl.TakeFailure(); status != 0 {
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
		Items []Item `json:"items"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body is not {\"items\":[...]}: "+err.Error())
		return
	}
	s.requests.Add(Request{Items: req.Items, Header: r.Header.Clone(), Body: body})
	if len(req.Items) == 0 {
		writeError(w, http.StatusBadRequest, "items is empty")
		return
	}
	for i, it := range req.Items {
		if it.ID == "" || it.Input == "" || it.Model == "" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("items[%d]: id, input and model are required", i))
			return
		}
	}

	malformed := s.ctl.TakeMalformed()
	fake.WriteAnswer(w, map[string][]Result{"results": answer(req.Items, s.ctl.Behaviour())}, malformed)
}

// answer builds the results for items as b says.
func answer(items []Item, b fake.Behaviour[Result]) []Result {
	results := make([]Result, 0, len(items))
	for _, it := range items[:b.Kept(len(items))] {
		switch retryable, rejected := b.Reject[it.Input]; {
		case rejected:
			results = append(results, Result{ID: it.ID, Error: "rejected by the fake endpoint", Retryable: retryable})
		case !b.Omit[it.Input]:
			out := Answer(it.Input)
			results = append(results, Result{ID: it.ID, Output: &out, Usage: &Usage{
				InputTokens:  fake.Tokens(len(it.Instructions) + len(it.Input)),
				OutputTokens: fake.Tokens(len(out)),
			}})
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
