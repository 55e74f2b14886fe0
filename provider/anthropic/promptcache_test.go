package anthropic_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/anthropic"
)

// longInstructions is about 1,500 tokens by the 4-bytes rule: above the
// 1,024 a Sonnet model caches, below the 2,048 of a Haiku one.
var longInstructions = strings.Repeat("Answer as a careful reviewer would. ", 170)

func TestPromptCachingMarksLongInstructionsAndReadsCachedTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		model        string
		instructions string
		n            int
		wantMark     bool
	}{
		{"combined call, long instructions", "claude-sonnet-test", longInstructions, 3, true},
		{"plain call, long instructions", "claude-sonnet-test", longInstructions, 1, true},
		{"short instructions are not marked", "claude-sonnet-test", "Translate to French.", 3, false},
		{"haiku needs 2,048 tokens", "claude-haiku-test", longInstructions, 3, false},
		{"haiku with enough", "claude-haiku-test", longInstructions + longInstructions, 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, p := setup(t, anthropic.Config{})
			b := newBatch(tt.n)
			b.Model, b.Instructions = tt.model, tt.instructions
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var usages []provider.Usage
			for range 2 {
				results, err := p.Complete(ctx, b)
				if err != nil || len(results) != tt.n {
					t.Fatalf("Complete: %d results, %v", len(results), err)
				}
				var u provider.Usage
				for _, r := range results {
					u = u.Add(r.Usage)
				}
				usages = append(usages, u)
			}
			for _, r := range srv.Requests() {
				if r.CacheControl != tt.wantMark {
					t.Fatalf("cache_control on the system block: %v, want %v", r.CacheControl, tt.wantMark)
				}
			}
			first, second := usages[0], usages[1]
			if !tt.wantMark {
				if first.CachedInputTokens != 0 || first.CacheWriteTokens != 0 || second.CachedInputTokens != 0 {
					t.Fatalf("unmarked prompt reported cache use: %+v, %+v", first, second)
				}
				return
			}
			// The first call writes the prefix, the second reads it; input
			// counts every prompt token either way.
			if first.CacheWriteTokens == 0 || first.CachedInputTokens != 0 {
				t.Fatalf("first call's usage %+v, want a cache write", first)
			}
			if second.CachedInputTokens != first.CacheWriteTokens || second.CacheWriteTokens != 0 {
				t.Fatalf("second call's usage %+v, want %d tokens read from the cache", second, first.CacheWriteTokens)
			}
			if first.InputTokens != second.InputTokens || second.InputTokens <= second.CachedInputTokens {
				t.Fatalf("input tokens %d then %d, want the same whole prompt counted", first.InputTokens, second.InputTokens)
			}
		})
	}
}
