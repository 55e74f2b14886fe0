package openai_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
)

const testKey = "sk-test-0123456789abcdef"

type bundle struct {
	srv *openaitest.Server
	p   *openai.Provider
	rec *recorder
}

// setup starts a fake API and a Provider that talks to it.
func setup(t *testing.T, opts ...openaitest.Option) bundle {
	t.Helper()
	srv := openaitest.NewServer(opts...)
	t.Cleanup(srv.Close)
	rec := &recorder{}
	p, err := openai.New(openai.Config{
		APIKey:     testKey,
		BaseURL:    srv.URL,
		HTTPClient: &http.Client{Transport: rec},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return bundle{srv: srv, p: p, rec: rec}
}

// recorder is an http.RoundTripper that keeps every response body.
type recorder struct {
	mu     sync.Mutex
	bodies [][]byte
}

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
	res.Body = io.NopCloser(bytes.NewReader(body))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bodies = append(r.bodies, body)
	return res, nil
}

func (r *recorder) last(t *testing.T) []byte {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bodies) == 0 {
		t.Fatal("no response recorded")
	}
	return r.bodies[len(r.bodies)-1]
}

func newBatch(n int) provider.Batch {
	b := provider.Batch{ID: "b1", Model: "gpt-test", Instructions: "Translate to French."}
	for i := range n {
		b.Requests = append(b.Requests, provider.Request{Key: fmt.Sprintf("k%d", i), Input: fmt.Sprintf("input <%d> & \"more\"", i)})
	}
	return b
}

// checkResults checks results answer exactly wantKeys of b, each with its
// own input's answer.
func checkResults(t *testing.T, b provider.Batch, results []provider.Result, wantKeys []string) {
	t.Helper()
	inputs := map[string]string{}
	for _, r := range b.Requests {
		inputs[r.Key] = r.Input
	}
	got := map[string]bool{}
	for _, r := range results {
		if got[r.Key] {
			t.Errorf("key %q answered twice", r.Key)
		}
		got[r.Key] = true
		if r.Err != nil {
			t.Errorf("key %q: Err = %v", r.Key, r.Err)
		}
		if want := openaitest.Answer(inputs[r.Key]); r.Output != want {
			t.Errorf("key %q: Output = %q, want %q", r.Key, r.Output, want)
		}
	}
	if len(got) != len(wantKeys) {
		t.Errorf("got %d results, want %d (%v)", len(got), len(wantKeys), wantKeys)
	}
	for _, k := range wantKeys {
		if !got[k] {
			t.Errorf("key %q missing from results", k)
		}
	}
}

