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
		// Cached input and cache writes default to the input price.
		{in: "gpt-4o-mini=0.15/0.60", want: Prices{"gpt-4o-mini": {Input: 0.15, Output: 0.60, CachedInput: 0.15, CacheWrite: 0.15}}},
		{in: " a=1/2 , b=0/0.5 ,", want: Prices{"a": {Input: 1, Output: 2, CachedInput: 1, CacheWrite: 1}, "b": {Output: 0.5}}},
		{in: "gpt-4o-mini=0.15/0.60/0.075", want: Prices{"gpt-4o-mini": {Input: 0.15, Output: 0.60, CachedInput: 0.075, CacheWrite: 0.15}}},
		{in: "haiku=0.8/4/0.08/1", want: Prices{"haiku": {Input: 0.8, Output: 4, CachedInput: 0.08, CacheWrite: 1}}},
		{in: "a=1/2/3/4/5", wantErr: "want model=input/output"},
		{in: "a=1/2/x", wantErr: "numbers of 0 or more"},
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

func TestAccountantPricesCachedInputTiersAndCacheHits(t *testing.T) {
	t.Parallel()
	prices := Prices{"m": {Input: 2, Output: 10, CachedInput: 0.5, CacheWrite: 2.5}}
	tests := []struct {
		name      string
		call      batch.CallReport
		async     bool
		wantSpend float64
		wantSolo  float64
	}{
		{"cached input at its own rate",
			batch.CallReport{Model: "m", Size: 2, Usage: provider.Usage{InputTokens: 2000, CachedInputTokens: 1536, OutputTokens: 100}, SoloPromptTokens: 4000},
			false, (464*2 + 1536*0.5 + 100*10) / 1e6, (4000*2 + 100*10) / 1e6},
		{"cache writes at theirs",
			batch.CallReport{Model: "m", Size: 2, Usage: provider.Usage{InputTokens: 2000, CacheWriteTokens: 1800, OutputTokens: 100}, SoloPromptTokens: 4000},
			false, (200*2 + 1800*2.5 + 100*10) / 1e6, (4000*2 + 100*10) / 1e6},
		{"the flex tier at half price",
			batch.CallReport{Model: "m", Size: 1, ServiceTier: "flex", Usage: provider.Usage{InputTokens: 1000, OutputTokens: 100}, SoloPromptTokens: 1000},
			false, (1000*2 + 100*10) / 1e6 / 2, (1000*2 + 100*10) / 1e6},
		{"the default tier at the standard rate",
			batch.CallReport{Model: "m", Size: 1, ServiceTier: "default", Usage: provider.Usage{InputTokens: 1000, OutputTokens: 100}, SoloPromptTokens: 1000},
			false, (1000*2 + 100*10) / 1e6, (1000*2 + 100*10) / 1e6},
		{"a Batch API job with cached input: both discounts stack",
			batch.CallReport{Model: "m", Size: 2, Async: true, Usage: provider.Usage{InputTokens: 2000, CachedInputTokens: 1024, OutputTokens: 100}, SoloPromptTokens: 4000},
			true, (976*2 + 1024*0.5 + 100*10) / 1e6 / 2, (4000*2 + 100*10) / 1e6},
		// 10 items served 100 requests: alone, each would have had its
		// own answer.
		{"duplicates' answers count one by one",
			batch.CallReport{Model: "m", Size: 10, Served: 100, Usage: provider.Usage{InputTokens: 500, OutputTokens: 100}, SoloPromptTokens: 10000},
			false, (500*2 + 100*10) / 1e6, (10000*2 + 1000*10) / 1e6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, _ := NewAccountant(prices, 0.5)
			a.Add(tt.call, tt.async)
			got := a.Totals()
			if !near(got.Spend, tt.wantSpend) || !near(got.Saving, tt.wantSolo-tt.wantSpend) {
				t.Fatalf("spend %g saving %g, want %g and %g", got.Spend, got.Saving, tt.wantSpend, tt.wantSolo-tt.wantSpend)
			}
			m := got.ByModel[0]
			if !near(m.Cost, tt.wantSpend) || !near(m.OneByOne, tt.wantSolo) || m.ProviderItems != int64(tt.call.Size) ||
				m.Requests != int64(max(tt.call.Served, tt.call.Size)) || m.CachedTokens != tt.call.Usage.CachedInputTokens {
				t.Fatalf("by model %+v", m)
			}
		})
	}

	// A cache hit costs nothing and saves what the request would have
	// cost alone.
	a, _ := NewAccountant(prices, 0.5)
	a.CacheUsed(batch.CacheReport{Model: "m", Event: batch.CacheMiss})
	if got := a.Totals(); got.Estimated() {
		t.Fatalf("a miss made an estimate: %+v", got)
	}
	a.CacheUsed(batch.CacheReport{Model: "m", Event: batch.CacheHit, SoloPromptTokens: 100, Saved: provider.Usage{InputTokens: 30, OutputTokens: 20}})
	a.CacheUsed(batch.CacheReport{Model: "unpriced", Event: batch.CacheHit, SoloPromptTokens: 100})
	got := a.Totals()
	if want := (100*2 + 20*10) / 1e6; !got.Estimated() || got.Spend != 0 || !near(got.Saving, want) {
		t.Fatalf("after a hit: %+v, want saving %g", got, want)
	}
	if len(got.ByModel) != 2 || got.ByModel[0].CacheHits != 1 || got.ByModel[0].Requests != 1 || got.ByModel[1].Priced {
		t.Fatalf("by model %+v", got.ByModel)
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
