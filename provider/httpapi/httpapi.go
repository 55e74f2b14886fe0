// Package httpapi implements provider.Provider on a bulk HTTP endpoint of
// your own (HTTP_PROVIDER_URL): one POST per batch, one result per item.
//
// # Endpoint contract
//
// The worker sends each batch as one request:
//
//	POST <URL>
//	Content-Type: application/json
//	Accept: application/json
//	Authorization: Bearer <Token>       (only when Config.Token is set)
//
//	{"max_output_tokens": 4000,
//	 "items": [
//	  {"id": "0", "input": "text", "instructions": "system prompt or empty",
//	   "model": "model name", "max_output_tokens": 100},
//	  ...
//	]}
//
// Every item has "id" (unique within the call), "input" (never empty; a
// conversation has "messages" instead, see Wire format 1.1),
// "instructions" and "model" (the same for every item of a call: a call only
// combines requests that share them). An item's "max_output_tokens" is
// present only when the request set a cap of its own. The top-level
// "max_output_tokens" is the call's output budget the worker planned for
// all of its items together (provider.Batch.MaxOutputTokens); it is present
// only when planned. An endpoint should ignore fields it does not know:
// later versions may add some.
//
// A 2xx answer must be JSON of this shape:
//
//	{"results": [
//	  {"id": "0", "output": "answer", "usage": {"input_tokens": 12, "output_tokens": 30}},
//	  {"id": "1", "error": "why this item failed", "retryable": true},
//	  ...
//	 ],
//	 "truncated": false}
//
// Its entries mean:
//   - "output" answers the item. "usage" is optional; without it the result
//     reports no tokens.
//   - "error" (a non-empty string) refuses or rejects that item alone (a
//     model's refusal, an input the endpoint cannot take): it becomes the
//     request's own error (ScopeRequest), its error result and dead letter,
//     unless "retryable" is true, in which case the request is retried later
//     with backoff. "error" wins over "output" when both are set.
//   - Results may come in any order. An item left out of "results" (or with
//     neither "output" nor "error") is retried later. Ids not in the call
//     are ignored, and so is every result for an id after the first one.
//   - "truncated": true says the answer was cut off at an output limit (the
//     call's "max_output_tokens" or the model's own) before every item was
//     answered. The results it does hold are kept; the call fails as too
//     large for one call (ScopeBatch, wrapping provider.ErrCutOff), so the
//     worker sends the other items again in smaller calls and learns how
//     many answers fit. In a call of one item
//     there is nothing to split: that item's "output" is its answer, cut
//     off at its limit.
//
// Any other status fails the whole call:
//   - 401, 402, 403, 408, 409, 425, 429 and 5xx mean the endpoint cannot
//     serve anyone right now (ScopeProvider): the call is retried, no
//     sooner than a Retry-After header (seconds or an HTTP date) asks, and
//     the worker may stop calling for a while;
//   - 413 means the call is too large (ScopeBatch): its items are sent
//     again in smaller calls;
//   - 404 with the JSON body {"code": "model_not_found", ...} means the
//     model is unknown (provider.ErrUnknownModel);
//   - other 4xx mean retrying the same call cannot help and dead-letter
//     every item of a call of several items; in a call of one item they
//     are that item's own error.
//
// A 2xx answer that is not the JSON above, or larger than
// Config.MaxResponseBytes, fails the call as too large or garbled for one
// call (ScopeBatch, transient). The start of an error answer's body appears
// in the error message, so it must not echo secrets.
//
// # Wire format 1.1
//
// Since wire format 1.1 a call may also carry, each only when set:
//
//	{"temperature": 0.2, "top_p": 0.9, "seed": 7, "stop": ["\n\n"],
//	 "response_format": {"type": "json_schema", "json_schema": {"name": "...", "schema": {...}, "strict": true}},
//	 "items": [
//	  {"id": "0", "messages": [{"role": "user", "content": "..."}, ...], "instructions": "", "model": "..."},
//	  {"id": "1", "input": "...", "instructions": "", "model": "...", "provider_options": {"tools": [...]}}
//	]}
//
// The sampling parameters and "response_format" are the same for every item
// of a call (they are part of what decides which requests share one), in
// OpenAI's shapes; the endpoint applies them to each item, "stop" to each
// answer alone. An item has "messages" (chat turns in OpenAI's shape, the
// last one to be answered) instead of "input" when its request is a
// conversation, and "provider_options" (further fields of a chat request,
// a JSON object) only in a call of one item. An answer's entry may carry
// "finish_reason" ("stop", "length", "tool_calls", "content_filter";
// "stop" when absent); with a "response_format" its "output" is the
// answer's JSON, as a JSON value or as a string holding it.
//
// # Embeddings
//
// Embedding requests go to the same URL, in calls of their own:
//
//	{"kind": "embedding", "dimensions": 256,
//	 "items": [{"id": "0", "input": "text to embed", "instructions": "", "model": "text-embedding-3-small"}, ...]}
//
// "dimensions" is present only when the requests asked for a length. The
// answer is the same JSON as a chat call's, each entry with "embedding" (an
// array of numbers) instead of "output":
//
//	{"results": [{"id": "0", "embedding": [0.01, -0.2, ...], "usage": {"input_tokens": 3, "output_tokens": 0}}]}
//
// Entries are matched by id, may come in any order, and may carry "error"
// as a chat call's do. An entry without "embedding" fails its request for
// good (an endpoint that does not serve embeddings, answering as if for
// chat, gets there), and an embedding of another length than "dimensions"
// asked fails it for this attempt.
//
// The package reads no environment variables: everything comes from Config.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/httpcall"
	"github.com/aibatch/aibatch/wire"
)

