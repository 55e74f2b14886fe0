package openai

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/aibatch/aibatch/provider"
)

// MaxEmbeddingInputs is the most inputs the Embeddings API takes in one
// call.
const MaxEmbeddingInputs = 2048

// embeddingAnswer is the part of an Embeddings API answer the provider
// reads, decoded straight from the body (see chatAnswer).
type embeddingAnswer struct {
	Data *[]struct {
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	} `json:"data"`
	Usage struct {
		PromptTokens int64 `json:"prompt_tokens"`
	} `json:"usage"`
}

// embed makes one Embeddings API call for every input of b, an embedding
// batch (see Complete), and matches the vectors to requests by index (see
// embeddingResults); the call's prompt tokens are split evenly over the
// results. The call's errors are classified as a combined call's (see
// Complete: 5xx, 429, 401 and no answer ScopeProvider; 404 model_not_found
// provider.ErrUnknownModel; other 4xx, such as one input the API refuses,
// permanent ScopeUnknown, so the caller splits the call until the input is
// alone); a batch over MaxEmbeddingInputs fails at once, permanent,
// ScopeBatch.
func (p *Provider) embed(ctx context.Context, b provider.Batch) ([]provider.Result, error) {
	if len(b.Requests) > MaxEmbeddingInputs {
		return nil, fmt.Errorf("openai: embeddings: %w", batchError(true, fmt.Errorf("%d inputs, over the API's %d per call", len(b.Requests), MaxEmbeddingInputs)))
	}
	inputs := make([]string, len(b.Requests))
	for i, r := range b.Requests {
		inputs[i] = r.Input
	}
	params := openai.EmbeddingNewParams{
		Model:          b.Model,
		Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs},
		EncodingFormat: openai.EmbeddingNewParamsEncodingFormatFloat,
	}
	if b.Dimensions > 0 {
		params.Dimensions = openai.Int(int64(b.Dimensions))
	}
	var raw *http.Response
	var resp embeddingAnswer
	if _, err := p.embeddings.New(ctx, params, option.WithResponseInto(&raw), option.WithResponseBodyInto(&resp)); err != nil {
		return nil, p.redact(fmt.Errorf("openai: embeddings: %w", callError(ctx, err, raw)))
	}
	results, err := embeddingResults(b, resp)
	if err != nil {
		return nil, fmt.Errorf("openai: embeddings: %w", err)
	}
	for i, u := range (provider.Usage{InputTokens: resp.Usage.PromptTokens}).Split(len(results)) {
		results[i].Usage = u
	}
	return results, nil
}

// embeddingResults matches the answer's vectors to b's requests by index:
// an index out of range, or one seen before, is ignored, and a request
// without a vector is left out (the caller retries it). A vector of another
// length than b.Dimensions asked is that request's Result.Err (transient,
// ScopeRequest). An answer without "data" fails as garbled (transient,
// ScopeBatch).
func embeddingResults(b provider.Batch, resp embeddingAnswer) ([]provider.Result, error) {
	if resp.Data == nil {
		return nil, batchError(false, errors.New(`answer has no "data"`))
	}
	seen := make([]bool, len(b.Requests))
	results := make([]provider.Result, 0, len(b.Requests))
	for _, d := range *resp.Data {
		if d.Index < 0 || d.Index >= len(b.Requests) || seen[d.Index] || len(d.Embedding) == 0 {
			continue
		}
		seen[d.Index] = true
		r := provider.Result{Key: b.Requests[d.Index].Key, Embedding: d.Embedding}
		if b.Dimensions > 0 && len(d.Embedding) != b.Dimensions {
			r.Embedding = nil
			r.Err = requestError(false, fmt.Errorf("the API answered a vector of %d dimensions, %d were asked", len(d.Embedding), b.Dimensions))
		}
		results = append(results, r)
	}
	return results, nil
}

// Embeddings returns one embedding vector per input, in the inputs' order,
// made by model through the Embeddings API (POST /embeddings, float
// encoding), and the tokens the call used. The worker's shadow sampling
// compares free-text answers with them (batch.Embedder).
//
// Its errors are *provider.Errors classified as Complete's combined calls
// are (a 429 or 5xx transient, ScopeProvider; a 404 model_not_found
// wrapping provider.ErrUnknownModel; ...), and never contain the API key;
// an answer missing a vector, or with an index out of range, is a
// transient error.
func (p *Provider) Embeddings(ctx context.Context, model string, inputs []string) ([][]float64, provider.Usage, error) {
	if len(inputs) == 0 {
		return nil, provider.Usage{}, nil
	}
	params := openai.EmbeddingNewParams{
		Model:          model,
		Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs},
		EncodingFormat: openai.EmbeddingNewParamsEncodingFormatFloat,
	}
	var raw *http.Response
	resp, err := p.embeddings.New(ctx, params, option.WithResponseInto(&raw))
	if err != nil {
		return nil, provider.Usage{}, p.redact(fmt.Errorf("openai: embeddings: %w", callError(ctx, err, raw)))
	}
	usage := provider.Usage{InputTokens: resp.Usage.PromptTokens}
	out := make([][]float64, len(inputs))
	for _, d := range resp.Data {
		if d.Index < 0 || d.Index >= int64(len(inputs)) || out[d.Index] != nil {
			return nil, usage, fmt.Errorf("openai: embeddings: %w", provider.Transient(fmt.Errorf("answer has an embedding at index %d of %d inputs, or twice", d.Index, len(inputs))))
		}
		out[d.Index] = d.Embedding
	}
	for i, v := range out {
		if len(v) == 0 {
			return nil, usage, fmt.Errorf("openai: embeddings: %w", provider.Transient(fmt.Errorf("answer has no embedding for input %d", i)))
		}
	}
	return out, usage, nil
}
