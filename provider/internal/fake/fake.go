// Package fake holds the machinery the provider fakes (provider/openaitest,
// provider/anthropictest and provider/httpapitest) share: the behaviour
// controls every fake offers (FailNext, SetDelay, DropItems, Shuffle,
// SetMalformedNext, OmitInput, RejectInput, RepeatIDs, SetResultsFunc), the
// faults real providers show (SetOutputCap, RefuseInput, RequireKey,
// FailFor, HangFor, SetWrongAfter), an account's rate limits with the
// headers that report them (SetRateLimit, Admit, OpenAIRateHeaders,
// AnthropicRateHeaders) and the record of call sizes (CallSizes), the counting
// behind Calls and MaxConcurrent, the log behind Requests, and small HTTP
// and JSON helpers (cutting an answer off, reading the batch schema).
//
// Each fake keeps its own documented methods and delegates to a Controls:
// what a control does to an answer (a batch answer, a plain answer, a job)
// is the fake's business, and its doc comment says so.
package fake

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// MaxBodyBytes caps the request body a fake reads.
const MaxBodyBytes = 32 << 20

// Controls is the state of the shared behaviour controls of a fake whose
// batch answers hold results of type R. The zero value is ready to use; all
// methods are safe for concurrent use.
type Controls[R any] struct {
	faults // SetOutputCap, RefuseInput, RequireKey, FailFor, HangFor, CallSizes
	mixUp  // SetWrongAfter, AnswerAt
	quota  // SetRateLimit, Admit, RateLimited, LowestRemaining

	calls, inFlight, maxInFlight atomic.Int64
	malformed                    Countdown

	mu        sync.Mutex
	failN     int
	failCode  int
	delay     time.Duration
	drop      int
	shuffle   bool
	repeatIDs bool
	transform func([]R) []R
	omit      map[string]bool
	reject    map[string]bool // input -> retryable
}

// Counted wraps h so that Calls and MaxConcurrent count its calls, from
// before it reads the body to its return.
func (c *Controls[R]) Counted(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c.calls.Add(1)
		n := c.inFlight.Add(1)
		defer c.inFlight.Add(-1)
		for {
			m := c.maxInFlight.Load()
			if n <= m || c.maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		h(w, r)
	}
}

// Calls returns how many calls Counted handlers have received.
func (c *Controls[R]) Calls() int64 { return c.calls.Load() }

// MaxConcurrent returns the largest number of calls Counted handlers were
// handling at the same moment.
func (c *Controls[R]) MaxConcurrent() int64 { return c.maxInFlight.Load() }

// FailNext makes TakeFailure return status for its next n calls, replacing
// any failures still pending; n <= 0 cancels them.
func (c *Controls[R]) FailNext(n int, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failN, c.failCode = max(n, 0), status
}

// TakeFailure consumes one pending failure, returning its status, or 0 when
// none is pending.
func (c *Controls[R]) TakeFailure() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failN == 0 {
		return 0
	}
	c.failN--
	return c.failCode
}

// SetDelay makes Wait wait d; 0 removes the delay.
func (c *Controls[R]) SetDelay(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.delay = d
}

// Wait waits the delay SetDelay set, or until r's context ends; it reports
// whether the whole wait passed (false: the client is gone, answer
// nothing). Read r's body before calling it: only then does net/http notice
// a client that goes away and cancel r's context.
func (c *Controls[R]) Wait(r *http.Request) bool {
	c.mu.Lock()
	d := c.delay
	c.mu.Unlock()
	return d <= 0 || Sleep(r, d)
}

// DropItems sets Behaviour.Drop to n (0 when n < 0).
func (c *Controls[R]) DropItems(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop = max(n, 0)
}

// Shuffle sets Behaviour.Shuffle and what Shuffling reports.
func (c *Controls[R]) Shuffle(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shuffle = on
}

// Shuffling reports whether Shuffle is on.
func (c *Controls[R]) Shuffling() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.shuffle
}

// SetMalformedNext makes TakeMalformed report true for its next n calls
// (none when n <= 0), replacing any count still pending.
func (c *Controls[R]) SetMalformedNext(n int) { c.malformed.Set(n) }

