package batch

import (
	"fmt"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// planner decides which requests share a call: requests of one group (the
// same model and instructions) in arrival order, in calls no larger than the
// group's current size, whose expected answers fit the model's output limit
// and whose estimated prompt stays under maxBatchTokens.
type planner struct {
	// maxBatchTokens caps a call's estimated prompt; 0 means no cap.
	maxBatchTokens int
	// defaultOutputTokens is a request's expected answer length before the
	// group's average is known.
	defaultOutputTokens int
	// outputLimit is a model's output limit per call; 0 when unknown.
	outputLimit func(model string) int
	groups      *groups
}

// call is one provider call the planner asks for.
type call struct {
	items []*item
	// maxOutputTokens is the call's output budget (provider.Batch's); 0
	// leaves it to the provider.
	maxOutputTokens int
}

// plan returns the calls to make for the items that have no outcome yet. A
// request too large for a call on its own is rejected instead.
func (p planner) plan(items []*item) []call {
	var calls []call
	for _, g := range groupForCalls(items) {
		calls = append(calls, p.planGroup(g)...)
	}
	return calls
}

// planGroup cuts one group's items into calls. An embedding group's calls
// have no output to plan; a group of requests sent alone has calls of one.
func (p planner) planGroup(group []*item) []call {
	if k := keyOf(group[0]); k.embedding {
		var calls []call
		for _, bySize := range evenChunks(group, p.groups.size(k)) {
			for _, part := range p.splitForTokens(bySize) {
				calls = append(calls, call{items: part})
			}
		}
		return calls
	}
	model := group[0].req.Model
	limit := p.outputLimit(model)
	var calls []call
	for _, bySize := range evenChunks(group, p.groups.size(keyOf(group[0]))) {
		for _, byPrompt := range p.splitForTokens(bySize) {
			for _, part := range p.splitForOutput(byPrompt, limit) {
				calls = append(calls, call{items: part, maxOutputTokens: limit})
			}
		}
	}
	return calls
}

// evenChunks cuts items into the fewest chunks of at most size, as even as
// possible: 50 items at size 24 become 17, 17 and 16, not 24, 24 and 2.
func evenChunks(items []*item, size int) [][]*item {
	size = max(size, 1)
	n := (len(items) + size - 1) / size
	if n <= 1 {
		return [][]*item{items}
	}
	out := make([][]*item, 0, n)
	for i := range n {
		out = append(out, items[i*len(items)/n:(i+1)*len(items)/n])
	}
	return out
}

// itemOutputOverheadTokens covers an answer item's JSON framing
// ({"id":"12","output":""}).
const itemOutputOverheadTokens = 12

// expectedOutput is the answer length the planner counts on for it: its own
// max_output_tokens, else its group's average, else the default.
func (p planner) expectedOutput(it *item) int {
	if it.req.MaxOutputTokens > 0 {
		return it.req.MaxOutputTokens
	}
	if avg, ok := p.groups.outputTokens(keyOf(it)); ok {
		// A margin: answers vary around their average.
		return int(avg*1.25) + 1
	}
	return p.defaultOutputTokens
}

// splitForOutput cuts a group's items into calls whose expected answers fit
// the model's output limit. A request whose own answer would not fit goes
// alone: a plain call has the whole limit.
func (p planner) splitForOutput(group []*item, limit int) [][]*item {
	if limit <= 0 || len(group) == 1 {
		return [][]*item{group}
	}
	var parts [][]*item
	var cur []*item
	used := 0
	for _, it := range group {
		need := p.expectedOutput(it) + itemOutputOverheadTokens
		if used+need > limit && len(cur) > 0 {
			parts = append(parts, cur)
			cur, used = nil, 0
		}
		cur = append(cur, it)
		used += need
	}
	if len(cur) > 0 {
		parts = append(parts, cur)
	}
	return parts
}

// groupForCalls splits the items without an outcome into groups that may
// share one call (keyOf), in arrival order.
func groupForCalls(items []*item) [][]*item {
	var order []groupKey
	groups := make(map[groupKey][]*item)
	for _, it := range items {
		if it.outcome != outcomeNone {
			continue
		}
		k := keyOf(it)
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
		need := itemOverheadTokens + (it.promptBytes()+bytesPerToken-1)/bytesPerToken
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
// one per call: each call repeats the instructions and the framing. An
// embeddings call has neither, so batching saves no prompt tokens there.
func soloPromptTokens(b provider.Batch) int64 {
	per := soloCallOverheadTokens + EstimateTokens(b.Instructions)
	if b.Kind == wire.KindEmbedding {
		per = 0
	}
	var n int64
	for _, r := range b.Requests {
		n += int64(per + EstimateTokens(r.Input))
		for _, m := range r.Messages {
			n += int64(EstimateTokens(string(m.Content)))
		}
	}
	return n
}
