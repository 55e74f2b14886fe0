package openai_test

import (
	"bytes"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
)

// setupSingle starts a fake API and a single-mode Provider that talks to it.
func setupSingle(t *testing.T, opts ...openaitest.Option) (*openaitest.Server, *openai.Provider) {
	t.Helper()
	srv := openaitest.NewServer(opts...)
	t.Cleanup(srv.Close)
	p, err := openai.New(openai.Config{APIKey: testKey, BaseURL: srv.URL, Mode: openai.ModeSingle, Concurrency: 2})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return srv, p
}

func TestModeDefault(t *testing.T) {
	t.Parallel()
	p, err := openai.New(openai.Config{APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode() != openai.ModeCombined {
		t.Errorf("Mode() = %q, want %q", p.Mode(), openai.ModeCombined)
	}
}

func TestSingleRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		instructions string
		maxTokens    []int
	}{
		{"instructions and caps", "Be terse.", []int{100, 0, 70}},
		{"no instructions", "", []int{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, p := setupSingle(t)
			b := newBatch(len(tt.maxTokens))
			b.Instructions = tt.instructions
			for i, m := range tt.maxTokens {
				b.Requests[i].MaxOutputTokens = m
			}
			results, err := p.Complete(t.Context(), b)
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			checkResults(t, b, results, []string{"k0", "k1", "k2"}[:len(tt.maxTokens)])
			reqs := srv.Requests()
			if len(reqs) != len(b.Requests) {
				t.Fatalf("server got %d requests, want %d", len(reqs), len(b.Requests))
			}
			var gotInputs, wantInputs []string
			for _, req := range reqs {
				if req.ResponseFormat != nil {
					t.Errorf("single call sent response_format %s", req.ResponseFormat)
				}
				if req.Model != b.Model {
					t.Errorf("model = %q, want %q", req.Model, b.Model)
				}
				wantRoles := []string{"user"}
				if tt.instructions != "" {
					wantRoles = []string{"system", "user"}
				}
				var roles []string
				for _, m := range req.Messages {
					roles = append(roles, m.Role)
				}
				if !slices.Equal(roles, wantRoles) {
					t.Fatalf("roles = %v, want %v", roles, wantRoles)
				}
				if tt.instructions != "" && req.Messages[0].Content != tt.instructions {
					t.Errorf("system message = %q, want exactly the instructions", req.Messages[0].Content)
				}
				input := req.Messages[len(req.Messages)-1].Content
				gotInputs = append(gotInputs, input)
				for _, r := range b.Requests {
					if r.Input == input && int64(r.MaxOutputTokens) != req.MaxCompletionTokens {
						t.Errorf("input %q: max_completion_tokens = %d, want %d", input, req.MaxCompletionTokens, r.MaxOutputTokens)
					}
					if r.Input == input && r.MaxOutputTokens == 0 && bytes.Contains(req.Body, []byte("max_completion_tokens")) {
						t.Errorf("max_completion_tokens sent without a cap: %s", req.Body)
					}
				}
			}
			for _, r := range b.Requests {
				wantInputs = append(wantInputs, r.Input)
			}
			slices.Sort(gotInputs)
			slices.Sort(wantInputs)
			if !slices.Equal(gotInputs, wantInputs) {
				t.Errorf("inputs sent = %q, want %q", gotInputs, wantInputs)
			}
		})
	}
}

func TestSingleUsage(t *testing.T) {
	t.Parallel()
	srv, p := setupSingle(t)
	b := newBatch(1)
	b.Requests[0].Input = strings.Repeat("x", 400)
	results, err := p.Complete(t.Context(), b)
	if err != nil || len(results) != 1 {
		t.Fatalf("Complete = %v, %v", results, err)
	}
	// The fake counts a token per 4 bytes of the messages and of the answer.
	want := provider.Usage{
		InputTokens:  int64(len(b.Instructions)+len(b.Requests[0].Input)+3) / 4,
		OutputTokens: int64(len(openaitest.Answer(b.Requests[0].Input))+3) / 4,
	}
	if results[0].Usage != want {
		t.Errorf("usage = %+v, want the call's %+v", results[0].Usage, want)
	}
	if srv.Calls() != 1 {
		t.Errorf("Calls() = %d", srv.Calls())
	}
}

func TestSingleAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		opts          []openaitest.Option
		arrange       func(*openaitest.Server)
		wantErr       bool
		wantWhole     bool // the error is Complete's, not the request's
		wantPermanent bool
		wantScope     provider.Scope
		wantStatus    int
		wantText      string
	}{
		{name: "refusal is permanent", arrange: func(s *openaitest.Server) { s.RefuseNext(1) }, wantErr: true, wantPermanent: true, wantScope: provider.ScopeRequest, wantText: "refused"},
		{name: "refused input", arrange: func(s *openaitest.Server) { s.RefuseInput(newBatch(1).Requests[0].Input) }, wantErr: true, wantPermanent: true, wantScope: provider.ScopeRequest, wantText: "refused"},
		{name: "cut off answer is kept", arrange: func(s *openaitest.Server) { s.TruncateNext(1) }},
		{name: "rejected", arrange: func(s *openaitest.Server) { s.RejectInput(newBatch(1).Requests[0].Input, false) }, wantErr: true, wantPermanent: true, wantScope: provider.ScopeRequest, wantStatus: 400, wantText: "invalid_prompt"},
		{name: "bad request", arrange: failNext(400), wantErr: true, wantPermanent: true, wantScope: provider.ScopeRequest, wantStatus: 400},
		{name: "too large", arrange: failNext(413), wantErr: true, wantPermanent: true, wantScope: provider.ScopeRequest, wantStatus: 413},
		{name: "wrong key", opts: []openaitest.Option{openaitest.WithAPIKey("sk-other")}, wantErr: true, wantWhole: true, wantScope: provider.ScopeProvider, wantStatus: 401, wantText: "invalid_api_key"},
		{name: "server error", arrange: failNext(500), wantErr: true, wantWhole: true, wantScope: provider.ScopeProvider, wantStatus: 500},
		{name: "rate limit", arrange: failNext(429), wantErr: true, wantWhole: true, wantScope: provider.ScopeProvider, wantStatus: 429},
		{name: "unknown model", opts: []openaitest.Option{openaitest.WithUnknownModels("gpt-test")}, wantErr: true, wantWhole: true, wantPermanent: true, wantScope: provider.ScopeUnknown, wantStatus: 404, wantText: "model_not_found"},
		{name: "no choices", arrange: func(s *openaitest.Server) { s.OmitInput(newBatch(1).Requests[0].Input) }, wantErr: true, wantScope: provider.ScopeRequest, wantText: "no choices"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, p := setupSingle(t, tt.opts...)
			if tt.arrange != nil {
				tt.arrange(srv)
			}
			b := newBatch(1)
			results, err := p.Complete(t.Context(), b)
			if tt.wantWhole {
				if err == nil || results != nil {
					t.Fatalf("Complete = %+v, %v; want no results and an error for the whole batch", results, err)
				}
				results = []provider.Result{{Key: "k0", Err: err}}
			} else if err != nil || len(results) != 1 || results[0].Key != "k0" {
				t.Fatalf("Complete = %+v, %v; want one result for k0", results, err)
			}
			r := results[0]
			if !tt.wantErr {
				want := openaitest.Answer(b.Requests[0].Input)
				if r.Err != nil || r.Output != want[:len(want)/2] {
					t.Errorf("result = %q, %v; want the cut-off answer %q", r.Output, r.Err, want[:len(want)/2])
				}
				return
			}
			if r.Err == nil {
				t.Fatalf("result = %q, want an error", r.Output)
			}
			var pe *provider.Error
			if !errors.As(r.Err, &pe) || pe.Permanent != tt.wantPermanent || pe.StatusCode != tt.wantStatus || pe.Scope != tt.wantScope {
				t.Errorf("Err = %v, want permanent %v, scope %v, status %d", r.Err, tt.wantPermanent, tt.wantScope, tt.wantStatus)
			}
			if errors.Is(r.Err, provider.ErrUnknownModel) != (tt.name == "unknown model") {
				t.Errorf("Err = %v: wraps ErrUnknownModel %v", r.Err, errors.Is(r.Err, provider.ErrUnknownModel))
			}
			msg := r.Err.Error()
			if !strings.Contains(msg, tt.wantText) || !strings.HasPrefix(msg, `openai: chat completion for request "k0": `) || strings.Contains(msg, testKey) {
				t.Errorf("Err = %q, want it to name the request, mention %q, and hide the key", msg, tt.wantText)
			}
		})
	}
}

