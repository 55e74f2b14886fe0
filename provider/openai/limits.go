package openai

import (
	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/limits"
)

var _ provider.OutputLimiter = (*Provider)(nil)

// outputLimits are the output limits (max_completion_tokens at most) of the
// Chat Completions models this package knows, by model name prefix: the
// longest prefix of a model's name wins, so a snapshot listed on its own
// overrides its family. Figures are the "Max output tokens" of each model's
// page in OpenAI's documentation (platform.openai.com/docs/models/<model>)
// as of the SDK version in go.mod (openai-go v3.98.0), unless a comment says
// otherwise. A model that is not listed is unknown (0): the caller then
// plans without a limit of its own or with MODEL_MAX_OUTPUT_TOKENS, which
// overrides this table for every model. Where a figure is uncertain the
// table errs low: a budget under the limit costs an extra call, one over it
// is a 400 for the whole call.
var outputLimits = map[string]int{
	"gpt-3.5-turbo": 4096,
	"gpt-4":         8192, // gpt-4, gpt-4-0613, gpt-4-32k (its output shares the 8K/32K context; 8192 is the safe figure)
	"gpt-4-turbo":   4096, // and gpt-4-turbo-preview
	"gpt-4-0125":    4096, // gpt-4-0125-preview
	"gpt-4-1106":    4096, // gpt-4-1106-preview
	"gpt-4-vision":  4096, // gpt-4-vision-preview
	"gpt-4o":        16384,
	"gpt-4o-mini":   16384,
	// The first gpt-4o snapshot had the older 4,096 limit.
	"gpt-4o-2024-05-13": 4096,
	"chatgpt-4o":        16384,
	"gpt-4.1":           32768, // gpt-4.1, gpt-4.1-mini, gpt-4.1-nano
	"o1":                100000,
	"o1-mini":           65536,
	"o1-preview":        32768,
	"o3":                100000,
	"o3-mini":           100000,
	"o4-mini":           100000,
	"codex-mini":        100000,
	"gpt-5":             128000, // gpt-5, -mini, -nano and the gpt-5.x models
	// The chat-latest aliases of the gpt-5 family (the ChatGPT models) have
	// a 16,384 limit; gpt-5.3-chat-latest is assumed as its predecessors.
	"gpt-5-chat":   16384,
	"gpt-5.1-chat": 16384,
	"gpt-5.2-chat": 16384,
	"gpt-5.3-chat": 16384,
}

// MaxOutputTokens returns the output limit of model, the most
// max_completion_tokens a call to it may ask for, from a built-in table of
// OpenAI's models matched by the longest prefix of the name (see
// outputLimits for its sources); 0 when the model is not in it. An
// OpenAI-compatible server's own models are unknown. The worker's
// MODEL_MAX_OUTPUT_TOKENS setting overrides it. It implements
// provider.OutputLimiter.
func (p *Provider) MaxOutputTokens(model string) int { return limits.Lookup(outputLimits, model) }
