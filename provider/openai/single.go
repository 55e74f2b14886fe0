package openai

import (
	"context"
	"errors"
	"fmt"

	"github.com/openai/openai-go/v3"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/fanout"
	"github.com/aibatch/aibatch/provider/internal/httpcall"
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
	var resp chatAnswer
	if raw, err := p.create(ctx, singleParams(b, r), b, &resp); err != nil {
		cerr, _ := httpcall.Plain(callError(ctx, err, raw))
		return provider.Result{Key: r.Key, Err: p.singleError(r.Key, cerr)}
	}
	out, usage, err := singleAnswer(&resp)
	if err != nil {
		return provider.Result{Key: r.Key, Err: p.singleError(r.Key, err)}
	}
	return provider.Result{Key: r.Key, Output: out, Usage: usage, ServiceTier: resp.ServiceTier}
}

// singleParams is the plain Chat Completions request for r, one request of
// b: the Instructions as system message when set, the Input as user
// message, max_completion_tokens from outputLimit.
func singleParams(b provider.Batch, r provider.Request) openai.ChatCompletionNewParams {
	var msgs []openai.ChatCompletionMessageParamUnion
	if b.Instructions != "" {
		msgs = append(msgs, openai.SystemMessage(b.Instructions))
	}
	msgs = append(msgs, openai.UserMessage(r.Input))
	params := openai.ChatCompletionNewParams{Model: b.Model, Messages: msgs}
	if n := outputLimit(b, r); n > 0 {
		params.MaxCompletionTokens = openai.Int(int64(n))
	}
	withPromptCacheKey(&params, b)
	return params
}

// outputLimit is the API's output limit of a plain call for r, one request
// of b: r's own MaxOutputTokens when set, else b's; 0 for none.
func outputLimit(b provider.Batch, r provider.Request) int {
	if r.MaxOutputTokens > 0 {
		return r.MaxOutputTokens
	}
	return max(b.MaxOutputTokens, 0)
}

// singleAnswer reads the answer to one plain request: its content and
// usage. A refusal (message.refusal, finish_reason "content_filter") is a
// permanent ScopeRequest error, an answer with no choices a transient one.
// finish_reason "length" is not an error: the content is what fitted.
func singleAnswer(resp *chatAnswer) (string, provider.Usage, error) {
	if resp == nil || len(resp.Choices) == 0 {
		return "", provider.Usage{}, requestError(false, errors.New("answer has no choices"))
	}
	choice := resp.Choices[0]
	switch {
	case choice.Message.Refusal != "":
		return "", provider.Usage{}, requestError(true, fmt.Errorf("model refused the request: %q", shorten(choice.Message.Refusal)))
	case choice.FinishReason == "content_filter":
		return "", provider.Usage{}, requestError(true, errors.New("answer withheld by the content filter (finish_reason content_filter)"))
	}
	return choice.Message.Content, resp.Usage.usage(), nil
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
