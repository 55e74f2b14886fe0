package anthropic_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/anthropic"
	"github.com/aibatch/aibatch/provider/anthropictest"
)

// pollDone polls job id once and requires it to be done.
func pollDone(t *testing.T, p *anthropic.Provider, id string) provider.JobStatus {
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

func TestSubmitJobRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		instructions  string
		maxOutput     []int
		wantMaxTokens []int64
	}{
		// Config: MaxTokens 300 when a request sets none, capped at 1000.
		{"instructions and caps", "Translate to French.", []int{0, 50, 5000}, []int64{300, 50, 1000}},
		{"no instructions", "", []int{0}, []int64{300}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, p := setup(t, anthropic.Config{Mode: anthropic.ModeAsync, MaxTokens: 300, MaxCallTokens: 1000})
			b := provider.Batch{ID: "b1", Model: "claude-test", Instructions: tt.instructions}
			for i, mt := range tt.maxOutput {
				b.Requests = append(b.Requests, provider.Request{Key: fmt.Sprint(i), Input: fmt.Sprintf("say <%d> & \"more\"", i), MaxOutputTokens: mt})
			}
			id, err := p.SubmitJob(t.Context(), b)
			if err != nil {
				t.Fatalf("SubmitJob: %v", err)
			}
			reqs := srv.BatchRequests(id)
			if len(reqs) != len(b.Requests) {
				t.Fatalf("batch has %d requests, want %d", len(reqs), len(b.Requests))
			}
			for i, r := range reqs {
				want := b.Requests[i]
				if r.CustomID != want.Key || r.Model != b.Model || r.System != tt.instructions || r.MaxTokens != tt.wantMaxTokens[i] {
					t.Errorf("request %d: custom_id, model, system, max_tokens = %q, %q, %q, %d; want %q, %q, %q, %d",
						i, r.CustomID, r.Model, r.System, r.MaxTokens, want.Key, b.Model, tt.instructions, tt.wantMaxTokens[i])
				}
				if len(r.Messages) != 1 || r.Messages[0] != (anthropictest.Message{Role: "user", Content: want.Input}) {
					t.Errorf("request %d: messages %+v, want one user message %q", i, r.Messages, want.Input)
				}
				if len(r.Tools) != 0 || r.ToolChoice != nil {
					t.Errorf("request %d: tools %+v, tool_choice %+v; want none", i, r.Tools, r.ToolChoice)
				}
				if got := r.Header.Get("x-api-key"); got != testKey {
					t.Errorf("request %d: x-api-key %q", i, got)
				}
			}
		})
	}
}

func TestJobNotAsync(t *testing.T) {
	t.Parallel()
	for _, mode := range []anthropic.Mode{anthropic.ModeCombined, anthropic.ModeSingle} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			srv, p := setup(t, anthropic.Config{Mode: mode})
			_, subErr := p.SubmitJob(t.Context(), provider.Batch{Model: "m", Requests: []provider.Request{{Key: "0", Input: "x"}}})
			_, pollErr := p.PollJob(t.Context(), "msgbatch_1")
			cancelErr := p.CancelJob(t.Context(), "msgbatch_1")
			for name, err := range map[string]error{"SubmitJob": subErr, "PollJob": pollErr, "CancelJob": cancelErr} {
				if !errors.Is(err, anthropic.ErrNotAsync) || !provider.IsPermanent(err) {
					t.Errorf("%s: %v, want a permanent ErrNotAsync", name, err)
				}
			}
			if srv.Jobs() != 0 || srv.Calls() != 0 {
				t.Errorf("fake got %d batches and %d calls, want none", srv.Jobs(), srv.Calls())
			}
		})
	}
}

