package anthropictest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"

	"github.com/aibatch/aibatch/provider/anthropictest"
)

// withMaxTokens sets max_tokens of a request body (which has 1000 or 100).
func withMaxTokens(body string, n int) string {
	b, _ := json.Marshal(n)
	body = strings.Replace(body, `"max_tokens":1000`, `"max_tokens":`+string(b), 1)
	return strings.Replace(body, `"max_tokens":100,`, `"max_tokens":`+string(b)+`,`, 1)
}

// toolResults decodes a batch answer's tool input.
func toolResults(t *testing.T, m message) []anthropictest.Result {
	t.Helper()
	if len(m.Content) != 1 || m.Content[0].Type != "tool_use" || m.Content[0].Name != anthropictest.ToolName {
		t.Fatalf("content = %+v, want one batch_results tool_use block", m.Content)
	}
	var in struct{ Results []anthropictest.Result }
	if err := json.Unmarshal(m.Content[0].Input, &in); err != nil {
		t.Fatalf("tool input %s is not an object: %v", m.Content[0].Input, err)
	}
	return in.Results
}

func TestOutputLimit(t *testing.T) {
	t.Parallel()
	all := []anthropictest.Result{{ID: "a", Output: "processed: x"}, {ID: "b", Output: "processed: y"}, {ID: "c", Output: "processed: z"}}
	tests := []struct {
		name     string
		cap      int
		body     string
		wantStop string
		wantKept int // whole results in a cut-off batch answer
	}{
		{"batch under the cap", 3, batchBody("m"), "tool_use", 3},
		{"batch over the cap", 2, batchBody("m"), "max_tokens", 1},
		{"batch over max_tokens", 0, withMaxTokens(batchBody("m"), 20), "max_tokens", 1},
		{"batch within max_tokens", 0, withMaxTokens(batchBody("m"), 5000), "tool_use", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := anthropictest.NewServer()
			t.Cleanup(srv.Close)
			srv.SetOutputCap(tt.cap)
			m := answer(t, srv, tt.body)
			got := toolResults(t, m)
			if m.StopReason != tt.wantStop {
				t.Fatalf("stop_reason %q, want %q", m.StopReason, tt.wantStop)
			}
			if tt.wantStop == "tool_use" {
				if !slices.Equal(got, all) {
					t.Errorf("results %+v, want all", got)
				}
				return
			}
			// What the model wrote: whole results, then maybe the one it was
			// writing, its output cut short.
			if len(got) < tt.wantKept || len(got) > tt.wantKept+1 || !slices.Equal(got[:tt.wantKept], all[:tt.wantKept]) {
				t.Fatalf("cut-off results %+v, want the first %d whole", got, tt.wantKept)
			}
			if len(got) > tt.wantKept {
				if last := got[tt.wantKept]; last.ID != all[tt.wantKept].ID || len(last.Output) >= len(all[tt.wantKept].Output) {
					t.Errorf("the result being written %+v, want its output cut short", last)
				}
			}
		})
	}
	t.Run("plain", func(t *testing.T) {
		t.Parallel()
		srv := anthropictest.NewServer()
		t.Cleanup(srv.Close)
		srv.SetOutputCap(1) // caps batch answers only
		if m := answer(t, srv, plainBody("hello")); m.StopReason != "end_turn" || m.Content[0].Text != anthropictest.Answer("hello") {
			t.Errorf("plain answer under the cap: %+v", m)
		}
		m := answer(t, srv, withMaxTokens(plainBody("hello"), 2))
		if m.StopReason != "max_tokens" || m.Content[0].Text != "processe" || m.Usage.OutputTokens != 2 {
			t.Errorf("plain answer over max_tokens: %+v", m)
		}
	})
}

func TestRefuseInput(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, body string }{
		{"batch", batchBody("m")},
		{"plain", plainBody("y")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := anthropictest.NewServer()
			t.Cleanup(srv.Close)
			srv.RefuseInput("y")
			r, err := post(t, t.Context(), srv, nil, tt.body)
			m := decode(t, r, err)
			if m.StopReason != "refusal" || len(m.Content) != 0 {
				t.Errorf("answer %s, want stop_reason refusal and no content", r.body)
			}
			// The SDK reads it as the API's refusal.
			var sdk anthropic.Message
			if err := json.Unmarshal(r.body, &sdk); err != nil {
				t.Fatal(err)
			}
			if sdk.StopReason != anthropic.StopReasonRefusal || sdk.StopDetails.Type != "refusal" || sdk.StopDetails.Category == "" {
				t.Errorf("SDK reads stop_reason %q, stop_details %+v", sdk.StopReason, sdk.StopDetails)
			}
			if m := answer(t, srv, plainBody("x")); m.StopReason != "end_turn" {
				t.Errorf("another input: %+v", m)
			}
		})
	}
}

