package httpapitest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider/httpapitest"
)

// answerOf posts body and decodes the 200 answer.
func answerOf(t *testing.T, srv *httpapitest.Server, auth, body string) (results []httpapitest.Result, truncated bool) {
	t.Helper()
	r, err := send(t, t.Context(), srv, http.MethodPost, "application/json", auth, body)
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("post = %d %s, %v", r.status, r.body, err)
	}
	var a struct {
		Results   []httpapitest.Result
		Truncated bool
	}
	if err := json.Unmarshal(r.body, &a); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return a.Results, a.Truncated
}

func TestOutputLimit(t *testing.T) {
	t.Parallel()
	one := `{"items":[{"id":"a","input":"hello","instructions":"i","model":"m"}]}`
	tests := []struct {
		name          string
		cap           int
		body          string
		wantSummary   []string
		wantTruncated bool
	}{
		{"under the cap", 3, items, []string{"a=processed: x", "b=processed: y", "c=processed: z"}, false},
		{"over the cap", 2, items, []string{"a=processed: x", "b=processed: y"}, true},
		{"over the call's max_output_tokens", 0, `{"max_output_tokens":7,` + items[1:], []string{"a=processed: x", "b=processed: y"}, true},
		{"within the call's max_output_tokens", 0, `{"max_output_tokens":100,` + items[1:], []string{"a=processed: x", "b=processed: y", "c=processed: z"}, false},
		{"one item ignores the cap", 1, one, []string{"a=processed: hello"}, false},
		{"one item over the call's limit", 0, `{"max_output_tokens":2,` + one[1:], []string{"a=processe"}, true},
		{"one item over its own limit", 0, `{"max_output_tokens":100,` + strings.Replace(one[1:], `"model":"m"`, `"model":"m","max_output_tokens":1`, 1), []string{"a=proc"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httpapitest.NewServer()
			t.Cleanup(srv.Close)
			srv.SetOutputCap(tt.cap)
			results, truncated := answerOf(t, srv, "", tt.body)
			if got := summary(results); !slices.Equal(got, tt.wantSummary) || truncated != tt.wantTruncated {
				t.Errorf("answer %v, truncated %v; want %v, %v", got, truncated, tt.wantSummary, tt.wantTruncated)
			}
		})
	}
}

func TestRefuseInput(t *testing.T) {
	t.Parallel()
	srv := httpapitest.NewServer()
	t.Cleanup(srv.Close)
	srv.RefuseInput("y")
	results, _ := answerOf(t, srv, "", items)
	if got := summary(results); !slices.Equal(got, []string{"a=processed: x", "b!final", "c=processed: z"}) {
		t.Errorf("answer %v, want b refused alone, for good", got)
	}
	if !strings.HasPrefix(results[1].Error, "refused") {
		t.Errorf("error %q, want a refusal", results[1].Error)
	}
}

func TestRequireKey(t *testing.T) {
	t.Parallel()
	srv := httpapitest.NewServer(httpapitest.WithToken("first"))
	t.Cleanup(srv.Close)
	answerOf(t, srv, "Bearer first", items)
	srv.RequireKey("second") // rotated
	r, err := send(t, t.Context(), srv, http.MethodPost, "application/json", "Bearer first", items)
	if err != nil || r.status != http.StatusUnauthorized {
		t.Fatalf("the old token: %d %s, %v; want 401", r.status, r.body, err)
	}
	answerOf(t, srv, "Bearer second", items)
	srv.RequireKey("")
	answerOf(t, srv, "", items)
	if got := srv.CallSizes(); !slices.Equal(got, []int{3, 3, 3}) {
		t.Errorf("CallSizes = %v, want the 3 calls past the token", got)
	}
}

func TestFailForAndHangFor(t *testing.T) {
	t.Parallel()
	srv := httpapitest.NewServer()
	t.Cleanup(srv.Close)
	srv.FailFor(time.Hour, 502)
	if r, err := send(t, t.Context(), srv, http.MethodPost, "application/json", "", items); err != nil || r.status != 502 {
		t.Fatalf("during the outage: %d %s, %v", r.status, r.body, err)
	}
	srv.FailFor(0, 0)
	answerOf(t, srv, "", items)
	srv.HangFor(time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if r, err := send(t, ctx, srv, http.MethodPost, "application/json", "", items); err == nil {
		t.Fatalf("a hanging call was answered %d %s", r.status, r.body)
	}
	srv.HangFor(0)
	answerOf(t, srv, "", items)
}

func TestUnknownModel(t *testing.T) {
	t.Parallel()
	srv := httpapitest.NewServer(httpapitest.WithUnknownModels("gone"))
	t.Cleanup(srv.Close)
	for _, model := range []string{"unknown-x", "gone"} {
		r, err := send(t, t.Context(), srv, http.MethodPost, "application/json", "", strings.ReplaceAll(items, `"model":"m"`, `"model":"`+model+`"`))
		var e struct{ Error, Code string }
		if err != nil || r.status != http.StatusNotFound || json.Unmarshal(r.body, &e) != nil || e.Code != "model_not_found" || e.Error == "" {
			t.Errorf("model %s: %d %s, %v; want 404 model_not_found", model, r.status, r.body, err)
		}
	}
	if reqs := srv.Requests(); len(reqs) != 2 || reqs[0].MaxOutputTokens != 0 {
		t.Errorf("requests %+v", reqs)
	}
}
