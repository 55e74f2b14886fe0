package openaitest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider/openaitest"
)

// enumSchema is the batch schema with the enum of the ids a, b and c.
var enumSchema = strings.Replace(schema, `"id":{"type":"string"}`, `"id":{"type":"string","enum":["a","b","c"]}`, 1)

// withMaxTokens adds max_completion_tokens to a request body.
func withMaxTokens(body string, n int) string {
	return strings.Replace(body, `{"model":`, `{"max_completion_tokens":`+itoa(n)+`,"model":`, 1)
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// decodeCompletion decodes a 200 chat completion.
func decodeCompletion(t *testing.T, r reply) completion {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d %s, want 200", r.status, r.body)
	}
	var c completion
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatalf("answer is not a chat completion: %v: %s", err, r.body)
	}
	if len(c.Choices) != 1 {
		t.Fatalf("%d choices: %s", len(c.Choices), r.body)
	}
	return c
}

func TestOutputLimit(t *testing.T) {
	t.Parallel()
	full := `{"results":[{"id":"a","output":"processed: x"},{"id":"b","output":"processed: y"},{"id":"c","output":"processed: z"}]}`
	tests := []struct {
		name       string
		cap        int
		body       string
		wantFinish string
		wantText   string // the content, or a prefix of it when cut
		wantCut    bool
	}{
		{"batch under the cap", 3, batchBody("m"), "stop", full, false},
		{"batch over the cap", 2, batchBody("m"), "length", full[:len(full)*2/3], true},
		{"batch over max_completion_tokens", 0, withMaxTokens(batchBody("m"), 10), "length", full[:40], true},
		{"batch within max_completion_tokens", 0, withMaxTokens(batchBody("m"), 1000), "stop", full, false},
		{"plain call ignores the cap", 1, plainBody("hello"), "stop", openaitest.Answer("hello"), false},
		{"plain call over max_completion_tokens", 0, withMaxTokens(plainBody("hello"), 2), "length", "processe", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := openaitest.NewServer()
			t.Cleanup(srv.Close)
			srv.SetOutputCap(tt.cap)
			r, err := post(t, t.Context(), srv, "Bearer k", tt.body)
			if err != nil {
				t.Fatal(err)
			}
			c := decodeCompletion(t, r)
			got := c.Choices[0]
			if got.FinishReason != tt.wantFinish || got.Message.Content == nil || *got.Message.Content != tt.wantText {
				t.Fatalf("answer = %q, finish_reason %q; want %q, %q", deref(got.Message.Content), got.FinishReason, tt.wantText, tt.wantFinish)
			}
			if tt.wantCut && strings.Contains(tt.body, "json_schema") && json.Valid([]byte(*got.Message.Content)) {
				t.Errorf("a cut-off batch answer is valid JSON: %s", *got.Message.Content)
			}
			if want := int64(len(*got.Message.Content)+3) / 4; c.Usage.CompletionTokens != want {
				t.Errorf("completion_tokens = %d, want %d", c.Usage.CompletionTokens, want)
			}
		})
	}
}

func TestRefuseInput(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, body string }{
		{"batch", batchBody("m")},
		{"plain", plainBody("y")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := openaitest.NewServer()
			t.Cleanup(srv.Close)
			srv.RefuseInput("y")
			r, err := post(t, t.Context(), srv, "Bearer k", tt.body)
			if err != nil {
				t.Fatal(err)
			}
			got := decodeCompletion(t, r).Choices[0]
			if got.Message.Content != nil || deref(got.Message.Refusal) == "" || got.FinishReason != "stop" {
				t.Errorf("answer = content %q, refusal %q, finish_reason %q; want null content, a refusal, stop", deref(got.Message.Content), deref(got.Message.Refusal), got.FinishReason)
			}
			if !strings.Contains(string(r.body), `"content":null`) {
				t.Errorf("content is not null: %s", r.body)
			}
			// Other inputs are answered.
			r, err = post(t, t.Context(), srv, "Bearer k", plainBody("x"))
			if err != nil {
				t.Fatal(err)
			}
			if got := decodeCompletion(t, r).Choices[0]; deref(got.Message.Content) != openaitest.Answer("x") {
				t.Errorf("another input: %+v", got)
			}
		})
	}
}

