// Package anthropic implements provider.Provider on Anthropic's Messages API
// through the official SDK (github.com/anthropics/anthropic-sdk-go).
//
// In ModeCombined (the default) a whole batch goes out as one call. The
// system prompt is the batch's Instructions followed by a short fixed line
// that explains the answer format; the user message is the JSON
// {"items":[{"id":Key,"input":Input}]}; the call declares one tool,
// "batch_results", whose input_schema is {"results":[{"id","output"}]}, and
// forces it with tool_choice {"type":"tool","name":"batch_results"}. The
// tool_use block's input is the answer, the same shape as the openai
// provider's json_schema answer. It has no way to refuse one item alone: an
// item the model leaves out is missing from the results, and the caller
// retries it.
//
// In ModeSingle every request is its own plain call (system = Instructions
// when set, user message = Input, no tools), up to Config.Concurrency at
// once; the answer's text blocks are the request's output, and a failed call
// is that request's Result.Err.
//
// max_tokens, which the Messages API requires, is a request's
// MaxOutputTokens, or Config.MaxTokens when it sets none; a combined call
// asks for the sum over its requests plus a small allowance per item for the
// JSON around each answer. Either is capped at Config.MaxCallTokens.
//
// In ModeAsync a batch becomes one Message Batch (see SubmitJob): one plain
// request per provider.Request, the same request ModeSingle would send,
// answered within 24 hours at half the price. Complete then behaves as in
// ModeCombined.
//
// The package reads no environment variables: everything comes from Config.
package anthropic

import (
	"bytes"
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

// resultsSchema is the "results" property of the tool's input_schema.
const resultsSchema = `{"results":{"type":"array","items":{"type":"object","properties":{"id":{"type":"string"},"output":{"type":"string"}},"required":["id","output"],"additionalProperties":false}}}`

// toolDescription tells the model what the tool is for.
const toolDescription = "Record the answer to every item of the user message: one result per item, " +
	"the item's id copied unchanged, your answer to its input as output."

// formatLine ends every combined system prompt: it tells the model what the
// user message holds and how to answer it.
const formatLine = `The user message is a JSON object {"items":[{"id":"...","input":"..."}]}. ` +
	`Treat each item's input as a separate request and answer it on its own. ` +
	`Give all answers in one call of the batch_results tool: one result per item, the item's id copied unchanged, your answer as output.`

// itemOverheadTokens is the max_tokens allowance per item of a combined call
// for the JSON around its answer (braces, keys, id).
const itemOverheadTokens = 16

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
	if p.maxCallTokens == 0 {
		p.maxCallTokens = DefaultMaxCallTokens
	}
	return p, nil
}

// Name returns "anthropic".
func (p *Provider) Name() string { return "anthropic" }

// Mode returns the mode the Provider was built with.
func (p *Provider) Mode() Mode { return p.mode }

