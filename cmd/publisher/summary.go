package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aibatch/aibatch/wire"
)

// providerStatsTimeout bounds the GET of --provider-stats.
const providerStatsTimeout = 10 * time.Second

// Summary is what send reports at the end of a run; --json prints it as is.
type Summary struct {
	// RunID identifies the run; request n has Nats-Msg-Id "<RunID>-<n>".
	RunID string `json:"run_id"`
	// Subject is where the requests were published.
	Subject string `json:"subject"`
	// ReplyTo is the Batch-Reply-To header of every request.
	ReplyTo string `json:"reply_to"`
	// Waited is true with --wait; the result fields are zero without it.
	Waited bool `json:"waited"`
	// Interrupted is true when a signal ended the run early.
	Interrupted bool `json:"interrupted,omitempty"`

	// Requests is how many requests the input had.
	Requests int `json:"requests"`
	// Sent is how many were stored in the stream (acknowledged by JetStream).
	Sent int `json:"sent"`
	// PublishFailed is how many were published but rejected or never acknowledged.
	PublishFailed int `json:"publish_failed"`
	// NotSent is how many were never published because the run was interrupted.
	NotSent int `json:"not_sent"`

	// OK and Error count first results by status (anything but "ok" is an error).
	OK    int `json:"ok"`
	Error int `json:"error"`
	// Missing is how many sent requests had no result when the wait ended.
	Missing int `json:"missing"`
	// Duplicates is how many results repeated an id already answered.
	Duplicates int `json:"duplicates"`
	// Unknown is how many results named an id this run did not send.
	Unknown int `json:"unknown"`
	// Invalid is how many messages on the reply subject were not result JSON.
	Invalid int `json:"invalid"`

	// Batches is the number of distinct batch ids among the results.
	Batches int `json:"batches"`
	// BatchesByTrigger and ResultsByTrigger count batches and results by
	// batch.trigger; "(none)" stands for an empty trigger.
	BatchesByTrigger map[string]int `json:"batches_by_trigger,omitempty"`
	ResultsByTrigger map[string]int `json:"results_by_trigger,omitempty"`
	// wire.Usage sums the results' token usage.
	Usage wire.Usage `json:"usage"`
	// Cached counts results answered from the worker's response cache.
	Cached int `json:"cached"`
	// Latency is the time from a request's publish to its result's arrival.
	Latency Latency `json:"latency_ms"`

	// ElapsedMS runs from the first publish to the last result (with --wait)
	// or the last PubAck (without).
	ElapsedMS float64 `json:"elapsed_ms"`
	// Throughput is results (with --wait) or sent requests per second of ElapsedMS.
	Throughput float64 `json:"throughput_per_s"`

	// ProviderCalls is the fake provider's call counter from --provider-stats.
	ProviderCalls *int64 `json:"provider_calls,omitempty"`
	// CallReductionPct is how many percent fewer provider calls than sent
	// requests were made.
	CallReductionPct *float64 `json:"call_reduction_pct,omitempty"`

	// APICalls is how many provider calls the workers made during the run,
	// from --stats-url (see setWorkerCalls); APICallsSource names the
	// counter it came from.
	APICalls       *int64 `json:"api_calls,omitempty"`
	APICallsSource string `json:"api_calls_source,omitempty"`
	// EstimatedCost and EstimatedSaving are what the run cost and saved
	// against one call per request, in dollars, from the worker's
	// estimated_cost and estimated_saving (--stats-url, PRICES set): after
	// minus before. Absent when the worker reports no estimate.
	EstimatedCost   *float64 `json:"estimated_cost,omitempty"`
	EstimatedSaving *float64 `json:"estimated_saving,omitempty"`

	// MissingIDs, DuplicateIDs and ErrorSamples list the first few offenders.
	MissingIDs   []string `json:"missing_ids,omitempty"`
	DuplicateIDs []string `json:"duplicate_ids,omitempty"`
	ErrorSamples []string `json:"error_samples,omitempty"`
}

// Latency holds percentiles in milliseconds; all zero without results.
type Latency struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// failed reports whether any request failed, timed out or was not sent.
func (s *Summary) failed() bool {
	return s.PublishFailed > 0 || s.NotSent > 0 || s.Error > 0 || s.Missing > 0
}

// ms converts d to fractional milliseconds, rounded to microseconds.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// latencyOf computes nearest-rank percentiles of ds, which it sorts.
func latencyOf(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	return Latency{
		P50: ms(percentile(ds, 50)),
		P95: ms(percentile(ds, 95)),
		P99: ms(percentile(ds, 99)),
		Max: ms(ds[len(ds)-1]),
	}
}

// percentile returns the nearest-rank p-th percentile of sorted, non-empty ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(ds))))
	return ds[min(max(rank, 1), len(ds))-1]
}

