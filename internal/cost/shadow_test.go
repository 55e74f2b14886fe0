package cost

import (
	"testing"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/provider"
)

// Shadow calls cost apart: they add to Shadow, never to Spend or Saving.
func TestShadowCallsCountApart(t *testing.T) {
	t.Parallel()
	a, err := NewAccountant(Prices{"m": {Input: 2, Output: 10}}, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	real := batch.CallReport{Model: "m", Usage: provider.Usage{InputTokens: 1000, OutputTokens: 500}, SoloPromptTokens: 3000}
	a.CallFinished(real)
	before := a.Totals()
	a.CallFinished(batch.CallReport{Model: "m", Usage: provider.Usage{InputTokens: 40, OutputTokens: 10}, Shadow: true})
	a.CallFinished(batch.CallReport{Model: "embed", Usage: provider.Usage{InputTokens: 20}, Shadow: true}) // unpriced
	got := a.Totals()
	if want := (40.0*2 + 10*10) / 1e6; !near(got.Shadow, want) || got.ShadowCalls != 1 {
		t.Errorf("shadow cost %g in %d calls, want %g in 1", got.Shadow, got.ShadowCalls, want)
	}
	if got.Spend != before.Spend || got.Saving != before.Saving || got.PricedCalls != before.PricedCalls {
		t.Errorf("a shadow call changed the spend or saving: %+v, before %+v", got, before)
	}
	if got.Unpriced != 1 {
		t.Errorf("unpriced = %d, want the embedding call", got.Unpriced)
	}
}
