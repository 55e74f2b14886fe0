package anthropic

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/combined"
	"github.com/aibatch/aibatch/provider/internal/validate"
)

// Combined jobs (ASYNC_COMBINE): each request of the Message Batch is the
// combined call Complete would make for one batch (the system prompt with
// the instructions and the format line, marked for the prompt cache when
// long enough; the items; the forced batch_results tool), so the batch
// discount and the cached prefix add up. Inside a request the items are
// keyed "0" to "size-1", so requests of a size share one tool definition
// and so the whole cached prefix (tools, then system); request n's
// custom_id is "c<n>_<size>", from which PollJob maps them back to
// provider.CombinedKey(n, 0) to (n, size-1) without the submitted batch,
// so a restarted worker reads a batch it did not submit.

var _ provider.CombinedJobProvider = (*Provider)(nil)

// combinedID matches the custom_id of a combined request.
var combinedID = regexp.MustCompile(`^c(\d+)_(\d+)$`)

// maxCombinedItems bounds the size a custom_id may claim.
const maxCombinedItems = 100_000

func combinedLineID(n, size int) string { return fmt.Sprintf("c%d_%d", n, size) }

// SubmitCombinedJob starts a Message Batch with one combined call per
// request (see provider.CombinedJobProvider), and otherwise behaves as
// SubmitJob.
func (p *Provider) SubmitCombinedJob(ctx context.Context, lines []provider.Batch) (string, error) {
	if p.mode != ModeAsync {
		return "", fmt.Errorf("anthropic: submit combined message batch: %w", provider.Permanent(ErrNotAsync))
	}
	if len(lines) == 0 {
		return "", fmt.Errorf("anthropic: submit combined message batch: %w", provider.Permanent(errors.New("no lines")))
	}
	params := anthropic.MessageBatchNewParams{Requests: make([]anthropic.MessageBatchNewParamsRequest, len(lines))}
	for n, b := range lines {
		if err := validate.Batch(b); err != nil {
			return "", fmt.Errorf("anthropic: submit combined message batch: line %d: %w", n, err)
		}
		for i, r := range b.Requests {
			if r.Key != provider.CombinedKey(n, i) {
				return "", fmt.Errorf("anthropic: submit combined message batch: %w",
					provider.Permanent(fmt.Errorf("line %d: request %d has key %q, want %q", n, i, r.Key, provider.CombinedKey(n, i))))
			}
		}
		call, err := p.newParams(combined.LocalKeys(b))
		if err != nil {
			return "", fmt.Errorf("anthropic: submit combined message batch: %w", provider.Permanent(err))
		}
		req, err := batchParams(call)
		if err != nil {
			return "", fmt.Errorf("anthropic: submit combined message batch: %w", provider.Permanent(err))
		}
		params.Requests[n] = anthropic.MessageBatchNewParamsRequest{CustomID: combinedLineID(n, len(b.Requests)), Params: req}
	}
	var raw *http.Response
	batch, err := p.messages.Batches.New(ctx, params, option.WithResponseInto(&raw))
	if err != nil {
		return "", p.redact(fmt.Errorf("anthropic: submit combined message batch: %w", callError(ctx, err, raw)))
	}
	if batch.ID == "" {
		return "", fmt.Errorf("anthropic: submit combined message batch: %w", provider.Transient(errors.New("answer has no batch id")))
	}
	return batch.ID, nil
}

// combinedResults reads a combined request's result: one result per item
// it answered, and for each one it did not, a ScopeBatch error saying why.
// ok is false for a request the batch never ran.
func combinedResults(line anthropic.MessageBatchIndividualResponse, n, size int) ([]provider.Result, bool) {
	b := provider.Batch{Requests: make([]provider.Request, size)}
	for i := range size {
		b.Requests[i] = provider.Request{Key: strconv.Itoa(i)}
	}
	var results []provider.Result
	var lineErr error
	switch line.Result.Type {
	case "succeeded":
		msg := line.Result.AsSucceeded().Message
		results, lineErr = parseAnswer(b, &msg)
		for i, u := range usage(&msg).Split(len(results)) {
			results[i].Usage = u
		}
	case "canceled", "expired":
		return nil, false
	default:
		single, _ := resultOf(line)
		lineErr = single.Err
		if provider.ScopeOf(lineErr) != provider.ScopeProvider {
			// Whatever refused the request refused a combined call: a
			// smaller one may pass.
			lineErr = batchError(provider.IsPermanent(lineErr), lineErr)
		}
	}
	if lineErr == nil {
		lineErr = batchError(false, errors.New("the combined request's answer left the item out"))
	}
	return combined.LineResults(n, b, results, lineErr), true
}

// lineResults is the results of one line of a batch's results: a combined
// request's items, or the one request of a plain line; false for a request
// the batch never ran.
func lineResults(line anthropic.MessageBatchIndividualResponse) ([]provider.Result, bool) {
	if m := combinedID.FindStringSubmatch(line.CustomID); m != nil {
		n, err1 := strconv.Atoi(m[1])
		size, err2 := strconv.Atoi(m[2])
		if err1 == nil && err2 == nil && size > 0 && size <= maxCombinedItems {
			return combinedResults(line, n, size)
		}
	}
	r, ok := resultOf(line)
	return []provider.Result{r}, ok
}
