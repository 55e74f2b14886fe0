package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/fanout"
	"github.com/aibatch/aibatch/provider/internal/httpcall"
	"github.com/aibatch/aibatch/wire"
)

// completeSingle makes one plain call per request of b, at most
// p.concurrency at once (see Complete for the contract).
func (p *Provider) completeSingle(ctx context.Context, b provider.Batch) ([]provider.Result, error) {
	one := func(r provider.Request) provider.Result { return p.completeOne(ctx, b, r) }
	whole := func(err error) error { return fmt.Errorf("openai: chat completion: %w", err) }
	return fanout.Complete(ctx, b.Requests, p.concurrency, one, p.singleError, whole)
}

// completeOne makes the call for one request.
func (p *Provider) completeOne(ctx context.Context, b provider.Batch, r provider.Request) provider.Result {
	params, err := singleParams(b, r)
	if err != nil {
		return provider.Result{Key: r.Key, Err: p.singleError(r.Key, requestError(true, err))}
	}
	var raw *http.Response
	var resp chatAnswer
	var rawResp rawAnswer // with Options: the message is kept as the API wrote it
	into := any(&resp)
	if len(r.Options) > 0 {
		into = &rawResp
	}
	if _, err := p.chat.New(ctx, params, option.WithResponseInto(&raw), option.WithResponseBodyInto(into)); err != nil {
		cerr, _ := httpcall.Plain(callError(ctx, err, raw))
		return provider.Result{Key: r.Key, Err: p.singleError(r.Key, cerr)}
	}
	var message json.RawMessage
	if len(r.Options) > 0 {
		if resp, message, err = rawResp.decode(); err != nil {
			return provider.Result{Key: r.Key, Err: p.singleError(r.Key, requestError(false, err))}
		}
	}
	res, err := singleAnswer(&resp)
	if err != nil {
		return provider.Result{Key: r.Key, Err: p.singleError(r.Key, err)}
	}
	res.Key, res.Message = r.Key, message
	return res
}

// rawAnswer is a Chat Completions answer whose first choice's message is
// kept as the API wrote it, for a request with provider options (tool
// calls, logprobs and the rest are the caller's to read).
type rawAnswer struct {
	Choices []struct {
		FinishReason string          `json:"finish_reason"`
		Message      json.RawMessage `json:"message"`
	} `json:"choices"`
	Usage chatUsage `json:"usage"`
}

// decode returns the answer as chatAnswer, and the first choice's message.
func (a rawAnswer) decode() (chatAnswer, json.RawMessage, error) {
	out := chatAnswer{Usage: a.Usage}
	for i, c := range a.Choices {
		var m chatMessage
		if err := json.Unmarshal(c.Message, &m); err != nil {
			return chatAnswer{}, nil, fmt.Errorf("parse answer: choices[%d].message: %w", i, err)
		}
		out.Choices = append(out.Choices, chatChoice{FinishReason: c.FinishReason, Message: m})
	}
	if len(a.Choices) == 0 {
		return out, nil, nil
	}
	return out, a.Choices[0].Message, nil
}

// singleParams is the plain Chat Completions request for r, one request of
// b: the Instructions as system message when set, then r's Messages as
// given (or its Input as user message), max_completion_tokens from
// outputLimit, b's sampling parameters and response_format as the request
// gave them, and r's Options merged in. It fails when a message is not
// one the API takes or an option is one the provider sets itself.
func singleParams(b provider.Batch, r provider.Request) (openai.ChatCompletionNewParams, error) {
	var msgs []openai.ChatCompletionMessageParamUnion
	if b.Instructions != "" {
		msgs = append(msgs, openai.SystemMessage(b.Instructions))
	}
	if len(r.Messages) == 0 {
		msgs = append(msgs, openai.UserMessage(r.Input))
	}
	for i, m := range r.Messages {
		raw, err := json.Marshal(m)
		if err != nil {
			return openai.ChatCompletionNewParams{}, fmt.Errorf("messages[%d]: %w", i, err)
		}
		var u openai.ChatCompletionMessageParamUnion
		if err := json.Unmarshal(raw, &u); err != nil {
			return openai.ChatCompletionNewParams{}, fmt.Errorf("messages[%d] is not a message the API takes: %w", i, err)
		}
		msgs = append(msgs, u)
	}
	params := openai.ChatCompletionNewParams{Model: b.Model, Messages: msgs}
	if n := outputLimit(b, r); n > 0 {
		params.MaxCompletionTokens = openai.Int(int64(n))
	}
	setSampling(&params, b.Params)
	if len(b.Params.Stop) > 0 {
		params.Stop = openai.ChatCompletionNewParamsStopUnion{OfStringArray: b.Params.Stop}
	}
	if b.Format != nil {
		params.ResponseFormat = responseFormat(*b.Format)
	}
	if err := setOptions(&params, r.Options); err != nil {
		return openai.ChatCompletionNewParams{}, err
	}
	return params, nil
}

