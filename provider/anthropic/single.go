package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/fanout"
	"github.com/aibatch/aibatch/provider/internal/httpcall"
	"github.com/aibatch/aibatch/wire"
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
	params, err := p.singleParams(b, r)
	if err != nil {
		return provider.Result{Key: r.Key, Err: p.singleError(r.Key, requestError(true, err))}
	}
	var raw *http.Response
	msg, err := p.messages.New(ctx, params, option.WithResponseInto(&raw), option.WithRequestTimeout(requestTimeout))
	if err != nil {
		cerr, _ := httpcall.Plain(callError(ctx, err, raw))
		return provider.Result{Key: r.Key, Err: p.singleError(r.Key, cerr)}
	}
	res, err := singleAnswer(msg, len(r.Options) > 0)
	if err != nil {
		return provider.Result{Key: r.Key, Err: p.singleError(r.Key, err)}
	}
	res.Key, res.Usage = r.Key, usage(msg)
	return res
}

// singleParams is the plain Messages request for r, one request of b: its
// turns (see conversation), max_tokens from plainMaxTokens, b's sampling
// parameters and stop sequences, a forced tool for b's structured output
// (see formatTool), and r's provider options (see setOptions).
func (p *Provider) singleParams(b provider.Batch, r provider.Request) (anthropic.MessageNewParams, error) {
	if err := checkBatch(b); err != nil {
		return anthropic.MessageNewParams{}, err
	}
	system, msgs, err := conversation(b, r)
	if err != nil {
		return anthropic.MessageNewParams{}, err
	}
	params := anthropic.MessageNewParams{Model: b.Model, MaxTokens: p.plainMaxTokens(b, r), Messages: msgs}
	if system != "" {
		params.System = []anthropic.TextBlockParam{{Text: system}}
	}
	setSampling(&params, b.Params)
	params.StopSequences = b.Params.Stop
	if err := setOptions(&params, r.Options); err != nil {
		return anthropic.MessageNewParams{}, err
	}
	if f := b.Format; f != nil && f.Type != wire.FormatText {
		tool, err := formatTool(*f)
		if err != nil {
			return anthropic.MessageNewParams{}, err
		}
		params.Tools = append(params.Tools, anthropic.ToolUnionParam{OfTool: &tool})
		params.ToolChoice = anthropic.ToolChoiceUnionParam{OfTool: &anthropic.ToolChoiceToolParam{Name: tool.Name, DisableParallelToolUse: anthropic.Bool(true)}}
	}
	return params, nil
}

// singleAnswer reads the answer to one plain request: its text blocks
// joined, or, for structured output (an answer of one tool_use block and
// no text, as the forced tool gives), the tool's input as JSON text; its
// finish reason in OpenAI's terms; and with options, the answer as
// OpenAI's message (openAIMessage). stop_reason "refusal" is a permanent
// ScopeRequest error, an answer without text or tool_use a transient one.
// stop_reason "max_tokens" is not an error: the text is what fitted.
func singleAnswer(msg *anthropic.Message, withOptions bool) (provider.Result, error) {
	if msg.StopReason == anthropic.StopReasonRefusal {
		return provider.Result{}, requestError(true, fmt.Errorf("model refused the request (stop_reason refusal%s)", refusalDetail(msg)))
	}
	res := provider.Result{FinishReason: finishReason(msg.StopReason)}
	if withOptions {
		m, err := openAIMessage(msg)
		if err != nil {
			return provider.Result{}, requestError(false, fmt.Errorf("%v (stop_reason %q)", err, shorten(string(msg.StopReason))))
		}
		res.Message = m
	}
	var out strings.Builder
	var hasText bool
	var tool json.RawMessage
	tools := 0
	for _, block := range msg.Content {
		switch block.Type {
		case "text":
			out.WriteString(block.Text)
			hasText = true
		case "tool_use":
			tool, tools = block.Input, tools+1
		}
	}
	switch {
	case hasText:
		res.Output = out.String()
	case tools == 1 && !withOptions:
		// The forced tool of structured output: its input is the answer.
		var compact bytes.Buffer
		if err := json.Compact(&compact, tool); err != nil {
			return provider.Result{}, requestError(false, fmt.Errorf("tool input is not JSON: %w", err))
		}
		res.Output = compact.String()
		if res.FinishReason == "tool_calls" {
			res.FinishReason = "stop"
		}
	case tools == 0 && !withOptions:
		return provider.Result{}, requestError(false, fmt.Errorf("answer has no text (stop_reason %q)", shorten(string(msg.StopReason))))
	}
	return res, nil
}

// singleError wraps err, the failure of the call for request key.
func (p *Provider) singleError(key string, err error) error {
	return p.redact(fmt.Errorf("anthropic: messages for request %q: %w", key, err))
}
