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
