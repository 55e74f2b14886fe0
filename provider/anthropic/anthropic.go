// Package anthropic implements provider.Provider on Anthropic's Messages API
// through the official SDK (github.com/anthropics/anthropic-sdk-go).
//
// In ModeCombined (the default) a batch of several requests goes out as one
// call. The system prompt is the batch's Instructions followed by a short
// fixed line that explains the answer format; the user message is the JSON
// {"items":[{"id":Key,"input":Input}]}; the call declares one tool,
// "batch_results", whose input_schema, built for the call, is
// {"results":[{"id","output"}]} with every id one of the batch's keys (an
// "enum"), and forces it with tool_choice {"type":"tool","name":
// "batch_results"}. The tool_use block's input is the answer, the same shape
// as the openai provider's json_schema answer. It has no way to refuse one
// item alone: an item the model leaves out is missing from the results, and
// the caller retries it.
//
// A combined call's user message may carry conversations ("messages" in
// an item) and caps ("max_output_tokens"), as the openai provider's does;
// it carries the batch's temperature and top_p (the Messages API has no
// seed: it is ignored; a temperature over 1, the API's most, fails each
// request at once, wrapping provider.ErrUnsupported). Stop sequences and
// caps are applied to each answer, as in the openai provider. With a
// structured-output Format the tool's output schema is the request's own
// (Anthropic's tool use is its documented way to get JSON of a schema), and
// each Output is the answer's JSON text.
//
// A batch of one request, in any mode, and every request in ModeSingle, is
// a plain call: system = Instructions, then the request's system and
// developer turns; its other turns mapped to the Messages API (text and
// image_url parts, tool_calls as tool_use blocks, tool turns as
// tool_result blocks, turns of one role merged); its temperature, top_p
// and stop_sequences; for structured output a forced tool whose
// input_schema is the request's schema (any object for json_object), whose
// input is the Output; and its provider Options mapped where the API has an
// equivalent (tools, tool_choice, parallel_tool_calls, user), any other
// failing the request, permanent, ScopeRequest, naming it. Its text blocks
// are the request's output, its stop_reason its FinishReason in OpenAI's
// terms, and with Options Result.Message is the answer in OpenAI's message
// shape. A refusal or a rejection is that request's own Result.Err
// (ScopeRequest), and an answer cut off at max_tokens is still its answer.
// ModeSingle makes up to Config.Concurrency such calls at once.
//
// Anthropic has no embeddings API: Supports refuses wire.KindEmbedding, and
// an embedding batch's requests fail at once, without a call
// (ErrNoEmbeddings).
//
// max_tokens, which the Messages API requires, is the call's planned
// budget, Batch.MaxOutputTokens, or Config.MaxTokens when that is 0; a
// plain call uses its request's MaxOutputTokens first. Config.MaxCallTokens,
// when set, caps it.
//
// In ModeAsync a batch becomes one Message Batch (see SubmitJob): one plain
// request per provider.Request, the same request ModeSingle would send,
// answered within 24 hours at half the price. Complete then behaves as in
// ModeCombined.
//
// Every error is a *provider.Error that says whose failure it is (Scope):
// see Complete. MaxOutputTokens reports the output limit of the models this
// package knows (provider.OutputLimiter).
//
// The package reads no environment variables: everything comes from Config.
package anthropic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/combined"
	"github.com/aibatch/aibatch/provider/internal/httpcall"
)

// ToolName is the name of the tool a combined call forces.
const ToolName = "batch_results"

// toolDescription tells the model what the tool is for.
const toolDescription = "Record the answer to every item of the user message: one result per item, " +
	"the item's id copied unchanged, your answer to its input as output."

// requestTimeout is the per-attempt timeout given to the SDK. Setting one
// keeps the SDK from refusing a large max_tokens without streaming; the
// ctx given to Complete still bounds the call.
const requestTimeout = 10 * time.Minute

var _ provider.Provider = (*Provider)(nil)

// Provider sends batches to the Anthropic Messages API. It is safe for
// concurrent use.
type Provider struct {
	messages      anthropic.MessageService
	redact        func(error) error // hides the API key in an error message
	mode          Mode
	concurrency   int
	maxTokens     int
	maxCallTokens int
}

