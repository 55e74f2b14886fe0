package anthropic_test

import (
	"testing"

	"github.com/anthropics/anthropic-sdk-go"

	"github.com/aibatch/aibatch/provider"
	anth "github.com/aibatch/aibatch/provider/anthropic"
)

func TestMaxOutputTokens(t *testing.T) {
	t.Parallel()
	p, err := anth.New(anth.Config{APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	var _ provider.OutputLimiter = p
	for model, want := range map[string]int{
		"claude-3-haiku-20240307":               4096,
		"claude-3-5-haiku-latest":               8192,
		"claude-3-5-sonnet-20241022":            8192,
		"claude-3-7-sonnet-20250219":            64000,
		"claude-sonnet-4-20250514":              64000,
		"claude-sonnet-4-0":                     64000,
		anthropic.ModelClaudeSonnet4_5:          64000,
		anthropic.ModelClaudeSonnet4_5_20250929: 64000,
		anthropic.ModelClaudeSonnet4_6:          64000,
		anthropic.ModelClaudeHaiku4_5:           64000,
		anthropic.ModelClaudeHaiku4_5_20251001:  64000,
		"claude-opus-4-20250514":                32000,
		"claude-opus-4-1-20250805":              32000,
		anthropic.ModelClaudeOpus4_5:            64000,
		anthropic.ModelClaudeOpus4_5_20251101:   64000,
		anthropic.ModelClaudeOpus4_6:            32000, // errs low
		anthropic.ModelClaudeSonnet5:            0,     // not listed
		"Claude-3-7-Sonnet-Latest":              64000,
		"my-claude-proxy-model":                 0,
	} {
		if got := p.MaxOutputTokens(model); got != want {
			t.Errorf("MaxOutputTokens(%q) = %d, want %d", model, got, want)
		}
	}
}
