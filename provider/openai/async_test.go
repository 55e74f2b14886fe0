package openai_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
)

// asyncSetup starts a fake API and a ModeAsync Provider that talks to it.
func asyncSetup(t *testing.T, opts ...openaitest.Option) (*openaitest.Server, *openai.Provider) {
	t.Helper()
	srv := openaitest.NewServer(append([]openaitest.Option{openaitest.WithAPIKey(testKey)}, opts...)...)
	t.Cleanup(srv.Close)
	p, err := openai.New(openai.Config{APIKey: testKey, BaseURL: srv.URL, Mode: openai.ModeAsync})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return srv, p
}

// pollDone polls job id once and requires it to be done.
func pollDone(t *testing.T, p *openai.Provider, id string) provider.JobStatus {
	t.Helper()
	st, err := p.PollJob(t.Context(), id)
	if err != nil {
		t.Fatalf("PollJob: %v", err)
	}
	if !st.Done {
		t.Fatalf("PollJob: not done (state %q)", st.State)
	}
	return st
}

func TestSubmitJobInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		instructions string
		maxTokens    []int
	}{
		{"instructions and caps", "Translate to French.", []int{0, 50, 7}},
		{"no instructions", "", []int{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, p := asyncSetup(t)
			b := provider.Batch{ID: "batch-42", Model: "gpt-test", Instructions: tt.instructions}
			for i, mt := range tt.maxTokens {
				b.Requests = append(b.Requests, provider.Request{Key: fmt.Sprint(i), Input: fmt.Sprintf("say <%d> & \"more\"", i), MaxOutputTokens: mt})
			}
			id, err := p.SubmitJob(t.Context(), b)
			if err != nil {
				t.Fatalf("SubmitJob: %v", err)
			}
			lines := srv.JobRequests(id)
			if len(lines) != len(b.Requests) {
				t.Fatalf("job has %d lines, want %d", len(lines), len(b.Requests))
			}
			for i, l := range lines {
				r := b.Requests[i]
				if l.CustomID != r.Key || l.Method != http.MethodPost || l.URL != openai.JobEndpoint {
					t.Errorf("line %d: custom_id, method, url = %q, %q, %q; want %q, POST, %q", i, l.CustomID, l.Method, l.URL, r.Key, openai.JobEndpoint)
				}
				if l.Model != b.Model || l.ResponseFormat != nil {
					t.Errorf("line %d: model %q, response_format %s; want %q and none", i, l.Model, l.ResponseFormat, b.Model)
				}
				want := []openaitest.Message{{Role: "user", Content: r.Input}}
				if tt.instructions != "" {
					want = append([]openaitest.Message{{Role: "system", Content: tt.instructions}}, want...)
				}
				if fmt.Sprint(l.Messages) != fmt.Sprint(want) {
					t.Errorf("line %d: messages %+v, want %+v", i, l.Messages, want)
				}
				if l.MaxCompletionTokens != int64(r.MaxOutputTokens) {
					t.Errorf("line %d: max_completion_tokens %d, want %d", i, l.MaxCompletionTokens, r.MaxOutputTokens)
				}
				if r.MaxOutputTokens == 0 && strings.Contains(string(l.Body), "max_completion_tokens") {
					t.Errorf("line %d: body %s sends max_completion_tokens without a cap", i, l.Body)
				}
			}

			// The batch names the provider.Batch it was made from.
			res, err := http.DefaultClient.Do(mustRequest(t, http.MethodGet, srv.URL+"/batches/"+id))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var batch struct {
				Endpoint         string            `json:"endpoint"`
				CompletionWindow string            `json:"completion_window"`
				Metadata         map[string]string `json:"metadata"`
			}
			if err := json.NewDecoder(res.Body).Decode(&batch); err != nil {
				t.Fatal(err)
			}
			if batch.Endpoint != openai.JobEndpoint || batch.CompletionWindow != "24h" || batch.Metadata[openai.JobMetadataKey] != b.ID {
				t.Errorf("batch endpoint, window, metadata = %q, %q, %v; want %q, 24h, %s=%s", batch.Endpoint, batch.CompletionWindow, batch.Metadata, openai.JobEndpoint, openai.JobMetadataKey, b.ID)
			}
		})
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	return req
}

