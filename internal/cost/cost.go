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
	// CachedInput is the price of input read from the provider's prompt
	// cache (OpenAI: a half to a tenth of Input by model; Anthropic: a
	// tenth); CacheWrite of input written to it (Anthropic: 1.25 times
	// Input for the 5-minute cache; OpenAI charges nothing extra).
	// ParsePrices sets both to Input when the table leaves them out, so a
	// cached token is never priced below what was said.
	CachedInput float64 `json:"cached_input_per_million"`
	CacheWrite  float64 `json:"cache_write_per_million"`
}

// Prices maps model names to their prices.
type Prices map[string]Price

// ParsePrices reads a price table written as comma-separated
// model=input/output[/cached_input[/cache_write]] entries, prices per
// million tokens:
//
//	gpt-4o-mini=0.15/0.60/0.075,claude-3-5-haiku-latest=0.80/4/0.08/1
//
// A cached-input or cache-write price left out is the input price. An
// empty string is an empty table.
func ParsePrices(s string) (Prices, error) {
	p := Prices{}
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		model, list, ok := strings.Cut(entry, "=")
		parts := strings.Split(list, "/")
		if !ok || strings.TrimSpace(model) == "" || len(parts) < 2 || len(parts) > 4 {
			return nil, fmt.Errorf("price %q: want model=input/output, or model=input/output/cached_input/cache_write, prices per million tokens, such as gpt-4o-mini=0.15/0.60/0.075", entry)
		}
		vals := make([]float64, 4)
		for i, part := range parts {
			v, err := parsePrice(part)
			if err != nil {
				return nil, fmt.Errorf("price %q: prices must be numbers of 0 or more", entry)
			}
			vals[i] = v
		}
		for i := len(parts); i < 4; i++ {
			vals[i] = vals[0]
		}
		p[strings.TrimSpace(model)] = Price{Input: vals[0], Output: vals[1], CachedInput: vals[2], CacheWrite: vals[3]}
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
		pr := p[m]
		parts[i] = fmt.Sprintf("%s=%g/%g/%g/%g", m, pr.Input, pr.Output, pr.CachedInput, pr.CacheWrite)
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
	// ByModel holds the figures of each model, sorted by name.
	ByModel []ModelTotals `json:"by_model"`
	// Shadow is the estimated cost of shadow calls, counted apart from
	// Spend and Saving; ShadowCalls counts the priced ones (unpriced ones
	// count in Unpriced).
	Shadow      float64 `json:"estimated_shadow_cost"`
	ShadowCalls int64   `json:"shadow_calls"`
}

// ModelTotals are one model's figures.
type ModelTotals struct {
	Model string `json:"model"`
	// Requests counts the requests answered: by calls (duplicates that
	// shared an item included) and from the response cache.
	Requests int64 `json:"requests"`
	// ProviderItems counts the items the calls sent; Calls the calls.
	ProviderItems int64 `json:"provider_items"`
	Calls         int64 `json:"calls"`
	// CachedTokens counts input tokens the provider read from its prompt
	// cache; CacheHits the requests answered from the response cache.
	CachedTokens int64 `json:"cached_tokens"`
	CacheHits    int64 `json:"cache_hits"`
	// Priced is false for a model missing from the price table: its costs
	// are then 0, not estimates.
	Priced bool `json:"priced"`
	// Cost is the estimated spend; OneByOne what the same requests would
	// have cost sent one per call, at the standard rate, with no cache.
	Cost     float64 `json:"estimated_cost"`
	OneByOne float64 `json:"one_by_one_cost"`
}

// Accountant adds up spend and saving from the engine's call and cache
// reports. It implements the CallFinished and CacheUsed parts of
// batch.Observer; embed it or call it from an observer. It is safe for
// concurrent use.
type Accountant struct {
	prices   Prices
	discount float64

	mu      sync.Mutex
	t       Totals
	byModel map[string]*ModelTotals
}

// DefaultBatchDiscount is the fraction the OpenAI Batch API and Anthropic's
// Message Batches take off their prices: 50%.
const DefaultBatchDiscount = 0.5

// TierDiscounts are the fractions OpenAI's service tiers take off the
// standard price: flex costs what the Batch API does (half). Tiers not
// listed are priced at the standard rate; priority costs more, so its
// estimate is low.
var TierDiscounts = map[string]float64{"flex": 0.5}

