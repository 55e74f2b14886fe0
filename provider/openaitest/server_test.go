package openaitest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider/openaitest"
)

const schema = `{"type":"object","properties":{"results":{"type":"array","items":{"type":"object","properties":{"id":{"type":"string"},"output":{"type":"string"}},"required":["id","output"],"additionalProperties":false}}},"required":["results"],"additionalProperties":false}`

// batchBody is a valid batch request for items {"a":"x","b":"y","c":"z"}.
func batchBody(model string) string {
	return `{"model":"` + model + `","messages":[{"role":"system","content":"sys"},` +
		`{"role":"user","content":"{\"items\":[{\"id\":\"a\",\"input\":\"x\"},{\"id\":\"b\",\"input\":\"y\"},{\"id\":\"c\",\"input\":\"z\"}]}"}],` +
		`"response_format":{"type":"json_schema","json_schema":{"name":"batch_results","strict":true,"schema":` + schema + `}}}`
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

// post sends body to the chat completions endpoint of srv.
func post(t *testing.T, ctx context.Context, srv *openaitest.Server, auth, body string) (reply, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: res.StatusCode, header: res.Header, body: b}, nil
}

type completion struct {
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Role    string  `json:"role"`
			Content *string `json:"content"`
			Refusal *string `json:"refusal"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int64 `json:"prompt_tokens"`
		CompletionTokens int64 `json:"completion_tokens"`
		TotalTokens      int64 `json:"total_tokens"`
	} `json:"usage"`
}

type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func TestBatchAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		arrange func(*openaitest.Server)
		wantIDs []string
		ordered bool
	}{
		{"complete", func(*openaitest.Server) {}, []string{"a", "b", "c"}, true},
		{"dropped", func(s *openaitest.Server) { s.DropItems(2) }, []string{"a"}, true},
		{"shuffled", func(s *openaitest.Server) { s.Shuffle(true) }, []string{"a", "b", "c"}, false},
		{"rewritten", func(s *openaitest.Server) {
			s.SetResultsFunc(func(rs []openaitest.Result) []openaitest.Result { return rs[:1] })
		}, []string{"a"}, true},
	}
	inputs := map[string]string{"a": "x", "b": "y", "c": "z"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := openaitest.NewServer()
			t.Cleanup(srv.Close)
			tt.arrange(srv)
			r, err := post(t, t.Context(), srv, "Bearer k", batchBody("gpt-test"))
			if err != nil || r.status != http.StatusOK {
				t.Fatalf("post = %d %s, %v", r.status, r.body, err)
			}
			var c completion
			if err := json.Unmarshal(r.body, &c); err != nil {
				t.Fatal(err)
			}
			if c.Object != "chat.completion" || c.Model != "gpt-test" || len(c.Choices) != 1 ||
				c.Choices[0].FinishReason != "stop" || c.Choices[0].Message.Role != "assistant" {
				t.Fatalf("not a chat.completion: %s", r.body)
			}
			if u := c.Usage; u.PromptTokens <= 0 || u.CompletionTokens <= 0 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
				t.Errorf("usage = %+v", u)
			}
			var results struct{ Results []openaitest.Result }
			if err := json.Unmarshal([]byte(*c.Choices[0].Message.Content), &results); err != nil {
				t.Fatal(err)
			}
			if len(results.Results) != len(tt.wantIDs) {
				t.Fatalf("results = %+v, want ids %v", results.Results, tt.wantIDs)
			}
			inOrder := true
			seen := map[string]bool{}
			for i, res := range results.Results {
				seen[res.ID] = true
				inOrder = inOrder && res.ID == tt.wantIDs[i]
				if res.Output != openaitest.Answer(inputs[res.ID]) {
					t.Errorf("result %+v does not answer its input", res)
				}
			}
			for _, id := range tt.wantIDs {
				if !seen[id] {
					t.Errorf("id %q missing", id)
				}
			}
			if inOrder != tt.ordered {
				t.Errorf("results in request order = %v, want %v", inOrder, tt.ordered)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		opts       []openaitest.Option
		arrange    func(*openaitest.Server)
		auth       string
		body       string
		wantStatus int
		wantCode   string
		wantParam  string
	}{
		{name: "no auth", body: batchBody("m"), wantStatus: 401, wantCode: "invalid_api_key"},
		{name: "not bearer", auth: "Basic abc", body: batchBody("m"), wantStatus: 401, wantCode: "invalid_api_key"},
		{name: "wrong key", opts: []openaitest.Option{openaitest.WithAPIKey("right")}, auth: "Bearer wrong", body: batchBody("m"), wantStatus: 401, wantCode: "invalid_api_key"},
		{name: "bad JSON", auth: "Bearer k", body: "{", wantStatus: 400},
		{name: "no model", auth: "Bearer k", body: batchBody(""), wantStatus: 400, wantParam: "model"},
		{name: "unknown model", auth: "Bearer k", body: batchBody("unknown-1"), wantStatus: 404, wantCode: "model_not_found"},
		{name: "listed unknown model", opts: []openaitest.Option{openaitest.WithUnknownModels("gone")}, auth: "Bearer k", body: batchBody("gone"), wantStatus: 404, wantCode: "model_not_found"},
		{name: "no user message", auth: "Bearer k", body: `{"model":"m","messages":[{"role":"system","content":"s"}]}`, wantStatus: 400, wantParam: "messages"},
		{name: "json_schema without schema", auth: "Bearer k", body: `{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x"}}}`, wantStatus: 400, wantParam: "response_format"},
		{name: "not strict", auth: "Bearer k", body: strings.Replace(batchBody("m"), `"strict":true`, `"strict":false`, 1), wantStatus: 400, wantParam: "response_format"},
		{name: "other schema", auth: "Bearer k", body: strings.Replace(batchBody("m"), `"results":{"type":"array"`, `"results":{"type":"object"`, 1), wantStatus: 400, wantParam: "response_format"},
		{name: "unknown format", auth: "Bearer k", body: `{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"xml"}}`, wantStatus: 400, wantParam: "response_format"},
		{name: "batch without items", auth: "Bearer k", body: `{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"batch_results","strict":true,"schema":` + schema + `}}}`, wantStatus: 400, wantParam: "messages"},
		{name: "injected 429", arrange: func(s *openaitest.Server) { s.FailNext(1, 429) }, auth: "Bearer k", body: batchBody("m"), wantStatus: 429, wantCode: "rate_limit_exceeded"},
		{name: "injected 500", arrange: func(s *openaitest.Server) { s.FailNext(1, 500) }, auth: "Bearer k", body: batchBody("m"), wantStatus: 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := openaitest.NewServer(tt.opts...)
			t.Cleanup(srv.Close)
			if tt.arrange != nil {
				tt.arrange(srv)
			}
			r, err := post(t, t.Context(), srv, tt.auth, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != tt.wantStatus {
				t.Fatalf("status = %d (%s), want %d", r.status, r.body, tt.wantStatus)
			}
			var e errorBody
			if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
				t.Fatalf("not OpenAI's error JSON: %s (%v)", r.body, err)
			}
			if got := deref(e.Error.Code); got != tt.wantCode {
				t.Errorf("code = %q, want %q", got, tt.wantCode)
			}
			if tt.wantParam != "" && deref(e.Error.Param) != tt.wantParam {
				t.Errorf("param = %q, want %q", deref(e.Error.Param), tt.wantParam)
			}
			if got, want := r.header.Get("Retry-After"), map[bool]string{true: "1"}[tt.wantStatus == 429]; got != want {
				t.Errorf("Retry-After = %q, want %q", got, want)
			}
			if srv.Calls() != 1 {
				t.Errorf("Calls() = %d, want 1", srv.Calls())
			}
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func TestFailNextCounts(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	srv.FailNext(2, http.StatusServiceUnavailable)
	var statuses []int
	for range 3 {
		r, err := post(t, t.Context(), srv, "Bearer k", batchBody("m"))
		if err != nil {
			t.Fatal(err)
		}
		statuses = append(statuses, r.status)
	}
	if want := []int{503, 503, 200}; !slices.Equal(statuses, want) {
		t.Errorf("statuses = %v, want %v", statuses, want)
	}
	if srv.Calls() != 3 {
		t.Errorf("Calls() = %d, want 3", srv.Calls())
	}
	if n := len(srv.Requests()); n != 1 {
		t.Errorf("Requests() has %d entries, want 1 (failed calls are not decoded)", n)
	}
}

func TestOneShotAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		arrange    func(*openaitest.Server)
		wantFinish string
		wantJSON   bool
		wantRefuse bool
	}{
		{"malformed", func(s *openaitest.Server) { s.SetMalformedNext(1) }, "stop", false, false},
		{"truncated", func(s *openaitest.Server) { s.TruncateNext(1) }, "length", false, false},
		{"refused", func(s *openaitest.Server) { s.RefuseNext(1) }, "stop", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := openaitest.NewServer()
			t.Cleanup(srv.Close)
			tt.arrange(srv)
			for i := range 2 { // the second answer is back to normal
				r, err := post(t, t.Context(), srv, "Bearer k", batchBody("m"))
				if err != nil || r.status != 200 {
					t.Fatalf("post = %d, %v", r.status, err)
				}
				var c completion
				if err := json.Unmarshal(r.body, &c); err != nil {
					t.Fatal(err)
				}
				msg := c.Choices[0].Message
				special := i == 0
				if got := msg.Refusal != nil && msg.Content == nil; got != (special && tt.wantRefuse) {
					t.Errorf("answer %d: refusal = %v", i, got)
				}
				if wantFinish := map[bool]string{true: tt.wantFinish, false: "stop"}[special]; c.Choices[0].FinishReason != wantFinish {
					t.Errorf("answer %d: finish_reason = %q, want %q", i, c.Choices[0].FinishReason, wantFinish)
				}
				valid := msg.Content != nil && json.Valid([]byte(*msg.Content))
				if valid != !special {
					t.Errorf("answer %d: content valid JSON = %v", i, valid)
				}
			}
		})
	}
}