func TestJobNotAsync(t *testing.T) {
	t.Parallel()
	for _, mode := range []openai.Mode{openai.ModeCombined, openai.ModeSingle} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			srv := openaitest.NewServer()
			t.Cleanup(srv.Close)
			p, err := openai.New(openai.Config{APIKey: testKey, BaseURL: srv.URL, Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			_, subErr := p.SubmitJob(t.Context(), provider.Batch{Model: "m", Requests: []provider.Request{{Key: "0", Input: "x"}}})
			_, pollErr := p.PollJob(t.Context(), "batch_1")
			cancelErr := p.CancelJob(t.Context(), "batch_1")
			for name, err := range map[string]error{"SubmitJob": subErr, "PollJob": pollErr, "CancelJob": cancelErr} {
				if !errors.Is(err, openai.ErrNotAsync) || !provider.IsPermanent(err) {
					t.Errorf("%s: %v, want a permanent ErrNotAsync", name, err)
				}
			}
			if srv.Jobs() != 0 || srv.Calls() != 0 {
				t.Errorf("fake got %d jobs and %d calls, want none", srv.Jobs(), srv.Calls())
			}
		})
	}
}

func TestJobLineErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status        int
		wantPermanent bool
	}{
		{http.StatusBadRequest, true},
		{http.StatusUnauthorized, false},
		{http.StatusNotFound, true},
		{http.StatusUnprocessableEntity, true},
		{http.StatusRequestTimeout, false},
		{http.StatusConflict, false},
		{http.StatusTooManyRequests, false},
		{http.StatusInternalServerError, false},
		{http.StatusServiceUnavailable, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			t.Parallel()
			srv, p := asyncSetup(t)
			srv.FailLines(tt.status, "b")
			b := provider.Batch{Model: "gpt-test", Requests: []provider.Request{{Key: "0", Input: "a"}, {Key: "1", Input: "b"}}}
			id, err := p.SubmitJob(t.Context(), b)
			if err != nil {
				t.Fatal(err)
			}
			srv.CompleteJobs()
			st := pollDone(t, p, id)
			byKey := map[string]provider.Result{}
			for _, r := range st.Results {
				byKey[r.Key] = r
			}
			if r := byKey["0"]; r.Err != nil || r.Output != openaitest.Answer("a") {
				t.Errorf("key 0: %+v, want answered", r)
			}
			r, ok := byKey["1"]
			if !ok || r.Err == nil {
				t.Fatalf("key 1: %+v, want HTTP %d", r, tt.status)
			}
			var pe *provider.Error
			if !errors.As(r.Err, &pe) || pe.StatusCode != tt.status || provider.IsPermanent(r.Err) != tt.wantPermanent {
				t.Errorf("key 1: Err %v, want a *provider.Error with StatusCode %d, permanent %v", r.Err, tt.status, tt.wantPermanent)
			}
			if !strings.Contains(r.Err.Error(), id) || !strings.Contains(r.Err.Error(), `"1"`) {
				t.Errorf("key 1: Err %q does not name the job and the request", r.Err)
			}
		})
	}
}

