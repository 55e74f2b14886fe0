package openai

import (
	"context"
	"fmt"
	"net/http"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/aibatch/aibatch/provider"
)

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
	// The chat service's options are the provider's: key, base URL, HTTP
	// client, no SDK retries.
	svc := openai.NewEmbeddingService(p.chat.Options...)
	params := openai.EmbeddingNewParams{
		Model:          model,
		Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs},
		EncodingFormat: openai.EmbeddingNewParamsEncodingFormatFloat,
	}
	var raw *http.Response
	resp, err := svc.New(ctx, params, option.WithResponseInto(&raw))
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
