package openai

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/fanout"
)

// completeSingle makes one plain call per request of b, at most
// p.concurrency at once (see Complete for the contract).
func (p *Provider) completeSingle(ctx context.Context, b provider.Batch) ([]provider.Result, error) {
	one := func(r provider.Request) provider.Result { return p.completeOne(ctx, b, r) }
	results, err := fanout.Complete(ctx, b.Requests, p.concurrency, one, p.singleError)
	if err != nil {
		return nil, fmt.Errorf("openai: chat completion: %w", err)
	}
	return results, nil
}

// completeOne makes the call for one request.
func (p *Provider) completeOne(ctx context.Context, b provider.Batch, r provider.Request) provider.Result {
	var raw *http.Response
	resp, err := p.chat.New(ctx, singleParams(b, r), option.WithResponseInto(&raw))
	if err != nil {
		return provider.Result{Key: r.Key, Err: p.singleError(r.Key, callError(ctx, err, raw))}
	}
	out, usage, err := singleAnswer(resp)
	if err != nil {
		return provider.Result{Key: r.Key, Err: p.singleError(r.Key, err)}
	}
	return provider.Result{Key: r.Key, Output: out, Usage: usage}
}

// singleParams is the plain Chat Completions request for r, one request of
// b: the Instructions as system message when set, the Input as user
// message, max_completion_tokens when r sets MaxOutputTokens.
func singleParams(b provider.Batch, r provider.Request) openai.ChatCompletionNewParams {
	var msgs []openai.ChatCompletionMessageParamUnion
	if b.Instructions != "" {
		msgs = append(msgs, openai.SystemMessage(b.Instructions))
	}
	msgs = append(msgs, openai.UserMessage(r.Input))
	params := openai.ChatCompletionNewParams{Model: b.Model, Messages: msgs}
	if r.MaxOutputTokens > 0 {
		params.MaxCompletionTokens = openai.Int(int64(r.MaxOutputTokens))
	}
	return params
}

// singleAnswer reads the answer to one plain request: its content and usage,
// a transient error when it has no choices, a permanent one for a refusal.
// finish_reason "length" is not an error.
func singleAnswer(resp *openai.ChatCompletion) (string, provider.Usage, error) {
	if resp == nil || len(resp.Choices) == 0 {
		return "", provider.Usage{}, provider.Transient(errors.New("answer has no choices"))
	}
	msg := resp.Choices[0].Message
	if msg.Refusal != "" {
		return "", provider.Usage{}, provider.Permanent(fmt.Errorf("model refused the request: %q", shorten(msg.Refusal)))
	}
	return msg.Content, provider.Usage{InputTokens: resp.Usage.PromptTokens, OutputTokens: resp.Usage.CompletionTokens}, nil
}

// singleError wraps err, the failure of the call for request key.
func (p *Provider) singleError(key string, err error) error {
	return p.redact(fmt.Errorf("openai: chat completion for request %q: %w", key, err))
}

// shorten cuts s to a length fit for an error message.
func shorten(s string) string {
	const limit = 200
	if len(s) > limit {
		return s[:limit] + "..."
	}
	return s
}