// Mode says how a batch is turned into calls. The http provider has one
// mode: the endpoint itself decides how to process the items.
type Mode string

// ModeCombined sends a whole batch as one POST. It is the default and the
// only mode.
const ModeCombined Mode = "combined"

// DefaultMaxResponseBytes is the largest answer read when
// Config.MaxResponseBytes is 0.
const DefaultMaxResponseBytes = 32 << 20

// errorSnippetBytes is how much of an error answer's body an error quotes.
const errorSnippetBytes = 300

// Config says how to reach the endpoint.
type Config struct {
	// URL is the endpoint's full URL (HTTP_PROVIDER_URL). Required; an
	// absolute http or https URL.
	URL string
	// Token, when set, is sent as "Authorization: Bearer <Token>". It never
	// appears in the errors this package returns.
	Token string
	// Header holds extra headers sent with every call (e.g. an API key
	// header of another name). Their values never appear in errors.
	Header http.Header
	// HTTPClient carries the calls; nil means http.DefaultClient. Per-call
	// deadlines come from the ctx given to Complete.
	HTTPClient *http.Client
	// Mode must be empty or ModeCombined.
	Mode Mode
	// MaxResponseBytes caps the answer read; a longer answer fails the call
	// (transient). 0 means DefaultMaxResponseBytes; negative is invalid.
	MaxResponseBytes int64
}

// Validate reports the first problem with c, naming the field. It does not
// change c; New applies the defaults of empty fields.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("httpapi: config: URL is required")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		// url.Error quotes the URL, which may hold credentials.
		return errors.New("httpapi: config: URL is not a valid URL")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("httpapi: config: URL %q must be an absolute http or https URL", u.Redacted())
	}
	switch c.Mode {
	case "", ModeCombined:
	default:
		return fmt.Errorf("httpapi: config: Mode %q is not supported: the http provider only has mode %q", c.Mode, ModeCombined)
	}
	if c.MaxResponseBytes < 0 {
		return fmt.Errorf("httpapi: config: MaxResponseBytes %d must not be negative", c.MaxResponseBytes)
	}
	return nil
}

var _ provider.Provider = (*Provider)(nil)

// Provider sends batches to a bulk endpoint. It is safe for concurrent use.
type Provider struct {
	url      string
	token    string
	header   http.Header
	client   *http.Client
	maxBytes int64
	redact   func(error) error // hides the token, header values and URL password in an error message
}

