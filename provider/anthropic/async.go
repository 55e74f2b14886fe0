package anthropic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/httpcall"
	"github.com/aibatch/aibatch/provider/internal/validate"
)

var _ provider.AsyncProvider = (*Provider)(nil)

// SubmitJob starts one Message Batch for b and returns its id.
//
// The batch holds one request per request of b: custom_id is the Key (the
// API requires 1 to 64 characters of [a-zA-Z0-9_-]; the engine's keys are
// decimal numbers) and params is the plain Messages request ModeSingle
// would send: model, Instructions as system prompt, Input as user message,
// max_tokens from the request's MaxOutputTokens, else b.MaxOutputTokens,
// else Config.MaxTokens, capped at Config.MaxCallTokens when set.
//
// Errors wrap an *provider.Error classified like Complete's (HTTP 401, 402,
// 403, 408, 409, 425, 429, 5xx and 529 transient, ScopeProvider; other 4xx
// permanent) and never contain the API key. A Provider not built in ModeAsync, a
// batch with no requests or no model: permanent, before any call.
func (p *Provider) SubmitJob(ctx context.Context, b provider.Batch) (string, error) {
	if err := p.validateJob(b); err != nil {
		return "", fmt.Errorf("anthropic: submit message batch: %w", err)
	}
	params := anthropic.MessageBatchNewParams{Requests: make([]anthropic.MessageBatchNewParamsRequest, len(b.Requests))}
	for i, r := range b.Requests {
		req, err := p.jobParams(b, r)
		if err != nil {
			return "", fmt.Errorf("anthropic: submit message batch: request %q: %w", r.Key, provider.Permanent(err))
		}
		params.Requests[i] = anthropic.MessageBatchNewParamsRequest{CustomID: r.Key, Params: req}
	}
	var raw *http.Response
	batch, err := p.messages.Batches.New(ctx, params, option.WithResponseInto(&raw))
	if err != nil {
		return "", p.redact(fmt.Errorf("anthropic: submit message batch: %w", callError(ctx, err, raw)))
	}
	if batch.ID == "" {
		return "", fmt.Errorf("anthropic: submit message batch: %w", provider.Transient(errors.New("answer has no batch id")))
	}
	return batch.ID, nil
}

// jobParams is the request of a Message Batch for r: the plain call
// singleParams builds, in the Message Batches API's type (the same fields).
func (p *Provider) jobParams(b provider.Batch, r provider.Request) (anthropic.MessageBatchNewParamsRequestParams, error) {
	var req anthropic.MessageBatchNewParamsRequestParams
	plain, err := p.singleParams(b, r)
	if err != nil {
		return req, err
	}
	data, err := json.Marshal(plain)
	if err != nil {
		return req, fmt.Errorf("encode request: %w", err)
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return req, fmt.Errorf("encode request: %w", err)
	}
	return req, nil
}

// validateJob checks the Provider can submit b.
func (p *Provider) validateJob(b provider.Batch) error {
	if p.mode != ModeAsync {
		return provider.Permanent(ErrNotAsync)
	}
	return validate.Batch(b)
}

// PollJob gets the Message Batch jobID and, once it has ended, its results.
//
// processing_status in_progress and canceling: not Done, no Results (the
// API gives results only once the batch has ended). ended: Done, with the
// results streamed from the batch's results, matched to requests by
// custom_id (the first result for a custom_id wins):
//   - succeeded: the message's text blocks joined, with the message's usage
//     (cached prompt tokens count as input); stop_reason "refusal" is a
//     permanent ScopeRequest Result.Err, a message without text a transient
//     ScopeRequest one;
//   - errored: a Result.Err classified by the error's type as a plain
//     call answered with that type's status: invalid_request_error,
//     not_found_error and request_too_large permanent, ScopeRequest (a
//     not_found_error naming the model wraps provider.ErrUnknownModel
//     instead); authentication_error, permission_error, billing_error,
//     rate_limit_error, timeout_error, api_error, overloaded_error and any
//     other type transient, ScopeProvider; no StatusCode;
//   - canceled and expired: left out, and so is a request with no result:
//     the caller retries them.
//
// A batch that ended with requests canceled or expired (request_counts) is
// Failed: those requests were never run, and Errors says how many of each
// ("expired: 3 requests not run before the batch expired"). The Message
// Batches API has no other way to fail a whole batch: a batch whose
// requests all errored is not Failed, each request carries its own error.
//
// State is the processing_status. Errors concern the poll, not the
// requests: the Provider not built in ModeAsync (permanent), a failed call
// (classified as SubmitJob's, 404 for an unknown id), or results that cannot
// be read (transient: poll again). They never contain the API key.
func (p *Provider) PollJob(ctx context.Context, jobID string) (provider.JobStatus, error) {
	if p.mode != ModeAsync {
		return provider.JobStatus{}, fmt.Errorf("anthropic: poll message batch %q: %w", jobID, provider.Permanent(ErrNotAsync))
	}
	var raw *http.Response
	batch, err := p.messages.Batches.Get(ctx, jobID, anthropic.MessageBatchGetParams{}, option.WithResponseInto(&raw))
	if err != nil {
		return provider.JobStatus{}, p.redact(fmt.Errorf("anthropic: poll message batch %q: %w", jobID, callError(ctx, err, raw)))
	}
	st := provider.JobStatus{State: string(batch.ProcessingStatus), Done: batch.ProcessingStatus == anthropic.MessageBatchProcessingStatusEnded}
	if !st.Done {
		return st, nil
	}
	results, err := p.readResults(ctx, jobID)
	if err != nil {
		return provider.JobStatus{}, p.redact(fmt.Errorf("anthropic: poll message batch %q: read results: %w", jobID, err))
	}
	st.Results = results
	if n := batch.RequestCounts.Expired; n > 0 {
		st.Errors = append(st.Errors, fmt.Sprintf("expired: %d requests not run before the batch expired", n))
	}
	if n := batch.RequestCounts.Canceled; n > 0 {
		st.Errors = append(st.Errors, fmt.Sprintf("canceled: %d requests not run", n))
	}
	st.Failed = st.Errors != nil
	return st, nil
}