func TestJobUnknownModel(t *testing.T) {
	t.Parallel()
	srv, p := asyncSetup(t, openaitest.WithUnknownModels("gpt-gone"))
	b := provider.Batch{Model: "gpt-gone", Requests: []provider.Request{{Key: "0", Input: "a"}, {Key: "1", Input: "b"}}}
	id, err := p.SubmitJob(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	srv.CompleteJobs()
	st := pollDone(t, p, id)
	if len(st.Results) != 2 {
		t.Fatalf("results %+v, want one error per request", st.Results)
	}
	for _, r := range st.Results {
		if !provider.IsPermanent(r.Err) || !strings.Contains(fmt.Sprint(r.Err), "model_not_found") {
			t.Errorf("key %q: Err %v, want permanent model_not_found", r.Key, r.Err)
		}
	}
}

// A batch OpenAI refuses as a whole (here: its input file repeats a
// custom_id) fails; all its requests are missing, so the caller retries
// them.
func TestJobFailed(t *testing.T) {
	t.Parallel()
	srv, p := asyncSetup(t)
	b := provider.Batch{Model: "gpt-test", Requests: []provider.Request{{Key: "0", Input: "a"}, {Key: "0", Input: "b"}}}
	id, err := p.SubmitJob(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	st := pollDone(t, p, id)
	if st.State != "failed" || len(st.Results) != 0 || !st.Failed {
		t.Errorf("PollJob = %+v, want state failed, Failed and no results", st)
	}
	if len(st.Errors) != 1 || !strings.Contains(st.Errors[0], "duplicate_custom_id") || !strings.Contains(st.Errors[0], "input line 2") {
		t.Errorf("Errors = %q, want the input file's error with its line", st.Errors)
	}
	if srv.Jobs() != 1 {
		t.Errorf("fake has %d jobs, want 1", srv.Jobs())
	}
}

// A job OpenAI fails while it runs (FailJob: the enqueued token limit) is
// Failed with the API's reason; its input file is deleted once it ended.
func TestJobFailedWhileRunning(t *testing.T) {
	t.Parallel()
	srv, p := asyncSetup(t)
	id, err := p.SubmitJob(t.Context(), provider.Batch{Model: "gpt-test", Requests: []provider.Request{{Key: "0", Input: "a"}, {Key: "1", Input: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.FailJob(id); err != nil {
		t.Fatal(err)
	}
	st := pollDone(t, p, id)
	if st.State != "failed" || !st.Failed || len(st.Results) != 0 {
		t.Errorf("PollJob = %+v, want failed with no results", st)
	}
	if len(st.Errors) != 1 || !strings.HasPrefix(st.Errors[0], "token_limit_exceeded: Enqueued token limit reached") {
		t.Errorf("Errors = %q, want the batch's error", st.Errors)
	}
	if err := srv.FailJob(id); err == nil {
		t.Error("FailJob of a failed job: nil error")
	}
	if len(srv.DeletedFiles()) != 1 {
		t.Errorf("deleted files %v, want the input file", srv.DeletedFiles())
	}
}

// Once a job has ended, its input file is deleted (a later poll finds it
// gone, which is no failure); the output file stays, so that a later poll
// reads the results again. A failed deletion is counted, not returned.
func TestJobInputFileDeleted(t *testing.T) {
	t.Parallel()
	srv, p := asyncSetup(t)
	b := provider.Batch{Model: "gpt-test", Requests: []provider.Request{{Key: "0", Input: "a"}, {Key: "1", Input: "b"}}}
	id, err := p.SubmitJob(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := p.PollJob(t.Context(), id); err != nil || st.Done {
		t.Fatalf("PollJob = %+v, %v; want running", st, err)
	}
	if got := srv.DeletedFiles(); got != nil {
		t.Fatalf("files deleted while the job runs: %v", got)
	}
	srv.CompleteJobs()
	for range 2 {
		st := pollDone(t, p, id)
		if st.Failed || st.Errors != nil || len(st.Results) != 2 {
			t.Errorf("PollJob = %+v, want 2 results, not Failed", st)
		}
	}
	deleted := srv.DeletedFiles()
	if len(deleted) != 1 || srv.HasFile(deleted[0]) {
		t.Fatalf("deleted files %v, want the input file once", deleted)
	}
	if req := srv.JobRequests(id); len(req) != 2 {
		t.Errorf("job requests %v", req)
	}
	if p.FileDeleteFailures() != 0 {
		t.Errorf("FileDeleteFailures = %d, want 0 (a file already gone is no failure)", p.FileDeleteFailures())
	}

	// A deletion that fails is counted, and the poll still succeeds.
	id, err = p.SubmitJob(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	srv.CompleteJobs()
	var calls atomic.Int64
	failDelete := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Method == http.MethodDelete {
			calls.Add(1)
			return &http.Response{StatusCode: http.StatusInternalServerError, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
		}
		return http.DefaultTransport.RoundTrip(r)
	})
	q, err := openai.New(openai.Config{APIKey: testKey, BaseURL: srv.URL, Mode: openai.ModeAsync, HTTPClient: &http.Client{Transport: failDelete}})
	if err != nil {
		t.Fatal(err)
	}
	if st := pollDone(t, q, id); len(st.Results) != 2 {
		t.Errorf("PollJob = %+v, want the results despite the failed deletion", st)
	}
	if calls.Load() != 1 || q.FileDeleteFailures() != 1 {
		t.Errorf("%d deletions tried, FileDeleteFailures = %d; want 1 and 1", calls.Load(), q.FileDeleteFailures())
	}
}

// PollJob reports the states before the end as not done, without results.
func TestJobStates(t *testing.T) {
	t.Parallel()
	srv, p := asyncSetup(t, openaitest.WithCompleteAfter(3))
	b := provider.Batch{Model: "gpt-test", Requests: []provider.Request{{Key: "0", Input: "a"}}}
	id, err := p.SubmitJob(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for range 3 {
		st, err := p.PollJob(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, fmt.Sprintf("%s/%v/%d", st.State, st.Done, len(st.Results)))
	}
	if want := "[in_progress/false/0 in_progress/false/0 completed/true/1]"; fmt.Sprint(states) != want {
		t.Errorf("states %v, want %s", states, want)
	}
	if err := p.CancelJob(t.Context(), id); err != nil {
		t.Errorf("CancelJob of a completed job: %v", err)
	}
	if srv.Cancelled() != 0 {
		t.Errorf("fake cancelled %d jobs", srv.Cancelled())
	}
}

// Cancelling a job twice, the second time while it is cancelling, is not an
// error and cancels it once.
func TestCancelJobTwice(t *testing.T) {
	t.Parallel()
	srv, p := asyncSetup(t)
	id, err := p.SubmitJob(t.Context(), provider.Batch{Model: "gpt-test", Requests: []provider.Request{{Key: "0", Input: "a"}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := p.CancelJob(t.Context(), id); err != nil {
			t.Fatalf("CancelJob %d: %v", i, err)
		}
	}
	if srv.Cancelled() != 1 {
		t.Errorf("fake cancelled %d jobs, want 1", srv.Cancelled())
	}
	if st := pollDone(t, p, id); st.State != "cancelled" || len(st.Results) != 0 {
		t.Errorf("PollJob = %+v, want cancelled with no results", st)
	}
}

// A failure after the upload (creating the batch) is reported, classified.
func TestSubmitJobCreateFails(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer(openaitest.WithAPIKey(testKey))
	t.Cleanup(srv.Close)
	var uploads atomic.Int64
	// Once the upload has been answered, the next call (the batch
	// creation) fails.
	failAfterUpload := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		res, err := http.DefaultTransport.RoundTrip(r)
		if err == nil && strings.HasSuffix(r.URL.Path, "/files") {
			uploads.Add(1)
			srv.FailNext(1, http.StatusTooManyRequests)
		}
		return res, err
	})
	p, err := openai.New(openai.Config{APIKey: testKey, BaseURL: srv.URL, Mode: openai.ModeAsync, HTTPClient: &http.Client{Transport: failAfterUpload}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.SubmitJob(t.Context(), provider.Batch{Model: "gpt-test", Requests: []provider.Request{{Key: "0", Input: "a"}}})
	if err == nil || uploads.Load() != 1 {
		t.Fatalf("SubmitJob = %v after %d uploads; want the 429 of the batch creation", err, uploads.Load())
	}
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusTooManyRequests || provider.IsPermanent(err) || !strings.Contains(err.Error(), "create batch") {
		t.Errorf("error %v, want a transient 429 while creating the batch", err)
	}
	if strings.Contains(err.Error(), testKey) {
		t.Errorf("error %q contains the API key", err)
	}
	if srv.Jobs() != 0 {
		t.Errorf("fake has %d jobs, want 0", srv.Jobs())
	}
	if deleted := srv.DeletedFiles(); len(deleted) != 1 || srv.HasFile(deleted[0]) {
		t.Errorf("deleted files %v, want the uploaded input file", deleted)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
