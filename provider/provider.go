// Package provider defines what the batching engine asks of an AI provider:
// one call for a whole batch of requests that share a model and instructions,
// answered with one result (or one error) per request.
//
// Each provider lives in a subpackage (provider/openai, ...) and asserts that
// it implements Provider. Test fakes that speak a provider's real wire format
// live beside it (provider/openaitest, ...).
package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aibatch/aibatch/wire"
)

// Provider sends one batch to an AI API.
//
// Complete makes the calls needed for b (one combined call for providers that
// support it) and returns the results it got, in any order, each naming the
// Key of its request. A request that has no result in the returned slice is
// treated by the caller as missing from the answer.
//
// A batch of one request is sent as a plain call, without the combined
// answer format, so that a refusal or an error is that request's own: it is
// reported in the request's Result.Err with ScopeRequest.
//
// A non-nil error means the whole batch failed and none of the returned
// results are used, with one exception: with an error wrapping ErrCutOff,
// the returned results are those the answer completed before it was cut
// off. The caller uses them, and learns from their number how many answers
// fit one call. Wrap it in an *Error to say whether retrying can help and
// whose failure it is (Scope): the caller spends a request's attempts only on
// failures of the request's own, splits a batch whose shape failed, and stops
// calling a provider that cannot serve anyone. A failure that concerns one
// request only is reported in that request's Result.Err.
type Provider interface {
	// Name is the provider's short name, as in the PROVIDER setting ("openai").
	Name() string
	Complete(ctx context.Context, b Batch) ([]Result, error)
}

// Batch is what one combined call carries: requests that share Model,
// Instructions and everything else of the batch (Kind, Params, Format,
// Dimensions): only requests whose wire.Request.ParamsKey is equal share a
// batch.
//
// A chat batch (Kind wire.KindChat, or empty) asks for one answer per
// request. An embedding batch (Kind wire.KindEmbedding) asks for the vector
// of each request's Input, in one embeddings call where the API takes many
// inputs: each Result carries its Embedding, and Instructions, Params,
// Format and MaxOutputTokens are empty. A provider without an embeddings
// API implements Supporter and fails such a batch at once, without a call.
type Batch struct {
	// ID identifies the batch in logs and results.
	ID string
	// Model is the model every request in the batch asked for (after the
	// worker's default was applied).
	Model string
	// Instructions is the system prompt shared by every request in the batch;
	// empty means none.
	Instructions string
	// Requests holds at least one request. Keys are unique within the batch.
	Requests []Request
	// MaxOutputTokens is the call's output budget, planned by the caller
	// to fit every request's expected answer within the model's limit; 0
	// means the provider's default. It is the API's limit for the whole call
	// (max_completion_tokens, max_tokens), never a sum of the requests' own
	// caps.
	MaxOutputTokens int
	// Kind is wire.KindChat (or empty) or wire.KindEmbedding.
	Kind string
	// Params are the sampling parameters every request of the batch asked
	// for; the zero value leaves them to the provider.
	Params Params
	// Format is the structured output every request of the batch asked
	// for; nil means free text. With a FormatJSONSchema format each
	// request's Output is its answer's JSON text, valid against the schema
	// as far as the API guarantees it; with FormatJSONObject it is the text
	// of a JSON object.
	Format *wire.ResponseFormat
	// Dimensions is the length of the vectors an embedding batch asks for;
	// 0 means the model's own.
	Dimensions int
}

// Request is one prompt inside a batch.
type Request struct {
	// Key identifies the request within its batch; answers are matched by it.
	Key string
	// Input is the prompt text (or, in an embedding batch, the text to
	// embed). It is empty exactly when Messages is set.
	Input string
	// Messages are the request's chat turns, oldest first, when it is more
	// than one user message of text: a conversation, which a combined call
	// carries as its item's "messages", or (in a batch of one only) turns
	// with content other than text or tool calls.
	Messages []wire.Message
	// MaxOutputTokens caps this request's answer; 0 means no cap of its
	// own. In a plain (one-request) call it is the API's limit. In a combined
	// call it is part of the planned budget; a provider that cannot make
	// the API keep to it per item tells the model and cuts a longer answer
	// to about that length, with FinishReason "length".
	MaxOutputTokens int
	// Options are the request's provider_options, a JSON object of further
	// fields of the provider's request; set only in a batch of one. A
	// provider merges what it can express and fails the request (permanent,
	// ScopeRequest) naming the option it cannot.
	Options json.RawMessage
}