// TestSingleAllFail checks that failures of the requests' own stay per
// request even when every call fails (the caller dead-letters or retries
// each on its own), while failures of the provider's fail the batch.
func TestSingleAllFail(t *testing.T) {
	t.Parallel()
	t.Run("rejected", func(t *testing.T) {
		t.Parallel()
		srv, p := setupSingle(t)
		srv.FailNext(3, http.StatusBadRequest)
		results, err := p.Complete(t.Context(), newBatch(3))
		if err != nil {
			t.Fatalf("Complete: %v", err)
		}
		if len(results) != 3 {
			t.Fatalf("got %d results, want 3", len(results))
		}
		for _, r := range results {
			if !provider.IsPermanent(r.Err) || provider.ScopeOf(r.Err) != provider.ScopeRequest {
				t.Errorf("key %s: Err = %v, want permanent, ScopeRequest", r.Key, r.Err)
			}
		}
	})
	t.Run("outage", func(t *testing.T) {
		t.Parallel()
		srv, p := setupSingle(t)
		srv.FailFor(time.Hour, http.StatusServiceUnavailable)
		results, err := p.Complete(t.Context(), newBatch(3))
		if err == nil || results != nil {
			t.Fatalf("Complete = %v, %v; want the outage as the batch's error", results, err)
		}
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Scope != provider.ScopeProvider || pe.StatusCode != 503 || pe.Permanent {
			t.Errorf("error %v, want a transient ScopeProvider 503", err)
		}
	})
	t.Run("outage and an answer", func(t *testing.T) {
		t.Parallel()
		srv, p := setupSingle(t)
		srv.FailNext(2, http.StatusServiceUnavailable)
		results, err := p.Complete(t.Context(), newBatch(3))
		if err != nil || len(results) != 3 {
			t.Fatalf("Complete = %v, %v; want 3 results: one call was answered", results, err)
		}
		var failed int
		for _, r := range results {
			if r.Err != nil {
				failed++
				if provider.ScopeOf(r.Err) != provider.ScopeProvider {
					t.Errorf("key %s: Err = %v, want ScopeProvider", r.Key, r.Err)
				}
			}
		}
		if failed != 2 {
			t.Errorf("%d failed, want 2", failed)
		}
	})
}

// TestSingleOutputLimit checks a plain call's max_completion_tokens is the
// request's own cap, else the batch's budget, and that an answer cut off at
// it is still the request's answer.
func TestSingleOutputLimit(t *testing.T) {
	t.Parallel()
	srv, p := setupSingle(t)
	b := newBatch(3)
	b.MaxOutputTokens = 50
	b.Requests[0].MaxOutputTokens = 3 // the answer is longer: cut off
	b.Requests[1].MaxOutputTokens = 40
	results, err := p.Complete(t.Context(), b)
	if err != nil || len(results) != 3 {
		t.Fatalf("Complete = %v, %v", results, err)
	}
	want := openaitest.Answer(b.Requests[0].Input)[:12]
	if r := results[0]; r.Err != nil || r.Output != want {
		t.Errorf("cut-off answer = %q, %v; want %q, no error", r.Output, r.Err, want)
	}
	for _, r := range results[1:] {
		if r.Err != nil || r.Output != openaitest.Answer(b.Requests[r.Key[1]-'0'].Input) {
			t.Errorf("key %s: %q, %v", r.Key, r.Output, r.Err)
		}
	}
	limits := map[string]int64{}
	for _, req := range srv.Requests() {
		limits[req.Messages[len(req.Messages)-1].Content] = req.MaxCompletionTokens
	}
	for i, want := range []int64{3, 40, 50} {
		if got := limits[b.Requests[i].Input]; got != want {
			t.Errorf("request %d: max_completion_tokens = %d, want %d", i, got, want)
		}
	}
}