func TestJobErroredTypes(t *testing.T) {
	t.Parallel()
	// A request's own rejection is permanent, ScopeRequest; the account's
	// and the API's troubles (a key, billing, access, load) are transient,
	// ScopeProvider, as for a synchronous call.
	tests := []struct {
		errType       string
		wantPermanent bool
		wantScope     provider.Scope
	}{
		{"invalid_request_error", true, provider.ScopeRequest},
		{"authentication_error", false, provider.ScopeProvider},
		{"permission_error", false, provider.ScopeProvider},
		{"not_found_error", true, provider.ScopeRequest},
		{"billing_error", false, provider.ScopeProvider},
		{"request_too_large", true, provider.ScopeRequest},
		{"rate_limit_error", false, provider.ScopeProvider},
		{"timeout_error", false, provider.ScopeProvider},
		{"api_error", false, provider.ScopeProvider},
		{"overloaded_error", false, provider.ScopeProvider},
		{"a_new_error_type", false, provider.ScopeProvider},
	}
	for _, tt := range tests {
		t.Run(tt.errType, func(t *testing.T) {
			t.Parallel()
			srv, p := setup(t, anthropic.Config{Mode: anthropic.ModeAsync})
			srv.FailRequests(tt.errType, "b")
			id, err := p.SubmitJob(t.Context(), provider.Batch{Model: "claude-test", Requests: []provider.Request{{Key: "0", Input: "a"}, {Key: "1", Input: "b"}}})
			if err != nil {
				t.Fatal(err)
			}
			srv.CompleteBatches()
			st := pollDone(t, p, id)
			byKey := map[string]provider.Result{}
			for _, r := range st.Results {
				byKey[r.Key] = r
			}
			if r := byKey["0"]; r.Err != nil || r.Output != anthropictest.Answer("a") || r.Usage.InputTokens <= 0 || r.Usage.OutputTokens <= 0 {
				t.Errorf("key 0: %+v, want answered with usage", r)
			}
			r, ok := byKey["1"]
			if !ok || r.Err == nil {
				t.Fatalf("key 1: %+v, want errored %s", r, tt.errType)
			}
			var pe *provider.Error
			if !errors.As(r.Err, &pe) || pe.Permanent != tt.wantPermanent || pe.Scope != tt.wantScope || pe.StatusCode != 0 {
				t.Errorf("key 1: Err %v, want a *provider.Error, permanent %v, scope %v, no status", r.Err, tt.wantPermanent, tt.wantScope)
			}
			for _, want := range []string{id, `"1"`, tt.errType} {
				if !strings.Contains(r.Err.Error(), want) {
					t.Errorf("key 1: Err %q does not mention %s", r.Err, want)
				}
			}
		})
	}
}

