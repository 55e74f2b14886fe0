package anthropic

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/fanout"
	"github.com/aibatch/aibatch/provider/internal/httpcall"
)

// completeSingle makes one plain call per request of b, at most
// p.concurrency at once (see Complete for the contract).
func (p *Provider) completeSingle(ctx context.Context, b provider.Batch) ([]provider.Result, error) {
	one := func(r provider.Request) provider.Result { return p.completeOne(ctx, b, r) }
	whole := func(err error) error { return fmt.Errorf("anthropic: messages: %w", err) }
	return fanout.Complete(ctx, b.Requests, p.concurrency, one, p.singleError, whole)
}

// completeOne makes the call for one request.
func (p *Provider) completeOne(ctx context.Context, b provider.Batch, r provider.Request) provider.Result {
	params := anthropic.MessageNewParams{
		Model:     b.Model,
		MaxTokens: p.plainMaxTokens(b, r),
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(r.Input))},
	}
	if b.Instructions != "" {
		params.System = systemBlocks(b.Model, b.Instructions)
	}

	var raw *http.Response
	msg, err := p.messages.New(ctx, params, option.WithResponseInto(&raw), option.WithRequestTimeout(requestTimeout))
	if err != nil {
		cerr, _ := httpcall.Plain(callError(ctx, err, raw))
		return provider.Result{Key: r.Key, Err: p.singleError(r.Key, cerr)}
	}
	out, err := singleAnswer(msg)
	if err != nil {
		return provider.Result{Key: r.Key, Err: p.singleError(r.Key, err)}
	}
	return provider.Result{Key: r.Key, Output: out, Usage: usage(msg)}
}

// singleAnswer reads the answer to one plain request: its text blocks
// joined. stop_reason "refusal" is a permanent ScopeRequest error, an
// answer without any text block a transient one. stop_reason "max_tokens"
// is not an error: the text is what fitted.
func singleAnswer(msg *anthropic.Message) (string, error) {
	if msg.StopReason == anthropic.StopReasonRefusal {
		return "", requestError(true, fmt.Errorf("model refused the request (stop_reason refusal%s)", refusalDetail(msg)))
	}
	var out strings.Builder
	var hasText bool
	for _, block := range msg.Content {
		if block.Type == "text" {
			out.WriteString(block.Text)
			hasText = true
		}
	}
	if !hasText {
		return "", requestError(false, fmt.Errorf("answer has no text (stop_reason %q)", shorten(string(msg.StopReason))))
	}
	return out.String(), nil
}

// singleError wraps err, the failure of the call for request key.
func (p *Provider) singleError(key string, err error) error {
	return p.redact(fmt.Errorf("anthropic: messages for request %q: %w", key, err))
}
