package openai

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/openai/openai-go/v3"

	"github.com/aibatch/aibatch/provider"
)

// Prompt caching. OpenAI caches the prefix of every prompt of 1,024 tokens
// or more on its own and bills the cached part at a lower rate
// (usage.prompt_tokens_details.cached_tokens). Every call of a group begins
// with the same system message (the instructions, then the fixed format
// line), so the prefix repeats; prompt_cache_key, the same for every call
// of a group, keeps those calls on the same cache machines. Plain calls and
// Batch API lines carry the key too.

// promptCacheKeyPrefix starts every key, so they are told from the keys of
// other applications sharing the organisation.
const promptCacheKeyPrefix = "aibatch-"

// promptCacheKey is the prompt_cache_key of b's calls: a hash of the model
// and the instructions, which every call of a group shares.
func promptCacheKey(b provider.Batch) string {
	sum := sha256.Sum256([]byte(b.Model + "\x00" + b.Instructions))
	return promptCacheKeyPrefix + hex.EncodeToString(sum[:12])
}

// withPromptCacheKey sets params' prompt_cache_key for b.
func withPromptCacheKey(params *openai.ChatCompletionNewParams, b provider.Batch) {
	params.PromptCacheKey = openai.String(promptCacheKey(b))
}

// usage is the provider's Usage of an answer's usage: prompt tokens (the
// cached ones included, and reported apart) and completion tokens.
func (u chatUsage) usage() provider.Usage {
	return provider.Usage{InputTokens: u.PromptTokens, CachedInputTokens: u.PromptTokensDetails.CachedTokens, OutputTokens: u.CompletionTokens}
}
