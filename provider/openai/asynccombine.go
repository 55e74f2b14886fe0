package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/combined"
	"github.com/aibatch/aibatch/provider/internal/validate"
)

// Combined jobs (ASYNC_COMBINE): each line of the job's input file is the
// combined call Complete would make for one batch (the system message with
// the instructions and the format line, the items, the strict json_schema),
// so the Batch API's discount and the prompt cache of the shared
// instructions add up. Inside a line the items are keyed "0" to "size-1",
// so lines of a size share one answer schema and their whole prefix; line
// n's custom_id is "c<n>_<size>", from which PollJob maps them back to
// provider.CombinedKey(n, 0) to (n, size-1) without the input file, so a
// restarted worker reads a job it did not submit.

var _ provider.CombinedJobProvider = (*Provider)(nil)

// combinedID matches the custom_id of a combined line.
var combinedID = regexp.MustCompile(`^c(\d+)_(\d+)$`)

func combinedLineID(n, size int) string { return fmt.Sprintf("c%d_%d", n, size) }

// SubmitCombinedJob starts a Batch API job with one combined call per line
// (see provider.CombinedJobProvider), and otherwise behaves as SubmitJob.
func (p *Provider) SubmitCombinedJob(ctx context.Context, lines []provider.Batch) (string, error) {
	if p.mode != ModeAsync {
		return "", fmt.Errorf("openai: submit combined batch job: %w", provider.Permanent(ErrNotAsync))
	}
	if len(lines) == 0 {
		return "", fmt.Errorf("openai: submit combined batch job: %w", provider.Permanent(errors.New("no lines")))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for n, b := range lines {
		if err := validate.Batch(b); err != nil {
			return "", fmt.Errorf("openai: submit combined batch job: line %d: %w", n, err)
		}
		for i, r := range b.Requests {
			if r.Key != provider.CombinedKey(n, i) {
				return "", fmt.Errorf("openai: submit combined batch job: %w", provider.Permanent(fmt.Errorf("line %d: request %d has key %q, want %q", n, i, r.Key, provider.CombinedKey(n, i))))
			}
		}
		params, err := newParams(combined.LocalKeys(b))
		if err != nil {
			return "", fmt.Errorf("openai: submit combined batch job: %w", provider.Permanent(err))
		}
		if err := enc.Encode(jobLine{CustomID: combinedLineID(n, len(b.Requests)), Method: http.MethodPost, URL: JobEndpoint, Body: params}); err != nil {
			return "", fmt.Errorf("openai: submit combined batch job: %w", provider.Permanent(fmt.Errorf("encode line %d: %w", n, err)))
		}
	}
	return p.submitInput(ctx, buf.Bytes(), lines[0].ID)
}

// combinedLineResults reads a combined line: one result per request it
// answered, and for each one it did not, a ScopeBatch error saying why.
// ok is false for a line the job never ran.
func combinedLineResults(line outputLine, n, size int) ([]provider.Result, bool) {
	b := provider.Batch{Requests: make([]provider.Request, size)}
	for i := range size {
		b.Requests[i] = provider.Request{Key: strconv.Itoa(i)}
	}
	var results []provider.Result
	var lineErr error
	switch {
	case line.Response != nil && line.Response.StatusCode == http.StatusOK:
		var resp chatAnswer
		if err := json.Unmarshal(line.Response.Body, &resp); err != nil {
			lineErr = batchError(false, fmt.Errorf("parse answer: %w", err))
			break
		}
		results, lineErr = parseAnswer(b, &resp)
		for i, u := range resp.Usage.usage().Split(len(results)) {
			results[i].Usage, results[i].ServiceTier = u, resp.ServiceTier
		}
	case line.Error != nil && (line.Error.Code == codeBatchExpired || line.Error.Code == codeBatchCancelled):
		return nil, false
	default:
		single, _ := lineResult(line)
		lineErr = single.Err
		if provider.ScopeOf(lineErr) != provider.ScopeProvider {
			// Whatever refused the line refused a combined call: a
			// smaller one may pass.
			lineErr = batchError(provider.IsPermanent(lineErr), lineErr)
		}
	}
	if lineErr == nil {
		lineErr = batchError(false, errors.New("the combined line's answer left the request out"))
	}
	return combined.LineResults(n, b, results, lineErr), true
}

// lineResults is the results of one line of a job's output: a combined
// line's requests, or the one request of a plain line; false for a line
// the job never ran.
func lineResults(line outputLine) ([]provider.Result, int, bool) {
	if m := combinedID.FindStringSubmatch(line.CustomID); m != nil {
		n, err1 := strconv.Atoi(m[1])
		size, err2 := strconv.Atoi(m[2])
		if err1 == nil && err2 == nil && size > 0 && size <= maxEnumValues {
			results, ok := combinedLineResults(line, n, size)
			return results, size, ok
		}
	}
	r, ok := lineResult(line)
	return []provider.Result{r}, 1, ok
}