// New returns a Provider for cfg, or an error if cfg is not valid. The SDK's
// own retries are disabled: the caller retries with backoff, guided by the
// errors Complete returns.
func New(cfg Config, opts ...Option) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	reqOpts := []option.RequestOption{
		option.WithEnvironmentProduction(),
		option.WithAPIKey(cfg.APIKey),
		option.WithMaxRetries(0),
	}
	if cfg.BaseURL != "" {
		reqOpts = append(reqOpts, option.WithBaseURL(cfg.BaseURL))
	}
	if cfg.HTTPClient != nil {
		reqOpts = append(reqOpts, option.WithHTTPClient(cfg.HTTPClient))
	}
	reqOpts = append(reqOpts, o.requestOptions...)
	p := &Provider{
		// NewMessageService, unlike anthropic.NewClient, reads no
		// ANTHROPIC_* environment variables or profile files.
		messages:      anthropic.NewMessageService(reqOpts...),
		redact:        httpcall.NewRedactor(cfg.APIKey).Redact,
		mode:          cfg.Mode,
		concurrency:   cfg.Concurrency,
		maxTokens:     cfg.MaxTokens,
		maxCallTokens: cfg.MaxCallTokens,
	}
	if p.mode == "" {
		p.mode = ModeCombined
	}
	if p.concurrency == 0 {
		p.concurrency = DefaultConcurrency
	}
	if p.maxTokens == 0 {
		p.maxTokens = DefaultMaxTokens
	}
	return p, nil
}

// Name returns "anthropic".
func (p *Provider) Name() string { return "anthropic" }

// Mode returns the mode the Provider was built with.
func (p *Provider) Mode() Mode { return p.mode }

// Complete sends b as the Provider's Mode says.
//
// ModeCombined and ModeAsync make one Messages call for a batch of several
// requests and return one result per item the tool_use answer holds, in the
// answer's order. max_tokens is b.MaxOutputTokens, or Config.MaxTokens when
// it is 0 (capped at Config.MaxCallTokens when set). Answers are matched to
// requests by id, in any order; ids not in the batch are ignored, and so is
// every answer to an id after the first one. Requests the answer leaves out
// are absent from the results (the caller retries them). The call's tokens
// (input_tokens plus cache creation and cache read tokens, and
// output_tokens) are split evenly over the returned results with
// provider.Usage.Split.
//
// A combined call's errors concern the whole batch, wrap an
// *provider.Error, and never contain the API key:
//   - no answer (network error, ctx ending: wrapping ctx.Err()), HTTP 401,
//     402, 403, 408, 409, 425, 429, 5xx (529 overloaded too): transient,
//     ScopeProvider, with StatusCode when there was one and RetryAfter from
//     the retry-after header.
//   - HTTP 404 not_found_error naming the model ("model: ..."): permanent,
//     ScopeUnknown, wrapping provider.ErrUnknownModel.
//   - HTTP 400 invalid_request_error "prompt is too long", and HTTP 413
//     request_too_large: permanent, ScopeBatch.
//   - other 4xx: permanent, ScopeUnknown.
//   - stop_reason "max_tokens" or "model_context_window_exceeded" (the
//     answer is cut off), "refusal": permanent, ScopeBatch.
//   - an answer without the tool_use block, or a tool input that is not the
//     expected shape: transient, ScopeBatch.
//
// A batch of one request, and ModeSingle, make one plain call per request,
// at most Config.Concurrency at once, and return one result per request, in
// request order. A plain call's max_tokens is the request's
// MaxOutputTokens, else b.MaxOutputTokens, else Config.MaxTokens. Its text
// is the request's Output even when cut off (stop_reason "max_tokens"). A
// refusal and the permanent errors above other than an unknown model are
// that request's Result.Err, permanent, ScopeRequest; an answer without any
// text block is a transient ScopeRequest Result.Err. The other errors
// (ScopeProvider ones, an unknown model) concern more than one request:
// Complete returns the first of them as its error when no call succeeded
// and none failed with ScopeRequest (so a one-request batch whose call met
// a 529, a 401 or an unknown model fails as a whole); otherwise each is its
// request's Result.Err. Each result carries its own call's usage.
//
// A batch with no model fails at once, permanent.
func (p *Provider) Complete(ctx context.Context, b provider.Batch) ([]provider.Result, error) {
	if len(b.Requests) == 0 {
		return nil, nil
	}
	if b.Model == "" {
		return nil, fmt.Errorf("anthropic: messages: %w", provider.Permanent(errors.New("batch has no model")))
	}
	if err := checkBatch(b); err != nil {
		return refuseAll(b, err), nil
	}
	if p.mode == ModeSingle || len(b.Requests) == 1 {
		return p.completeSingle(ctx, b)
	}
	params, err := p.newParams(b)
	if err != nil {
		return nil, fmt.Errorf("anthropic: messages: %w", provider.Permanent(err))
	}
	var raw *http.Response
	msg, err := p.messages.New(ctx, params, option.WithResponseInto(&raw), option.WithRequestTimeout(requestTimeout))
	if err != nil {
		return nil, p.redact(fmt.Errorf("anthropic: messages: %w", callError(ctx, err, raw)))
	}
	results, err := parseAnswer(b, msg)
	for i, u := range usage(msg).Split(len(results)) {
		results[i].Usage = u
	}
	if err != nil {
		// A cut-off answer keeps the results it completed.
		return results, p.redact(fmt.Errorf("anthropic: messages: %w", err))
	}
	return results, nil
}

