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
	"math/rand/v2"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Path is the path the fake serves the bulk endpoint on.
const Path = "/v1/batch"

// maxBodyBytes caps the request body the fake reads.
const maxBodyBytes = 32 << 20

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

	calls       atomic.Int64
	inFlight    atomic.Int64
	maxInFlight atomic.Int64

	mu        sync.Mutex
	failN     int
	failCode  int
	delay     time.Duration
	drop      int
	shuffle   bool
	malformed int
	repeatIDs bool
	transform func([]Result) []Result
	omit      map[string]bool
	reject    map[string]bool // input -> retryable
	requests  []Request
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
	s := &Server{omit: map[string]bool{}, reject: map[string]bool{}}
	for _, o := range opts {
		o(s)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(Path, s.serve)
	s.ts = httptest.NewServer(mux)
	s.URL = s.ts.URL + Path
	return s
}

// Close shuts the server down, blocking until all outstanding requests on it
// have completed.
func (s *Server) Close() { s.ts.Close() }

// Calls returns how many calls the endpoint has received, including the ones
// it answered with an error.
func (s *Server) Calls() int64 { return s.calls.Load() }

// MaxConcurrent returns the largest number of calls the endpoint was handling
// at the same moment.
func (s *Server) MaxConcurrent() int64 { return s.maxInFlight.Load() }

// FailNext makes the next n calls answer status with {"error":"..."}; 429
// answers carry "Retry-After: 1". It replaces any failures still pending;
// n <= 0 cancels them.
func (s *Server) FailNext(n int, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failCode = max(n, 0), status
}

// SetDelay makes each call wait d before it is answered, or until the
// request's context ends (then nothing is answered). 0 removes the delay.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// DropItems makes each answer leave out the last n items of its request (in
// request order). 0 restores complete answers.
func (s *Server) DropItems(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop = max(n, 0)
}

// Shuffle makes answers list their results in random order.
func (s *Server) Shuffle(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shuffle = on
}

// SetMalformedNext makes the next n successful answers' bodies cut off, so
// they are not valid JSON.
func (s *Server) SetMalformedNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.malformed = max(n, 0)
}

// OmitInput makes answers leave out every item whose input is input.
func (s *Server) OmitInput(input string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.omit[input] = true
}

// RejectInput makes answers refuse every item whose input is input with a
// per-item {"id","error":"rejected by the fake endpoint","retryable":...}
// result, while the other items are answered.
func (s *Server) RejectInput(input string, retryable bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reject[input] = retryable
}

// RepeatIDs makes each answer (after SetResultsFunc) start with a result for
// the id "not-asked" and end with a second result for its first id, whose
// output is "repeated: " + the first output.
func (s *Server) RepeatIDs(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repeatIDs = on
}

// SetResultsFunc installs f to rewrite each answer's results after
// DropItems, OmitInput, RejectInput and Shuffle were applied. nil removes it.
func (s *Server) SetResultsFunc(f func([]Result) []Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.transform = f
}

// Requests returns the calls received so far whose body could be decoded,
// oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// behaviour is what one call does, taken from the controls under s.mu.
type behaviour struct {
	drop      int
	shuffle   bool
	malformed bool
	repeatIDs bool
	transform func([]Result) []Result
	omit      map[string]bool
	reject    map[string]bool
}

func (s *Server) takeFailure() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failN == 0 {
		return 0
	}
	s.failN--
	return s.failCode
}

func (s *Server) takeBehaviour() behaviour {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := behaviour{drop: s.drop, shuffle: s.shuffle, repeatIDs: s.repeatIDs, transform: s.transform,
		omit: map[string]bool{}, reject: map[string]bool{}}
	for k := range s.omit {
		b.omit[k] = true
	}
	for k, v := range s.reject {
		b.reject[k] = v
	}
	if s.malformed > 0 {
		s.malformed--
		b.malformed = true
	}
	return b
}

func (s *Server) currentDelay() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delay
}

func (s *Server) record(r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r)
}

func (s *Server) enter() func() {
	n := s.inFlight.Add(1)
	for {
		m := s.maxInFlight.Load()
		if n <= m || s.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	return func() { s.inFlight.Add(-1) }
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	defer s.enter()()

	// Read the body before waiting: only then does net/http notice a client
	// that goes away and cancel r.Context().
	body, bodyErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if d := s.currentDelay(); d > 0 && !sleep(r, d) {
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
	if status := s.takeFailure(); status != 0 {
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
	s.record(Request{Items: req.Items, Header: r.Header.Clone(), Body: body})
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

	b := s.takeBehaviour()
	data, err := json.Marshal(map[string][]Result{"results": answer(req.Items, b)})
	if err != nil {
		panic(err) // plain structs: cannot fail
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if b.malformed {
		data = data[:len(data)/2] // cut off: not JSON
	}
	_, _ = w.Write(data)
}

// answer builds the results for items as b says.
func answer(items []Item, b behaviour) []Result {
	items = items[:max(len(items)-b.drop, 0)]
	results := make([]Result, 0, len(items))
	for _, it := range items {
		switch retryable, rejected := b.reject[it.Input]; {
		case rejected:
			results = append(results, Result{ID: it.ID, Error: "rejected by the fake endpoint", Retryable: retryable})
		case !b.omit[it.Input]:
			out := Answer(it.Input)
			results = append(results, Result{ID: it.ID, Output: &out, Usage: &Usage{
				InputTokens:  tokens(len(it.Instructions) + len(it.Input)),
				OutputTokens: tokens(len(out)),
			}})
		}
	}
	if b.shuffle && len(results) > 1 {
		orig := slices.Clone(results)
		rand.Shuffle(len(results), func(i, j int) { results[i], results[j] = results[j], results[i] })
		if slices.EqualFunc(orig, results, func(a, b Result) bool { return a.ID == b.ID }) {
			results = append(results[1:], results[0])
		}
	}
	if b.transform != nil {
		results = b.transform(results)
	}
	if b.repeatIDs && len(results) > 0 {
		notAsked := Answer("not asked")
		repeated := "repeated"
		if o := results[0].Output; o != nil {
			repeated += ": " + *o
		}
		results = append([]Result{{ID: "not-asked", Output: &notAsked}}, results...)
		results = append(results, Result{ID: results[1].ID, Output: &repeated})
	}
	if results == nil {
		results = []Result{}
	}
	return results
}

// tokens is the fake's token count for n bytes of text: n/4 rounded up.
func tokens(n int) int64 { return int64(n+3) / 4 }

// sleep waits d or until the request's context ends; it reports whether the
// whole wait passed.
func sleep(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.Context().Done():
		return false
	case <-t.C:
		return true
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