// TakeMalformed consumes one pending SetMalformedNext answer and reports
// whether there was one.
func (c *Controls[R]) TakeMalformed() bool { return c.malformed.Take() }

// RepeatIDs sets Behaviour.RepeatIDs.
func (c *Controls[R]) RepeatIDs(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.repeatIDs = on
}

// SetResultsFunc sets Behaviour.Transform; nil removes it.
func (c *Controls[R]) SetResultsFunc(f func([]R) []R) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.transform = f
}

// OmitInput adds input to Behaviour.Omit and to what Omitted reports.
func (c *Controls[R]) OmitInput(input string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.omit == nil {
		c.omit = map[string]bool{}
	}
	c.omit[input] = true
}

// Omitted reports whether OmitInput named input.
func (c *Controls[R]) Omitted(input string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.omit[input]
}

// RejectInput adds input to Behaviour.Reject and to what Rejected reports,
// retryable or not; a later call for the same input replaces retryable.
func (c *Controls[R]) RejectInput(input string, retryable bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reject == nil {
		c.reject = map[string]bool{}
	}
	c.reject[input] = retryable
}

// Rejected reports whether RejectInput named input, and whether retryably.
func (c *Controls[R]) Rejected(input string) (rejected, retryable bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	retryable, rejected = c.reject[input]
	return rejected, retryable
}

// Behaviour returns what the steady controls say about one answer, all read
// at the same moment. It consumes nothing: one-shot controls are taken on
// their own (TakeFailure, TakeMalformed, a fake's Countdowns).
func (c *Controls[R]) Behaviour() Behaviour[R] {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := Behaviour[R]{Drop: c.drop, Shuffle: c.shuffle, RepeatIDs: c.repeatIDs, Transform: c.transform,
		Omit: make(map[string]bool, len(c.omit)), Reject: make(map[string]bool, len(c.reject))}
	for in := range c.omit {
		b.Omit[in] = true
	}
	for in, retryable := range c.reject {
		b.Reject[in] = retryable
	}
	return b
}

// Behaviour is what the steady controls say about one answer.
type Behaviour[R any] struct {
	// Drop is how many items at the end of a request the answer leaves out.
	Drop int
	// Shuffle puts the answer's results in random order.
	Shuffle bool
	// RepeatIDs adds a result for an id not asked and a second result for
	// the first id.
	RepeatIDs bool
	// Transform, when set, rewrites the results after Shuffle.
	Transform func([]R) []R
	// Omit holds the inputs OmitInput named.
	Omit map[string]bool
	// Reject maps the inputs RejectInput named to whether they are
	// retryable.
	Reject map[string]bool
}

// Kept returns how many of a request's n items are answered once Drop
// items are left out.
func (b Behaviour[R]) Kept(n int) int { return max(n-b.Drop, 0) }

// LeftOut reports whether an answer that cannot refuse one item alone
// leaves out the item for input: OmitInput or RejectInput named it.
func (b Behaviour[R]) LeftOut(input string) bool {
	_, rejected := b.Reject[input]
	return b.Omit[input] || rejected
}

// Finish applies the answer-wide controls to results, the results for a
// request's kept items in request order, and returns them, never nil:
//   - Shuffle puts them in random order, an order that differs from the
//     original whenever two results differ (same says when two look alike);
//   - Transform rewrites them;
//   - RepeatIDs, when there is a result, adds the first result repeat gives
//     (for an id not asked) in front and its second one (for the id of the
//     first result, first) at the end.
func (b Behaviour[R]) Finish(results []R, same func(x, y R) bool, repeat func(first R) (notAsked, again R)) []R {
	if b.Shuffle && len(results) > 1 {
		orig := slices.Clone(results)
		rand.Shuffle(len(results), func(i, j int) { results[i], results[j] = results[j], results[i] })
		unchanged := true
		for i := range results {
			unchanged = unchanged && same(orig[i], results[i])
		}
		if unchanged { // make the shuffle visible
			results = append(results[1:], results[0])
		}
	}
	if b.Transform != nil {
		results = b.Transform(results)
	}
	if b.RepeatIDs && len(results) > 0 {
		notAsked, again := repeat(results[0])
		results = append([]R{notAsked}, results...)
		results = append(results, again)
	}
	if results == nil {
		results = []R{}
	}
	return results
}

