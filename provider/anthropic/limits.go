package anthropic

import (
	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/limits"
)

var _ provider.OutputLimiter = (*Provider)(nil)

// outputLimits are the output limits (max_tokens at most, without beta
// headers) of the Claude models this package knows, by model name prefix:
// the longest prefix of a model's name wins, so a model listed on its own
// overrides its family. Figures are the "Max output" row of the models
// overview in Anthropic's documentation
// (docs.anthropic.com/en/docs/about-claude/models/overview) as of the SDK
// version in go.mod (anthropic-sdk-go v1.84.0), unless a comment says
// otherwise. A model that is not listed (among them the SDK's newer
// claude-*-5 models, whose limits are not stated there) is unknown (0): the
// caller then plans without a limit of its own or with
// MODEL_MAX_OUTPUT_TOKENS, which overrides this table for every model.
// Where a figure is uncertain the table errs low: a budget under the limit
// costs an extra call, one over it is a 400 for the whole call.
var outputLimits = map[string]int{
	"claude-3-haiku":    4096,
	"claude-3-opus":     4096,
	"claude-3-sonnet":   4096,
	"claude-3-5-haiku":  8192,
	"claude-3-5-sonnet": 8192,
	// 128,000 with the output-128k beta header, which this package does
	// not send.
	"claude-3-7-sonnet": 64000,
	"claude-sonnet-4":   64000, // claude-sonnet-4-0, -4-20250514, -4-5, -4-6
	"claude-haiku-4-5":  64000,
	// claude-opus-4-0, -4-20250514 and -4-1 write at most 32,000 tokens;
	// later claude-opus-4-x models allow more, and claude-opus-4-5's 64,000
	// is listed. The family figure is kept for the others: it errs low.
	"claude-opus-4":   32000,
	"claude-opus-4-5": 64000,
}

// MaxOutputTokens returns the output limit of model, the most max_tokens a
// call to it may ask for, from a built-in table of Claude models matched by
// the longest prefix of the name (see outputLimits for its sources); 0 when
// the model is not in it. The worker's MODEL_MAX_OUTPUT_TOKENS setting
// overrides it. It implements provider.OutputLimiter.
func (p *Provider) MaxOutputTokens(model string) int { return limits.Lookup(outputLimits, model) }