// setSampling sets the temperature, top_p and seed of ps; the stop
// sequences are the caller's (a combined call does not send them).
func setSampling(params *openai.ChatCompletionNewParams, ps provider.Params) {
	if ps.Temperature != nil {
		params.Temperature = openai.Float(*ps.Temperature)
	}
	if ps.TopP != nil {
		params.TopP = openai.Float(*ps.TopP)
	}
	if ps.Seed != nil {
		params.Seed = openai.Int(*ps.Seed)
	}
}

// responseFormat is f as the SDK takes it, strict as the request asked.
func responseFormat(f wire.ResponseFormat) openai.ChatCompletionNewParamsResponseFormatUnion {
	switch {
	case f.Type == wire.FormatJSONObject:
		return openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}}
	case f.Type == wire.FormatJSONSchema && f.JSONSchema != nil:
		js := shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: f.JSONSchema.Name, Schema: f.JSONSchema.Schema}
		if f.JSONSchema.Description != "" {
			js.Description = openai.String(f.JSONSchema.Description)
		}
		if f.JSONSchema.Strict != nil {
			js.Strict = openai.Bool(*f.JSONSchema.Strict)
		}
		return openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{JSONSchema: js}}
	}
	return openai.ChatCompletionNewParamsResponseFormatUnion{OfText: &shared.ResponseFormatTextParam{}}
}

// ownOptions are the request fields the provider sets itself: a request's
// provider_options may not set them.
var ownOptions = []string{"model", "messages", "stream", "stream_options"}

// setOptions merges options, a JSON object of further request fields
// (tools, tool_choice, n, logprobs, ...), into params; each replaces the
// field of that name.
func setOptions(params *openai.ChatCompletionNewParams, options json.RawMessage) error {
	if len(options) == 0 {
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(options, &fields); err != nil {
		return fmt.Errorf("provider_options is not a JSON object: %w", err)
	}
	extra := make(map[string]any, len(fields))
	for k, v := range fields {
		if slices.Contains(ownOptions, k) {
			return fmt.Errorf("%w: provider_options may not set %q: the worker sets it", provider.ErrUnsupported, k)
		}
		extra[k] = v
	}
	params.SetExtraFields(extra)
	return nil
}

// outputLimit is the API's output limit of a plain call for r, one request
// of b: r's own MaxOutputTokens when set, else b's; 0 for none.
func outputLimit(b provider.Batch, r provider.Request) int {
	if r.MaxOutputTokens > 0 {
		return r.MaxOutputTokens
	}
	return max(b.MaxOutputTokens, 0)
}

// singleAnswer reads the answer to one plain request: its content, finish
// reason and usage. A refusal (message.refusal, finish_reason
// "content_filter") is a permanent ScopeRequest error, an answer with no
// choices a transient one. finish_reason "length" is not an error: the
// content is what fitted.
func singleAnswer(resp *chatAnswer) (provider.Result, error) {
	if resp == nil || len(resp.Choices) == 0 {
		return provider.Result{}, requestError(false, errors.New("answer has no choices"))
	}
	choice := resp.Choices[0]
	switch {
	case choice.Message.Refusal != "":
		return provider.Result{}, requestError(true, fmt.Errorf("model refused the request: %q", shorten(choice.Message.Refusal)))
	case choice.FinishReason == "content_filter":
		return provider.Result{}, requestError(true, errors.New("answer withheld by the content filter (finish_reason content_filter)"))
	}
	return provider.Result{Output: choice.Message.Content, FinishReason: choice.FinishReason,
		Usage: provider.Usage{InputTokens: resp.Usage.PromptTokens, OutputTokens: resp.Usage.CompletionTokens}}, nil
}

// requestError is the ScopeRequest *provider.Error whose cause is err.
func requestError(permanent bool, err error) *provider.Error {
	return &provider.Error{Permanent: permanent, Scope: provider.ScopeRequest, Err: err}
}

// singleError wraps err, the failure of the call for request key.
func (p *Provider) singleError(key string, err error) error {
	return p.redact(fmt.Errorf("openai: chat completion for request %q: %w", key, err))
}

// shorten cuts s to a length fit for an error message.
func shorten(s string) string { return httpcall.Shorten(s, 200) }
