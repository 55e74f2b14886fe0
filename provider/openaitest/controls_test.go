package openaitest_test

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider/openaitest"
)

// plainBody is a plain (single-request) call for input.
func plainBody(input string) string {
	in, _ := json.Marshal(input)
	return `{"model":"m","messages":[{"role":"user","content":` + string(in) + `}]}`
}

// batchResults posts the batch a/x, b/y, c/z and returns its answer's results.
func batchResults(t *testing.T, srv *openaitest.Server) []openaitest.Result {
	t.Helper()
	r, err := post(t, t.Context(), srv, "Bearer k", batchBody("m"))
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("post = %d %s, %v", r.status, r.body, err)
	}
	var c completion
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatal(err)
	}
	var results struct{ Results []openaitest.Result }
	if err := json.Unmarshal([]byte(*c.Choices[0].Message.Content), &results); err != nil {
		t.Fatal(err)
	}
	return results.Results
}

func TestBatchControls(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		arrange func(*openaitest.Server)
		want    []openaitest.Result
	}{
		{"omit input", func(s *openaitest.Server) { s.OmitInput("y") },
			[]openaitest.Result{{ID: "a", Output: openaitest.Answer("x")}, {ID: "c", Output: openaitest.Answer("z")}}},
		{"reject input leaves it out", func(s *openaitest.Server) { s.RejectInput("x", false) },
			[]openaitest.Result{{ID: "b", Output: openaitest.Answer("y")}, {ID: "c", Output: openaitest.Answer("z")}}},
		{"reject retryable input leaves it out", func(s *openaitest.Server) { s.RejectInput("z", true) },
			[]openaitest.Result{{ID: "a", Output: openaitest.Answer("x")}, {ID: "b", Output: openaitest.Answer("y")}}},
		{"repeat ids", func(s *openaitest.Server) { s.RepeatIDs(true) },
			[]openaitest.Result{
				{ID: "not-asked", Output: openaitest.Answer("not asked")},
				{ID: "a", Output: openaitest.Answer("x")}, {ID: "b", Output: openaitest.Answer("y")}, {ID: "c", Output: openaitest.Answer("z")},
				{ID: "a", Output: "repeated: " + openaitest.Answer("x")},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := openaitest.NewServer()
			t.Cleanup(srv.Close)
			tt.arrange(srv)
			got := batchResults(t, srv)
			if len(got) != len(tt.want) {
				t.Fatalf("results %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i].ID != tt.want[i].ID || got[i].Output != tt.want[i].Output {
					t.Errorf("result %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestPlainControls(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		arrange     func(*openaitest.Server)
		wantStatus  int
		wantCode    string
		wantChoices int  // -1: do not decode
		wantValid   bool // body is valid JSON
	}{
		{"normal", func(*openaitest.Server) {}, 200, "", 1, true},
		{"reject", func(s *openaitest.Server) { s.RejectInput("hello", false) }, 400, "invalid_prompt", -1, true},
		{"reject retryable", func(s *openaitest.Server) { s.RejectInput("hello", true) }, 503, "", -1, true},
		{"reject other input", func(s *openaitest.Server) { s.RejectInput("bye", false) }, 200, "", 1, true},
		{"omit", func(s *openaitest.Server) { s.OmitInput("hello") }, 200, "", 0, true},
		{"malformed body", func(s *openaitest.Server) { s.SetMalformedNext(1) }, 200, "", -1, false},
		{"drop items has no effect", func(s *openaitest.Server) { s.DropItems(5) }, 200, "", 1, true},
		{"repeat ids has no effect", func(s *openaitest.Server) { s.RepeatIDs(true) }, 200, "", 1, true},
		{"shuffle only delays", func(s *openaitest.Server) { s.Shuffle(true) }, 200, "", 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := openaitest.NewServer()
			t.Cleanup(srv.Close)
			tt.arrange(srv)
			r, err := post(t, t.Context(), srv, "Bearer k", plainBody("hello"))
			if err != nil {
				t.Fatal(err)
			}
			if r.status != tt.wantStatus {
				t.Fatalf("status = %d %s, want %d", r.status, r.body, tt.wantStatus)
			}
			if json.Valid(r.body) != tt.wantValid {
				t.Fatalf("body valid JSON = %v, want %v: %s", !tt.wantValid, tt.wantValid, r.body)
			}
			if tt.wantCode != "" {
				var e errorBody
				if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Code == nil || *e.Error.Code != tt.wantCode {
					t.Errorf("error body = %s, want code %s", r.body, tt.wantCode)
				}
			}
			if tt.wantChoices < 0 {
				return
			}
			var c completion
			if err := json.Unmarshal(r.body, &c); err != nil {
				t.Fatal(err)
			}
			if len(c.Choices) != tt.wantChoices {
				t.Fatalf("choices = %d, want %d: %s", len(c.Choices), tt.wantChoices, r.body)
			}
			if tt.wantChoices == 1 && *c.Choices[0].Message.Content != openaitest.Answer("hello") {
				t.Errorf("content = %q", *c.Choices[0].Message.Content)
			}
		})
	}
}

func TestMaxConcurrent(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetDelay(50 * time.Millisecond)
	const n = 3
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if r, err := post(t, t.Context(), srv, "Bearer k", plainBody("hi")); err != nil || r.status != 200 {
				t.Errorf("post = %d, %v", r.status, err)
			}
		})
	}
	wg.Wait()
	if got := srv.MaxConcurrent(); got < 2 || got > n {
		t.Errorf("MaxConcurrent() = %d, want 2..%d", got, n)
	}
	if _, err := post(t, t.Context(), srv, "Bearer k", plainBody("hi")); err != nil {
		t.Fatal(err)
	}
	if got := srv.MaxConcurrent(); got < 2 {
		t.Errorf("MaxConcurrent() fell to %d after a lone call", got)
	}
}
