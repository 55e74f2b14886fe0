package anthropictest

import (
	"crypto/sha256"
	"encoding/json"
	"strings"
	"sync"

	"github.com/aibatch/aibatch/provider/internal/fake"
)

// The fake honours prompt caching as the API does for a system prompt: a
// request whose system blocks carry cache_control {"type":"ephemeral"}
// marks the prefix up to the last marked block (the tools, then the system
// blocks). When that prefix is at least the model's minimum (1,024 tokens,
// 2,048 for a model whose name holds "haiku", counted as the fake counts
// tokens: 4 bytes each), the first request writes it
// (usage.cache_creation_input_tokens) and later ones with the same prefix
// read it (usage.cache_read_input_tokens); input_tokens counts the rest of
// the prompt. Entries never expire in the fake (the API keeps them for 5
// minutes after their last use). Request.CacheControl records the mark.

// promptCache holds the prefixes written so far.
type promptCache struct {
	mu   sync.Mutex
	seen map[[32]byte]bool
}

type systemBlock struct {
	Type         string `json:"type"`
	Text         string `json:"text"`
	CacheControl *struct {
		Type string `json:"type"`
	} `json:"cache_control"`
}

// cachedPrefix is the prefix a request marks for caching, and its length
// in bytes of prompt text (the marked system blocks); ok is false when no
// block is marked.
func cachedPrefix(req wireRequest) (prefix []byte, textLen int, ok bool) {
	var blocks []systemBlock
	if json.Unmarshal(req.System, &blocks) != nil {
		return nil, 0, false // a string: no blocks, no mark
	}
	last := -1
	for i, b := range blocks {
		if b.CacheControl != nil && b.CacheControl.Type == "ephemeral" {
			last = i
		}
	}
	if last < 0 {
		return nil, 0, false
	}
	tools, _ := json.Marshal(req.Tools)
	prefix = append(prefix, tools...)
	for _, b := range blocks[:last+1] {
		prefix = append(prefix, b.Text...)
		textLen += len(b.Text)
	}
	return prefix, textLen, true
}

func minCacheTokens(model string) int64 {
	if strings.Contains(model, "haiku") {
		return 2048
	}
	return 1024
}

// usage is the usage of a request of prompt bytes of text (the system
// prompt and the messages), reading or writing its cached prefix.
func (c *promptCache) usage(req wireRequest, prompt int, outputTokens int64) wireUsage {
	u := wireUsage{InputTokens: fake.Tokens(prompt), OutputTokens: outputTokens}
	prefix, textLen, ok := cachedPrefix(req)
	if !ok || fake.Tokens(textLen) < minCacheTokens(req.Model) {
		return u
	}
	cached := fake.Tokens(textLen)
	u.InputTokens = max(u.InputTokens-cached, 0)
	key := sha256.Sum256(append([]byte(req.Model+"\x00"), prefix...))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[[32]byte]bool{}
	}
	if c.seen[key] {
		u.CacheReadInputTokens = cached
	} else {
		c.seen[key] = true
		u.CacheCreationInputTokens = cached
	}
	return u
}

// marked reports whether req marks a system block with cache_control.
func marked(req wireRequest) bool {
	_, _, ok := cachedPrefix(req)
	return ok
}