// fetchProviderCalls GETs url and returns the "calls" field of its JSON body.
func fetchProviderCalls(ctx context.Context, client *http.Client, url string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, providerStatsTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("provider stats: build request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("provider stats: get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("provider stats: get %s: status %s", url, resp.Status)
	}
	var body struct {
		Calls *int64 `json:"calls"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return 0, fmt.Errorf("provider stats: decode %s: %w", url, err)
	}
	if body.Calls == nil {
		return 0, fmt.Errorf("provider stats: %s has no \"calls\" field", url)
	}
	return *body.Calls, nil
}

// setProviderCalls records the provider's call count and the saving it means.
func (s *Summary) setProviderCalls(calls int64) {
	s.ProviderCalls = &calls
	if s.Sent > 0 {
		pct := math.Round((1-float64(calls)/float64(s.Sent))*1000) / 10
		s.CallReductionPct = &pct
	}
}

// providerLine renders the saving as "1000 requests -> 20 API calls (98.0% fewer)".
func (s *Summary) providerLine() string {
	return callsLine(s.Sent, *s.ProviderCalls, s.CallReductionPct)
}

// workerCallsLine renders the worker's count as
// "1000 requests -> 20 API calls (98.0% fewer; worker stats: fleet.api_calls)".
func (s *Summary) workerCallsLine() string {
	var pct *float64
	if s.Sent > 0 {
		p := math.Round((1-float64(*s.APICalls)/float64(s.Sent))*1000) / 10
		pct = &p
	}
	line := callsLine(s.Sent, *s.APICalls, pct)
	if pct != nil {
		return line[:len(line)-1] + "; worker stats: " + s.APICallsSource + ")"
	}
	return line + " (worker stats: " + s.APICallsSource + ")"
}

// callsLine renders "<sent> requests -> <calls> API calls (<pct> fewer)".
func callsLine(sent int, calls int64, reductionPct *float64) string {
	line := fmt.Sprintf("%d requests -> %d API calls", sent, calls)
	if reductionPct != nil {
		if pct := *reductionPct; pct >= 0 {
			line += fmt.Sprintf(" (%.1f%% fewer)", pct)
		} else {
			line += fmt.Sprintf(" (%.1f%% more)", -pct)
		}
	}
	return line
}

// writeJSON writes s as one line of JSON.
func (s *Summary) writeJSON(w io.Writer) error {
	if err := json.NewEncoder(w).Encode(s); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// writeText writes s as aligned "name  value" lines.
func (s *Summary) writeText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", name, fmt.Sprintf(format, args...))
	}
	row("run", "%s (subject %s, reply-to %s)", s.RunID, s.Subject, s.ReplyTo)
	if s.Interrupted {
		row("interrupted", "yes")
	}
	row("requests sent", "%d of %d (publish failed %d, not sent %d)", s.Sent, s.Requests, s.PublishFailed, s.NotSent)
	unit := "requests/s"
	if s.Waited {
		unit = "results/s"
		row("results ok", "%d", s.OK)
		row("results error", "%d", s.Error)
		row("missing", "%d", s.Missing)
		row("duplicates", "%d", s.Duplicates)
		if s.Unknown > 0 || s.Invalid > 0 {
			row("unexpected", "%d unknown ids, %d invalid messages", s.Unknown, s.Invalid)
		}
		row("batches", "%d", s.Batches)
		for _, trig := range slices.Sorted(maps.Keys(s.ResultsByTrigger)) {
			row("  trigger "+trig, "%d results in %d batches", s.ResultsByTrigger[trig], s.BatchesByTrigger[trig])
		}
		row("latency", "p50 %.1fms, p95 %.1fms, p99 %.1fms, max %.1fms", s.Latency.P50, s.Latency.P95, s.Latency.P99, s.Latency.Max)
		row("tokens", "%d in (%d cached), %d out", s.Usage.InputTokens, s.Usage.CachedInputTokens, s.Usage.OutputTokens)
		if s.Cached > 0 {
			row("from the cache", "%d results", s.Cached)
		}
	}
	row("elapsed", "%s", roundDuration(time.Duration(s.ElapsedMS*float64(time.Millisecond))))
	row("throughput", "%.1f %s", s.Throughput, unit)
	if len(s.MissingIDs) > 0 {
		row("missing ids", "%s", listed(s.MissingIDs, s.Missing))
	}
	if len(s.DuplicateIDs) > 0 {
		row("duplicate ids", "%s", listed(s.DuplicateIDs, s.Duplicates))
	}
	for _, msg := range s.ErrorSamples {
		row("failure", "%s", msg)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	if s.ProviderCalls != nil {
		if _, err := fmt.Fprintln(w, s.providerLine()); err != nil {
			return fmt.Errorf("write summary: %w", err)
		}
	}
	if s.APICalls != nil {
		if _, err := fmt.Fprintln(w, s.workerCallsLine()); err != nil {
			return fmt.Errorf("write summary: %w", err)
		}
	}
	if s.EstimatedCost != nil && s.EstimatedSaving != nil {
		if _, err := fmt.Fprintln(w, s.costLine()); err != nil {
			return fmt.Errorf("write summary: %w", err)
		}
	}
	return nil
}

// costLine renders the estimate as "estimated cost $0.0123, saving $0.4567
// (97.4%) against one call per request (worker stats)".
func (s *Summary) costLine() string {
	line := fmt.Sprintf("estimated cost $%.4f, saving $%.4f", *s.EstimatedCost, *s.EstimatedSaving)
	if whole := *s.EstimatedCost + *s.EstimatedSaving; whole > 0 {
		line += fmt.Sprintf(" (%.1f%%)", 100**s.EstimatedSaving/whole)
	}
	return line + " against one call per request (worker stats)"
}

// roundDuration keeps three significant digits or so: 1.235s, 12.3ms, 845µs.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// listed joins ids and says how many of total were left out.
func listed(ids []string, total int) string {
	out := strings.Join(ids, ", ")
	if more := total - len(ids); more > 0 {
		out += fmt.Sprintf(" (and %d more)", more)
	}
	return out
}