func TestRequireKey(t *testing.T) {
	t.Parallel()
	srv := anthropictest.NewServer(anthropictest.WithAPIKey("sk-ant-first"))
	t.Cleanup(srv.Close)
	call := func(key string) reply {
		t.Helper()
		r, err := post(t, t.Context(), srv, map[string]string{"x-api-key": key, "anthropic-version": anthropictest.Version}, plainBody("hi"))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := call("sk-ant-first"); r.status != http.StatusOK {
		t.Fatalf("the right key: %d %s", r.status, r.body)
	}
	srv.RequireKey("sk-ant-second") // rotated
	r := call("sk-ant-first")
	var e errorBody
	if err := json.Unmarshal(r.body, &e); err != nil || r.status != http.StatusUnauthorized || e.Type != "error" ||
		e.Error.Type != "authentication_error" || e.Error.Message != "invalid x-api-key" {
		t.Fatalf("the old key: %d %s, want 401 authentication_error", r.status, r.body)
	}
	if r := call("sk-ant-second"); r.status != http.StatusOK {
		t.Fatalf("the new key: %d %s", r.status, r.body)
	}
	if srv.Calls() != 3 || !slices.Equal(srv.CallSizes(), []int{1, 1}) {
		t.Errorf("Calls %d, CallSizes %v; want 3 calls, 2 past the key", srv.Calls(), srv.CallSizes())
	}
}

func TestFailFor(t *testing.T) {
	t.Parallel()
	srv := anthropictest.NewServer()
	t.Cleanup(srv.Close)
	for status, typ := range map[int]string{500: "api_error", 529: "overloaded_error", 503: "api_error"} {
		srv.FailFor(time.Hour, status)
		r, err := post(t, t.Context(), srv, nil, plainBody("hi"))
		var e errorBody
		if err != nil || r.status != status || json.Unmarshal(r.body, &e) != nil || e.Error.Type != typ {
			t.Fatalf("FailFor(%d) = %d %s, %v; want %s", status, r.status, r.body, err, typ)
		}
	}
	start := time.Now()
	srv.FailFor(50*time.Millisecond, 529)
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		r, err := post(t, t.Context(), srv, nil, plainBody("hi"))
		if err != nil {
			t.Fatal(err)
		}
		if r.status == http.StatusOK {
			break
		}
		select {
		case <-deadline:
			t.Fatal("still failing 10s after FailFor(50ms)")
		case <-tick.C:
		}
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("the outage ended after %v, before its 50ms", took)
	}
}

func TestHangFor(t *testing.T) {
	t.Parallel()
	srv := anthropictest.NewServer()
	t.Cleanup(srv.Close)
	srv.HangFor(time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if r, err := post(t, ctx, srv, nil, plainBody("hi")); err == nil {
		t.Fatalf("a hanging call was answered %d %s", r.status, r.body)
	}
	srv.HangFor(0)
	answer(t, srv, plainBody("hi"))
}

func TestIDEnum(t *testing.T) {
	t.Parallel()
	srv := anthropictest.NewServer()
	t.Cleanup(srv.Close)
	enum := strings.Replace(schema, `"id":{"type":"string"}`, `"id":{"type":"string","enum":["a","b","c"]}`, 1)
	answer(t, srv, strings.Replace(batchBody("m"), schema, enum, 1))
	if reqs := srv.Requests(); len(reqs) != 1 || !slices.Equal(reqs[0].IDEnum, []string{"a", "b", "c"}) {
		t.Errorf("IDEnum = %v, want [a b c]", reqs[0].IDEnum)
	}
	if got := srv.CallSizes(); !slices.Equal(got, []int{3}) {
		t.Errorf("CallSizes = %v, want [3]", got)
	}
}
