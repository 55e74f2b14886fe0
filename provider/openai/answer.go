package openai

import (
	"encoding/json"
	"fmt"
)

// chatAnswer is the part of a Chat Completions response the provider reads.
// Responses are decoded straight into it (option.WithResponseBodyInto)
// rather than into the SDK's openai.ChatCompletion: the SDK type keeps every
// field's raw JSON and metadata, which made decoding an answer about a
// seventh of the worker's CPU per request. Fields the API adds are ignored.
type chatAnswer struct {
	Choices []chatChoice `json:"choices"`
	Usage   chatUsage    `json:"usage"`
	// ServiceTier is the tier that answered (tier.go).
	ServiceTier string `json:"service_tier"`
}

type chatChoice struct {
	// FinishReason is "stop", "length", "content_filter", "tool_calls".
	FinishReason string      `json:"finish_reason"`
	Message      chatMessage `json:"message"`
}

type chatMessage struct {
	Content string `json:"content"`
	Refusal string `json:"refusal"`
	// Raw is the message as the API wrote it (tool calls, annotations and
	// the rest), set only in an answer decoded through keptAnswer: a
	// request with provider options gets it back, for its producer to read.
	Raw json.RawMessage `json:"-"`
}

// keptAnswer decodes a chatAnswer whose messages are also kept as the API
// wrote them (chatMessage.Raw), in the same one pass over the body: its
// Choices shadow chatAnswer's, and answer reads each message from there.
// Only a request with provider options pays for the copy.
type keptAnswer struct {
	chatAnswer
	Choices []struct {
		FinishReason string          `json:"finish_reason"`
		Message      json.RawMessage `json:"message"`
	} `json:"choices"`
}

// answer is the chatAnswer a kept, each message with its Raw.
func (a *keptAnswer) answer() (chatAnswer, error) {
	out := a.chatAnswer
	out.Choices = make([]chatChoice, len(a.Choices))
	for i, c := range a.Choices {
		var m chatMessage
		if err := json.Unmarshal(c.Message, &m); err != nil {
			return chatAnswer{}, fmt.Errorf("parse answer: choices[%d].message: %w", i, err)
		}
		m.Raw = c.Message
		out.Choices[i] = chatChoice{FinishReason: c.FinishReason, Message: m}
	}
	return out, nil
}

type chatUsage struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	PromptTokensDetails struct {
		// CachedTokens is the part of PromptTokens read from the prompt
		// cache (promptcache.go).
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}
