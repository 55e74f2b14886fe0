package wire

import "encoding/json"

// Status values of a Result.
const (
	// StatusOK: Output holds the model's answer.
	StatusOK = "ok"
	// StatusError: Error says why the request failed for good; a copy of
	// the request is in the dead-letter stream.
	StatusError = "error"
)

// Result is the JSON body the worker publishes for every request: exactly
// one per request, whatever crashes.
type Result struct {
	// ID is the id of the request this answers.
	ID string `json:"id"`
	// Status is StatusOK or StatusError.
	Status string `json:"status"`
	// Output is the model's answer when Status is StatusOK.
	Output string `json:"output,omitempty"`
	// FinishReason says why the answer ended, in OpenAI's terms: "stop",
	// "length" (cut off at the request's output cap), "content_filter" or
	// "tool_calls". Empty for embeddings and errors.
	FinishReason string `json:"finish_reason,omitempty"`
	// Embedding is the vector of an embedding request.
	Embedding []float32 `json:"embedding,omitempty"`
	// Cached is true when the answer came from the worker's response cache
	// (RESPONSE_CACHE_TTL) without a provider call: its usage is zero and
	// its batch trigger is TriggerCache. Since wire format 1.1.
	Cached bool `json:"cached,omitempty"`
	// Message is, for a request sent alone with provider_options, the
	// provider's answer message verbatim (OpenAI's choices[0].message, with
	// tool_calls and the rest); Output holds its text content.
	Message json.RawMessage `json:"message,omitempty"`
	// Error says what went wrong when Status is StatusError.
	Error string `json:"error,omitempty"`
	// Model is the model that answered (or was asked).
	Model string `json:"model,omitempty"`
	// Metadata is the request's metadata, copied.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// Usage is the request's share of the call's token usage.
	Usage Usage `json:"usage"`
	// Batch tells which call answered the request.
	Batch BatchInfo `json:"batch"`
	// QueuedMS is the time from the request's arrival in the stream to the
	// start of the call that answered it, in milliseconds.
	QueuedMS int64 `json:"queued_ms"`
	// Attempts counts deliveries of the request, 1 on the first.
	Attempts int `json:"attempts"`
}

// Usage is the token usage reported with a result.
type Usage struct {
	// InputTokens counts every prompt token, cached ones included.
	InputTokens int64 `json:"input_tokens"`
	// CachedInputTokens is the part of InputTokens the provider read from
	// its prompt cache and billed at its cached-input rate (OpenAI's
	// cached_tokens, Anthropic's cache_read_input_tokens). Since wire
	// format 1.1.
	CachedInputTokens int64 `json:"cached_input_tokens,omitempty"`
	OutputTokens      int64 `json:"output_tokens"`
}

// BatchInfo tells which call answered a request.
type BatchInfo struct {
	// ID identifies the call; results that share it came from one call.
	ID string `json:"id,omitempty"`
	// Size is the number of requests in the call.
	Size int `json:"size"`
	// Trigger is why the batch was sent.
	Trigger Trigger `json:"trigger,omitempty"`
}

// Trigger says why a batch was sent. It is reported in every result.
type Trigger string

// The reasons a batch is sent.
const (
	// TriggerSize: MaxBatchSize requests were waiting. While the backlog
	// lasts, full batches are sent back to back.
	TriggerSize Trigger = "size"
	// TriggerInterval: BATCH_INTERVAL passed since the last send.
	TriggerInterval Trigger = "interval"
	// TriggerMaxWait: the oldest waiting request had waited MAX_WAIT.
	TriggerMaxWait Trigger = "max_wait"
	// TriggerUrgent: requests on the urgent lane, sent as soon as they
	// arrive together with whatever other urgent requests wait then.
	TriggerUrgent Trigger = "urgent"
	// TriggerForced: an operator forced a flush.
	TriggerForced Trigger = "forced"
	// TriggerImmediate: batching is off; every request is sent alone.
	TriggerImmediate Trigger = "immediate"
	// TriggerRetry: requests handed back for a retry became due again.
	TriggerRetry Trigger = "retry"
	// TriggerWindowFull: the worker's holding window was full, so the
	// group waiting longest was sent before it filled up.
	TriggerWindowFull Trigger = "window_full"
	// TriggerCache: the answer came from the response cache
	// (RESPONSE_CACHE_TTL); no provider call was made. Since wire format
	// 1.1.
	TriggerCache Trigger = "cache"
)