// readResults streams the results of the ended batch jobID.
func (p *Provider) readResults(ctx context.Context, jobID string) ([]provider.Result, error) {
	var raw *http.Response
	stream := p.messages.Batches.ResultsStreaming(ctx, jobID, anthropic.MessageBatchResultsParams{}, option.WithResponseInto(&raw))
	defer stream.Close()
	var results []provider.Result
	seen := map[string]bool{}
	for stream.Next() {
		line := stream.Current()
		if line.CustomID == "" || seen[line.CustomID] {
			continue
		}
		seen[line.CustomID] = true
		r, ok := resultOf(line)
		if !ok {
			continue
		}
		if r.Err != nil {
			r.Err = p.redact(fmt.Errorf("anthropic: message batch %q, request %q: %w", jobID, r.Key, r.Err))
		}
		results = append(results, r)
	}
	if err := stream.Err(); err != nil {
		var apiErr *anthropic.Error
		if ctx.Err() != nil || errors.As(err, &apiErr) {
			return nil, callError(ctx, err, raw)
		}
		// A line that is not JSON, or a stream cut off.
		return nil, provider.Transient(err)
	}
	return results, nil
}

// resultOf is the result one line gives its request, and false when the
// request is to be left out (canceled or expired).
func resultOf(line anthropic.MessageBatchIndividualResponse) (provider.Result, bool) {
	r := provider.Result{Key: line.CustomID}
	switch line.Result.Type {
	case "succeeded":
		msg := line.Result.AsSucceeded().Message
		res, err := singleAnswer(&msg, false)
		res.Key, res.Err = r.Key, err
		if err == nil {
			res.Usage = usage(&msg)
		}
		r = res
	case "errored":
		e := line.Result.AsErrored().Error.Error
		cause := fmt.Errorf("request errored (type %s): %q", e.Type, shorten(e.Message))
		pe := classify(typeStatus(string(e.Type)), nil, string(e.Type), e.Message, cause)
		pe.StatusCode = 0 // a result has no HTTP status of its own
		r.Err, _ = httpcall.Plain(pe)
	case "canceled", "expired":
		return r, false
	default:
		r.Err = requestError(false, fmt.Errorf("unknown result type %q", shorten(line.Result.Type)))
	}
	return r, true
}

// shorten cuts s to a length fit for an error message.
func shorten(s string) string { return httpcall.Shorten(s, 200) }

// CancelJob asks the API to cancel the Message Batch jobID. The batch moves
// to canceling, then ended; PollJob then returns the requests it had
// answered, the others being canceled (left out). Cancelling a batch that
// is already canceling or ended is not an error. Errors wrap an
// *provider.Error classified like SubmitJob's and never contain the API key.
func (p *Provider) CancelJob(ctx context.Context, jobID string) error {
	if p.mode != ModeAsync {
		return fmt.Errorf("anthropic: cancel message batch %q: %w", jobID, provider.Permanent(ErrNotAsync))
	}
	var raw *http.Response
	_, err := p.messages.Batches.Cancel(ctx, jobID, anthropic.MessageBatchCancelParams{}, option.WithResponseInto(&raw))
	if err == nil {
		return nil
	}
	cerr := callError(ctx, err, raw)
	if cerr.StatusCode != 0 && cerr.StatusCode < 500 {
		// The API may refuse to cancel a batch that has ended; see whether
		// that is why.
		if b, gerr := p.messages.Batches.Get(ctx, jobID, anthropic.MessageBatchGetParams{}); gerr == nil && b.ProcessingStatus != anthropic.MessageBatchProcessingStatusInProgress {
			return nil
		}
	}
	return p.redact(fmt.Errorf("anthropic: cancel message batch %q: %w", jobID, cerr))
}