// Countdown counts the answers a one-shot control (SetMalformedNext,
// RefuseNext, ...) still applies to. The zero value is 0; it is safe for
// concurrent use.
type Countdown struct{ n atomic.Int64 }

// Set makes the control apply to the next n answers (none when n <= 0),
// replacing any count still pending.
func (c *Countdown) Set(n int) { c.n.Store(int64(max(n, 0))) }

// Take consumes one pending answer and reports whether there was one.
func (c *Countdown) Take() bool {
	for {
		n := c.n.Load()
		if n <= 0 {
			return false
		}
		if c.n.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// Log keeps the requests a fake received, for its Requests method. The zero
// value is empty; it is safe for concurrent use.
type Log[T any] struct {
	mu    sync.Mutex
	items []T
}

// Add appends v.
func (l *Log[T]) Add(v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.items = append(l.items, v)
}

// All returns a copy of what Add appended, oldest first; nil when nothing
// was.
func (l *Log[T]) All() []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]T(nil), l.items...)
}

// PerInput maps inputs to what a fake injects for the requests with that
// input (a job line's status, a batch request's error type). The zero value
// is empty; it is safe for concurrent use.
type PerInput[V comparable] struct {
	mu sync.Mutex
	m  map[string]V
}

// Set maps each of inputs to v; the zero value of V removes them.
func (p *PerInput[V]) Set(v V, inputs ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var zero V
	for _, in := range inputs {
		switch {
		case v == zero:
			delete(p.m, in)
		case p.m == nil:
			p.m = map[string]V{in: v}
		default:
			p.m[in] = v
		}
	}
}

// Get returns what input is mapped to, or the zero value of V.
func (p *PerInput[V]) Get(input string) V {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[input]
}

// BatchSchema is the JSON schema of a batch answer,
// {"results":[{"id":...,"output":...}]}, that the openai and anthropic fakes
// require a batch request to declare, its "id" optionally restricted by an
// "enum" of the batch's ids (see ParseBatchSchema).
const BatchSchema = `{"type":"object","properties":{"results":{"type":"array","items":{"type":"object","properties":{"id":{"type":"string"},"output":{"type":"string"}},"required":["id","output"],"additionalProperties":false}}},"required":["results"],"additionalProperties":false}`

// MarshalJSON encodes v as the real APIs write JSON: <, > and & are not
// escaped, and there is no trailing newline. It panics should v not encode:
// the fakes encode plain structs only.
func MarshalJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // plain structs: cannot fail
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// JSONL encodes lines as JSON Lines: each as MarshalJSON does, followed by
// a newline. With shuffle set it first puts lines in random order, in
// place.
func JSONL[T any](lines []T, shuffle bool) []byte {
	if shuffle {
		rand.Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
	}
	var buf bytes.Buffer
	for _, l := range lines {
		buf.Write(MarshalJSON(l))
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

// Sleep waits d or until r's context ends; it reports whether the whole
// wait passed.
func Sleep(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.Context().Done():
		return false
	case <-t.C:
		return true
	}
}

// Tokens is the fakes' token count for n bytes of text: n/4 rounded up.
func Tokens(n int) int64 { return int64(n+3) / 4 }

// WriteJSON answers status with v as a JSON body, or 500 should v not
// encode.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v, false) }

// WriteAnswer answers 200 with v as a JSON body as WriteJSON does; with cut
// set (a SetMalformedNext answer) the body is cut in half, so that it is
// not valid JSON.
func WriteAnswer(w http.ResponseWriter, v any, cut bool) { writeJSON(w, http.StatusOK, v, cut) }

func writeJSON(w http.ResponseWriter, status int, v any, cut bool) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if cut {
		body = body[:len(body)/2]
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
