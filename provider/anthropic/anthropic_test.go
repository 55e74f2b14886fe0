package anthropic_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/anthropic"
	"github.com/aibatch/aibatch/provider/anthropictest"
)

const testKey = "sk-ant-test-0123456789abcdef"

// setup starts a fake API and a Provider for cfg that talks to it; cfg's
// APIKey and BaseURL are filled in.
func setup(t *testing.T, cfg anthropic.Config, opts ...anthropictest.Option) (*anthropictest.Server, *anthropic.Provider) {
	t.Helper()
	srv := anthropictest.NewServer(opts...)
	t.Cleanup(srv.Close)
	cfg.APIKey, cfg.BaseURL = testKey, srv.URL
	p, err := anthropic.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return srv, p
}

func newBatch(n int) provider.Batch {
	b := provider.Batch{ID: "b1", Model: "claude-test", Instructions: "Translate to French."}
	for i := range n {
		b.Requests = append(b.Requests, provider.Request{Key: fmt.Sprintf("k%d", i), Input: fmt.Sprintf("input <%d> & \"more\"", i)})
	}
	return b
}

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     anthropic.Config
		wantErr string
	}{
		{"valid", anthropic.Config{APIKey: "k"}, ""},
		{"valid base URL", anthropic.Config{APIKey: "k", BaseURL: "http://127.0.0.1:8090"}, ""},
		{"single", anthropic.Config{APIKey: "k", Mode: anthropic.ModeSingle, Concurrency: 2, MaxTokens: 10, MaxCallTokens: 100}, ""},
		{"no key", anthropic.Config{}, "APIKey"},
		{"relative base URL", anthropic.Config{APIKey: "k", BaseURL: "/v1"}, "BaseURL"},
		{"bad scheme", anthropic.Config{APIKey: "k", BaseURL: "ftp://host"}, "BaseURL"},
		{"unparsable", anthropic.Config{APIKey: "k", BaseURL: "http://[::1"}, "BaseURL"},
		{"async", anthropic.Config{APIKey: "k", Mode: anthropic.ModeAsync}, ""},
		{"unknown mode", anthropic.Config{APIKey: "k", Mode: "bulk"}, "Mode"},
		{"negative concurrency", anthropic.Config{APIKey: "k", Concurrency: -1}, "Concurrency"},
		{"negative max tokens", anthropic.Config{APIKey: "k", MaxTokens: -1}, "MaxTokens"},
		{"negative max call tokens", anthropic.Config{APIKey: "k", MaxCallTokens: -5}, "MaxCallTokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := anthropic.New(tt.cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New: %v", err)
			case tt.wantErr == "" && p.Name() != "anthropic":
				t.Errorf("Name() = %q", p.Name())
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("New error = %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestModeDefault(t *testing.T) {
	t.Parallel()
	p, err := anthropic.New(anthropic.Config{APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode() != anthropic.ModeCombined {
		t.Errorf("Mode() = %q, want %q", p.Mode(), anthropic.ModeCombined)
	}
}

// TestCombinedRequest checks the wire request of a combined call.
func TestCombinedRequest(t *testing.T) {
	t.Parallel()
	// max_tokens is the batch's planned budget (or Config.MaxTokens), never
	// a sum over the requests' caps.
	tests := []struct {
		name          string
		instructions  string
		maxTokens     []int
		budget        int
		cfg           anthropic.Config
		wantMaxTokens int64
	}{
		{"defaults", "Be terse.", []int{0, 0, 0}, 0, anthropic.Config{}, anthropic.DefaultMaxTokens},
		{"request caps are not summed", "", []int{100, 0, 50}, 0, anthropic.Config{MaxTokens: 500}, 500},
		{"the batch's budget", "", []int{100, 0, 50}, 3000, anthropic.Config{MaxTokens: 500}, 3000},
		{"a large budget", "", []int{5000, 5000}, 64000, anthropic.Config{}, 64000},
		{"own call cap", "", []int{0, 0}, 2000, anthropic.Config{MaxCallTokens: 500}, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, p := setup(t, tt.cfg)
			b := newBatch(len(tt.maxTokens))
			b.Instructions = tt.instructions
			b.MaxOutputTokens = tt.budget
			for i, m := range tt.maxTokens {
				b.Requests[i].MaxOutputTokens = m
			}
			if _, err := p.Complete(t.Context(), b); err != nil {
				t.Fatalf("Complete: %v", err)
			}
			reqs := srv.Requests()
			if len(reqs) != 1 {
				t.Fatalf("server got %d requests, want 1", len(reqs))
			}
			req := reqs[0]
			if got := req.Header.Get("x-api-key"); got != testKey {
				t.Errorf("x-api-key = %q", got)
			}
			if got := req.Header.Get("anthropic-version"); got != anthropictest.Version {
				t.Errorf("anthropic-version = %q, want %q", got, anthropictest.Version)
			}
			if req.Model != b.Model || req.MaxTokens != tt.wantMaxTokens {
				t.Errorf("model, max_tokens = %q, %d; want %q, %d", req.Model, req.MaxTokens, b.Model, tt.wantMaxTokens)
			}
			if !strings.HasPrefix(req.System, tt.instructions) || !strings.Contains(req.System, anthropic.ToolName) {
				t.Errorf("system = %q, want the instructions then the format line", req.System)
			}
			if tc := req.ToolChoice; tc == nil || tc.Type != "tool" || tc.Name != anthropic.ToolName || !tc.DisableParallelToolUse {
				t.Errorf("tool_choice = %+v, want the batch tool forced", tc)
			}
			if len(req.Tools) != 1 || req.Tools[0].Name != anthropic.ToolName || req.Tools[0].Description == "" {
				t.Errorf("tools = %+v", req.Tools)
			}
			var keys []string
			for _, r := range b.Requests {
				keys = append(keys, r.Key)
			}
			if !slices.Equal(req.IDEnum, keys) {
				t.Errorf("the input_schema's enum of ids = %q, want the batch's keys %q", req.IDEnum, keys)
			}
			if len(req.Messages) != 1 || req.Messages[0].Role != "user" {
				t.Fatalf("messages = %+v, want one user message", req.Messages)
			}
			var user struct {
				Items []anthropictest.Item `json:"items"`
			}
			if err := json.Unmarshal([]byte(req.Messages[0].Content), &user); err != nil {
				t.Fatalf("user message is not the items JSON: %v", err)
			}
			for i, it := range user.Items {
				if it.ID != b.Requests[i].Key || it.Input != b.Requests[i].Input {
					t.Errorf("item %d = %+v, want %+v", i, it, b.Requests[i])
				}
			}
		})
	}
}

func TestCombinedUsageSplit(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	srv := anthropictest.NewServer()
	t.Cleanup(srv.Close)
	p, err := anthropic.New(anthropic.Config{APIKey: testKey, BaseURL: srv.URL, HTTPClient: &http.Client{Transport: rec}})
	if err != nil {
		t.Fatal(err)
	}
	srv.DropItems(1)
	results, err := p.Complete(t.Context(), newBatch(4))
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	var answer struct {
		Usage struct {
			InputTokens  int64 `json:"input_tokens"`
			OutputTokens int64 `json:"output_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(rec.last(t), &answer); err != nil {
		t.Fatal(err)
	}
	if len(results) != 3 {
		t.Fatalf("got %d results, want 3", len(results))
	}
	var sum provider.Usage
	for _, r := range results {
		sum = sum.Add(r.Usage)
	}
	want := provider.Usage{InputTokens: answer.Usage.InputTokens, OutputTokens: answer.Usage.OutputTokens}
	if sum != want || want.InputTokens == 0 || want.OutputTokens == 0 {
		t.Errorf("usage sum = %+v, want the call's %+v", sum, want)
	}
}

// recorder is an http.RoundTripper that keeps every response body.
type recorder struct{ bodies [][]byte }

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(strings.NewReader(string(body)))
	r.bodies = append(r.bodies, body)
	return res, nil
}

func (r *recorder) last(t *testing.T) []byte {
	t.Helper()
	if len(r.bodies) == 0 {
		t.Fatal("no response recorded")
	}
	return r.bodies[len(r.bodies)-1]
}

// TestCombinedErrors covers failures specific to the Messages API; the
// conformance suite covers the common ones.
func TestCombinedErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		opts           []anthropictest.Option
		arrange        func(*anthropictest.Server)
		model          string
		wantPermanent  bool
		wantScope      provider.Scope
		wantStatus     int
		wantRetryAfter time.Duration
		wantText       string
	}{
		{name: "529 overloaded", arrange: func(s *anthropictest.Server) { s.FailNext(1, 529) }, wantScope: provider.ScopeProvider, wantStatus: 529, wantText: "overloaded_error"},
		{name: "outage", arrange: func(s *anthropictest.Server) { s.FailFor(time.Hour, 500) }, wantScope: provider.ScopeProvider, wantStatus: 500, wantText: "api_error"},
		{name: "429 rate limit", arrange: func(s *anthropictest.Server) { s.FailNext(1, 429) }, wantScope: provider.ScopeProvider, wantStatus: 429, wantRetryAfter: time.Second, wantText: "rate_limit_error"},
		{name: "413 too large", arrange: func(s *anthropictest.Server) { s.FailNext(1, 413) }, wantPermanent: true, wantScope: provider.ScopeBatch, wantStatus: 413, wantText: "request_too_large"},
		{name: "wrong key", opts: []anthropictest.Option{anthropictest.WithAPIKey("sk-ant-other")}, wantScope: provider.ScopeProvider, wantStatus: 401, wantText: "authentication_error"},
		{name: "unknown model", model: "unknown-claude", wantPermanent: true, wantStatus: 404, wantText: "not_found_error"},
		{name: "404 of another kind", arrange: func(s *anthropictest.Server) { s.FailNext(1, 404) }, wantPermanent: true, wantStatus: 404, wantText: "not_found_error"},
		{name: "max_tokens", arrange: func(s *anthropictest.Server) { s.TruncateNext(1) }, wantPermanent: true, wantScope: provider.ScopeBatch, wantText: "max_tokens"},
		{name: "output cap", arrange: func(s *anthropictest.Server) { s.SetOutputCap(2) }, wantPermanent: true, wantScope: provider.ScopeBatch, wantText: "max_tokens"},
		{name: "refusal", arrange: func(s *anthropictest.Server) { s.RefuseNext(1) }, wantPermanent: true, wantScope: provider.ScopeBatch, wantText: "refus"},
		{name: "refused input", arrange: func(s *anthropictest.Server) { s.RefuseInput(newBatch(3).Requests[2].Input) }, wantPermanent: true, wantScope: provider.ScopeBatch, wantText: "general_harms"},
		{name: "tool not used", arrange: func(s *anthropictest.Server) { s.NoToolNext(1) }, wantScope: provider.ScopeBatch, wantText: "tool_use"},
		{name: "malformed body", arrange: func(s *anthropictest.Server) { s.SetMalformedNext(1) }, wantScope: provider.ScopeProvider},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, p := setup(t, anthropic.Config{}, tt.opts...)
			if tt.arrange != nil {
				tt.arrange(srv)
			}
			b := newBatch(3)
			if tt.model != "" {
				b.Model = tt.model
			}
			results, err := p.Complete(t.Context(), b)
			if err == nil {
				t.Fatalf("Complete = %v, nil; want an error", results)
			}
			checkError(t, err, "anthropic: messages: ", tt.wantPermanent, tt.wantStatus, tt.wantRetryAfter)
			if got := provider.ScopeOf(err); got != tt.wantScope {
				t.Errorf("error %v: scope %v, want %v", err, got, tt.wantScope)
			}
			if errors.Is(err, provider.ErrUnknownModel) != (tt.name == "unknown model") {
				t.Errorf("error %v: wraps ErrUnknownModel %v", err, errors.Is(err, provider.ErrUnknownModel))
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not mention %q", err, tt.wantText)
			}
			if got := srv.Calls(); got != 1 {
				t.Errorf("Calls() = %d, want 1 (SDK retries must be off)", got)
			}
		})
	}
}

// checkError checks err's classification, prefix, and that it hides the key.
func checkError(t *testing.T, err error, prefix string, wantPermanent bool, wantStatus int, wantRetryAfter time.Duration) {
	t.Helper()
	var pe *provider.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v is not a *provider.Error", err)
	}
	if provider.IsPermanent(err) != wantPermanent {
		t.Errorf("error %v: permanent = %v, want %v", err, provider.IsPermanent(err), wantPermanent)
	}
	if pe.StatusCode != wantStatus {
		t.Errorf("StatusCode = %d, want %d", pe.StatusCode, wantStatus)
	}
	if got := provider.RetryAfter(err); got != wantRetryAfter {
		t.Errorf("RetryAfter = %v, want %v", got, wantRetryAfter)
	}
	if !strings.HasPrefix(err.Error(), prefix) {
		t.Errorf("error %q does not start with %q", err, prefix)
	}
	if strings.Contains(err.Error(), testKey) {
		t.Errorf("error %q contains the API key", err)
	}
}

func TestSingleRequests(t *testing.T) {
	t.Parallel()
	srv, p := setup(t, anthropic.Config{Mode: anthropic.ModeSingle, MaxTokens: 77, MaxCallTokens: 1000})
	b := newBatch(3)
	b.Requests[1].MaxOutputTokens = 12
	b.Requests[2].MaxOutputTokens = 5000 // over MaxCallTokens
	results, err := p.Complete(t.Context(), b)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if len(results) != 3 {
		t.Fatalf("got %d results", len(results))
	}
	want := map[string]int64{b.Requests[0].Input: 77, b.Requests[1].Input: 12, b.Requests[2].Input: 1000}
	var inputs []string
	for _, req := range srv.Requests() {
		if len(req.Tools) != 0 || req.ToolChoice != nil {
			t.Errorf("single call declared tools %+v / %+v", req.Tools, req.ToolChoice)
		}
		if req.System != b.Instructions {
			t.Errorf("system = %q, want exactly the instructions", req.System)
		}
		if len(req.Messages) != 1 || req.Messages[0].Role != "user" {
			t.Fatalf("messages = %+v", req.Messages)
		}
		in := req.Messages[0].Content
		inputs = append(inputs, in)
		if req.MaxTokens != want[in] {
			t.Errorf("input %q: max_tokens = %d, want %d", in, req.MaxTokens, want[in])
		}
	}
	slices.Sort(inputs)
	if len(inputs) != 3 || inputs[0] != b.Requests[0].Input || inputs[2] != b.Requests[2].Input {
		t.Errorf("inputs sent = %q", inputs)
	}
	for _, r := range results {
		var in string
		for _, req := range b.Requests {
			if req.Key == r.Key {
				in = req.Input
			}
		}
		if r.Err != nil || r.Output != anthropictest.Answer(in) {
			t.Errorf("key %s: %q, %v", r.Key, r.Output, r.Err)
		}
	}
}

func TestSingleNoInstructions(t *testing.T) {
	t.Parallel()
	srv, p := setup(t, anthropic.Config{Mode: anthropic.ModeSingle})
	b := newBatch(1)
	b.Instructions = ""
	if _, err := p.Complete(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 || strings.Contains(string(reqs[0].Body), `"system"`) {
		t.Errorf("request sent a system prompt without instructions: %s", reqs[0].Body)
	}
	if reqs[0].MaxTokens != anthropic.DefaultMaxTokens {
		t.Errorf("max_tokens = %d, want %d", reqs[0].MaxTokens, anthropic.DefaultMaxTokens)
	}
}

func TestSingleAnswers(t *testing.T) {
	t.Parallel()
	in := newBatch(1).Requests[0].Input
	tests := []struct {
		name          string
		arrange       func(*anthropictest.Server)
		model         string
		wantOutput    string
		wantErr       bool
		wantWhole     bool // the error is Complete's, not the request's
		wantPermanent bool
		wantScope     provider.Scope
		wantStatus    int
		wantText      string
	}{
		{name: "refusal is permanent", arrange: func(s *anthropictest.Server) { s.RefuseNext(1) }, wantErr: true, wantPermanent: true, wantScope: provider.ScopeRequest, wantText: "refus"},
		{name: "refused input", arrange: func(s *anthropictest.Server) { s.RefuseInput(in) }, wantErr: true, wantPermanent: true, wantScope: provider.ScopeRequest, wantText: "refus"},
		{name: "max_tokens answer is kept", arrange: func(s *anthropictest.Server) { s.TruncateNext(1) }, wantOutput: anthropictest.Answer(in)[:len(anthropictest.Answer(in))/2]},
		{name: "no text", arrange: func(s *anthropictest.Server) { s.OmitInput(in) }, wantErr: true, wantScope: provider.ScopeRequest, wantText: "no text"},
		{name: "content filter", arrange: func(s *anthropictest.Server) { s.RejectInput(in, false) }, wantErr: true, wantPermanent: true, wantScope: provider.ScopeRequest, wantStatus: 400, wantText: "invalid_request_error"},
		{name: "too large", arrange: func(s *anthropictest.Server) { s.FailNext(1, 413) }, wantErr: true, wantPermanent: true, wantScope: provider.ScopeRequest, wantStatus: 413, wantText: "request_too_large"},
		{name: "overloaded", arrange: func(s *anthropictest.Server) { s.FailNext(1, 529) }, wantErr: true, wantWhole: true, wantScope: provider.ScopeProvider, wantStatus: 529, wantText: "overloaded_error"},
		{name: "wrong key", arrange: func(s *anthropictest.Server) { s.RequireKey("sk-ant-other") }, wantErr: true, wantWhole: true, wantScope: provider.ScopeProvider, wantStatus: 401, wantText: "authentication_error"},
		{name: "unknown model", arrange: func(*anthropictest.Server) {}, model: "unknown-claude", wantErr: true, wantWhole: true, wantPermanent: true, wantStatus: 404, wantText: "not_found_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, p := setup(t, anthropic.Config{Mode: anthropic.ModeSingle})
			tt.arrange(srv)
			b := newBatch(1)
			if tt.model != "" {
				b.Model = tt.model
			}
			results, err := p.Complete(t.Context(), b)
			if tt.wantWhole {
				if err == nil || results != nil {
					t.Fatalf("Complete = %+v, %v; want no results and an error for the whole batch", results, err)
				}
				if provider.ScopeOf(err) != tt.wantScope || errors.Is(err, provider.ErrUnknownModel) != (tt.model != "") {
					t.Errorf("error %v: scope %v, want %v; unknown model %v", err, provider.ScopeOf(err), tt.wantScope, tt.model != "")
				}
				checkError(t, err, `anthropic: messages for request "k0": `, tt.wantPermanent, tt.wantStatus, 0)
				return
			}
			if err != nil || len(results) != 1 || results[0].Key != "k0" {
				t.Fatalf("Complete = %+v, %v; want one result for k0", results, err)
			}
			r := results[0]
			if !tt.wantErr {
				if r.Err != nil || r.Output != tt.wantOutput {
					t.Errorf("result = %q, %v; want %q", r.Output, r.Err, tt.wantOutput)
				}
				return
			}
			if r.Err == nil {
				t.Fatalf("result = %q, want an error", r.Output)
			}
			checkError(t, r.Err, `anthropic: messages for request "k0": `, tt.wantPermanent, tt.wantStatus, 0)
			if got := provider.ScopeOf(r.Err); got != tt.wantScope {
				t.Errorf("Err %v: scope %v, want %v", r.Err, got, tt.wantScope)
			}
			if !strings.Contains(r.Err.Error(), tt.wantText) {
				t.Errorf("Err %q does not mention %q", r.Err, tt.wantText)
			}
		})
	}
}

func TestContext(t *testing.T) {
	t.Parallel()
	for _, mode := range []anthropic.Mode{anthropic.ModeCombined, anthropic.ModeSingle} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			_, p := setup(t, anthropic.Config{Mode: mode})
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			_, err := p.Complete(ctx, newBatch(2))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error = %v, want one wrapping context.Canceled", err)
			}
			checkError(t, err, "anthropic: messages: ", false, 0, 0)
		})
	}
}

// TestForeignErrors covers answers from something that is not the Anthropic
// API (a proxy, a load balancer) and network failures.
func TestForeignErrors(t *testing.T) {
	t.Parallel()
	t.Run("HTML 503 with retry-after", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "<html>overloaded</html>")
		}))
		t.Cleanup(srv.Close)
		p, err := anthropic.New(anthropic.Config{APIKey: testKey, BaseURL: srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Complete(t.Context(), newBatch(2))
		checkError(t, err, "anthropic: messages: ", false, http.StatusServiceUnavailable, 7*time.Second)
	})
	t.Run("tool input of another shape", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude-test",`+
				`"content":[{"type":"tool_use","id":"toolu_1","name":"batch_results","input":{"answers":[]}}],`+
				`"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":3}}`)
		}))
		t.Cleanup(srv.Close)
		p, err := anthropic.New(anthropic.Config{APIKey: testKey, BaseURL: srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Complete(t.Context(), newBatch(2))
		checkError(t, err, "anthropic: messages: ", false, 0, 0)
		if provider.ScopeOf(err) != provider.ScopeBatch {
			t.Errorf("error %v: scope %v, want batch", err, provider.ScopeOf(err))
		}
		if err != nil && !strings.Contains(err.Error(), `no "results"`) {
			t.Errorf("error %q does not say the results are missing", err)
		}
	})
	t.Run("connection refused, key in URL", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		p, err := anthropic.New(anthropic.Config{APIKey: testKey, BaseURL: srv.URL + "/" + testKey})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Complete(t.Context(), newBatch(2))
		checkError(t, err, "anthropic: messages: ", false, 0, 0)
	})
	t.Run("no model", func(t *testing.T) {
		t.Parallel()
		_, p := setup(t, anthropic.Config{})
		b := newBatch(1)
		b.Model = ""
		_, err := p.Complete(t.Context(), b)
		checkError(t, err, "anthropic: messages: ", true, 0, 0)
	})
}