// Result is the answer to one request of a batch.
type Result struct {
	// Key is the Key of the request this answers.
	Key string
	// Output is the model's answer; meaningful only when Err is nil. For
	// structured output it is the answer's JSON text.
	Output string
	// FinishReason says why the answer ended, in OpenAI's terms: "stop",
	// "length" (cut off at the request's own MaxOutputTokens),
	// "tool_calls" or "content_filter". Empty means "stop" for a chat
	// answer; it is empty for an embedding.
	FinishReason string
	// Embedding is the vector of a request of an embedding batch.
	Embedding []float32
	// Message is the provider's answer message, in OpenAI's shape
	// (choices[0].message, with tool_calls), for a request that had
	// Options; nil otherwise.
	Message json.RawMessage
	// Err, when set, says why this one request failed while the rest of the
	// batch did not. Wrap it in an *Error to say whether retrying can help.
	Err error
	// Usage is this request's share of the call's token usage.
	Usage Usage
}

// Usage counts tokens as the provider reported them.
type Usage struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
}

// Add returns the sum of u and o.
func (u Usage) Add(o Usage) Usage {
	return Usage{InputTokens: u.InputTokens + o.InputTokens, OutputTokens: u.OutputTokens + o.OutputTokens}
}

// Split divides u over n results as evenly as whole tokens allow; the first
// results get the remainder. It returns nil for n <= 0.
func (u Usage) Split(n int) []Usage {
	if n <= 0 {
		return nil
	}
	parts := make([]Usage, n)
	for i := range parts {
		parts[i] = Usage{InputTokens: u.InputTokens / int64(n), OutputTokens: u.OutputTokens / int64(n)}
		if int64(i) < u.InputTokens%int64(n) {
			parts[i].InputTokens++
		}
		if int64(i) < u.OutputTokens%int64(n) {
			parts[i].OutputTokens++
		}
	}
	return parts
}

// ErrPermanent marks a failure that retrying the same request cannot fix
// (a 400-class refusal, an unknown model, a request the API rejects).
// Check it with errors.Is.
var ErrPermanent = errors.New("permanent provider error")

// ErrTransient marks a failure that may pass on its own (a 5xx, a timeout, a
// rate limit, an answer that could not be parsed). Check it with errors.Is.
var ErrTransient = errors.New("transient provider error")

// ErrUnknownModel is wrapped by the error of a call whose model the API does
// not know (HTTP 404 model_not_found). The caller decides its scope: the
// worker's own default model unknown is ScopeProvider, a model a request
// named is that request's failure.
var ErrUnknownModel = errors.New("the API does not know the model")

// ErrCutOff is wrapped by the error of a combined answer cut off at the
// call's output limit (finish_reason "length", stop_reason "max_tokens"):
// the call asked for more answers than fit, and a smaller one may not.
// Complete returns it with the results of the items the answer completed
// before the cut.
var ErrCutOff = errors.New("answer cut off at the output limit")

// ErrRefused is wrapped by the error of a call the model refused (OpenAI
// message.refusal, Anthropic stop_reason "refusal"). A refusal says nothing
// about the call's size.
var ErrRefused = errors.New("the model refused")

// Scope says whose failure an error is.
type Scope int

const (
	// ScopeUnknown: the provider did not say. The caller treats a permanent
	// error of a call of several requests as ScopeBatch, of a one-request
	// call as ScopeRequest, and a transient one as ScopeProvider.
	ScopeUnknown Scope = iota
	// ScopeRequest: the request failed alone: refused or rejected in a
	// one-request call, or invalid for this API.
	ScopeRequest
	// ScopeBatch: the call's shape failed: the answer was cut off at the
	// output limit, was not the expected JSON, left items out, or refused
	// the combined call; or the prompt was too large. Smaller calls of the
	// same requests may succeed.
	ScopeBatch
	// ScopeProvider: the provider cannot serve anyone right now: 5xx,
	// overloaded, 429, timeouts, connection errors, 401 or 403.
	ScopeProvider
)

