package anthropic

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/anthropics/anthropic-sdk-go"

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
			t.Fatalf("result %q carries an error %v: a tool_use answer cannot refuse one item", r.Key, r.Err)
		}
		if !utf8.ValidString(r.Output) {
			t.Fatalf("result %q output is not valid UTF-8: %q", r.Key, r.Output)
		}
	}
}

// FuzzParseAnswer feeds parseAnswer a message whose one tool_use block has
// any input, tool name and stop_reason: it never panics; max_tokens, a
// refusal and a block for another tool are always errors; an accepted input
// is valid JSON; checkParsed holds; and when the input is valid JSON, the
// same message decoded from the wire as the SDK does gives the same answer.
func FuzzParseAnswer(f *testing.F) {
	f.Add([]byte(`{"results":[{"id":"0","output":"a"}]}`), "tool_use", ToolName, uint8(0))
	f.Add([]byte(`{"results":[{"id":"1","output":"b"},{"id":"0","output":null}]}`), "end_turn", ToolName, uint8(1))
	f.Fuzz(func(t *testing.T, input []byte, stopReason, toolName string, n uint8) {
		// stop_reason is a short word from the API, quoted in some errors.
		if len(stopReason) > 64 {
			stopReason = stopReason[:64]
		}
		b := fuzzBatch(n)
		msg := &anthropic.Message{
			StopReason: anthropic.StopReason(stopReason),
			Content:    []anthropic.ContentBlockUnion{{Type: "tool_use", ID: "toolu_1", Name: toolName, Input: input}},
		}
		results, err := parseAnswer(b, msg)
		checkParsed(t, b, results, err)
		if err == nil {
			switch {
			case stopReason == string(anthropic.StopReasonMaxTokens) || stopReason == string(anthropic.StopReasonRefusal):
				t.Fatalf("stop_reason %q accepted", stopReason)
			case toolName != ToolName:
				t.Fatalf("a tool_use block for tool %q accepted", toolName)
			case !json.Valid(input):
				t.Fatalf("tool input that is not JSON accepted: %q", input)
			}
		}
		if !json.Valid(input) {
			return
		}
		wire, werr := decodeMessage(t, stopReason, nil, toolName, input)
		if werr != nil {
			return // the SDK refuses this message before parseAnswer sees it
		}
		fromWire, err2 := parseAnswer(b, wire)
		if (err == nil) != (err2 == nil) || !reflect.DeepEqual(results, fromWire) {
			t.Fatalf("decoded from the wire: %v, %v; built directly: %v, %v", fromWire, err2, results, err)
		}
	})
}

// decodeMessage decodes a Messages answer as the SDK receives it: optional
// text blocks, then one tool_use block with input (valid JSON).
func decodeMessage(t *testing.T, stopReason string, texts []string, toolName string, input []byte) (*anthropic.Message, error) {
	t.Helper()
	content := make([]any, 0, len(texts)+1)
	for _, s := range texts {
		content = append(content, map[string]any{"type": "text", "text": s})
	}
	content = append(content, map[string]any{"type": "tool_use", "id": "toolu_1", "name": toolName, "input": json.RawMessage(input)})
	body, err := json.Marshal(map[string]any{
		"id": "msg_fuzz", "type": "message", "role": "assistant", "model": "m",
		"content": content, "stop_reason": stopReason, "stop_sequence": nil,
		"usage": map[string]any{"input_tokens": 10, "output_tokens": 5},
	})
	if err != nil {
		t.Fatalf("encode message: %v", err)
	}
	var msg anthropic.Message
	if err := json.Unmarshal(body, &msg); err != nil {
		return nil, err
	}
	return &msg, nil
}

// FuzzAnswerRoundTrip builds a well-formed tool_use answer for a batch of
// n keys (any key text, any output text, answered in any order, optionally
// after a text block and with unknown ids, null outputs and repeated ids
// around the real answers), decodes it as the SDK does, and checks that
// parseAnswer matches exactly one result to each key, with the output the
// answer gave it first.
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
		input := roundTripInput(t, b, want, order, extras)
		var texts []string
		if extras {
			texts = []string{"Here are the results: " + output}
		}
		msg, err := decodeMessage(t, "tool_use", texts, ToolName, input)
		if err != nil {
			t.Fatalf("decode message as the SDK does: %v", err)
		}
		results, err := parseAnswer(b, msg)
		if err != nil {
			t.Fatalf("well-formed answer refused: %v\ninput: %s", err, input)
		}
		checkParsed(t, b, results, err)
		if len(results) != len(b.Requests) {
			t.Fatalf("%d results for %d keys\ninput: %s", len(results), len(b.Requests), input)
		}
		for _, r := range results {
			if r.Output != want[r.Key] {
				t.Fatalf("key %q: output %q, want %q", r.Key, r.Output, want[r.Key])
			}
		}
	})
}

// roundTripInput is the tool input answering every key of b with
// want[key], in an order drawn from order. With extras it also holds an
// unknown id, a null output before each real answer, and a second answer
// after it, none of which may count.
func roundTripInput(t *testing.T, b provider.Batch, want map[string]string, order uint64, extras bool) []byte {
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
	input, err := json.Marshal(struct {
		Results []entry `json:"results"`
	}{entries})
	if err != nil {
		t.Fatalf("encode tool input: %v", err)
	}
	return input
}
