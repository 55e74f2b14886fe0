package cost

import (
	"errors"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/provider"
)

func TestParsePrices(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Prices
		wantErr string
	}{
		{in: "", want: Prices{}},
		{in: "gpt-4o-mini=0.15/0.60", want: Prices{"gpt-4o-mini": {0.15, 0.60}}},
		{in: " a=1/2 , b=0/0.5 ,", want: Prices{"a": {1, 2}, "b": {0, 0.5}}},
		{in: "a=1", wantErr: "want model=input/output"},
		{in: "=1/2", wantErr: "want model=input/output"},
		{in: "a=x/2", wantErr: "numbers of 0 or more"},
		{in: "a=-1/2", wantErr: "numbers of 0 or more"},
		{in: "a=1/NaN", wantErr: "numbers of 0 or more"},
	}
	for _, tt := range tests {
		got, err := ParsePrices(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParsePrices(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || len(got) != len(tt.want) {
			t.Errorf("ParsePrices(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			continue
		}
		for m, p := range tt.want {
			if got[m] != p {
				t.Errorf("ParsePrices(%q)[%s] = %v, want %v", tt.in, m, got[m], p)
			}
		}
		again, err := ParsePrices(got.String())
		if err != nil || len(again) != len(got) {
			t.Errorf("String() %q does not parse back: %v", got.String(), err)
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

func TestAccountant(t *testing.T) {
	t.Parallel()
	prices := Prices{"m": {Input: 2, Output: 10}} // per million tokens
	a, err := NewAccountant(prices, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	// 1,000 prompt tokens and 500 answer tokens; alone the prompts would
	// have been 3,000 tokens.
	call := batch.CallReport{Model: "m", Usage: provider.Usage{InputTokens: 1000, OutputTokens: 500}, SoloPromptTokens: 3000}
	a.CallFinished(call)
	wantSpend := (1000.0*2 + 500*10) / 1e6
	wantSaving := (3000*2+500*10)/1e6 - wantSpend
	if got := a.Totals(); !near(got.Spend, wantSpend) || !near(got.Saving, wantSaving) || got.PricedCalls != 1 {
		t.Fatalf("after one call: %+v, want spend %g saving %g", got, wantSpend, wantSaving)
	}

	a.Add(call, true) // through a Batch API: half price
	if got := a.Totals(); !near(got.Spend, wantSpend*1.5) || !near(got.Saving, 2*wantSaving+wantSpend/2) {
		t.Fatalf("after a discounted call: %+v", got)
	}

	a.CallFinished(batch.CallReport{Model: "unknown", Usage: call.Usage, SoloPromptTokens: 3000})
	a.CallFinished(batch.CallReport{Model: "m", Err: errors.New("500"), SoloPromptTokens: 3000})
	if got := a.Totals(); got.Unpriced != 1 || got.PricedCalls != 2 {
		t.Fatalf("unpriced and failed calls: %+v", got)
	}
}

func TestAccountantIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	a, _ := NewAccountant(Prices{"m": {Input: 1, Output: 1}}, 0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				a.CallFinished(batch.CallReport{Model: "m", Usage: provider.Usage{InputTokens: 1, OutputTokens: 1}, SoloPromptTokens: 1})
			}
		}()
	}
	wg.Wait()
	if got := a.Totals(); got.PricedCalls != 8000 || !near(got.Spend, 8000*2/1e6) || !near(got.Saving, 0) {
		t.Fatalf("totals = %+v", got)
	}
}

func TestNewAccountantRejectsBadDiscount(t *testing.T) {
	t.Parallel()
	for _, d := range []float64{-0.1, 1, 2, math.NaN()} {
		if _, err := NewAccountant(Prices{}, d); err == nil {
			t.Errorf("discount %g accepted", d)
		}
	}
}