// New returns a Provider for cfg, or an error if cfg is not valid.
func New(cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Provider{url: cfg.URL, token: cfg.Token, header: cfg.Header.Clone(), client: cfg.HTTPClient, maxBytes: cfg.MaxResponseBytes}
	if p.client == nil {
		p.client = http.DefaultClient
	}
	if p.maxBytes == 0 {
		p.maxBytes = DefaultMaxResponseBytes
	}
	secrets := []string{cfg.Token}
	for _, vs := range cfg.Header {
		secrets = append(secrets, vs...)
	}
	if u, err := url.Parse(cfg.URL); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			secrets = append(secrets, pw)
		}
	}
	p.redact = httpcall.NewRedactor(secrets...).Redact
	return p, nil
}

// Name returns "http".
func (p *Provider) Name() string { return "http" }

// item is one entry of a call's "items".
type item struct {
	ID              string          `json:"id"`
	Input           string          `json:"input,omitempty"`
	Messages        []wire.Message  `json:"messages,omitempty"`
	Instructions    string          `json:"instructions"`
	Model           string          `json:"model"`
	MaxOutputTokens int             `json:"max_output_tokens,omitempty"`
	ProviderOptions json.RawMessage `json:"provider_options,omitempty"`
}

// wireResult is one entry of an answer's "results".
type wireResult struct {
	ID           string          `json:"id"`
	Output       json.RawMessage `json:"output"`
	FinishReason string          `json:"finish_reason"`
	Embedding    []float32       `json:"embedding"`
	Error        string          `json:"error"`
	Retryable    bool            `json:"retryable"`
	Usage        *provider.Usage `json:"usage"`
}

// Complete POSTs b to the endpoint and returns one result per item the
// answer holds, following the endpoint contract in the package doc: an
// item's "error" is its Result.Err (permanent unless "retryable",
// ScopeRequest), items left out are absent from the results (the caller
// retries them), unknown and repeated ids are ignored. The body's
// "max_output_tokens" is b.MaxOutputTokens, left out when 0.
//
// Errors concern the whole batch, wrap an *provider.Error, and never contain
// the token or the configured header values:
//   - no answer (network error, ctx ending: wrapping ctx.Err()), HTTP 401,
//     402, 403, 408, 409, 425, 429, 5xx: transient, ScopeProvider, with
//     StatusCode when there was one and RetryAfter from Retry-After.
//   - HTTP 404 with code "model_not_found": permanent, ScopeUnknown,
//     wrapping provider.ErrUnknownModel.
//   - HTTP 413: permanent, ScopeBatch.
//   - other 4xx: permanent, ScopeUnknown.
//   - a 2xx answer with "truncated": true: permanent, ScopeBatch, wrapping
//     provider.ErrCutOff, with the results the answer holds.
//   - a 2xx answer that is not the results JSON, or longer than
//     MaxResponseBytes: transient, ScopeBatch.
//
// A batch of one request is that request's call: a 4xx other than 404
// model_not_found is its Result.Err (permanent, ScopeRequest), and a
// truncated answer's output is its Output.
//
// An embedding batch is sent with "kind": "embedding" (see the package doc)
// and its answers' "embedding" are the results' Embedding.
func (p *Provider) Complete(ctx context.Context, b provider.Batch) ([]provider.Result, error) {
	if len(b.Requests) == 0 {
		return nil, nil
	}
	results, err := p.complete(ctx, b)
	if err != nil {
		err = fmt.Errorf("httpapi: post batch: %w", err)
		if len(b.Requests) == 1 {
			if own, ok := httpcall.Plain(err); ok {
				return []provider.Result{{Key: b.Requests[0].Key, Err: p.redact(own)}}, nil
			}
		}
		return nil, p.redact(err)
	}
	for i := range results {
		if results[i].Err != nil {
			results[i].Err = p.redact(results[i].Err)
		}
	}
	return results, nil
}

