package batch

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

func TestGroupForCalls(t *testing.T) {
	t.Parallel()
	// it builds an item named id asking model with instructions.
	it := func(id, model, instructions string, o outcome) *item {
		return &item{id: id, req: wire.Request{Model: model, Instructions: instructions}, outcome: o}
	}
	p := outcomeNone
	tests := []struct {
		name  string
		items []*item
		want  [][]string // ids per group
	}{
		{"none", nil, nil},
		{"one", []*item{it("a", "m1", "", p)}, [][]string{{"a"}}},
		{"same model and instructions share a call",
			[]*item{it("a", "m1", "i", p), it("b", "m1", "i", p), it("c", "m1", "i", p)},
			[][]string{{"a", "b", "c"}}},
		{"groups in order of first arrival, items in arrival order",
			[]*item{it("a", "m1", "i1", p), it("b", "m2", "i1", p), it("c", "m1", "i1", p), it("d", "m1", "i2", p), it("e", "m2", "i1", p)},
			[][]string{{"a", "c"}, {"b", "e"}, {"d"}}},
		{"no instructions differ from some",
			[]*item{it("a", "m1", "", p), it("b", "m1", "be brief", p), it("c", "m1", "", p)},
			[][]string{{"a", "c"}, {"b"}}},
		{"model names compared exactly",
			[]*item{it("a", "gpt", "", p), it("b", "GPT", "", p)},
			[][]string{{"a"}, {"b"}}},
		{"model and instructions are not concatenated",
			[]*item{it("a", "ab", "c", p), it("b", "a", "bc", p)},
			[][]string{{"a"}, {"b"}}},
		{"items already decided are skipped",
			[]*item{
				it("a", "m1", "", p),
				it("b", "m1", "", outcomeRejected),
				it("c", "m2", "", outcomeAnswered),
				it("d", "m1", "", outcomeFailed),
				it("e", "m3", "", outcomeAnswered),
				it("f", "m1", "", p),
			},
			[][]string{{"a", "f"}}},
		{"a key seen only on skipped items makes no group",
			[]*item{it("a", "m9", "", outcomeFailed), it("b", "m1", "", p), it("c", "m9", "", p)},
			[][]string{{"b"}, {"c"}}},
		{"nothing pending",
			[]*item{it("a", "m1", "", outcomeFailed), it("b", "m1", "", outcomeFailed)},
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			groups := groupForCalls(tt.items)
			var got [][]string
			for _, g := range groups {
				if len(g) == 0 {
					t.Fatal("groupForCalls returned an empty group")
				}
				var ids []string
				for _, x := range g {
					ids = append(ids, x.id)
					if x.req.Model != g[0].req.Model || x.req.Instructions != g[0].req.Instructions {
						t.Errorf("item %s (%q, %q) grouped with %s (%q, %q)",
							x.id, x.req.Model, x.req.Instructions, g[0].id, g[0].req.Model, g[0].req.Instructions)
					}
				}
				got = append(got, ids)
			}
			if !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("groupForCalls = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSoloTokensCountWhatARequestSendsAlone(t *testing.T) {
	long := strings.Repeat("word ", 200)
	text := wire.Request{Instructions: "be brief", Input: long}
	conversation := wire.Request{Instructions: "be brief", Messages: []wire.Message{
		{Role: wire.RoleUser, Content: json.RawMessage(strconv.Quote(long))},
		{Role: wire.RoleAssistant, Content: json.RawMessage(`"ok"`)},
		{Role: wire.RoleUser, Content: json.RawMessage(`"and then?"`)},
	}}
	embedding := wire.Request{Kind: wire.KindEmbedding, Input: long}
	// A conversation costs at least what its first turn would as an input;
	// an embedding call has no instructions or framing to repeat.
	if c, i := soloTokens(conversation), soloTokens(text); c <= i {
		t.Errorf("conversation estimated at %d tokens, the same text as input at %d", c, i)
	}
	if e := soloTokens(embedding); e != int64(EstimateTokens(long)) {
		t.Errorf("embedding estimated at %d tokens, its input is %d", e, EstimateTokens(long))
	}
	// One request alone, estimated as soloPromptTokens estimates a call.
	for _, r := range []wire.Request{text, conversation, embedding} {
		b := withParams(provider.Batch{Instructions: r.Instructions, Requests: []provider.Request{providerRequest("0", r)}}, r)
		if got, want := soloTokens(r), soloPromptTokens(b); got != want {
			t.Errorf("%+v: soloTokens %d, soloPromptTokens of it alone %d", r, got, want)
		}
	}
}
