package limits_test

import (
	"testing"

	"github.com/aibatch/aibatch/provider/internal/limits"
)

func TestLookup(t *testing.T) {
	t.Parallel()
	table := map[string]int{"gpt-4": 8192, "gpt-4o": 16384, "gpt-4o-2024-05-13": 4096, "o1": 100000, "o1-mini": 65536}
	for model, want := range map[string]int{
		"gpt-4":             8192,
		"gpt-4-0613":        8192,
		"gpt-4o":            16384,
		"gpt-4o-mini":       16384,
		"GPT-4o-2024-08-06": 16384,
		"gpt-4o-2024-05-13": 4096,
		" o1 ":              100000,
		"o1-mini-2024":      65536,
		"gpt-3.5-turbo":     0,
		"":                  0,
		"claude-3-haiku":    0,
	} {
		if got := limits.Lookup(table, model); got != want {
			t.Errorf("Lookup(%q) = %d, want %d", model, got, want)
		}
	}
	if got := limits.Lookup(nil, "gpt-4"); got != 0 {
		t.Errorf("Lookup in no table = %d", got)
	}
}
