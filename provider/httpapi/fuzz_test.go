package httpapi

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aibatch/aibatch/provider"
)

// The fuzz targets below run on their checked-in seed corpus
// (testdata/fuzz/<name>/) with every `go test`; `make fuzz` explores further.

// maxParseErrorBytes bounds the text of a parse error and of an item's
// error: they reach logs, error results and dead letters, so they must not
// echo the answer beyond a short quote.
const maxParseErrorBytes = 1024

// fuzzBatch is a batch of n requests (1 to 16) keyed "0".."n-1", as the
// engine keys them.
func fuzzBatch(n uint8) provider.Batch {
	b := provider.Batch{ID: "fuzz", Model: "m", Requests: make([]provider.Request, int(n%16)+1)}
	for i := range b.Requests {
		b.Requests[i] = provider.Request{Key: strconv.Itoa(i), Input: "input " + strconv.Itoa(i)}
	}
	return b
}

// checkParsed holds for any answer: an error is ScopeBatch, short and
// comes without results, and is transient unless the answer said it was
// truncated; otherwise results are only for the batch's keys, each at most
// once, and an item's error is classified (permanent or transient,
// ScopeRequest), short, and comes without output.
func checkParsed(t *testing.T, b provider.Batch, results []provider.Result, err error) {
	t.Helper()
	if err != nil {
		// Only a cut-off answer keeps results: those it completed.
		if results != nil && !errors.Is(err, provider.ErrCutOff) {
			t.Fatalf("error %v came with %d results", err, len(results))
		}
		if provider.ScopeOf(err) != provider.ScopeBatch {
			t.Fatalf("unparsable answer gave %v, want a ScopeBatch error (split and retried)", err)
		}
		if !errors.Is(err, provider.ErrTransient) && !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("unparsable answer gave %v, want a transient error (retried)", err)
		}
		if n := len(err.Error()); n > maxParseErrorBytes {
			t.Fatalf("parse error is %d bytes, over %d: %.200q", n, maxParseErrorBytes, err)
		}
		if !errors.Is(err, provider.ErrCutOff) {
			return
		}
	}
	keys := make(map[string]bool, len(b.Requests))
	for _, r := range b.Requests {
		keys[r.Key] = true
	}
	seen := make(map[string]bool, len(results))
	for _, r := range results {
		if !keys[r.Key] {
			t.Fatalf("result for key %q, which the batch does not have", r.Key)
		}
		if seen[r.Key] {
			t.Fatalf("two results for key %q", r.Key)
		}
		seen[r.Key] = true
		if !utf8.ValidString(r.Output) {
			t.Fatalf("result %q output is not valid UTF-8: %q", r.Key, r.Output)
		}
		if r.Err == nil {
			continue
		}
		if r.Output != "" {
			t.Fatalf("result %q has both an error and output %q", r.Key, r.Output)
		}
		if !errors.Is(r.Err, provider.ErrPermanent) && !errors.Is(r.Err, provider.ErrTransient) {
			t.Fatalf("result %q error %v is neither permanent nor transient", r.Key, r.Err)
		}
		if provider.ScopeOf(r.Err) != provider.ScopeRequest {
			t.Fatalf("result %q error %v is not ScopeRequest", r.Key, r.Err)
		}
		if n := len(r.Err.Error()); n > maxParseErrorBytes {
			t.Fatalf("result %q error is %d bytes, over %d", r.Key, n, maxParseErrorBytes)
		}
	}
}

// FuzzParseAnswer feeds parseAnswer any answer body: it never panics, an
// accepted body is valid JSON, and checkParsed holds.
func FuzzParseAnswer(f *testing.F) {
	f.Add([]byte(`{"results":[{"id":"0","output":"a","usage":{"input_tokens":1,"output_tokens":2}}]}`), uint8(0))
	f.Add([]byte(`{"results":[{"id":"1","error":"bad","retryable":true},{"id":"0","output":null}]}`), uint8(1))
	f.Fuzz(func(t *testing.T, body []byte, n uint8) {
		b := fuzzBatch(n)
		results, err := parseAnswer(b, body)
		checkParsed(t, b, results, err)
		if err == nil && !json.Valid(body) {
			t.Fatalf("body that is not JSON accepted: %q", body)
		}

	})
}