func TestName(t *testing.T) {
	t.Parallel()
	if got := setup(t).p.Name(); got != "openai" {
		t.Errorf("Name() = %q, want openai", got)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     openai.Config
		wantErr string
	}{
		{"valid", openai.Config{APIKey: "k"}, ""},
		{"valid base URL", openai.Config{APIKey: "k", BaseURL: "http://127.0.0.1:8089/v1"}, ""},
		{"no key", openai.Config{BaseURL: "http://x/v1"}, "APIKey"},
		{"relative base URL", openai.Config{APIKey: "k", BaseURL: "/v1"}, "BaseURL"},
		{"bad scheme", openai.Config{APIKey: "k", BaseURL: "ftp://host/v1"}, "BaseURL"},
		{"unparsable", openai.Config{APIKey: "k", BaseURL: "http://[::1"}, "BaseURL"},
		{"combined", openai.Config{APIKey: "k", Mode: openai.ModeCombined}, ""},
		{"single", openai.Config{APIKey: "k", Mode: openai.ModeSingle, Concurrency: 2}, ""},
		{"async", openai.Config{APIKey: "k", Mode: openai.ModeAsync}, ""},
		{"unknown mode", openai.Config{APIKey: "k", Mode: "batched"}, "Mode"},
		{"negative concurrency", openai.Config{APIKey: "k", Mode: openai.ModeSingle, Concurrency: -1}, "Concurrency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := openai.New(tt.cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("New error = %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestCompleteAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		arrange  func(*openaitest.Server)
		wantKeys []string
	}{
		{"in order", func(*openaitest.Server) {}, []string{"k0", "k1", "k2", "k3", "k4"}},
		{"shuffled", func(s *openaitest.Server) { s.Shuffle(true) }, []string{"k0", "k1", "k2", "k3", "k4"}},
		{"missing items", func(s *openaitest.Server) { s.DropItems(2) }, []string{"k0", "k1", "k2"}},
		{"all missing", func(s *openaitest.Server) { s.DropItems(5) }, nil},
		{"unknown and duplicate ids ignored", func(s *openaitest.Server) {
			s.SetResultsFunc(func(rs []openaitest.Result) []openaitest.Result {
				out := []openaitest.Result{{ID: "stranger", Output: "x"}}
				out = append(out, rs...)
				return append(out, openaitest.Result{ID: rs[0].ID, Output: "second answer"}, openaitest.Result{ID: "", Output: "y"})
			})
		}, []string{"k0", "k1", "k2", "k3", "k4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t)
			tt.arrange(tb.srv)
			b := newBatch(5)
			results, err := tb.p.Complete(t.Context(), b)
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			checkResults(t, b, results, tt.wantKeys)
			if got := tb.srv.Calls(); got != 1 {
				t.Errorf("Calls() = %d, want 1", got)
			}
		})
	}
}

func TestCompleteUsageSplit(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.srv.DropItems(1)
	b := newBatch(4)
	results, err := tb.p.Complete(t.Context(), b)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	var answer struct {
		Usage struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(tb.rec.last(t), &answer); err != nil {
		t.Fatalf("decode recorded answer: %v", err)
	}
	if len(results) != 3 {
		t.Fatalf("got %d results, want 3", len(results))
	}
	var sum provider.Usage
	for _, r := range results {
		sum = sum.Add(r.Usage)
		if d := r.Usage.InputTokens - results[0].Usage.InputTokens; d < -1 || d > 1 {
			t.Errorf("uneven split: %+v vs %+v", r.Usage, results[0].Usage)
		}
	}
	want := provider.Usage{InputTokens: answer.Usage.PromptTokens, OutputTokens: answer.Usage.CompletionTokens}
	if sum != want || want.InputTokens == 0 || want.OutputTokens == 0 {
		t.Errorf("usage sum = %+v, want the call's %+v", sum, want)
	}
}

func TestCompleteRequest(t *testing.T) {
	t.Parallel()
	// max_completion_tokens is the batch's planned budget, never the sum of
	// the requests' caps.
	tests := []struct {
		name         string
		instructions string
		maxTokens    []int
		budget       int
		wantMax      int64
	}{
		{"instructions, caps and a budget", "Be terse.", []int{100, 0, 50}, 300, 300},
		{"caps without a budget", "Be terse.", []int{100, 0, 50}, 0, 0},
		{"no instructions, no caps", "", []int{0, 0}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t)
			b := newBatch(len(tt.maxTokens))
			b.Instructions = tt.instructions
			b.MaxOutputTokens = tt.budget
			for i, m := range tt.maxTokens {
				b.Requests[i].MaxOutputTokens = m
			}
			if _, err := tb.p.Complete(t.Context(), b); err != nil {
				t.Fatalf("Complete: %v", err)
			}
			reqs := tb.srv.Requests()
			if len(reqs) != 1 {
				t.Fatalf("server got %d requests, want 1", len(reqs))
			}
			req := reqs[0]
			if req.Model != b.Model {
				t.Errorf("model = %q, want %q", req.Model, b.Model)
			}
			if req.MaxCompletionTokens != tt.wantMax {
				t.Errorf("max_completion_tokens = %d, want %d", req.MaxCompletionTokens, tt.wantMax)
			}
			if tt.wantMax == 0 && bytes.Contains(req.Body, []byte("max_completion_tokens")) {
				t.Errorf("max_completion_tokens sent without any cap: %s", req.Body)
			}
			if len(req.Messages) != 2 || req.Messages[0].Role != "system" || req.Messages[1].Role != "user" {
				t.Fatalf("messages = %+v, want system then user", req.Messages)
			}
			if sys := req.Messages[0].Content; !strings.HasPrefix(sys, tt.instructions) || !strings.Contains(sys, `"results"`) {
				t.Errorf("system message = %q, want the instructions then the format line", sys)
			}
			var user struct {
				Items []openaitest.Item `json:"items"`
			}
			if err := json.Unmarshal([]byte(req.Messages[1].Content), &user); err != nil {
				t.Fatalf("user message is not the items JSON: %v", err)
			}
			var keys []string
			for _, r := range b.Requests {
				keys = append(keys, r.Key)
			}
			if !slices.Equal(req.IDEnum, keys) {
				t.Errorf("the schema's enum of ids = %q, want the batch's keys %q", req.IDEnum, keys)
			}
			for i, it := range user.Items {
				if it.ID != b.Requests[i].Key || it.Input != b.Requests[i].Input {
					t.Errorf("item %d = %+v, want %+v", i, it, b.Requests[i])
				}
			}
		})
	}
}

func TestCompleteErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		opts           []openaitest.Option
		arrange        func(*openaitest.Server)
		model          string
		wantPermanent  bool
		wantScope      provider.Scope
		wantStatus     int
		wantRetryAfter time.Duration
		wantText       string
	}{
		{name: "400", arrange: failNext(400), wantPermanent: true, wantStatus: 400},
		{name: "401 injected", arrange: failNext(401), wantScope: provider.ScopeProvider, wantStatus: 401},
		{name: "401 wrong key", opts: []openaitest.Option{openaitest.WithAPIKey("sk-other")}, wantScope: provider.ScopeProvider, wantStatus: 401, wantText: "invalid_api_key"},
		{name: "403", arrange: failNext(403), wantScope: provider.ScopeProvider, wantStatus: 403},
		{name: "404 unknown model", model: "unknown-model", wantPermanent: true, wantStatus: 404, wantText: "model_not_found"},
		{name: "404 listed unknown model", opts: []openaitest.Option{openaitest.WithUnknownModels("gpt-gone")}, model: "gpt-gone", wantPermanent: true, wantStatus: 404},
		{name: "413", arrange: failNext(413), wantPermanent: true, wantScope: provider.ScopeBatch, wantStatus: 413},
		{name: "422", arrange: failNext(422), wantPermanent: true, wantStatus: 422},
		{name: "408", arrange: failNext(408), wantScope: provider.ScopeProvider, wantStatus: 408},
		{name: "409", arrange: failNext(409), wantScope: provider.ScopeProvider, wantStatus: 409},
		{name: "429", arrange: failNext(429), wantScope: provider.ScopeProvider, wantStatus: 429, wantRetryAfter: time.Second},
		{name: "500", arrange: failNext(500), wantScope: provider.ScopeProvider, wantStatus: 500},
		{name: "503", arrange: failNext(503), wantScope: provider.ScopeProvider, wantStatus: 503},
		{name: "outage", arrange: func(s *openaitest.Server) { s.FailFor(time.Hour, 502) }, wantScope: provider.ScopeProvider, wantStatus: 502},
		{name: "malformed JSON", arrange: func(s *openaitest.Server) { s.SetMalformedNext(1) }, wantScope: provider.ScopeBatch, wantText: "parse answer"},
		{name: "refusal", arrange: func(s *openaitest.Server) { s.RefuseNext(1) }, wantPermanent: true, wantScope: provider.ScopeBatch, wantText: "refused"},
		{name: "refused input", arrange: func(s *openaitest.Server) { s.RefuseInput(newBatch(3).Requests[1].Input) }, wantPermanent: true, wantScope: provider.ScopeBatch, wantText: "refused"},
		{name: "finish_reason length", arrange: func(s *openaitest.Server) { s.TruncateNext(1) }, wantPermanent: true, wantScope: provider.ScopeBatch, wantText: "length"},
		{name: "output cap", arrange: func(s *openaitest.Server) { s.SetOutputCap(2) }, wantPermanent: true, wantScope: provider.ScopeBatch, wantText: "length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t, tt.opts...)
			if tt.arrange != nil {
				tt.arrange(tb.srv)
			}
			b := newBatch(3)
			if tt.model != "" {
				b.Model = tt.model
			}
			results, err := tb.p.Complete(t.Context(), b)
			if err == nil {
				t.Fatalf("Complete = %v, nil; want an error", results)
			}
			checkError(t, err, tt.wantPermanent, tt.wantStatus, tt.wantRetryAfter)
			if got := provider.ScopeOf(err); got != tt.wantScope {
				t.Errorf("error %v: scope %v, want %v", err, got, tt.wantScope)
			}
			if errors.Is(err, provider.ErrUnknownModel) != strings.Contains(tt.name, "unknown model") {
				t.Errorf("error %v: wraps ErrUnknownModel %v", err, errors.Is(err, provider.ErrUnknownModel))
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not mention %q", err, tt.wantText)
			}
			if got := tb.srv.Calls(); got != 1 {
				t.Errorf("Calls() = %d, want 1 (SDK retries must be off)", got)
			}
		})
	}
}

