package batch

import (
	"fmt"

	"github.com/aibatch/aibatch/provider"
)

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

// splitForTokens splits a group sharing model and instructions into parts
// whose estimated prompt stays within MaxBatchTokens. A request that would
// not fit even alone fails with a permanent error. With no cap the group is
// one part.
func (e *Engine) splitForTokens(group []*item) [][]*item {
	limit := e.cfg.MaxBatchTokens
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
			it.fail(provider.Permanent(fmt.Errorf("request needs about %d prompt tokens with its instructions, over MAX_BATCH_TOKENS (%d)", base+need, limit)))
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
