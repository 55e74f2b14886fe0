package batch

import (
	"slices"
	"testing"

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
