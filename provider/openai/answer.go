package openai

// chatAnswer is the part of a Chat Completions response the provider reads.
// Responses are decoded straight into it (option.WithResponseBodyInto)
// rather than into the SDK's openai.ChatCompletion: the SDK type keeps every
// field's raw JSON and metadata, which made decoding an answer about a
// seventh of the worker's CPU per request. Fields the API adds are ignored.
type chatAnswer struct {
	Choices []chatChoice `json:"choices"`
	Usage   chatUsage    `json:"usage"`
}

type chatChoice struct {
	// FinishReason is "stop", "length", "content_filter", "tool_calls".
	FinishReason string      `json:"finish_reason"`
	Message      chatMessage `json:"message"`
}

type chatMessage struct {
	Content string `json:"content"`
	Refusal string `json:"refusal"`
}

type chatUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
}
