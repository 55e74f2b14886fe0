package anthropictest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider/anthropictest"
)

const schema = `{"type":"object","properties":{"results":{"type":"array","items":{"type":"object","properties":{"id":{"type":"string"},"output":{"type":"string"}},"required":["id","output"],"additionalProperties":false}}},"required":["results"],"additionalProperties":false}`

// batchBody is a valid batch request for items {"a":"x","b":"y","c":"z"}.
func batchBody(model string) string {
	return `{"model":"` + model + `","max_tokens":1000,"system":[{"type":"text","text":"sys"}],` +
		`"messages":[{"role":"user","content":[{"type":"text","text":"{\"items\":[{\"id\":\"a\",\"input\":\"x\"},{\"id\":\"b\",\"input\":\"y\"},{\"id\":\"c\",\"input\":\"z\"}]}"}]}],` +
		`"tools":[{"name":"batch_results","description":"d","input_schema":` + schema + `}],` +
		`"tool_choice":{"type":"tool","name":"batch_results","disable_parallel_tool_use":true}}`
}

// plainBody is a plain request for input.
func plainBody(input string) string {
	in, _ := json.Marshal(input)
	return `{"model":"claude-test","max_tokens":100,"system":"be kind","messages":[{"role":"user","content":` + string(in) + `}]}`
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

// post sends body to the messages endpoint of srv with the given headers
// (nil: a valid x-api-key and anthropic-version).
func post(t *testing.T, ctx context.Context, srv *anthropictest.Server, header map[string]string, body string) (reply, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+anthropictest.MessagesPath, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if header == nil {
		header = map[string]string{"x-api-key": "k", "anthropic-version": anthropictest.Version}
	}
	for k, v := range header {
		req.Header.Set(k, v)
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

type message struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Role    string `json:"role"`
	Model   string `json:"model"`
	Content []struct {
		Type  string          `json:"type"`
		Text  string          `json:"text"`
		ID    string          `json:"id"`
		Name  string          `json:"name"`
		Input json.RawMessage `json:"input"`
	} `json:"content"`
	StopReason   string  `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
	Usage        struct {
		InputTokens  int64 `json:"input_tokens"`
		OutputTokens int64 `json:"output_tokens"`
	} `json:"usage"`
}

type errorBody struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// decode reads a successful message answer.
func decode(t *testing.T, r reply, err error) message {
	t.Helper()
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("post = %d %s, %v", r.status, r.body, err)
	}
	var m message
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	if m.Type != "message" || m.Role != "assistant" || !strings.HasPrefix(m.ID, "msg_") {
		t.Fatalf("not a message object: %s", r.body)
	}
	if m.Usage.InputTokens <= 0 {
		t.Errorf("usage = %+v", m.Usage)
	}
	return m
}

// answer posts body with valid headers and decodes the successful answer.
func answer(t *testing.T, srv *anthropictest.Server, body string) message {
	t.Helper()
	r, err := post(t, t.Context(), srv, nil, body)
	return decode(t, r, err)
}

// results returns a batch answer's tool input results.
func results(t *testing.T, m message) []anthropictest.Result {
	t.Helper()
	if len(m.Content) != 1 || m.Content[0].Type != "tool_use" || m.Content[0].Name != anthropictest.ToolName ||
		!strings.HasPrefix(m.Content[0].ID, "toolu_") || m.StopReason != "tool_use" {
		t.Fatalf("not a batch_results tool_use answer: %+v", m)
	}
	var in struct{ Results []anthropictest.Result }
	if err := json.Unmarshal(m.Content[0].Input, &in); err != nil {
		t.Fatal(err)
	}
	return in.Results
}

func TestBatchAnswer(t *testing.T) {
	t.Parallel()
	ans := func(id, in string) anthropictest.Result {
		return anthropictest.Result{ID: id, Output: anthropictest.Answer(in)}
	}
	tests := []struct {
		name    string
		arrange func(*anthropictest.Server)
		want    []anthropictest.Result
		ordered bool
	}{
		{"complete", func(*anthropictest.Server) {}, []anthropictest.Result{ans("a", "x"), ans("b", "y"), ans("c", "z")}, true},
		{"dropped", func(s *anthropictest.Server) { s.DropItems(2) }, []anthropictest.Result{ans("a", "x")}, true},
		{"shuffled", func(s *anthropictest.Server) { s.Shuffle(true) }, []anthropictest.Result{ans("a", "x"), ans("b", "y"), ans("c", "z")}, false},
		{"omitted", func(s *anthropictest.Server) { s.OmitInput("y") }, []anthropictest.Result{ans("a", "x"), ans("c", "z")}, true},
		{"rejected", func(s *anthropictest.Server) { s.RejectInput("x", false) }, []anthropictest.Result{ans("b", "y"), ans("c", "z")}, true},
		{"rejected retryable", func(s *anthropictest.Server) { s.RejectInput("z", true) }, []anthropictest.Result{ans("a", "x"), ans("b", "y")}, true},
		{"rewritten", func(s *anthropictest.Server) {
			s.SetResultsFunc(func(rs []anthropictest.Result) []anthropictest.Result { return rs[1:2] })
		}, []anthropictest.Result{ans("b", "y")}, true},
		{"repeated ids", func(s *anthropictest.Server) { s.RepeatIDs(true) }, []anthropictest.Result{
			ans("not-asked", "not asked"), ans("a", "x"), ans("b", "y"), ans("c", "z"),
			{ID: "a", Output: "repeated: " + anthropictest.Answer("x")},
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := anthropictest.NewServer()
			t.Cleanup(srv.Close)
			tt.arrange(srv)
			r, err := post(t, t.Context(), srv, nil, batchBody("claude-test"))
			m := decode(t, r, err)
			if m.Model != "claude-test" || m.Usage.OutputTokens <= 0 {
				t.Errorf("model %q, usage %+v", m.Model, m.Usage)
			}
			got := results(t, m)
			if tt.ordered {
				if !slices.Equal(got, tt.want) {
					t.Errorf("results = %+v, want %+v", got, tt.want)
				}
				return
			}
			if slices.Equal(got, tt.want) {
				t.Errorf("results %+v are in request order", got)
			}
			sorted := slices.Clone(got)
			slices.SortFunc(sorted, func(a, b anthropictest.Result) int { return strings.Compare(a.ID, b.ID) })
			if !slices.Equal(sorted, tt.want) {
				t.Errorf("results = %+v, want %+v in any order", got, tt.want)
			}
		})
	}
}

func TestPlainAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		arrange    func(*anthropictest.Server)
		wantText   []string
		wantStop   string
		wantStatus int
		wantType   string
	}{
		{"normal", func(*anthropictest.Server) {}, []string{anthropictest.Answer("hello")}, "end_turn", 200, ""},
		{"truncated", func(s *anthropictest.Server) { s.TruncateNext(1) }, []string{anthropictest.Answer("hello")[:8]}, "max_tokens", 200, ""},
		{"refused", func(s *anthropictest.Server) { s.RefuseNext(1) }, nil, "refusal", 200, ""},
		{"omitted", func(s *anthropictest.Server) { s.OmitInput("hello") }, nil, "end_turn", 200, ""},
		{"rejected", func(s *anthropictest.Server) { s.RejectInput("hello", false) }, nil, "", 400, "invalid_request_error"},
		{"rejected retryable", func(s *anthropictest.Server) { s.RejectInput("hello", true) }, nil, "", 529, "overloaded_error"},
		{"other input rejected", func(s *anthropictest.Server) { s.RejectInput("bye", false) }, []string{anthropictest.Answer("hello")}, "end_turn", 200, ""},
		{"batch controls do not apply", func(s *anthropictest.Server) { s.DropItems(3); s.RepeatIDs(true); s.NoToolNext(1) },
			[]string{anthropictest.Answer("hello")}, "end_turn", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := anthropictest.NewServer()
			t.Cleanup(srv.Close)
			tt.arrange(srv)
			r, err := post(t, t.Context(), srv, nil, plainBody("hello"))
			if err != nil {
				t.Fatal(err)
			}
			if r.status != tt.wantStatus {
				t.Fatalf("status = %d %s, want %d", r.status, r.body, tt.wantStatus)
			}
			if tt.wantStatus != 200 {
				checkErrorBody(t, r, tt.wantType)
				return
			}
			m := decode(t, r, nil)
			var texts []string
			for _, c := range m.Content {
				if c.Type != "text" {
					t.Errorf("content block of type %q", c.Type)
				}
				texts = append(texts, c.Text)
			}
			if !slices.Equal(texts, tt.wantText) || m.StopReason != tt.wantStop {
				t.Errorf("answer = %q, %q; want %q, %q", texts, m.StopReason, tt.wantText, tt.wantStop)
			}
			if m.StopSequence != nil {
				t.Errorf("stop_sequence = %q, want null", *m.StopSequence)
			}
		})
	}
}

func checkErrorBody(t *testing.T, r reply, wantType string) {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %s: %v", r.body, err)
	}
	if e.Type != "error" || e.Error.Type != wantType || e.Error.Message == "" {
		t.Errorf("error body = %s, want type %q", r.body, wantType)
	}
	if !strings.HasPrefix(r.header.Get("request-id"), "req_") {
		t.Errorf("request-id header = %q", r.header.Get("request-id"))
	}
}

func TestOneShotBatchAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		arrange  func(*anthropictest.Server)
		wantStop string
		wantType string // of the only content block; "" for none
	}{
		{"truncated", func(s *anthropictest.Server) { s.TruncateNext(1) }, "max_tokens", "tool_use"},
		{"refused", func(s *anthropictest.Server) { s.RefuseNext(1) }, "refusal", ""},
		{"no tool", func(s *anthropictest.Server) { s.NoToolNext(1) }, "end_turn", "text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := anthropictest.NewServer()
			t.Cleanup(srv.Close)
			tt.arrange(srv)
			m := answer(t, srv, batchBody("m"))
			var types []string
			for _, c := range m.Content {
				types = append(types, c.Type)
			}
			if want := slices.DeleteFunc([]string{tt.wantType}, func(s string) bool { return s == "" }); m.StopReason != tt.wantStop || !slices.Equal(types, want) {
				t.Errorf("stop_reason %q, blocks %v; want %q, %v", m.StopReason, types, tt.wantStop, want)
			}
			if len(results(t, answer(t, srv, batchBody("m")))) != 3 {
				t.Error("the second answer is not back to normal")
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	t.Parallel()
	for _, body := range []string{batchBody("m"), plainBody("hello")} {
		srv := anthropictest.NewServer()
		t.Cleanup(srv.Close)
		srv.SetMalformedNext(1)
		r, err := post(t, t.Context(), srv, nil, body)
		if err != nil || r.status != 200 || json.Valid(r.body) {
			t.Errorf("malformed answer = %d %s, %v; want 200 with invalid JSON", r.status, r.body, err)
		}
		answer(t, srv, body)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	valid := map[string]string{"x-api-key": "k", "anthropic-version": anthropictest.Version}
	tests := []struct {
		name           string
		opts           []anthropictest.Option
		arrange        func(*anthropictest.Server)
		header         map[string]string
		body           string
		wantStatus     int
		wantType       string
		wantRetryAfter string
	}{
		{name: "no key", header: map[string]string{"anthropic-version": anthropictest.Version}, body: batchBody("m"), wantStatus: 401, wantType: "authentication_error"},
		{name: "wrong key", opts: []anthropictest.Option{anthropictest.WithAPIKey("right")}, body: batchBody("m"), wantStatus: 401, wantType: "authentication_error"},
		{name: "bearer instead of x-api-key", header: map[string]string{"Authorization": "Bearer k", "anthropic-version": anthropictest.Version}, body: batchBody("m"), wantStatus: 401, wantType: "authentication_error"},
		{name: "no version", header: map[string]string{"x-api-key": "k"}, body: batchBody("m"), wantStatus: 400, wantType: "invalid_request_error"},
		{name: "bad JSON", body: "{", wantStatus: 400, wantType: "invalid_request_error"},
		{name: "no model", body: batchBody(""), wantStatus: 400, wantType: "invalid_request_error"},
		{name: "no max_tokens", body: strings.Replace(batchBody("m"), `"max_tokens":1000,`, "", 1), wantStatus: 400, wantType: "invalid_request_error"},
		{name: "zero max_tokens", body: strings.Replace(batchBody("m"), `"max_tokens":1000`, `"max_tokens":0`, 1), wantStatus: 400, wantType: "invalid_request_error"},
		{name: "unknown model", body: batchBody("unknown-claude"), wantStatus: 404, wantType: "not_found_error"},
		{name: "listed unknown model", opts: []anthropictest.Option{anthropictest.WithUnknownModels("gone")}, body: batchBody("gone"), wantStatus: 404, wantType: "not_found_error"},
		{name: "last message not user", body: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}`, wantStatus: 400, wantType: "invalid_request_error"},
		{name: "bad role", body: `{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"a"}]}`, wantStatus: 400, wantType: "invalid_request_error"},
		{name: "forced tool not declared", body: strings.Replace(batchBody("m"), `"name":"batch_results","description"`, `"name":"other","description"`, 1), wantStatus: 400, wantType: "invalid_request_error"},
		{name: "other schema", body: strings.Replace(batchBody("m"), `"results":{"type":"array"`, `"results":{"type":"object"`, 1), wantStatus: 400, wantType: "invalid_request_error"},
		{name: "unknown tool_choice", body: strings.Replace(batchBody("m"), `"type":"tool","name":"batch_results"`, `"type":"some"`, 1), wantStatus: 400, wantType: "invalid_request_error"},
		{name: "batch without items", body: strings.Replace(batchBody("m"), `{\"items\"`, `{\"things\"`, 1), wantStatus: 400, wantType: "invalid_request_error"},
		{name: "injected 400", arrange: func(s *anthropictest.Server) { s.FailNext(1, 400) }, body: batchBody("m"), wantStatus: 400, wantType: "invalid_request_error"},
		{name: "injected 403", arrange: func(s *anthropictest.Server) { s.FailNext(1, 403) }, body: batchBody("m"), wantStatus: 403, wantType: "permission_error"},
		{name: "injected 429", arrange: func(s *anthropictest.Server) { s.FailNext(1, 429) }, body: batchBody("m"), wantStatus: 429, wantType: "rate_limit_error", wantRetryAfter: "1"},
		{name: "injected 500", arrange: func(s *anthropictest.Server) { s.FailNext(1, 500) }, body: batchBody("m"), wantStatus: 500, wantType: "api_error"},
		{name: "injected 504", arrange: func(s *anthropictest.Server) { s.FailNext(1, 504) }, body: batchBody("m"), wantStatus: 504, wantType: "timeout_error"},
		{name: "injected 529", arrange: func(s *anthropictest.Server) { s.FailNext(1, 529) }, body: batchBody("m"), wantStatus: 529, wantType: "overloaded_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := anthropictest.NewServer(tt.opts...)
			t.Cleanup(srv.Close)
			if tt.arrange != nil {
				tt.arrange(srv)
			}
			header := tt.header
			if header == nil {
				header = valid
			}
			r, err := post(t, t.Context(), srv, header, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != tt.wantStatus {
				t.Fatalf("status = %d %s, want %d", r.status, r.body, tt.wantStatus)
			}
			checkErrorBody(t, r, tt.wantType)
			if got := r.header.Get("retry-after"); got != tt.wantRetryAfter {
				t.Errorf("retry-after = %q, want %q", got, tt.wantRetryAfter)
			}
			if srv.Calls() != 1 {
				t.Errorf("Calls() = %d, want 1", srv.Calls())
			}
		})
	}
}