// NewAccountant returns an accountant for prices. discount is the fraction
// taken off calls made through a Batch API (DefaultBatchDiscount for 50%);
// it must be in [0, 1).
func NewAccountant(prices Prices, discount float64) (*Accountant, error) {
	if discount < 0 || discount >= 1 || math.IsNaN(discount) {
		return nil, fmt.Errorf("batch discount %g: want a fraction from 0 to below 1, such as 0.5", discount)
	}
	return &Accountant{prices: prices, discount: discount, byModel: map[string]*ModelTotals{}}, nil
}

// CallFinished counts one answered call; Batch API jobs (c.Async) get the
// batch discount. Failed calls are not counted: what they cost is not
// reported.
func (a *Accountant) CallFinished(c batch.CallReport) {
	a.Add(c, c.Async)
}

// Add counts one answered call; discounted says it went through a Batch
// API. Failed calls (c.Err set) and probes are not counted.
//
// Input is priced at three rates: the tokens read from the provider's
// prompt cache at CachedInput, those written to it at CacheWrite, the rest
// at Input. A call answered on a discounted service tier (TierDiscounts)
// gets that tier's discount, and a Batch API job the batch discount.
func (a *Accountant) Add(c batch.CallReport, discounted bool) {
	if c.Err != nil || c.Probe {
		return
	}
	price, ok := a.prices[c.Model]
	a.mu.Lock()
	defer a.mu.Unlock()
	var m *ModelTotals
	if !c.Shadow {
		// A shadow call answers no request: it is no model's work.
		m = a.model(c.Model)
		m.Priced = ok
		if !c.Resumed {
			m.Calls++
			m.ProviderItems += int64(c.Size)
			m.Requests += int64(max(c.Served, c.Size))
		}
		m.CachedTokens += c.Usage.CachedInputTokens
	}
	if !ok {
		a.t.Unpriced++
		return
	}
	u := c.Usage
	plain := max(u.InputTokens-u.CachedInputTokens-u.CacheWriteTokens, 0)
	spend := (float64(plain)*price.Input + float64(u.CachedInputTokens)*price.CachedInput +
		float64(u.CacheWriteTokens)*price.CacheWrite + float64(u.OutputTokens)*price.Output) / 1e6
	off := TierDiscounts[c.ServiceTier]
	if discounted {
		off = max(off, a.discount)
	}
	spend *= 1 - off
	if c.Shadow {
		a.t.ShadowCalls++
		a.t.Shadow += spend
		return
	}
	a.t.PricedCalls++
	// Duplicates that shared an item would each have had an answer of
	// their own.
	out := float64(u.OutputTokens)
	if c.Size > 0 && c.Served > c.Size {
		out *= float64(c.Served) / float64(c.Size)
	}
	solo := (float64(c.SoloPromptTokens)*price.Input + out*price.Output) / 1e6
	a.t.Spend += spend
	a.t.Saving += solo - spend
	m.Cost += spend
	m.OneByOne += solo
}

// CacheUsed counts a request answered from the response cache: it cost
// nothing, and saved what it would have cost sent alone (its prompt, and
// the answer the cache holds).
func (a *Accountant) CacheUsed(r batch.CacheReport) {
	if r.Event != batch.CacheHit {
		return
	}
	price, ok := a.prices[r.Model]
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.model(r.Model)
	m.Requests++
	m.CacheHits++
	if !ok {
		return
	}
	m.Priced = true
	solo := (float64(r.SoloPromptTokens)*price.Input + float64(r.Saved.OutputTokens)*price.Output) / 1e6
	a.t.Saving += solo
	m.OneByOne += solo
}

func (a *Accountant) model(name string) *ModelTotals {
	m, ok := a.byModel[name]
	if !ok {
		m = &ModelTotals{Model: name}
		a.byModel[name] = m
	}
	return m
}

// Totals returns what was counted so far.
func (a *Accountant) Totals() Totals {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.t
	t.ByModel = make([]ModelTotals, 0, len(a.byModel))
	for _, m := range a.byModel {
		t.ByModel = append(t.ByModel, *m)
	}
	sort.Slice(t.ByModel, func(i, j int) bool { return t.ByModel[i].Model < t.ByModel[j].Model })
	return t
}

// Estimated reports whether t holds an estimate: a call or a cache hit of
// a model in the price table was counted.
func (t Totals) Estimated() bool {
	if t.PricedCalls > 0 {
		return true
	}
	for _, m := range t.ByModel {
		if m.Priced {
			return true
		}
	}
	return false
}
