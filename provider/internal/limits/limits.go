// Package limits looks up a model's output limit in a provider's table of
// known models (provider/openai and provider/anthropic implement
// provider.OutputLimiter with it).
package limits

import "strings"

// Lookup returns the limit of the longest key of table that model starts
// with, compared without regard to case, or 0 when none does. Keys name a
// model family ("gpt-4o") or one model or snapshot ("gpt-4o-2024-05-13"),
// so a longer key overrides the family it belongs to.
func Lookup(table map[string]int, model string) int {
	model = strings.ToLower(strings.TrimSpace(model))
	best, limit := -1, 0
	for prefix, n := range table {
		if len(prefix) > best && strings.HasPrefix(model, strings.ToLower(prefix)) {
			best, limit = len(prefix), n
		}
	}
	return limit
}
