// Package openai implements provider.Provider on OpenAI's Chat Completions
// API through the official SDK (github.com/openai/openai-go/v3).
//
// In ModeCombined (the default) a whole batch goes out as one call. The
// system message carries the batch's Instructions followed by a short fixed
// line that explains the answer format; the user message is the JSON
// {"items":[{"id":Key,"input":Input}]}; response_format is a strict
// json_schema named "batch_results" that makes the model answer
// {"results":[{"id":...,"output":...}]}. This answer has no way to refuse one
// item alone: an item the model leaves out is simply missing from the
// results, and the caller retries it.
//
// In ModeSingle every request is its own plain call (system message =
// Instructions when set, user message = Input, no response_format), up to
// Config.Concurrency at once; the answer's text is the request's output, and
// a failed call is that request's Result.Err.
//
// In ModeAsync a batch becomes one Batch API job (see SubmitJob): a JSONL
// file with one plain Chat Completions request per line, the same request
// ModeSingle would send, answered within 24 hours at about half the price.
// Complete then behaves as in ModeCombined.
//
// The package reads no environment variables: everything comes from Config.
package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/combined"
	"github.com/aibatch/aibatch/provider/internal/httpcall"
)

// SchemaName is the name of the json_schema response format of a batch call.
const SchemaName = "batch_results"

// batchSchema is the strict JSON schema of a batch answer.
const batchSchema = `{"type":"object","properties":{"results":{"type":"array","items":{"type":"object","properties":{"id":{"type":"string"},"output":{"type":"string"}},"required":["id","output"],"additionalProperties":false}}},"required":["results"],"additionalProperties":false}`

// formatLine ends every system message: it tells the model what the user
// message holds and how to answer it.
const formatLine = `The user message is a JSON object {"items":[{"id":"...","input":"..."}]}. ` +
	`Treat each item's input as a separate request and answer it on its own. ` +
	`Reply with {"results":[{"id":"...","output":"..."}]}: one result per item, the item's id copied unchanged, your answer as output.`

var _ provider.Provider = (*Provider)(nil)

// Provider sends batches to the OpenAI Chat Completions API. It is safe for
// concurrent use.
type Provider struct {
	chat        openai.ChatCompletionService
	files       openai.FileService
	batches     openai.BatchService
	redact      func(error) error // hides the API key in an error message
	mode        Mode
	concurrency int
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
	// The New*Service constructors, unlike openai.NewClient, do not read
	// OPENAI_* environment variables.
	p := &Provider{
		chat:        openai.NewChatCompletionService(reqOpts...),
		files:       openai.NewFileService(reqOpts...),
		batches:     openai.NewBatchService(reqOpts...),
		redact:      httpcall.NewRedactor(cfg.APIKey).Redact,
		mode:        cfg.Mode,
		concurrency: cfg.Concurrency,
	}
	if p.mode == "" {
		p.mode = ModeCombined
	}
	if p.concurrency == 0 {
		p.concurrency = DefaultConcurrency
	}
	return p, nil
}

// Name returns "openai".
func (p *Provider) Name() string { return "openai" }

// Mode returns the mode the Provider was built with.
func (p *Provider) Mode() Mode { return p.mode }

