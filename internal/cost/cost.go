// Package cost estimates what provider calls cost and what batching saved,
// from a price table and the token usage providers report.
//
// The estimate's method and limits:
//   - Spend is the reported usage times the model's price per million tokens,
//     less the batch discount for calls made through a provider's Batch API.
//   - The saving compares with sending every request alone: the same output
//     tokens, and a prompt estimated from bytes (about 4 bytes a token) that
//     repeats the instructions and a call's framing for each request, priced
//     without a discount. It is an estimate: real tokenizers differ from the
//     4-bytes rule, and one answer per request may be shorter than a share of
//     a combined answer, which carries JSON framing.
//   - Models missing from the table are not priced; their calls are counted
//     in Unpriced so a partial figure is never mistaken for a whole one.
//   - Shadow calls (a request sent again alone to measure answer quality,
//     and the embedding calls that score it) are counted apart, in Shadow:
//     they answer no request and save nothing.
package cost

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/aibatch/aibatch/batch"
)

// Price is what a model costs, in US dollars per million tokens (the unit
// the providers publish; the worker's metrics are named *_dollars).
type Price struct {
	Input  float64 `json:"input_per_million"`
	Output float64 `json:"output_per_million"`
}

// Prices maps model names to their prices.
type Prices map[string]Price

// ParsePrices reads a price table written as comma-separated
// model=input/output entries, prices per million tokens:
//
//	gpt-4o-mini=0.15/0.60,claude-3-5-haiku-latest=0.80/4
//
// An empty string is an empty table.
func ParsePrices(s string) (Prices, error) {
	p := Prices{}
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		model, pair, ok := strings.Cut(entry, "=")
		in, out, ok2 := strings.Cut(pair, "/")
		if !ok || !ok2 || strings.TrimSpace(model) == "" {
			return nil, fmt.Errorf("price %q: want model=input/output, prices per million tokens, such as gpt-4o-mini=0.15/0.60", entry)
		}
		inP, err1 := parsePrice(in)
		outP, err2 := parsePrice(out)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("price %q: prices must be numbers of 0 or more", entry)
		}
		p[strings.TrimSpace(model)] = Price{Input: inP, Output: outP}
	}
	return p, nil
}

func parsePrice(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("bad price %q", s)
	}
	return v, nil
}

// String writes the table in the form ParsePrices reads, sorted by model.
func (p Prices) String() string {
	models := make([]string, 0, len(p))
	for m := range p {
		models = append(models, m)
	}
	sort.Strings(models)
	parts := make([]string, len(models))
	for i, m := range models {
		parts[i] = fmt.Sprintf("%s=%g/%g", m, p[m].Input, p[m].Output)
	}
	return strings.Join(parts, ",")
}

// Totals is what an Accountant has counted.
type Totals struct {
	// Spend is the estimated cost of the calls made.
	Spend float64 `json:"estimated_cost"`
	// Saving is the estimated cost of sending every request alone, less Spend.
	Saving float64 `json:"estimated_saving"`
	// PricedCalls and Unpriced count calls whose model was and was not in
	// the price table.
	PricedCalls int64 `json:"priced_calls"`
	Unpriced    int64 `json:"unpriced_calls"`
	// Shadow is the estimated cost of shadow calls, counted apart from
	// Spend and Saving; ShadowCalls counts the priced ones (unpriced ones
	// count in Unpriced).
	Shadow      float64 `json:"estimated_shadow_cost"`
	ShadowCalls int64   `json:"shadow_calls"`
}

// Accountant adds up spend and saving from the engine's call reports. It
// implements the CallFinished part of batch.Observer; embed it or call it
// from an observer. It is safe for concurrent use.
type Accountant struct {
	prices   Prices
	discount float64

	mu sync.Mutex
	t  Totals
}

// DefaultBatchDiscount is the fraction the OpenAI Batch API and Anthropic's
// Message Batches take off their prices: 50%.
const DefaultBatchDiscount = 0.5

// NewAccountant returns an accountant for prices. discount is the fraction
// taken off calls made through a Batch API (DefaultBatchDiscount for 50%);
// it must be in [0, 1).
func NewAccountant(prices Prices, discount float64) (*Accountant, error) {
	if discount < 0 || discount >= 1 || math.IsNaN(discount) {
		return nil, fmt.Errorf("batch discount %g: want a fraction from 0 to below 1, such as 0.5", discount)
	}
	return &Accountant{prices: prices, discount: discount}, nil
}

// CallFinished counts one answered call; Batch API jobs (c.Async) get the
// batch discount. Failed calls are not counted: what they cost is not
// reported.
func (a *Accountant) CallFinished(c batch.CallReport) {
	a.Add(c, c.Async)
}

// Add counts one answered call; discounted says it went through a Batch
// API. Failed calls (c.Err set) are not counted.
func (a *Accountant) Add(c batch.CallReport, discounted bool) {
	if c.Err != nil {
		return
	}
	price, ok := a.prices[c.Model]
	a.mu.Lock()
	defer a.mu.Unlock()
	if !ok {
		a.t.Unpriced++
		return
	}
	spend := (float64(c.Usage.InputTokens)*price.Input + float64(c.Usage.OutputTokens)*price.Output) / 1e6
	if c.Shadow {
		a.t.ShadowCalls++
		a.t.Shadow += spend
		return
	}
	a.t.PricedCalls++
	if discounted {
		spend *= 1 - a.discount
	}
	solo := (float64(c.SoloPromptTokens)*price.Input + float64(c.Usage.OutputTokens)*price.Output) / 1e6
	a.t.Spend += spend
	a.t.Saving += solo - spend
}

// Totals returns what was counted so far.
func (a *Accountant) Totals() Totals {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.t
}
