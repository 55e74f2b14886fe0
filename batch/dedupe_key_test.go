package batch

import (
	"encoding/json"
	"testing"

	"github.com/aibatch/aibatch/wire"
)

// TestRequestKeySeparatesEveryAnswerChangingField: requests that ask the
// same thing share a key, a change to any field that decides the answer
// gives another, and requests that may not share an answer get none.
func TestRequestKeySeparatesEveryAnswerChangingField(t *testing.T) {
	t.Parallel()
	f := func(v float64) *float64 { return &v }
	var k requestKeyer
	base := wire.Request{Model: "m", Instructions: "be brief", Input: "q"}
	if got, again := k.key(base), k.key(wire.Request{Model: "m", Instructions: "be brief", Messages: []wire.Message{wire.TextMessage("user", "q")}}); got == "" || got != again {
		t.Errorf("input and a lone user message asking the same: keys %q and %q, want one key", got, again)
	}
	if k.key(wire.Request{Model: "m", Input: "q", Kind: wire.KindChat}) != k.key(wire.Request{Model: "m", Input: "q"}) {
		t.Error("kind chat and no kind have different keys")
	}
	variants := []wire.Request{
		base,
		{Model: "m2", Instructions: "be brief", Input: "q"},
		{Model: "m", Instructions: "be brief!", Input: "q"},
		{Model: "m", Instructions: "be brief", Input: "q2"},
		// Field boundaries: the same bytes split differently.
		{Model: "m", Instructions: "be brie", Input: "fq"},
		{Model: "m", Instructions: "be brief", Input: "q", MaxOutputTokens: 10},
		{Model: "m", Instructions: "be brief", Input: "q", Temperature: f(0)},
		{Model: "m", Instructions: "be brief", Input: "q", Stop: []string{"."}},
		{Model: "m", Instructions: "be brief", Messages: []wire.Message{wire.TextMessage("user", "q"), wire.TextMessage("assistant", "a"), wire.TextMessage("user", "q")}},
		{Model: "m", Input: "q", Kind: wire.KindEmbedding},
		{Model: "m", Input: "q", Kind: wire.KindEmbedding, Dimensions: 8},
	}
	seen := map[string]int{}
	for i, r := range variants {
		key := k.key(r)
		if key == "" {
			t.Errorf("variant %d has no key", i)
			continue
		}
		if j, dup := seen[key]; dup {
			t.Errorf("variants %d and %d ask different things but share a key", j, i)
		}
		seen[key] = i
	}
	none := map[string]wire.Request{
		"provider_options": {Model: "m", Input: "q", ProviderOptions: json.RawMessage(`{"n":2}`)},
		"temperature 0.7":  {Model: "m", Input: "q", Temperature: f(0.7)},
	}
	for name, r := range none {
		if key := k.key(r); key != "" {
			t.Errorf("%s: key %q, want none", name, key)
		}
	}
	if key := (requestKeyer{nondeterministic: true}).key(none["temperature 0.7"]); key == "" {
		t.Error("temperature 0.7 with RESPONSE_CACHE_NONDETERMINISTIC: no key, want one")
	}
}
