// Package combined reads the answer of a combined call of the SDK providers
// (provider/openai and provider/anthropic): the JSON object
// {"results":[{"id":...,"output":...}]} the model fills in for a whole
// batch, whichever way the API carries it (a json_schema content, a tool
// input).
package combined

import (
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
		Results *[]struct {
			ID     string  `json:"id"`
			Output *string `json:"output"`
		} `json:"results"`
	}
	if err := json.Unmarshal(data, &answer); err != nil {
		return nil, err
	}
	if answer.Results == nil {
		return nil, ErrNoResults
	}
	pending := make(map[string]bool, len(b.Requests))
	for _, r := range b.Requests {
		pending[r.Key] = true
	}
	results := make([]provider.Result, 0, len(b.Requests))
	for _, a := range *answer.Results {
		if !pending[a.ID] || a.Output == nil {
			continue // unknown id, repeated id, or no output
		}
		pending[a.ID] = false
		results = append(results, provider.Result{Key: a.ID, Output: *a.Output})
	}
	return results, nil
}