func failNext(status int) func(*openaitest.Server) {
	return func(s *openaitest.Server) { s.FailNext(1, status) }
}

// checkError checks err's classification and that it hides the API key.
func checkError(t *testing.T, err error, wantPermanent bool, wantStatus int, wantRetryAfter time.Duration) {
	t.Helper()
	var pe *provider.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v is not a *provider.Error", err)
	}
	if provider.IsPermanent(err) != wantPermanent || errors.Is(err, provider.ErrTransient) == wantPermanent {
		t.Errorf("error %v: permanent = %v, want %v", err, provider.IsPermanent(err), wantPermanent)
	}
	if pe.StatusCode != wantStatus {
		t.Errorf("StatusCode = %d, want %d", pe.StatusCode, wantStatus)
	}
	if got := provider.RetryAfter(err); got != wantRetryAfter {
		t.Errorf("RetryAfter = %v, want %v", got, wantRetryAfter)
	}
	if !strings.HasPrefix(err.Error(), "openai: chat completion: ") {
		t.Errorf("error %q does not say what was being done", err)
	}
	if strings.Contains(err.Error(), testKey) {
		t.Errorf("error %q contains the API key", err)
	}
}

func TestCompleteRecoversAfterFailure(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.srv.FailNext(1, http.StatusInternalServerError)
	b := newBatch(2)
	if _, err := tb.p.Complete(t.Context(), b); err == nil {
		t.Fatal("first call: want the injected 500")
	}
	results, err := tb.p.Complete(t.Context(), b)
	if err != nil {
		t.Fatalf("second call: %v", err)
	}
	checkResults(t, b, results, []string{"k0", "k1"})
	if got := tb.srv.Calls(); got != 2 {
		t.Errorf("Calls() = %d, want 2", got)
	}
}

func TestCompleteContext(t *testing.T) {
	t.Parallel()
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		tb := setup(t)
		tb.srv.SetDelay(time.Minute)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := tb.p.Complete(ctx, newBatch(2))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error = %v, want one wrapping context.DeadlineExceeded", err)
		}
		checkError(t, err, false, 0, 0)
	})
	t.Run("canceled", func(t *testing.T) {
		t.Parallel()
		tb := setup(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := tb.p.Complete(ctx, newBatch(2))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error = %v, want one wrapping context.Canceled", err)
		}
		checkError(t, err, false, 0, 0)
	})
}

