package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/httpcall"
	"github.com/aibatch/aibatch/provider/internal/validate"
)

var _ provider.AsyncProvider = (*Provider)(nil)

// JobEndpoint is the endpoint every line of a Batch API job is sent to.
const JobEndpoint = "/v1/chat/completions"

// JobMetadataKey is the metadata key of a job that holds the provider.Batch
// ID it was made from, to find the job in OpenAI's dashboard.
const JobMetadataKey = "aibatch_batch_id"

// Codes of the error-file lines OpenAI writes for the requests of an expired
// or cancelled job that were never run. Such requests are left out of the
// results: the caller retries them.
const (
	codeBatchExpired   = "batch_expired"
	codeBatchCancelled = "batch_cancelled"
)

// SubmitJob starts one Batch API job for b and returns the batch's id.
//
// It uploads a JSONL file (purpose "batch") with one line per request:
// custom_id is the request's Key and body is the plain Chat Completions
// request ModeSingle would send (model, Instructions as system message,
// Input as user message, max_completion_tokens from the request's
// MaxOutputTokens, else b.MaxOutputTokens, left out when both are 0).
// It then creates the batch on JobEndpoint with completion window "24h" and
// metadata JobMetadataKey = b.ID.
//
// Errors wrap an *provider.Error classified like Complete's (401, 402, 403,
// 408, 409, 425, 429, 5xx and no answer transient, ScopeProvider; other 4xx
// permanent) and never contain the API key. A Provider not built in
// ModeAsync, a batch with no requests or no model: permanent, before any
// call. Should the upload succeed and the batch creation fail, the uploaded
// file is deleted (best effort: see FileDeleteFailures).
func (p *Provider) SubmitJob(ctx context.Context, b provider.Batch) (string, error) {
	if err := p.validateJob(b); err != nil {
		return "", fmt.Errorf("openai: submit batch job: %w", err)
	}
	input, err := jobInput(b)
	if err != nil {
		return "", fmt.Errorf("openai: submit batch job: %w", provider.Permanent(err))
	}

	var raw *http.Response
	file, err := p.files.New(ctx, openai.FileNewParams{
		File:    openai.File(bytes.NewReader(input), "aibatch.jsonl", "application/jsonl"),
		Purpose: openai.FilePurposeBatch,
	}, option.WithResponseInto(&raw))
	if err != nil {
		return "", p.redact(fmt.Errorf("openai: submit batch job: upload input file: %w", callError(ctx, err, raw)))
	}
	if file.ID == "" {
		return "", fmt.Errorf("openai: submit batch job: upload input file: %w", provider.Transient(errors.New("answer has no file id")))
	}

	params := openai.BatchNewParams{
		InputFileID:      file.ID,
		Endpoint:         openai.BatchNewParamsEndpointV1ChatCompletions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h,
	}
	if b.ID != "" && len(b.ID) <= 512 {
		params.Metadata = shared.Metadata{JobMetadataKey: b.ID}
	}
	raw = nil
	job, err := p.batches.New(ctx, params, option.WithResponseInto(&raw))
	if err != nil {
		cerr := callError(ctx, err, raw)
		p.deleteFile(ctx, file.ID)
		return "", p.redact(fmt.Errorf("openai: submit batch job: create batch for file %s: %w", file.ID, cerr))
	}
	if job.ID == "" {
		return "", fmt.Errorf("openai: submit batch job: create batch for file %s: %w", file.ID, provider.Transient(errors.New("answer has no batch id")))
	}
	return job.ID, nil
}

// validateJob checks the Provider can submit b.
func (p *Provider) validateJob(b provider.Batch) error {
	if p.mode != ModeAsync {
		return provider.Permanent(ErrNotAsync)
	}
	return validate.Batch(b)
}

// jobLine is one line of a job's input file.
type jobLine struct {
	CustomID string                         `json:"custom_id"`
	Method   string                         `json:"method"`
	URL      string                         `json:"url"`
	Body     openai.ChatCompletionNewParams `json:"body"`
}

// jobInput is the JSONL input file of a job for b.
func jobInput(b provider.Batch) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, r := range b.Requests {
		params, err := singleParams(b, r)
		if err != nil {
			return nil, fmt.Errorf("request %q: %w", r.Key, err)
		}
		if err := enc.Encode(jobLine{CustomID: r.Key, Method: http.MethodPost, URL: JobEndpoint, Body: params}); err != nil {
			return nil, fmt.Errorf("encode request %q: %w", r.Key, err)
		}
	}
	return buf.Bytes(), nil
}