// TestErrorMessages covers the error bodies that classify a failure beyond
// its status: a prompt too long is the call's shape (ScopeBatch), or the
// request's own in a one-request call; a 404 naming the model is an
// unknown model.
func TestErrorMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		status    int
		body      string
		wantScope provider.Scope
		wantModel bool
	}{
		{"prompt too long", 400, `{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}`, provider.ScopeBatch, false},
		{"other bad request", 400, `{"type":"error","error":{"type":"invalid_request_error","message":"messages: text content blocks must be non-empty"}}`, provider.ScopeUnknown, false},
		{"unknown model", 404, `{"type":"error","error":{"type":"not_found_error","message":"model: claude-3-opus-2024"}}`, provider.ScopeUnknown, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			t.Cleanup(srv.Close)
			p, err := anthropic.New(anthropic.Config{APIKey: testKey, BaseURL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Complete(t.Context(), newBatch(3))
			checkError(t, err, "anthropic: messages: ", true, tt.status, 0)
			if provider.ScopeOf(err) != tt.wantScope || errors.Is(err, provider.ErrUnknownModel) != tt.wantModel {
				t.Errorf("combined call: %v: scope %v, want %v; unknown model %v", err, provider.ScopeOf(err), tt.wantScope, tt.wantModel)
			}
			results, err := p.Complete(t.Context(), newBatch(1))
			if tt.wantModel {
				if err == nil || !errors.Is(err, provider.ErrUnknownModel) {
					t.Errorf("one-request batch = %v, %v; want the unknown model as the batch's error", results, err)
				}
				return
			}
			if err != nil || len(results) != 1 {
				t.Fatalf("one-request batch = %v, %v; want the request's own error", results, err)
			}
			if r := results[0]; !provider.IsPermanent(r.Err) || provider.ScopeOf(r.Err) != provider.ScopeRequest {
				t.Errorf("one-request batch: Err %v, want permanent ScopeRequest", r.Err)
			}
		})
	}
}

