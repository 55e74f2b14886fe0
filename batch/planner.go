package batch

import (
	"fmt"

	"github.com/aibatch/aibatch/provider"
)

// planner decides which requests share a call: requests of one group (the
// same model and instructions) in arrival order, split so that no call's
// estimated prompt passes maxBatchTokens.
type planner struct {
	// maxBatchTokens caps a call's estimated prompt; 0 means no cap.
	maxBatchTokens int
}

// plan returns the calls to make for the items that have no outcome yet,
// each a non-empty list of items. A request too large for a call on its own
// is rejected instead.
func (p planner) plan(items []*item) [][]*item {
	var calls [][]*item
	for _, g := range groupForCalls(items) {
		calls = append(calls, p.splitForTokens(g)...)
	}
	return calls
}

// groupForCalls splits the items without an outcome into groups that may
// share one call: same model and same instructions, in arrival order.
func groupForCalls(items []*item) [][]*item {
	type key struct{ model, instructions string }
	var order []key
	groups := make(map[key][]*item)
	for _, it := range items {
		if it.outcome != outcomeNone {
			continue
		}
		k := key{it.req.Model, it.req.Instructions}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], it)
	}
	out := make([][]*item, 0, len(order))
	for _, k := range order {
		out = append(out, groups[k])
	}
	return out
}

// splitForTokens splits a group into parts whose estimated prompt stays
// within maxBatchTokens. With no cap the group is one part.
func (p planner) splitForTokens(group []*item) [][]*item {
	limit := p.maxBatchTokens
	if limit == 0 {
		return [][]*item{group}
	}
	base := callOverheadTokens + EstimateTokens(group[0].req.Instructions)
	var parts [][]*item
	var cur []*item
	used := base
	for _, it := range group {
		need := itemOverheadTokens + EstimateTokens(it.req.Input)
		if base+need > limit {
			it.reject(fmt.Errorf("request needs about %d prompt tokens with its instructions, over MAX_BATCH_TOKENS (%d)", base+need, limit))
			continue
		}
		if used+need > limit && len(cur) > 0 {
			parts = append(parts, cur)
			cur, used = nil, base
		}
		cur = append(cur, it)
		used += need
	}
	if len(cur) > 0 {
		parts = append(parts, cur)
	}
	return parts
}

// Token estimates are made from bytes, without a tokenizer: about 4 bytes a
// token for English text, as the providers' own guidance says. They decide
// how a batch is split, not what it costs; costs use the usage the provider
// reports.
const (
	bytesPerToken = 4
	// itemOverheadTokens covers an item's JSON framing ({"id":"12","input":""}).
	itemOverheadTokens = 8
	// callOverheadTokens covers a call's fixed part: the answer-format
	// explanation and message framing.
	callOverheadTokens = 64
	// soloCallOverheadTokens is a one-request call's framing (message roles);
	// kept low so the estimated saving of batching is not flattered.
	soloCallOverheadTokens = 8
)

// EstimateTokens estimates the tokens of text from its length in bytes.
func EstimateTokens(text string) int {
	return (len(text) + bytesPerToken - 1) / bytesPerToken
}

// soloPromptTokens estimates the prompt tokens b's requests would need sent
// one per call: each call repeats the instructions and the framing.
func soloPromptTokens(b provider.Batch) int64 {
	per := soloCallOverheadTokens + EstimateTokens(b.Instructions)
	var n int64
	for _, r := range b.Requests {
		n += int64(per + EstimateTokens(r.Input))
	}
	return n
}
