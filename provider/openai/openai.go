// Package openai implements provider.Provider on OpenAI's Chat Completions
// API through the official SDK (github.com/openai/openai-go/v3).
//
// In ModeCombined (the default) a batch of several requests goes out as one
// call. The system message carries the batch's Instructions followed by a
// short fixed line that explains the answer format; the user message is the
// JSON {"items":[{"id":Key,"input":Input}]} (a conversation's item has
// "messages" instead of "input", and a request with its own cap
// "max_output_tokens"); response_format is a strict json_schema named
// "batch_results", built for the call, that makes the model answer
// {"results":[{"id":...,"output":...}]} with every id one of the batch's
// keys (an "enum"), so the model cannot invent ids. This answer has no way
// to refuse one item alone: an item the model leaves out is simply missing
// from the results, and the caller retries it.
//
// A combined call carries the batch's temperature, top_p and seed. Its stop
// sequences are not sent (the first met would end every answer): each
// answer is cut before the first of them instead, and an answer longer
// than its request's MaxOutputTokens is cut to about that length (4 bytes a
// token) with FinishReason "length". With a structured-output Format the
// output's schema is the request's own (see structured.go: its definitions
// move to the root, and strict mode's rules and limits are checked by
// CombinesFormat; a batch whose format fails them is sent as plain calls),
// and each Output is the answer's JSON text; a json_object output is the
// text of an object, and an output that is not one leaves its request
// unanswered.
//
// A batch of one request, in any mode, and every request in ModeSingle, is
// a plain call: system message = Instructions when set, then the request's
// Messages as given (or Input as user message), its sampling parameters
// and stop sequences, response_format as the request gave it (strict or
// not), and its provider Options merged in field by field (they may not set
// model, messages, stream or stream_options: such a request fails,
// permanent, ScopeRequest, wrapping provider.ErrUnsupported). Its answer's
// text is the request's output and finish_reason its FinishReason; with
// Options, Result.Message is choices[0].message as the API wrote it. A
// refusal or a rejection is that request's own Result.Err (ScopeRequest),
// and an answer cut off at the output limit is still its answer. ModeSingle
// makes up to Config.Concurrency such calls at once.
//
// An embedding batch (Kind wire.KindEmbedding) is one Embeddings API call
// for all its inputs (at most MaxEmbeddingInputs), encoding_format float,
// dimensions when the batch asks: see embeddings.go for how the answer is
// matched and what its faults mean.
//
// In ModeAsync a batch becomes one Batch API job (see SubmitJob): a JSONL
// file with one plain Chat Completions request per line, the same request
// ModeSingle would send, answered within 24 hours at about half the price.
// Complete then behaves as in ModeCombined.
//
// Every error is a *provider.Error that says whose failure it is (Scope):
// see Complete. MaxOutputTokens reports the output limit of the models this
// package knows (provider.OutputLimiter).
//
// The package reads no environment variables: everything comes from Config.
package openai

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/combined"
	"github.com/aibatch/aibatch/provider/internal/httpcall"
	"github.com/aibatch/aibatch/wire"
)

// SchemaName is the name of the json_schema response format of a batch call.
const SchemaName = "batch_results"

var _ provider.Provider = (*Provider)(nil)