// FuzzAnswerRoundTrip builds a well-formed answer for a batch of n keys
// (any key text, any output or error text, answered in any order, with
// per-item errors where errMask has a bit set, retryable where retryMask
// has one, optionally with unknown ids, empty entries and repeated ids
// around the real answers), and checks that parseAnswer matches exactly one
// result to each key: the output the answer gave it first, or its error
// with the right class.
func FuzzAnswerRoundTrip(f *testing.F) {
	f.Add("req-", "answer ", uint8(3), uint64(1), uint16(0), uint16(0), false)
	f.Add("", "<&>\u2028\"\\", uint8(15), uint64(42), uint16(0x5555), uint16(0x0f0f), true)
	f.Fuzz(func(t *testing.T, keyPrefix, text string, n uint8, order uint64, errMask, retryMask uint16, extras bool) {
		keyPrefix, text = strings.ToValidUTF8(keyPrefix, "\uFFFD"), strings.ToValidUTF8(text, "\uFFFD")
		b := fuzzBatch(n)
		type entry struct {
			ID        string          `json:"id"`
			Output    *string         `json:"output,omitempty"`
			Error     string          `json:"error,omitempty"`
			Retryable bool            `json:"retryable,omitempty"`
			Usage     *provider.Usage `json:"usage,omitempty"`
		}
		want := make(map[string]entry, len(b.Requests))
		keys := make([]string, len(b.Requests))
		for i := range b.Requests {
			k := keyPrefix + strconv.Itoa(i)
			b.Requests[i].Key, keys[i] = k, k
			e := entry{ID: k, Usage: &provider.Usage{InputTokens: int64(i), OutputTokens: int64(2 * i)}}
			if errMask&(1<<i) != 0 {
				e.Error, e.Retryable = "refused: "+text+strconv.Itoa(i), retryMask&(1<<i) != 0
			} else {
				out := text + strconv.Itoa(i)
				e.Output = &out
			}
			want[k] = e
		}
		rand.New(rand.NewPCG(order, order>>32)).Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		var entries []entry
		if extras {
			unknown := "not-a-key-" + strconv.FormatUint(order, 10)
			for want[unknown].ID != "" {
				unknown += "x"
			}
			entries = append(entries, entry{ID: unknown, Error: "ignored"})
		}
		for _, k := range keys {
			if extras {
				entries = append(entries, entry{ID: k}) // neither output nor error: no answer yet
			}
			entries = append(entries, want[k])
			if extras {
				second := "second answer to " + k
				entries = append(entries, entry{ID: k, Output: &second})
			}
		}
		body, err := json.Marshal(map[string]any{"results": entries})
		if err != nil {
			t.Fatalf("encode answer: %v", err)
		}
		results, err := parseAnswer(b, body)
		if err != nil {
			t.Fatalf("well-formed answer refused: %v\nbody: %s", err, body)
		}
		checkParsed(t, b, results, err)
		if len(results) != len(b.Requests) {
			t.Fatalf("%d results for %d keys\nbody: %s", len(results), len(b.Requests), body)
		}
		for _, r := range results {
			w := want[r.Key]
			if r.Usage != *w.Usage {
				t.Fatalf("key %q: usage %+v, want %+v", r.Key, r.Usage, *w.Usage)
			}
			if w.Error == "" {
				if r.Err != nil || r.Output != *w.Output {
					t.Fatalf("key %q: output %q, error %v; want output %q", r.Key, r.Output, r.Err, *w.Output)
				}
				continue
			}
			if r.Err == nil {
				t.Fatalf("key %q: output %q, want the error %q", r.Key, r.Output, w.Error)
			}
			if got := errors.Is(r.Err, provider.ErrTransient); got != w.Retryable {
				t.Fatalf("key %q: error %v is transient=%t, want %t", r.Key, r.Err, got, w.Retryable)
			}
			if quoted := shorten(w.Error); !strings.Contains(r.Err.Error(), quoted) {
				t.Fatalf("key %q: error %q does not quote the endpoint's reason %q", r.Key, r.Err, quoted)
			}
		}
	})
}