func TestFailNextCounts(t *testing.T) {
	t.Parallel()
	srv := anthropictest.NewServer()
	t.Cleanup(srv.Close)
	srv.FailNext(2, 529)
	var statuses []int
	for range 3 {
		r, err := post(t, t.Context(), srv, nil, batchBody("m"))
		if err != nil {
			t.Fatal(err)
		}
		statuses = append(statuses, r.status)
	}
	if want := []int{529, 529, 200}; !slices.Equal(statuses, want) {
		t.Errorf("statuses = %v, want %v", statuses, want)
	}
	if n := len(srv.Requests()); n != 1 {
		t.Errorf("Requests() has %d entries, want 1 (failed calls are not decoded)", n)
	}
}

func TestRequests(t *testing.T) {
	t.Parallel()
	srv := anthropictest.NewServer()
	t.Cleanup(srv.Close)
	answer(t, srv, batchBody("claude-test"))
	answer(t, srv, plainBody("hello"))
	reqs := srv.Requests()
	if len(reqs) != 2 {
		t.Fatalf("Requests() = %d entries", len(reqs))
	}
	b, p := reqs[0], reqs[1]
	if b.Model != "claude-test" || b.MaxTokens != 1000 || b.System != "sys" || len(b.Tools) != 1 ||
		b.ToolChoice == nil || b.ToolChoice.Name != anthropictest.ToolName || !b.ToolChoice.DisableParallelToolUse ||
		b.Header.Get("anthropic-version") != anthropictest.Version || len(b.Body) == 0 {
		t.Errorf("batch request = %+v", b)
	}
	if p.System != "be kind" || len(p.Messages) != 1 || p.Messages[0].Content != "hello" || p.ToolChoice != nil || p.MaxTokens != 100 {
		t.Errorf("plain request = %+v", p)
	}
}