// String returns the scope's name as logs and metrics spell it.
func (s Scope) String() string {
	switch s {
	case ScopeRequest:
		return "request"
	case ScopeBatch:
		return "batch"
	case ScopeProvider:
		return "provider"
	}
	return "unknown"
}

// ScopeOf returns the Scope of err's *Error, or ScopeUnknown.
func ScopeOf(err error) Scope {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Scope
	}
	return ScopeUnknown
}

// Error describes a provider failure: whether retrying can help, whose
// failure it is, the HTTP status when there was one, and how long the API
// asked callers to wait.
type Error struct {
	// Permanent is true when retrying the same call cannot help.
	Permanent bool
	// Scope says whose failure it is; see Scope.
	Scope Scope
	// StatusCode is the HTTP status the API answered with; 0 when there was none.
	StatusCode int
	// RetryAfter is the wait the API asked for (Retry-After); 0 when none.
	RetryAfter time.Duration
	// Err is the underlying cause.
	Err error
}

func (e *Error) Error() string {
	kind := "transient"
	if e.Permanent {
		kind = "permanent"
	}
	if e.StatusCode != 0 {
		return fmt.Sprintf("%s provider error (HTTP %d): %v", kind, e.StatusCode, e.Err)
	}
	return fmt.Sprintf("%s provider error: %v", kind, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is ErrPermanent or ErrTransient as this error's
// kind says.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrPermanent:
		return e.Permanent
	case ErrTransient:
		return !e.Permanent
	}
	return false
}

// Permanent wraps err as an *Error that retrying cannot fix.
func Permanent(err error) error { return &Error{Permanent: true, Err: err} }

// Transient wraps err as an *Error that may pass on a retry.
func Transient(err error) error { return &Error{Err: err} }

// IsPermanent reports whether err says retrying cannot help. Errors that are
// not marked either way are treated as transient: a retry is the safe default.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

// RetryAfter returns the wait the API asked for in err, or 0.
func RetryAfter(err error) time.Duration {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.RetryAfter
	}
	return 0
}

// AsyncProvider is a Provider that can also send a batch through the
// provider's asynchronous Batch API: about half the price, answered within
// minutes to 24 hours. The engine still uses Complete for the synchronous
// fallback when a request has waited too long for its job.
type AsyncProvider interface {
	Provider
	// SubmitJob starts a job for b and returns its id. Keys of b's requests
	// come back in the job's results.
	SubmitJob(ctx context.Context, b Batch) (string, error)
	// PollJob reports a job's state. Results holds the answers available so
	// far (all of them once Done); a request whose key is absent from a done
	// job's results is treated as missing and retried.
	PollJob(ctx context.Context, jobID string) (JobStatus, error)
	// CancelJob asks the API to stop the job; requests it had not answered
	// are then answered elsewhere. Best effort: an error is logged, not
	// acted on.
	CancelJob(ctx context.Context, jobID string) error
}

// JobStatus is what PollJob found.
type JobStatus struct {
	// Done is true once the job will change no more (completed, failed,
	// expired or cancelled).
	Done bool
	// Failed is true when the job ended without answering (some of) its
	// requests: it failed, expired or was cancelled. Results still holds
	// whatever it answered first; a request without a result was never run,
	// and the caller treats that as a failure of the job's shape
	// (ScopeBatch), not of the request. Failed implies Done.
	Failed bool
	// State is the API's word for the job's state, for logs.
	State string
	// Errors are the job's own errors, for logs: the reasons the API gave
	// for a failed job, a count of the requests an expired or cancelled job
	// never ran. Each is shortened and holds no secret; nil when none.
	Errors []string
	// Results are the answers available, each naming its request's Key.
	Results []Result
}

// OutputLimiter is implemented by providers that know the output limit of
// their models: the most tokens one call may ask the model to write
// (max_completion_tokens, max_tokens). The caller plans a call's
// Batch.MaxOutputTokens within it, and a setting (MODEL_MAX_OUTPUT_TOKENS)
// overrides it.
type OutputLimiter interface {
	// MaxOutputTokens returns model's output limit in tokens, or 0 when the
	// provider does not know the model. It makes no call and is safe for
	// concurrent use.
	MaxOutputTokens(model string) int
}
