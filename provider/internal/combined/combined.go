// Package combined is the combined call of the SDK providers
// (provider/openai and provider/anthropic): the user message that carries a
// batch's items (UserMessage), the words that explain it (Describe), the
// JSON schema of the answer (Schema), and the reading of that answer: the
// JSON object {"results":[{"id":...,"output":...}]} the model fills in for
// a whole batch, whichever way the API carries it (a json_schema content, a
// tool input).
package combined

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// ErrNoResults is the error of Results for a JSON object without a
// "results" array; its message is `no "results"`.
var ErrNoResults = errors.New(`no "results"`)

// Results decodes data, a combined answer, and matches it to b's requests:
// one result per request the answer gives an output, in the answer's order.
// Ids that are not in b are ignored, and so is every answer to an id after
// the first one; an answer without output, or with an output that is not
// what b's Format asks (see Output), is ignored too, so its request stays
// unanswered. It fails with the JSON error when data is not the answer's
// shape, and with ErrNoResults when "results" is missing or null.
func Results(b provider.Batch, data []byte) ([]provider.Result, error) {
	var answer struct {
		Results *[]item `json:"results"`
	}
	if err := json.Unmarshal(data, &answer); err != nil {
		return nil, err
	}
	if answer.Results == nil {
		return nil, ErrNoResults
	}
	return match(b, *answer.Results), nil
}

// item is one entry of a combined answer's "results".
type item struct {
	ID     string          `json:"id"`
	Output json.RawMessage `json:"output"`
}

// match keeps the answers to b's requests, as Results documents.
func match(b provider.Batch, answers []item) []provider.Result {
	pending := make(map[string]*provider.Request, len(b.Requests))
	for i := range b.Requests {
		pending[b.Requests[i].Key] = &b.Requests[i]
	}
	results := make([]provider.Result, 0, len(answers))
	for _, a := range answers {
		r := pending[a.ID]
		if r == nil {
			continue // unknown or repeated id
		}
		out, finish, ok := Output(b, *r, a.Output)
		if !ok {
			continue // no output, or not of the format asked
		}
		pending[a.ID] = nil
		results = append(results, provider.Result{Key: a.ID, Output: out, FinishReason: finish})
	}
	return results
}

// Output reads raw, the "output" of request r's entry in a combined answer
// for b, as b's Format asks, and returns the request's Output and
// FinishReason; ok is false when raw is missing, null or not of that
// format:
//   - free text: a JSON string. The text is cut at the first of the
//     batch's stop sequences (FinishReason "stop"), and to about r's own
//     MaxOutputTokens (4 bytes a token, FinishReason "length") when longer.
//   - FormatJSONSchema: any JSON value, whose compact text is the Output;
//     a string holding JSON text stands for that JSON.
//   - FormatJSONObject: a JSON object, or a string holding one.
func Output(b provider.Batch, r provider.Request, raw json.RawMessage) (out, finish string, ok bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", "", false
	}
	format := wire.FormatText
	if b.Format != nil {
		format = b.Format.Type
	}
	var text string
	isString := raw[0] == '"' && json.Unmarshal(raw, &text) == nil
	switch format {
	case wire.FormatJSONSchema, wire.FormatJSONObject:
		value := raw
		if t := strings.TrimSpace(text); isString && t != "" && (t[0] == '{' || t[0] == '[') && json.Valid([]byte(t)) {
			value = []byte(t)
		}
		var compact bytes.Buffer
		if json.Compact(&compact, value) != nil {
			return "", "", false
		}
		if format == wire.FormatJSONObject && compact.Bytes()[0] != '{' {
			return "", "", false
		}
		return compact.String(), "stop", true
	}
	if !isString {
		return "", "", false
	}
	text, finish = Finish(text, b.Params.Stop, r.MaxOutputTokens)
	return text, finish, true
}

// bytesPerToken is the estimate Finish cuts an answer by: about 4 bytes a
// token for English text, as the providers' guidance says.
const bytesPerToken = 4

// Finish applies to one answer of a combined call what the API would have
// done to it in a call of its own: it ends the text before the first of
// the stop sequences ("stop"), and cuts a text longer than maxTokens
// (none when <= 0, estimated at 4 bytes a token) on a rune boundary
// ("length").
func Finish(text string, stop []string, maxTokens int) (string, string) {
	for _, s := range stop {
		if i := strings.Index(text, s); i >= 0 && s != "" {
			text = text[:i]
		}
	}
	if n := maxTokens * bytesPerToken; maxTokens > 0 && len(text) > n {
		for n > 0 && !utf8.RuneStart(text[n]) {
			n--
		}
		return text[:n], "length"
	}
	return text, "stop"
}

// Completed reads an answer cut off at the output limit: the results whose
// entries the answer finished before the cut, matched to b's requests as
// Results does. It never fails; an answer cut before its first complete
// entry, or not of the answer's shape, completes nothing.
func Completed(b provider.Batch, data []byte) []provider.Result {
	dec := json.NewDecoder(bytes.NewReader(data))
	expect := func(want json.Delim) bool {
		tok, err := dec.Token()
		return err == nil && tok == want
	}
	if !expect('{') {
		return nil
	}
	// Find "results", skipping any other member before it.
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		if key, ok := tok.(string); ok && key == "results" {
			break
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	if !expect('[') {
		return nil
	}
	var answers []item
	for dec.More() {
		var a item
		if err := dec.Decode(&a); err != nil {
			break // the cut
		}
		answers = append(answers, a)
	}
	return match(b, answers)
}

// CompletedParsed reads an answer cut off at the output limit that the API
// has already parsed "as far as it goes" into valid JSON (Anthropic's tool
// input): its last entry may hold an output cut short, so it is dropped, and
// the entries before it are matched to b's requests as Results does.
func CompletedParsed(b provider.Batch, data []byte) []provider.Result {
	var answer struct {
		Results []item `json:"results"`
	}
	if json.Unmarshal(data, &answer) != nil || len(answer.Results) == 0 {
		return Completed(b, data)
	}
	return match(b, answer.Results[:len(answer.Results)-1])
}