func TestDelayAndConcurrency(t *testing.T) {
	t.Parallel()
	srv := anthropictest.NewServer()
	t.Cleanup(srv.Close) // would block for the delay if the handler kept waiting
	srv.SetDelay(time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := post(t, ctx, srv, nil, plainBody("a")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("post error = %v, want deadline exceeded", err)
	}
	// A fresh server: the cancelled call may still be running on the first.
	srv = anthropictest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetDelay(50 * time.Millisecond)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if r, err := post(t, t.Context(), srv, nil, plainBody("a")); err != nil || r.status != 200 {
				t.Errorf("post = %d, %v", r.status, err)
			}
		})
	}
	wg.Wait()
	if got := srv.MaxConcurrent(); got < 2 || got > 3 {
		t.Errorf("MaxConcurrent() = %d, want 2..3", got)
	}
	if srv.Calls() != 3 {
		t.Errorf("Calls() = %d, want 3", srv.Calls())
	}
}

func TestUnknownPathAndUnstarted(t *testing.T) {
	t.Parallel()
	srv := anthropictest.NewServer()
	t.Cleanup(srv.Close)
	res, err := http.Get(srv.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	checkErrorBody(t, reply{status: res.StatusCode, header: res.Header, body: body}, "not_found_error")
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("status = %d", res.StatusCode)
	}

	u := anthropictest.NewUnstartedServer()
	defer u.Close() // no-op
	if u.URL != "" || u.Handler() == nil {
		t.Errorf("unstarted server: URL = %q, Handler nil = %v", u.URL, u.Handler() == nil)
	}
}