// TestCompleteForeignErrors covers answers from something that is not the
// OpenAI API (a proxy, a load balancer) and network failures.
func TestCompleteForeignErrors(t *testing.T) {
	t.Parallel()
	t.Run("HTML 503 with retry-after-ms", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("retry-after-ms", "1500")
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "<html>overloaded</html>")
		}))
		t.Cleanup(srv.Close)
		p, err := openai.New(openai.Config{APIKey: testKey, BaseURL: srv.URL + "/v1"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Complete(t.Context(), newBatch(2))
		checkError(t, err, false, http.StatusServiceUnavailable, 1500*time.Millisecond)
	})
	t.Run("HTML 404", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		t.Cleanup(srv.Close)
		p, err := openai.New(openai.Config{APIKey: testKey, BaseURL: srv.URL + "/v1"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Complete(t.Context(), newBatch(2))
		checkError(t, err, true, http.StatusNotFound, 0)
		if errors.Is(err, provider.ErrUnknownModel) {
			t.Errorf("a 404 without model_not_found is an unknown model: %v", err)
		}
	})
	t.Run("connection refused, key in URL", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close() // nothing listens there any more
		p, err := openai.New(openai.Config{APIKey: testKey, BaseURL: srv.URL + "/" + testKey + "/v1"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Complete(t.Context(), newBatch(2))
		checkError(t, err, false, 0, 0)
	})
}

func TestCompleteEmptyBatch(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	results, err := tb.p.Complete(t.Context(), provider.Batch{Model: "gpt-test"})
	if err != nil || results != nil {
		t.Errorf("Complete(empty) = %v, %v; want nil, nil", results, err)
	}
	if tb.srv.Calls() != 0 {
		t.Errorf("an empty batch made %d calls", tb.srv.Calls())
	}
}

// TestCompleteErrorCodes covers the error codes that classify a failure
// beyond its status: a prompt too long is the call's shape (ScopeBatch), or
// the request's own in a one-request call.
func TestCompleteErrorCodes(t *testing.T) {
	t.Parallel()
	const body = `{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	p, err := openai.New(openai.Config{APIKey: testKey, BaseURL: srv.URL + "/v1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Complete(t.Context(), newBatch(3))
	checkError(t, err, true, http.StatusBadRequest, 0)
	if provider.ScopeOf(err) != provider.ScopeBatch || !strings.Contains(err.Error(), "context_length_exceeded") {
		t.Errorf("combined call: %v, want ScopeBatch naming the code", err)
	}
	results, err := p.Complete(t.Context(), newBatch(1))
	if err != nil || len(results) != 1 {
		t.Fatalf("one-request batch = %v, %v; want the request's own error", results, err)
	}
	if r := results[0]; !provider.IsPermanent(r.Err) || provider.ScopeOf(r.Err) != provider.ScopeRequest {
		t.Errorf("one-request batch: Err %v, want permanent ScopeRequest", r.Err)
	}
}

// TestOneRequestBatch checks a batch of one request is a plain call in
// combined mode: no answer format, the request's cap or the batch's budget
// as the limit, a refusal or rejection its own Result.Err, an outage the
// batch's error.
func TestOneRequestBatch(t *testing.T) {
	t.Parallel()
	t.Run("answered", func(t *testing.T) {
		t.Parallel()
		tb := setup(t)
		b := newBatch(1)
		b.MaxOutputTokens = 90
		results, err := tb.p.Complete(t.Context(), b)
		if err != nil {
			t.Fatal(err)
		}
		checkResults(t, b, results, []string{"k0"})
		req := tb.srv.Requests()[0]
		if req.ResponseFormat != nil || req.MaxCompletionTokens != 90 || len(req.Messages) != 2 || req.Messages[1].Content != b.Requests[0].Input {
			t.Errorf("request = %+v, want a plain call with max_completion_tokens 90", req)
		}
		b.Requests[0].MaxOutputTokens = 60
		if _, err := tb.p.Complete(t.Context(), b); err != nil {
			t.Fatal(err)
		}
		if got := tb.srv.Requests()[1].MaxCompletionTokens; got != 60 {
			t.Errorf("max_completion_tokens = %d, want the request's own 60", got)
		}
		if got := tb.srv.CallSizes(); !slices.Equal(got, []int{1, 1}) {
			t.Errorf("CallSizes = %v", got)
		}
	})
	t.Run("cut off", func(t *testing.T) {
		t.Parallel()
		tb := setup(t)
		tb.srv.SetOutputCap(1) // caps combined calls only
		b := newBatch(1)
		b.Requests[0].MaxOutputTokens = 2
		results, err := tb.p.Complete(t.Context(), b)
		if err != nil || len(results) != 1 || results[0].Err != nil {
			t.Fatalf("Complete = %+v, %v; want the cut-off answer", results, err)
		}
		if want := openaitest.Answer(b.Requests[0].Input)[:8]; results[0].Output != want {
			t.Errorf("Output = %q, want %q", results[0].Output, want)
		}
	})
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		tb := setup(t)
		b := newBatch(1)
		tb.srv.RefuseInput(b.Requests[0].Input)
		results, err := tb.p.Complete(t.Context(), b)
		if err != nil || len(results) != 1 {
			t.Fatalf("Complete = %+v, %v; want the request's own error", results, err)
		}
		if r := results[0]; !provider.IsPermanent(r.Err) || provider.ScopeOf(r.Err) != provider.ScopeRequest || !strings.Contains(r.Err.Error(), "refused") {
			t.Errorf("Err = %v, want a permanent ScopeRequest refusal", r.Err)
		}
	})
	t.Run("outage", func(t *testing.T) {
		t.Parallel()
		tb := setup(t)
		tb.srv.FailFor(time.Hour, 529)
		results, err := tb.p.Complete(t.Context(), newBatch(1))
		if results != nil {
			t.Fatalf("results %+v, want none", results)
		}
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Scope != provider.ScopeProvider || pe.StatusCode != 529 || pe.Permanent {
			t.Errorf("error %v, want a transient ScopeProvider 529", err)
		}
	})
}