// TestOneRequestBatch checks a batch of one request is a plain call in
// combined mode: no tool, the request's cap or the batch's budget as
// max_tokens, its cut-off text its answer, a refusal its own Result.Err.
func TestOneRequestBatch(t *testing.T) {
	t.Parallel()
	srv, p := setup(t, anthropic.Config{})
	b := newBatch(1)
	b.MaxOutputTokens = 90
	results, err := p.Complete(t.Context(), b)
	if err != nil || len(results) != 1 || results[0].Output != anthropictest.Answer(b.Requests[0].Input) {
		t.Fatalf("Complete = %+v, %v", results, err)
	}
	req := srv.Requests()[0]
	if len(req.Tools) != 0 || req.ToolChoice != nil || req.MaxTokens != 90 || req.Messages[0].Content != b.Requests[0].Input {
		t.Errorf("request = %+v, want a plain call with max_tokens 90", req)
	}
	b.Requests[0].MaxOutputTokens = 2
	results, err = p.Complete(t.Context(), b)
	if err != nil || len(results) != 1 || results[0].Err != nil || results[0].Output != anthropictest.Answer(b.Requests[0].Input)[:8] {
		t.Fatalf("a cut-off answer = %+v, %v; want its first 8 bytes", results, err)
	}
	srv.RefuseInput(b.Requests[0].Input)
	results, err = p.Complete(t.Context(), b)
	if err != nil || len(results) != 1 || !provider.IsPermanent(results[0].Err) || provider.ScopeOf(results[0].Err) != provider.ScopeRequest {
		t.Fatalf("a refusal = %+v, %v; want the request's own permanent error", results, err)
	}
	if got := srv.CallSizes(); !slices.Equal(got, []int{1, 1, 1}) {
		t.Errorf("CallSizes = %v", got)
	}
}