func TestJobUnknownModel(t *testing.T) {
	t.Parallel()
	srv, p := setup(t, anthropic.Config{Mode: anthropic.ModeAsync}, anthropictest.WithUnknownModels("claude-gone"))
	id, err := p.SubmitJob(t.Context(), provider.Batch{Model: "claude-gone", Requests: []provider.Request{{Key: "0", Input: "a"}, {Key: "1", Input: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	srv.CompleteBatches()
	st := pollDone(t, p, id)
	if len(st.Results) != 2 {
		t.Fatalf("results %+v, want one error per request", st.Results)
	}
	for _, r := range st.Results {
		if !provider.IsPermanent(r.Err) || !errors.Is(r.Err, provider.ErrUnknownModel) || !strings.Contains(fmt.Sprint(r.Err), "not_found_error") {
			t.Errorf("key %q: Err %v, want permanent not_found_error wrapping ErrUnknownModel", r.Key, r.Err)
		}
	}
}

// A key the API does not accept as a custom_id fails the submission,
// permanently.
func TestSubmitJobBadKey(t *testing.T) {
	t.Parallel()
	srv, p := setup(t, anthropic.Config{Mode: anthropic.ModeAsync})
	_, err := p.SubmitJob(t.Context(), provider.Batch{Model: "claude-test", Requests: []provider.Request{{Key: "not/valid", Input: "a"}}})
	var pe *provider.Error
	if !errors.As(err, &pe) || !pe.Permanent || pe.StatusCode != 400 {
		t.Errorf("SubmitJob: %v, want a permanent HTTP 400", err)
	}
	if srv.Jobs() != 0 {
		t.Errorf("fake has %d batches", srv.Jobs())
	}
}

// PollJob reports the states before the end as not done, without results.
func TestJobStates(t *testing.T) {
	t.Parallel()
	srv, p := setup(t, anthropic.Config{Mode: anthropic.ModeAsync}, anthropictest.WithCompleteAfter(3))
	id, err := p.SubmitJob(t.Context(), provider.Batch{Model: "claude-test", Requests: []provider.Request{{Key: "0", Input: "a"}}})
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
	if want := "[in_progress/false/0 in_progress/false/0 ended/true/1]"; fmt.Sprint(states) != want {
		t.Errorf("states %v, want %s", states, want)
	}
	if err := p.CancelJob(t.Context(), id); err != nil {
		t.Errorf("CancelJob of an ended batch: %v", err)
	}
	if srv.Cancelled() != 0 {
		t.Errorf("fake cancelled %d batches", srv.Cancelled())
	}
}

// Cancelling a batch twice, the second time while it is canceling, is not
// an error and cancels it once; its requests end canceled (left out).
func TestCancelJobTwice(t *testing.T) {
	t.Parallel()
	srv, p := setup(t, anthropic.Config{Mode: anthropic.ModeAsync})
	id, err := p.SubmitJob(t.Context(), provider.Batch{Model: "claude-test", Requests: []provider.Request{{Key: "0", Input: "a"}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := p.CancelJob(t.Context(), id); err != nil {
			t.Fatalf("CancelJob %d: %v", i, err)
		}
	}
	if srv.Cancelled() != 1 {
		t.Errorf("fake cancelled %d batches, want 1", srv.Cancelled())
	}
	if st := pollDone(t, p, id); st.State != "ended" || len(st.Results) != 0 {
		t.Errorf("PollJob = %+v, want ended with no results", st)
	}
}

// An expired or cancelled batch is Failed and counts the requests it never
// ran; a batch whose requests all errored is not, each request carrying
// its own error.
func TestJobFailedStates(t *testing.T) {
	t.Parallel()
	b := provider.Batch{Model: "claude-test", Requests: []provider.Request{{Key: "0", Input: "a"}, {Key: "1", Input: "b"}, {Key: "2", Input: "c"}}}
	t.Run("expired", func(t *testing.T) {
		t.Parallel()
		srv, p := setup(t, anthropic.Config{Mode: anthropic.ModeAsync})
		id, err := p.SubmitJob(t.Context(), b)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.ExpireBatch(id, 1); err != nil {
			t.Fatal(err)
		}
		st := pollDone(t, p, id)
		if !st.Failed || len(st.Results) != 1 || !slices.Equal(st.Errors, []string{"expired: 2 requests not run before the batch expired"}) {
			t.Errorf("PollJob = %+v, want Failed with 1 result and the count of the expired", st)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		t.Parallel()
		_, p := setup(t, anthropic.Config{Mode: anthropic.ModeAsync})
		id, err := p.SubmitJob(t.Context(), b)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.CancelJob(t.Context(), id); err != nil {
			t.Fatal(err)
		}
		if st, err := p.PollJob(t.Context(), id); err != nil || !st.Done {
			t.Fatalf("PollJob = %+v, %v; want ended", st, err)
		}
		st := pollDone(t, p, id)
		if !st.Failed || len(st.Results) != 0 || !slices.Equal(st.Errors, []string{"canceled: 3 requests not run"}) {
			t.Errorf("PollJob = %+v, want Failed with the count of the canceled", st)
		}
	})
	t.Run("every request errored", func(t *testing.T) {
		t.Parallel()
		srv, p := setup(t, anthropic.Config{Mode: anthropic.ModeAsync})
		id, err := p.SubmitJob(t.Context(), b)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.FailBatch(id, "overloaded_error"); err != nil {
			t.Fatal(err)
		}
		st := pollDone(t, p, id)
		if st.Failed || st.Errors != nil || len(st.Results) != 3 {
			t.Fatalf("PollJob = %+v, want 3 error results, not Failed", st)
		}
		for _, r := range st.Results {
			if provider.ScopeOf(r.Err) != provider.ScopeProvider || provider.IsPermanent(r.Err) {
				t.Errorf("key %s: Err %v, want transient ScopeProvider", r.Key, r.Err)
			}
		}
	})
}
