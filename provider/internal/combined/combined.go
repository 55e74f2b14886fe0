// Package combined reads the answer of a combined call of the SDK providers
// (provider/openai and provider/anthropic): the JSON object
// {"results":[{"id":...,"output":...}]} the model fills in for a whole
// batch, whichever way the API carries it (a json_schema content, a tool
// input).
package combined

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/aibatch/aibatch/provider"
)

// ErrNoResults is the error of Results for a JSON object without a
// "results" array; its message is `no "results"`.
var ErrNoResults = errors.New(`no "results"`)

// Results decodes data, a combined answer, and matches it to b's requests:
// one result per request the answer gives an output, in the answer's order.
// Ids that are not in b are ignored, and so is every answer to an id after
// the first one; an answer without output is ignored too, so its request
// stays unanswered. It fails with the JSON error when data is not the
// answer's shape, and with ErrNoResults when "results" is missing or null.
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
	ID     string  `json:"id"`
	Output *string `json:"output"`
}

// match keeps the answers to b's requests, as Results documents.
func match(b provider.Batch, answers []item) []provider.Result {
	pending := make(map[string]bool, len(b.Requests))
	for _, r := range b.Requests {
		pending[r.Key] = true
	}
	results := make([]provider.Result, 0, len(answers))
	for _, a := range answers {
		if !pending[a.ID] || a.Output == nil {
			continue // unknown id, repeated id, or no output
		}
		pending[a.ID] = false
		results = append(results, provider.Result{Key: a.ID, Output: *a.Output})
	}
	return results
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