// maxTokensFor is the max_tokens of a call whose planned budget is budget
// (0: none): budget, else Config.MaxTokens, capped at Config.MaxCallTokens
// when set.
func (p *Provider) maxTokensFor(budget int) int64 {
	n := p.maxTokens
	if budget > 0 {
		n = budget
	}
	if p.maxCallTokens > 0 {
		n = min(n, p.maxCallTokens)
	}
	return int64(n)
}

// plainMaxTokens is the max_tokens of a plain call for r, one request of
// b: r's own MaxOutputTokens, else b's budget, else Config.MaxTokens.
func (p *Provider) plainMaxTokens(b provider.Batch, r provider.Request) int64 {
	if r.MaxOutputTokens > 0 {
		return p.maxTokensFor(r.MaxOutputTokens)
	}
	return p.maxTokensFor(b.MaxOutputTokens)
}

// newParams builds the combined Messages request for b: the system
// prompt, the items, the forced batch_results tool and the batch's
// sampling parameters (its stop sequences are applied to each answer
// instead, see combined.Finish).
func (p *Provider) newParams(b provider.Batch) (anthropic.MessageNewParams, error) {
	user, err := combined.UserMessage(b)
	if err != nil {
		return anthropic.MessageNewParams{}, err
	}
	tool, err := combinedTool(b)
	if err != nil {
		return anthropic.MessageNewParams{}, err
	}
	system := formatLine(b)
	if b.Instructions != "" {
		system = b.Instructions + "\n\n" + system
	}
	params := anthropic.MessageNewParams{
		Model:     b.Model,
		MaxTokens: p.maxTokensFor(b.MaxOutputTokens),
		System:    []anthropic.TextBlockParam{{Text: system}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(user))},
		Tools:     []anthropic.ToolUnionParam{{OfTool: &tool}},
		ToolChoice: anthropic.ToolChoiceUnionParam{OfTool: &anthropic.ToolChoiceToolParam{
			Name:                   ToolName,
			DisableParallelToolUse: anthropic.Bool(true),
		}},
	}
	setSampling(&params, b.Params)
	return params, nil
}

// parseAnswer matches the tool_use answer's results to b's requests. Its
// errors are ScopeBatch *provider.Errors: permanent for an answer cut off
// (wrapping provider.ErrCutOff, returned with the results the tool input
// completed before the cut) or refused (wrapping provider.ErrRefused),
// transient for an answer without the tool_use block or a tool input of
// another shape.
func parseAnswer(b provider.Batch, msg *anthropic.Message) ([]provider.Result, error) {
	if msg == nil {
		return nil, batchError(false, errors.New("empty answer"))
	}
	var input json.RawMessage
	for _, block := range msg.Content {
		if block.Type == "tool_use" && block.Name == ToolName {
			input = block.Input
			break
		}
	}
	switch msg.StopReason {
	case anthropic.StopReasonMaxTokens, anthropic.StopReasonModelContextWindowExceeded:
		return combined.CompletedParsed(b, input), batchError(true, fmt.Errorf("%w (stop_reason %s)", provider.ErrCutOff, msg.StopReason))
	case anthropic.StopReasonRefusal:
		return nil, batchError(true, fmt.Errorf("%w the batch (stop_reason refusal%s)", provider.ErrRefused, refusalDetail(msg)))
	}
	if input == nil {
		return nil, batchError(false, fmt.Errorf("answer has no %s tool_use block (stop_reason %q)", ToolName, shorten(string(msg.StopReason))))
	}
	results, err := combined.Results(b, input)
	if err != nil {
		return nil, batchError(false, fmt.Errorf("parse tool input: %w", err))
	}
	return results, nil
}

// refusalDetail is ", category ..." for a refusal whose stop_details name
// a category, and "" otherwise.
func refusalDetail(msg *anthropic.Message) string {
	if c := msg.StopDetails.Category; c != "" {
		return ", category " + shorten(string(c))
	}
	return ""
}

// batchError is the ScopeBatch *provider.Error whose cause is err.
func batchError(permanent bool, err error) *provider.Error {
	return &provider.Error{Permanent: permanent, Scope: provider.ScopeBatch, Err: err}
}

// requestError is the ScopeRequest *provider.Error whose cause is err.
func requestError(permanent bool, err error) *provider.Error {
	return &provider.Error{Permanent: permanent, Scope: provider.ScopeRequest, Err: err}
}

// usage is the call's token usage; cached prompt tokens count as input.
func usage(msg *anthropic.Message) provider.Usage {
	u := msg.Usage
	return provider.Usage{
		InputTokens:  u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens,
		OutputTokens: u.OutputTokens,
	}
}