// body is a call's JSON body.
type body struct {
	Kind            string               `json:"kind,omitempty"`
	MaxOutputTokens int                  `json:"max_output_tokens,omitempty"`
	Temperature     *float64             `json:"temperature,omitempty"`
	TopP            *float64             `json:"top_p,omitempty"`
	Seed            *int64               `json:"seed,omitempty"`
	Stop            []string             `json:"stop,omitempty"`
	ResponseFormat  *wire.ResponseFormat `json:"response_format,omitempty"`
	Dimensions      int                  `json:"dimensions,omitempty"`
	Items           []item               `json:"items"`
}

// bodyOf is the JSON body of the call for b.
func bodyOf(b provider.Batch) body {
	embedding := b.Kind == wire.KindEmbedding
	items := make([]item, len(b.Requests))
	for i, r := range b.Requests {
		items[i] = item{ID: r.Key, Input: r.Input, Messages: r.Messages, Instructions: b.Instructions, Model: b.Model,
			MaxOutputTokens: max(r.MaxOutputTokens, 0), ProviderOptions: r.Options}
	}
	out := body{MaxOutputTokens: max(b.MaxOutputTokens, 0), Temperature: b.Params.Temperature, TopP: b.Params.TopP,
		Seed: b.Params.Seed, Stop: b.Params.Stop, ResponseFormat: b.Format, Items: items}
	if embedding {
		out = body{Kind: wire.KindEmbedding, Dimensions: b.Dimensions, Items: items}
	}
	return out
}