// Complete sends b as the Provider's Mode says.
//
// ModeCombined and ModeAsync make one Chat Completions call for b and return
// one result per item the model answered, in the answer's order.
//
// max_completion_tokens is sent only when some request sets MaxOutputTokens;
// it is then the sum of MaxOutputTokens over the batch (requests without a
// cap add nothing and share that budget).
//
// Answers are matched to requests by id, in any order. Ids that are not in
// the batch are ignored, and so is every answer to an id after the first one.
// Requests the answer leaves out are absent from the results (the caller
// retries them). The call's prompt and completion tokens are split evenly
// over the returned results with provider.Usage.Split; when no result is
// returned the usage is dropped.
//
// Errors concern the whole batch, wrap an *provider.Error, and never contain
// the API key:
//   - HTTP 400, 401, 403, 404 (e.g. model_not_found), 422 and other 4xx
//     except 408, 409, 425 and 429: permanent, with StatusCode.
//   - HTTP 408, 409, 425, 429, 5xx, network errors: transient, with
//     StatusCode when there was one and RetryAfter from the retry-after-ms or
//     Retry-After (seconds or HTTP date) header.
//   - A refusal, finish_reason "length", or content that is not the expected
//     JSON: transient.
//   - ctx ending: transient, wrapping ctx.Err().
//
// ModeSingle makes one call per request, at most Config.Concurrency at once,
// and returns one result per request, in request order. A
// failed call is its request's Result.Err, classified as above, with two
// differences: a refusal is permanent (the model refused that prompt alone),
// and finish_reason "length" is not an error (the output is what fitted in
// the request's MaxOutputTokens). An answer with no choices is a transient
// Result.Err. Each result carries its own call's usage. Complete returns an
// error only when the batch has no model, or when ctx ended before any call
// succeeded (transient, wrapping ctx.Err()).
func (p *Provider) Complete(ctx context.Context, b provider.Batch) ([]provider.Result, error) {
	if len(b.Requests) == 0 {
		return nil, nil
	}
	if b.Model == "" {
		return nil, fmt.Errorf("openai: chat completion: %w", provider.Permanent(errors.New("batch has no model")))
	}
	if p.mode == ModeSingle {
		return p.completeSingle(ctx, b)
	}
	params, err := newParams(b)
	if err != nil {
		return nil, fmt.Errorf("openai: chat completion: %w", provider.Permanent(err))
	}
	var raw *http.Response
	resp, err := p.chat.New(ctx, params, option.WithResponseInto(&raw))
	if err != nil {
		return nil, p.redact(fmt.Errorf("openai: chat completion: %w", callError(ctx, err, raw)))
	}
	results, err := parseAnswer(b, resp)
	if err != nil {
		return nil, p.redact(fmt.Errorf("openai: chat completion: %w", provider.Transient(err)))
	}
	usage := provider.Usage{InputTokens: resp.Usage.PromptTokens, OutputTokens: resp.Usage.CompletionTokens}
	for i, u := range usage.Split(len(results)) {
		results[i].Usage = u
	}
	return results, nil
}

// newParams builds the Chat Completions request for b.
func newParams(b provider.Batch) (openai.ChatCompletionNewParams, error) {
	type item struct {
		ID    string `json:"id"`
		Input string `json:"input"`
	}
	items := make([]item, len(b.Requests))
	var maxTokens int64
	for i, r := range b.Requests {
		items[i] = item{ID: r.Key, Input: r.Input}
		maxTokens += int64(max(r.MaxOutputTokens, 0))
	}
	var user bytes.Buffer
	enc := json.NewEncoder(&user)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(struct {
		Items []item `json:"items"`
	}{items}); err != nil {
		return openai.ChatCompletionNewParams{}, fmt.Errorf("encode items: %w", err)
	}

	system := formatLine
	if b.Instructions != "" {
		system = b.Instructions + "\n\n" + formatLine
	}
	params := openai.ChatCompletionNewParams{
		Model: b.Model,
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage(system),
			openai.UserMessage(string(bytes.TrimSpace(user.Bytes()))),
		},
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{
			OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
				JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{
					Name:   SchemaName,
					Strict: openai.Bool(true),
					Schema: json.RawMessage(batchSchema),
				},
			},
		},
	}
	if maxTokens > 0 {
		params.MaxCompletionTokens = openai.Int(maxTokens)
	}
	return params, nil
}

// parseAnswer matches the answer's results to b's requests.
func parseAnswer(b provider.Batch, resp *openai.ChatCompletion) ([]provider.Result, error) {
	if resp == nil || len(resp.Choices) == 0 {
		return nil, errors.New("answer has no choices")
	}
	choice := resp.Choices[0]
	if r := choice.Message.Refusal; r != "" {
		return nil, fmt.Errorf("model refused the batch: %q", shorten(r))
	}
	if choice.FinishReason == "length" {
		return nil, errors.New("answer cut off (finish_reason length)")
	}
	results, err := combined.Results(b, []byte(choice.Message.Content))
	switch {
	case errors.Is(err, combined.ErrNoResults):
		return nil, fmt.Errorf("parse answer content: %w", err)
	case err != nil:
		return nil, fmt.Errorf("parse answer content (finish_reason %q): %w", shorten(string(choice.FinishReason)), err)
	}
	return results, nil
}