// PollJob gets the batch jobID and, once it is done, its results.
//
// Status validating, in_progress, finalizing and cancelling: not Done, no
// Results (OpenAI gives no answer before the batch ends). Status completed,
// failed, expired and cancelled: Done, with the results read from the
// output and error files, matched to requests by custom_id (the first line
// for a custom_id wins):
//   - a line with response.status_code 200 is answered with the content of
//     its chat completion and the line's usage; a refusal is a permanent
//     ScopeRequest Result.Err, an answer without choices a transient one;
//   - a line with another status is that request's Result.Err, classified
//     like a plain call's failure (a 4xx rejection permanent, ScopeRequest;
//     404 model_not_found wrapping provider.ErrUnknownModel; 401, 403,
//     408, 409, 425, 429 and 5xx transient, ScopeProvider), with
//     StatusCode;
//   - a line with code "batch_expired" or "batch_cancelled" (a request the
//     job never ran), and a request with no line at all, are left out: the
//     caller retries them. A failed batch (its input was refused) has no
//     lines, so all its requests are left out;
//   - any other error line is a transient ScopeRequest Result.Err.
//
// A batch that ended failed, expired or cancelled is Failed: the requests
// it left out were never run, and Errors says why: the batch's own errors
// (errors.data: code, message, input line) for a failed batch, and the
// number of requests an expired or cancelled one never ran, each shortened
// and without the API key (at most maxJobErrors of them).
//
// Once the batch is done, its input file is deleted (best effort: a
// failure is counted by FileDeleteFailures, never returned; a file already
// gone is not a failure).
//
// State is the batch's status. Errors concern the poll, not the requests:
// the Provider not built in ModeAsync (permanent), a failed call (classified
// as above, 404 for an unknown id), or an output file that cannot be read
// (transient: poll again). They never contain the API key.
func (p *Provider) PollJob(ctx context.Context, jobID string) (provider.JobStatus, error) {
	if p.mode != ModeAsync {
		return provider.JobStatus{}, fmt.Errorf("openai: poll batch job %q: %w", jobID, provider.Permanent(ErrNotAsync))
	}
	var raw *http.Response
	job, err := p.batches.Get(ctx, jobID, option.WithResponseInto(&raw))
	if err != nil {
		return provider.JobStatus{}, p.redact(fmt.Errorf("openai: poll batch job %q: %w", jobID, callError(ctx, err, raw)))
	}
	st := provider.JobStatus{State: string(job.Status), Done: jobDone(job.Status)}
	if !st.Done {
		return st, nil
	}
	seen := map[string]bool{}
	var notRun int
	for _, fileID := range []string{job.OutputFileID, job.ErrorFileID} {
		if fileID == "" {
			continue
		}
		results, err := p.readJobFile(ctx, jobID, fileID, seen, &notRun)
		if err != nil {
			return provider.JobStatus{}, p.redact(fmt.Errorf("openai: poll batch job %q: %w", jobID, err))
		}
		st.Results = append(st.Results, results...)
	}
	st.Failed = job.Status != openai.BatchStatusCompleted
	if st.Failed {
		st.Errors = p.jobErrors(job, notRun)
	}
	if job.InputFileID != "" {
		p.deleteFile(ctx, job.InputFileID)
	}
	return st, nil
}

// maxJobErrors bounds JobStatus.Errors.
const maxJobErrors = 10

// jobErrors says why job, which ended without answering every request,
// did so; notRun is how many of its requests it never ran.
func (p *Provider) jobErrors(job *openai.Batch, notRun int) []string {
	var errs []string
	for i, e := range job.Errors.Data {
		if i == maxJobErrors-1 && len(job.Errors.Data) > maxJobErrors {
			errs = append(errs, fmt.Sprintf("... and %d more errors", len(job.Errors.Data)-i))
			break
		}
		msg := shorten(e.Message)
		if e.Code != "" {
			msg = shorten(e.Code) + ": " + msg
		}
		if e.Line > 0 {
			msg = fmt.Sprintf("input line %d: %s", e.Line, msg)
		}
		errs = append(errs, p.redactor.RedactString(msg))
	}
	switch {
	case job.Status == openai.BatchStatusExpired:
		errs = append(errs, fmt.Sprintf("%s: %d requests not run before the 24h completion window ended", codeBatchExpired, notRun))
	case job.Status == openai.BatchStatusCancelled:
		errs = append(errs, fmt.Sprintf("%s: %d requests not run", codeBatchCancelled, notRun))
	case len(errs) == 0:
		errs = append(errs, "the batch failed without saying why")
	}
	return errs
}

// deleteFile deletes the uploaded file fileID, best effort: a failure is
// counted by FileDeleteFailures; a file already gone (404) is not one.
func (p *Provider) deleteFile(ctx context.Context, fileID string) {
	var raw *http.Response
	if _, err := p.files.Delete(ctx, fileID, option.WithResponseInto(&raw)); err != nil {
		if callError(ctx, err, raw).StatusCode != http.StatusNotFound {
			p.fileDeleteFailures.Add(1)
		}
	}
}

// FileDeleteFailures returns how many deletions of a job's input file
// (after the job ended, or after its creation failed) have failed since the
// Provider was built. Deletion is best effort: such a file stays until
// OpenAI's retention removes it, and counts against the organization's
// storage meanwhile. A caller may export the count as a metric.
func (p *Provider) FileDeleteFailures() int64 { return p.fileDeleteFailures.Load() }