// Provider sends batches to the OpenAI Chat Completions API. It is safe for
// concurrent use.
type Provider struct {
	chat        openai.ChatCompletionService
	embeddings  openai.EmbeddingService
	files       openai.FileService
	batches     openai.BatchService
	redact      func(error) error // hides the API key in an error message
	redactor    httpcall.Redactor // the same, for strings
	mode        Mode
	concurrency int

	fileDeleteFailures atomic.Int64 // see FileDeleteFailures
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
	redactor := httpcall.NewRedactor(cfg.APIKey)
	p := &Provider{
		chat:        openai.NewChatCompletionService(reqOpts...),
		embeddings:  openai.NewEmbeddingService(reqOpts...),
		files:       openai.NewFileService(reqOpts...),
		batches:     openai.NewBatchService(reqOpts...),
		redact:      redactor.Redact,
		redactor:    redactor,
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
// ModeCombined and ModeAsync make one Chat Completions call for a batch of
// several requests and return one result per item the model answered, in
// the answer's order. max_completion_tokens is b.MaxOutputTokens, the
// call's planned budget, and is not sent when 0 (the model's default).
// Answers are matched to requests by id, in any order. Ids that are not in
// the batch are ignored, and so is every answer to an id after the first
// one. Requests the answer leaves out are absent from the results (the
// caller retries them). The call's prompt and completion tokens are split
// evenly over the returned results with provider.Usage.Split; when no result
// is returned the usage is dropped.
//
// A combined call's errors concern the whole batch, wrap an
// *provider.Error, and never contain the API key:
//   - no answer (network error, ctx ending: wrapping ctx.Err()), HTTP 401,
//     402, 403, 408, 409, 425, 429 and 5xx: transient, ScopeProvider, with
//     StatusCode when there was one and RetryAfter from the retry-after-ms
//     or Retry-After (seconds or HTTP date) header.
//   - HTTP 404 with code model_not_found: permanent, ScopeUnknown, wrapping
//     provider.ErrUnknownModel.
//   - HTTP 400 with code context_length_exceeded, and HTTP 413: permanent,
//     ScopeBatch (the call is too large; smaller ones may pass).
//   - other 4xx (400, 404, 422, ...): permanent, ScopeUnknown.
//   - an answer cut off (finish_reason "length"), a refusal (message.refusal
//     set, or finish_reason "content_filter"): permanent, ScopeBatch.
//   - an answer without choices, or content that is not the expected JSON:
//     transient, ScopeBatch.
//
// A batch of one request, and ModeSingle, make one plain call per request,
// at most Config.Concurrency at once, and return one result per request,
// in request order. A plain call's max_completion_tokens is the request's
// MaxOutputTokens, or b.MaxOutputTokens when the request sets none. Its
// answer is the request's Output even when cut off (finish_reason
// "length"). A refusal (message.refusal, finish_reason "content_filter")
// and the permanent errors above other than an unknown model (400, 413,
// 422, ...) are that request's Result.Err, permanent, ScopeRequest; an
// answer with no choices is a transient ScopeRequest Result.Err. The other
// errors (ScopeProvider ones, an unknown model) concern more than one
// request: Complete returns the first of them as its error when no call
// succeeded and none failed with ScopeRequest (so a one-request batch whose
// call met a 500, a 401 or an unknown model fails as a whole); otherwise
// each is its request's Result.Err. Each result carries its own call's
// usage.
//
// A batch with no model fails at once, permanent.
func (p *Provider) Complete(ctx context.Context, b provider.Batch) ([]provider.Result, error) {
	if len(b.Requests) == 0 {
		return nil, nil
	}
	if b.Model == "" {
		return nil, fmt.Errorf("openai: chat completion: %w", provider.Permanent(errors.New("batch has no model")))
	}
	if b.Kind == wire.KindEmbedding {
		return p.embed(ctx, b)
	}
	if p.mode == ModeSingle || len(b.Requests) == 1 || !p.combinable(b) {
		return p.completeSingle(ctx, b)
	}
	params, err := newParams(b)
	if err != nil {
		return nil, fmt.Errorf("openai: chat completion: %w", provider.Permanent(err))
	}
	var raw *http.Response
	var resp chatAnswer
	if _, err := p.chat.New(ctx, params, option.WithResponseInto(&raw), option.WithResponseBodyInto(&resp)); err != nil {
		return nil, p.redact(fmt.Errorf("openai: chat completion: %w", callError(ctx, err, raw)))
	}
	results, err := parseAnswer(b, &resp)
	usage := provider.Usage{InputTokens: resp.Usage.PromptTokens, OutputTokens: resp.Usage.CompletionTokens}
	for i, u := range usage.Split(len(results)) {
		results[i].Usage = u
	}
	if err != nil {
		// A cut-off answer keeps the results it completed.
		return results, p.redact(fmt.Errorf("openai: chat completion: %w", err))
	}
	return results, nil
}

// newParams builds the combined Chat Completions request for b: the
// system message, the items, the strict answer schema and the batch's
// sampling parameters (its stop sequences are applied to each answer
// instead, see combined.Finish).
func newParams(b provider.Batch) (openai.ChatCompletionNewParams, error) {
	user, err := combined.UserMessage(b)
	if err != nil {
		return openai.ChatCompletionNewParams{}, err
	}
	schema, err := answerSchema(b)
	if err != nil {
		return openai.ChatCompletionNewParams{}, err
	}
	system := formatLine(b)
	if b.Instructions != "" {
		system = b.Instructions + "\n\n" + system
	}
	params := openai.ChatCompletionNewParams{
		Model: b.Model,
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage(system),
			openai.UserMessage(user),
		},
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{
			OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
				JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{
					Name:   SchemaName,
					Strict: openai.Bool(true),
					Schema: schema,
				},
			},
		},
	}
	if b.MaxOutputTokens > 0 {
		params.MaxCompletionTokens = openai.Int(int64(b.MaxOutputTokens))
	}
	setSampling(&params, b.Params)
	return params, nil
}

// parseAnswer matches the answer's results to b's requests. Its errors are
// ScopeBatch *provider.Errors: permanent for a refusal (wrapping
// provider.ErrRefused) or an answer cut off (wrapping provider.ErrCutOff,
// returned with the results the answer completed before the cut), transient
// for an answer without choices or content that is not the expected JSON.
func parseAnswer(b provider.Batch, resp *chatAnswer) ([]provider.Result, error) {
	if resp == nil || len(resp.Choices) == 0 {
		return nil, batchError(false, errors.New("answer has no choices"))
	}
	choice := resp.Choices[0]
	switch {
	case choice.Message.Refusal != "":
		return nil, batchError(true, fmt.Errorf("%w the batch: %q", provider.ErrRefused, shorten(choice.Message.Refusal)))
	case choice.FinishReason == "length":
		return combined.Completed(b, []byte(choice.Message.Content)),
			batchError(true, fmt.Errorf("%w (finish_reason length)", provider.ErrCutOff))
	case choice.FinishReason == "content_filter":
		return nil, batchError(true, fmt.Errorf("answer withheld by the content filter (finish_reason content_filter): %w", provider.ErrRefused))
	}
	results, err := combined.Results(b, []byte(choice.Message.Content))
	switch {
	case errors.Is(err, combined.ErrNoResults):
		return nil, batchError(false, fmt.Errorf("parse answer content: %w", err))
	case err != nil:
		return nil, batchError(false, fmt.Errorf("parse answer content (finish_reason %q): %w", shorten(string(choice.FinishReason)), err))
	}
	return results, nil
}

// batchError is the ScopeBatch *provider.Error whose cause is err.
func batchError(permanent bool, err error) *provider.Error {
	return &provider.Error{Permanent: permanent, Scope: provider.ScopeBatch, Err: err}
}