func (p *Provider) complete(ctx context.Context, b provider.Batch) ([]provider.Result, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(bodyOf(b)); err != nil {
		return nil, provider.Permanent(fmt.Errorf("encode items: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, &buf)
	if err != nil {
		return nil, provider.Permanent(fmt.Errorf("build request: %w", err))
	}
	for k, vs := range p.header {
		req.Header[k] = append([]string(nil), vs...)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}

	res, err := p.client.Do(req)
	if err != nil {
		return nil, transportError(ctx, err)
	}
	defer res.Body.Close()
	data, readErr := io.ReadAll(io.LimitReader(res.Body, p.maxBytes+1))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return nil, statusError(res, data)
	}
	if readErr != nil {
		return nil, transportError(ctx, fmt.Errorf("read answer: %w", readErr))
	}
	if int64(len(data)) > p.maxBytes {
		return nil, batchError(false, fmt.Errorf("answer exceeds %d bytes", p.maxBytes))
	}
	return parseAnswer(b, data)
}

// parseAnswer matches the answer's results to b's requests.
func parseAnswer(b provider.Batch, data []byte) ([]provider.Result, error) {
	var answer struct {
		Results   *[]wireResult `json:"results"`
		Truncated bool          `json:"truncated"`
	}
	if err := json.Unmarshal(data, &answer); err != nil {
		return nil, batchError(false, fmt.Errorf("parse answer: %w", err))
	}
	if answer.Results == nil && !answer.Truncated {
		return nil, batchError(false, errors.New(`parse answer: no "results"`))
	}
	var cut error
	if answer.Truncated && len(b.Requests) > 1 {
		// The results that fit are kept; the rest go again.
		cut = batchError(true, fmt.Errorf(`%w ("truncated": true)`, provider.ErrCutOff))
	}
	if answer.Results == nil {
		return nil, cut
	}
	pending := make(map[string]bool, len(b.Requests))
	for _, r := range b.Requests {
		pending[r.Key] = true
	}
	results := make([]provider.Result, 0, len(b.Requests))
	for _, a := range *answer.Results {
		if string(a.Output) == "null" {
			a.Output = nil
		}
		if !pending[a.ID] || (len(a.Output) == 0 && a.Error == "" && a.Embedding == nil) {
			continue // unknown id, repeated id, or no answer at all
		}
		pending[a.ID] = false
		r := provider.Result{Key: a.ID, FinishReason: a.FinishReason}
		if a.Usage != nil {
			// The endpoint is the user's own: a negative count is a bug
			// there, not tokens to subtract from the totals.
			r.Usage = provider.Usage{InputTokens: max(a.Usage.InputTokens, 0), OutputTokens: max(a.Usage.OutputTokens, 0)}
		}
		switch {
		case a.Error != "":
			cause := fmt.Errorf("endpoint refused it: %s", shorten(a.Error))
			r.Err = fmt.Errorf("httpapi: item %q: %w", a.ID, &provider.Error{Permanent: !a.Retryable, Scope: provider.ScopeRequest, Err: cause})
		case b.Kind == wire.KindEmbedding:
			r.Embedding, r.Err = embeddingOf(b, a)
		default:
			r.Output, r.Err = outputOf(b, a)
		}
		results = append(results, r)
	}
	return results, cut
}

// outputOf is the output of an answer's entry: a JSON string, or for
// structured output any JSON value (its compact text). Anything else is
// that item's error (transient, ScopeRequest).
func outputOf(b provider.Batch, a wireResult) (string, error) {
	var text string
	if json.Unmarshal(a.Output, &text) == nil {
		return text, nil
	}
	if b.Format != nil && b.Format.Type != wire.FormatText {
		var compact bytes.Buffer
		if json.Compact(&compact, a.Output) == nil {
			return compact.String(), nil
		}
	}
	return "", fmt.Errorf("httpapi: item %q: %w", a.ID, &provider.Error{Scope: provider.ScopeRequest,
		Err: errors.New(`"output" is not a string (nor, for structured output, JSON)`)})
}

// embeddingOf is the vector of an answer's entry to an embedding call. An
// entry without "embedding" (an endpoint that does not serve embeddings
// answered it as chat) is a permanent error, one of another length than
// b.Dimensions a transient one (ScopeRequest both).
func embeddingOf(b provider.Batch, a wireResult) ([]float32, error) {
	switch {
	case len(a.Embedding) == 0:
		return nil, fmt.Errorf("httpapi: item %q: %w", a.ID, &provider.Error{Permanent: true, Scope: provider.ScopeRequest,
			Err: fmt.Errorf(`%w: the endpoint answered no "embedding": does it serve "kind": "embedding"?`, provider.ErrUnsupported)})
	case b.Dimensions > 0 && len(a.Embedding) != b.Dimensions:
		return nil, fmt.Errorf("httpapi: item %q: %w", a.ID, &provider.Error{Scope: provider.ScopeRequest,
			Err: fmt.Errorf("the endpoint answered a vector of %d dimensions, %d were asked", len(a.Embedding), b.Dimensions)})
	}
	return a.Embedding, nil
}

// batchError is the ScopeBatch *provider.Error whose cause is err.
func batchError(permanent bool, err error) *provider.Error {
	return &provider.Error{Permanent: permanent, Scope: provider.ScopeBatch, Err: err}
}

// transportError classifies a failure to get an answer at all.
func transportError(ctx context.Context, err error) error {
	if pe := httpcall.Interrupted(ctx, err); pe != nil {
		return pe
	}
	return httpcall.StatusError(0, nil, err)
}

// codeModelNotFound is the "code" of a 404 answer for an unknown model.
const codeModelNotFound = "model_not_found"

// statusError classifies a non-2xx answer; body is its start.
func statusError(res *http.Response, body []byte) error {
	msg := fmt.Sprintf("endpoint answered %s", res.Status)
	if s := strings.TrimSpace(string(body)); s != "" {
		msg += ": " + shorten(s)
	}
	pe := httpcall.StatusError(res.StatusCode, res.Header, errors.New(msg))
	var coded struct {
		Code string `json:"code"`
	}
	if res.StatusCode == http.StatusNotFound && json.Unmarshal(body, &coded) == nil && coded.Code == codeModelNotFound {
		return httpcall.UnknownModel(pe)
	}
	return pe
}

// shorten cuts s to errorSnippetBytes, on a rune boundary.
func shorten(s string) string { return httpcall.Shorten(s, errorSnippetBytes) }