// Complete sends b as the Provider's Mode says.
//
// ModeCombined and ModeAsync make one Messages call for b and return one
// result per item the tool_use answer holds, in the answer's order. Answers are matched to
// requests by id, in any order; ids not in the batch are ignored, and so is
// every answer to an id after the first one. Requests the answer leaves out
// are absent from the results (the caller retries them). The call's tokens
// (input_tokens plus cache creation and cache read tokens, and
// output_tokens) are split evenly over the returned results with
// provider.Usage.Split.
//
// Errors concern the whole batch, wrap an *provider.Error, and never contain
// the API key:
//   - HTTP 400, 401, 403, 404 (e.g. an unknown model), 413 and other 4xx
//     except 408, 409, 425 and 429: permanent, with StatusCode.
//   - HTTP 408, 409, 425, 429, 5xx (529 overloaded too), network errors:
//     transient, with StatusCode when there was one and RetryAfter from the
//     retry-after header.
//   - stop_reason "max_tokens" or "refusal", an answer without the tool_use
//     block, or a tool input that is not the expected shape: transient.
//   - ctx ending: transient, wrapping ctx.Err().
//
// ModeSingle makes one call per request, at most Config.Concurrency at once,
// and returns one result per request, in request order. A
// failed call is its request's Result.Err, classified as above, with two
// differences: stop_reason "refusal" is permanent (the model refused that
// prompt alone), and "max_tokens" is not an error (the output is what fitted
// in the request's budget). An answer without any text block is a transient
// Result.Err. Each result carries its own call's usage. Complete returns an
// error only when the batch has no model, or when ctx ended before any call
// succeeded (transient, wrapping ctx.Err()).
func (p *Provider) Complete(ctx context.Context, b provider.Batch) ([]provider.Result, error) {
	if len(b.Requests) == 0 {
		return nil, nil
	}
	if b.Model == "" {
		return nil, fmt.Errorf("anthropic: messages: %w", provider.Permanent(errors.New("batch has no model")))
	}
	if p.mode == ModeSingle {
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
	if err != nil {
		return nil, p.redact(fmt.Errorf("anthropic: messages: %w", provider.Transient(err)))
	}
	for i, u := range usage(msg).Split(len(results)) {
		results[i].Usage = u
	}
	return results, nil
}

// budget is the max_tokens of a call answering requests.
func (p *Provider) budget(requests []provider.Request, overhead int) int64 {
	var sum int
	for _, r := range requests {
		if r.MaxOutputTokens > 0 {
			sum += r.MaxOutputTokens
		} else {
			sum += p.maxTokens
		}
		sum += overhead
		if sum >= p.maxCallTokens {
			return int64(p.maxCallTokens)
		}
	}
	return int64(sum)
}

// newParams builds the combined Messages request for b.
func (p *Provider) newParams(b provider.Batch) (anthropic.MessageNewParams, error) {
	type item struct {
		ID    string `json:"id"`
		Input string `json:"input"`
	}
	items := make([]item, len(b.Requests))
	for i, r := range b.Requests {
		items[i] = item{ID: r.Key, Input: r.Input}
	}
	var user bytes.Buffer
	enc := json.NewEncoder(&user)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(struct {
		Items []item `json:"items"`
	}{items}); err != nil {
		return anthropic.MessageNewParams{}, fmt.Errorf("encode items: %w", err)
	}

	system := formatLine
	if b.Instructions != "" {
		system = b.Instructions + "\n\n" + formatLine
	}
	return anthropic.MessageNewParams{
		Model:     b.Model,
		MaxTokens: p.budget(b.Requests, itemOverheadTokens),
		System:    []anthropic.TextBlockParam{{Text: system}},
		Messages: []anthropic.MessageParam{
			anthropic.NewUserMessage(anthropic.NewTextBlock(string(bytes.TrimSpace(user.Bytes())))),
		},
		Tools: []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{
			Name:        ToolName,
			Description: anthropic.String(toolDescription),
			InputSchema: anthropic.ToolInputSchemaParam{
				Properties:  json.RawMessage(resultsSchema),
				Required:    []string{"results"},
				ExtraFields: map[string]any{"additionalProperties": false},
			},
		}}},
		ToolChoice: anthropic.ToolChoiceUnionParam{OfTool: &anthropic.ToolChoiceToolParam{
			Name:                   ToolName,
			DisableParallelToolUse: anthropic.Bool(true),
		}},
	}, nil
}

// parseAnswer matches the tool_use answer's results to b's requests.
func parseAnswer(b provider.Batch, msg *anthropic.Message) ([]provider.Result, error) {
	if msg == nil {
		return nil, errors.New("empty answer")
	}
	switch msg.StopReason {
	case anthropic.StopReasonMaxTokens:
		return nil, errors.New("answer cut off (stop_reason max_tokens)")
	case anthropic.StopReasonRefusal:
		return nil, errors.New("model refused the batch (stop_reason refusal)")
	}
	var input json.RawMessage
	for _, block := range msg.Content {
		if block.Type == "tool_use" && block.Name == ToolName {
			input = block.Input
			break
		}
	}
	if input == nil {
		return nil, fmt.Errorf("answer has no %s tool_use block (stop_reason %q)", ToolName, msg.StopReason)
	}
	results, err := combined.Results(b, input)
	if err != nil {
		return nil, fmt.Errorf("parse tool input: %w", err)
	}
	return results, nil
}

// usage is the call's token usage; cached prompt tokens count as input.
func usage(msg *anthropic.Message) provider.Usage {
	u := msg.Usage
	return provider.Usage{
		InputTokens:  u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens,
		OutputTokens: u.OutputTokens,
	}
}
