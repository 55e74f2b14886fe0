package anthropic

import (
	"strings"

	"github.com/anthropics/anthropic-sdk-go"

	"github.com/aibatch/aibatch/provider"
)

// Prompt caching. Every combined call of a group repeats the same system
// prompt (the instructions, then the fixed format line), and Anthropic
// bills a cached prefix at a tenth of the input price (writing it costs a
// quarter more, once per five minutes). The system block carries
// cache_control {"type":"ephemeral"} when it is long enough to be cached:
// the model's minimum, 1,024 tokens (2,048 for the Haiku models), estimated
// from bytes (about 4 a token). A shorter block is sent without it; the API
// would ignore the mark anyway.
//
// The cached prefix is the tools, then the system prompt. A combined call's
// tool names every key of the call (an "enum"), so calls of the same size
// share the prefix: the planner's calls of a group are of its current size
// but for the last. Plain calls and Message Batches lines carry the mark
// too, and their prefix is the system prompt alone.

// Minimum cacheable prompt lengths, in tokens.
const (
	minCacheTokens      = 1024
	minCacheTokensHaiku = 2048
	// bytesPerToken is the estimate of a token's length in English text.
	bytesPerToken = 4
)

// minCacheable is the shortest prompt model caches, in tokens.
func minCacheable(model string) int {
	if strings.Contains(model, "haiku") {
		return minCacheTokensHaiku
	}
	return minCacheTokens
}

// systemBlocks is the system prompt text as the request's blocks: one,
// marked for caching when it is long enough for model.
func systemBlocks(model, text string) []anthropic.TextBlockParam {
	block := anthropic.TextBlockParam{Text: text}
	if (len(text)+bytesPerToken-1)/bytesPerToken >= minCacheable(model) {
		block.CacheControl = anthropic.NewCacheControlEphemeralParam()
	}
	return []anthropic.TextBlockParam{block}
}

// usage is the call's token usage. The API counts cache reads and writes
// apart from input_tokens; they are added in, and reported as the parts of
// the input they are.
func usage(msg *anthropic.Message) provider.Usage {
	u := msg.Usage
	return provider.Usage{
		InputTokens:       u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens,
		CachedInputTokens: u.CacheReadInputTokens,
		CacheWriteTokens:  u.CacheCreationInputTokens,
		OutputTokens:      u.OutputTokens,
	}
}