func TestPlainMode(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	body := `{"model":"m","max_completion_tokens":42,"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"hel"},{"type":"text","text":"lo"}]}]}`
	r, err := post(t, t.Context(), srv, "Bearer k", body)
	if err != nil || r.status != 200 {
		t.Fatalf("post = %d %s, %v", r.status, r.body, err)
	}
	var c completion
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatal(err)
	}
	if got := *c.Choices[0].Message.Content; got != openaitest.Answer("hello") {
		t.Errorf("content = %q, want %q", got, openaitest.Answer("hello"))
	}
	reqs := srv.Requests()
	if len(reqs) != 1 || reqs[0].MaxCompletionTokens != 42 || reqs[0].ResponseFormat != nil ||
		len(reqs[0].Messages) != 2 || reqs[0].Messages[1].Content != "hello" {
		t.Errorf("Requests() = %+v", reqs)
	}
}

func TestDelayEndsWithRequest(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close) // would block for the delay if the handler kept waiting
	srv.SetDelay(time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := post(t, ctx, srv, "Bearer k", batchBody("m")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("post error = %v, want deadline exceeded", err)
	}
	srv.SetDelay(0)
	if r, err := post(t, t.Context(), srv, "Bearer k", batchBody("m")); err != nil || r.status != 200 {
		t.Fatalf("post after SetDelay(0) = %d, %v", r.status, err)
	}
}

func TestUnknownPath(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	res, err := http.Get(srv.URL + "/models")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var e errorBody
	if err := json.NewDecoder(res.Body).Decode(&e); err != nil || res.StatusCode != 404 || e.Error.Type != "invalid_request_error" {
		t.Errorf("GET /v1/models = %d %+v (%v), want 404 with error JSON", res.StatusCode, e, err)
	}
	if srv.Calls() != 0 {
		t.Errorf("Calls() = %d, want 0", srv.Calls())
	}
}

func TestUnstartedServer(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewUnstartedServer()
	defer srv.Close() // no-op
	if srv.URL != "" || srv.Handler() == nil {
		t.Errorf("unstarted server: URL = %q, Handler nil = %v", srv.URL, srv.Handler() == nil)
	}
}