func TestRequireKey(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer(openaitest.WithAPIKey("sk-first-0123456789"))
	t.Cleanup(srv.Close)
	call := func(key string) reply {
		t.Helper()
		r, err := post(t, t.Context(), srv, "Bearer "+key, plainBody("hi"))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := call("sk-first-0123456789"); r.status != http.StatusOK {
		t.Fatalf("the right key: %d %s", r.status, r.body)
	}
	srv.RequireKey("sk-second-0123456789") // rotated
	r := call("sk-first-0123456789")
	var e errorBody
	if err := json.Unmarshal(r.body, &e); err != nil || r.status != http.StatusUnauthorized || deref(e.Error.Code) != "invalid_api_key" || e.Error.Type != "invalid_request_error" {
		t.Fatalf("the old key: %d %s, want 401 invalid_api_key", r.status, r.body)
	}
	if !strings.HasPrefix(e.Error.Message, "Incorrect API key provided: sk-") || strings.Contains(e.Error.Message, "sk-first-0123456789") || !strings.Contains(e.Error.Message, "6789") {
		t.Errorf("message %q, want the key masked as the API does", e.Error.Message)
	}
	if r := call("sk-second-0123456789"); r.status != http.StatusOK {
		t.Fatalf("the new key: %d %s", r.status, r.body)
	}
	if srv.Calls() != 3 || !slices.Equal(srv.CallSizes(), []int{1, 1}) {
		t.Errorf("Calls %d, CallSizes %v; want 3 calls, 2 past the key", srv.Calls(), srv.CallSizes())
	}
}

func TestFailFor(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	for _, status := range []int{500, 502, 503, 529} {
		srv.FailFor(time.Hour, status)
		r, err := post(t, t.Context(), srv, "Bearer k", plainBody("hi"))
		var e errorBody
		if err != nil || r.status != status || json.Unmarshal(r.body, &e) != nil || e.Error.Message == "" {
			t.Fatalf("FailFor(%d) = %d %s, %v; want the status with OpenAI's error JSON", status, r.status, r.body, err)
		}
	}
	start := time.Now()
	srv.FailFor(50*time.Millisecond, 503)
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		r, err := post(t, t.Context(), srv, "Bearer k", plainBody("hi"))
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
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	srv.HangFor(time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if r, err := post(t, ctx, srv, "Bearer k", plainBody("hi")); err == nil {
		t.Fatalf("a hanging call was answered %d %s", r.status, r.body)
	}
	srv.HangFor(0)
	if r, err := post(t, t.Context(), srv, "Bearer k", plainBody("hi")); err != nil || r.status != http.StatusOK {
		t.Fatalf("after the hang: %d, %v", r.status, err)
	}
}

func TestIDEnum(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	body := strings.Replace(batchBody("m"), schema, enumSchema, 1)
	r, err := post(t, t.Context(), srv, "Bearer k", body)
	if err != nil {
		t.Fatal(err)
	}
	decodeCompletion(t, r)
	reqs := srv.Requests()
	if len(reqs) != 1 || !slices.Equal(reqs[0].IDEnum, []string{"a", "b", "c"}) {
		t.Errorf("IDEnum = %v, want [a b c]", reqs[0].IDEnum)
	}
	bad := strings.Replace(batchBody("m"), schema, strings.Replace(enumSchema, `["a","b","c"]`, `"a"`, 1), 1)
	if r, err := post(t, t.Context(), srv, "Bearer k", bad); err != nil || r.status != http.StatusBadRequest {
		t.Errorf("an enum that is not a list: %d %s, %v; want 400", r.status, r.body, err)
	}
	if got := srv.CallSizes(); !slices.Equal(got, []int{3}) {
		t.Errorf("CallSizes = %v, want [3]", got)
	}
}