// jobDone reports whether a batch in status s will change no more.
func jobDone(s openai.BatchStatus) bool {
	switch s {
	case openai.BatchStatusCompleted, openai.BatchStatusFailed, openai.BatchStatusExpired, openai.BatchStatusCancelled:
		return true
	}
	return false
}

// outputLine is one line of a job's output or error file.
type outputLine struct {
	CustomID string `json:"custom_id"`
	Response *struct {
		StatusCode int             `json:"status_code"`
		Body       json.RawMessage `json:"body"`
	} `json:"response"`
	Error *lineError `json:"error"`
}

// lineError is an error object, as a line's "error" or in a failed
// response's body.
type lineError struct {
	Code    string `json:"code"`
	Type    string `json:"type"`
	Message string `json:"message"`
}

func (e lineError) String() string {
	code := e.Code
	if code == "" {
		code = e.Type
	}
	if code == "" {
		return fmt.Sprintf("%q", shorten(e.Message))
	}
	return fmt.Sprintf("%s: %q", code, shorten(e.Message))
}

// readJobFile downloads one output or error file of job jobID and returns a
// result per line whose custom_id is not in seen yet, adding it to seen; it
// adds the lines of requests the job never ran to *notRun.
func (p *Provider) readJobFile(ctx context.Context, jobID, fileID string, seen map[string]bool, notRun *int) ([]provider.Result, error) {
	var raw *http.Response
	resp, err := p.files.Content(ctx, fileID, option.WithResponseInto(&raw))
	if err != nil {
		return nil, fmt.Errorf("download file %s: %w", fileID, callError(ctx, err, raw))
	}
	defer resp.Body.Close()
	var results []provider.Result
	dec := json.NewDecoder(resp.Body)
	for n := 1; ; n++ {
		var line outputLine
		err := dec.Decode(&line)
		if errors.Is(err, io.EOF) {
			return results, nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("read file %s: %w", fileID, callError(ctx, err, nil))
			}
			return nil, fmt.Errorf("read file %s, line %d: %w", fileID, n, provider.Transient(err))
		}
		if line.CustomID == "" || seen[line.CustomID] {
			continue
		}
		seen[line.CustomID] = true
		r, ok := lineResult(line)
		if !ok {
			*notRun++
			continue
		}
		if r.Err != nil {
			r.Err = p.redact(fmt.Errorf("openai: batch job %q, request %q: %w", jobID, r.Key, r.Err))
		}
		results = append(results, r)
	}
}

// lineResult is the result a line gives its request, and false when the
// request is to be left out (never run).
func lineResult(line outputLine) (provider.Result, bool) {
	r := provider.Result{Key: line.CustomID}
	switch {
	case line.Response != nil && line.Response.StatusCode == http.StatusOK:
		var resp chatAnswer
		if err := json.Unmarshal(line.Response.Body, &resp); err != nil {
			r.Err = requestError(false, fmt.Errorf("parse answer: %w", err))
			return r, true
		}
		res, err := singleAnswer(&resp)
		res.Key, res.Err = r.Key, err
		r = res
	case line.Response != nil:
		status := line.Response.StatusCode
		var body struct {
			Error *lineError `json:"error"`
		}
		cause := fmt.Errorf("request answered HTTP %d", status)
		var code string
		if json.Unmarshal(line.Response.Body, &body) == nil && body.Error != nil {
			cause = fmt.Errorf("request answered HTTP %d: %s", status, body.Error)
			code = body.Error.Code
		}
		r.Err, _ = httpcall.Plain(classify(status, nil, code, cause))
	case line.Error != nil:
		if line.Error.Code == codeBatchExpired || line.Error.Code == codeBatchCancelled {
			return r, false
		}
		r.Err = &provider.Error{Scope: provider.ScopeRequest, Err: fmt.Errorf("request failed: %s", *line.Error)}
	default:
		r.Err = requestError(false, errors.New("output line has neither response nor error"))
	}
	return r, true
}

// CancelJob asks OpenAI to cancel the batch jobID. The batch moves to
// cancelling, then cancelled; PollJob then returns the answers it had made
// (none, in practice, as OpenAI writes no partial output before the end).
// Cancelling a batch that is already cancelling or done is not an error.
// Errors wrap an *provider.Error classified like SubmitJob's and never
// contain the API key.
func (p *Provider) CancelJob(ctx context.Context, jobID string) error {
	if p.mode != ModeAsync {
		return fmt.Errorf("openai: cancel batch job %q: %w", jobID, provider.Permanent(ErrNotAsync))
	}
	var raw *http.Response
	_, err := p.batches.Cancel(ctx, jobID, option.WithResponseInto(&raw))
	if err == nil {
		return nil
	}
	cerr := callError(ctx, err, raw)
	if cerr.StatusCode != 0 && cerr.StatusCode < 500 {
		// OpenAI refuses to cancel a batch that has ended; see whether that
		// is why.
		if job, gerr := p.batches.Get(ctx, jobID); gerr == nil && (jobDone(job.Status) || job.Status == openai.BatchStatusCancelling) {
			return nil
		}
	}
	return p.redact(fmt.Errorf("openai: cancel batch job %q: %w", jobID, cerr))
}
