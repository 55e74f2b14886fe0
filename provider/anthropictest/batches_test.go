package anthropictest_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aibatch/aibatch/provider/anthropictest"
)

// batchCall sends a Message Batches request with valid headers.
func batchCall(t *testing.T, srv *anthropictest.Server, method, path, body string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-api-key", "k")
	req.Header.Set("anthropic-version", anthropictest.Version)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: res.StatusCode, header: res.Header, body: b}
}

// batchRequest is one request of a create body asking a plain answer to input.
func batchRequest(id, input string) string {
	in, _ := json.Marshal(input)
	return `{"custom_id":"` + id + `","params":{"model":"claude-test","max_tokens":100,"system":"sys","messages":[{"role":"user","content":` + string(in) + `}]}}`
}

func createBody(reqs ...string) string { return `{"requests":[` + strings.Join(reqs, ",") + `]}` }

type batchObject struct {
	ID               string  `json:"id"`
	Type             string  `json:"type"`
	ProcessingStatus string  `json:"processing_status"`
	EndedAt          *string `json:"ended_at"`
	CreatedAt        string  `json:"created_at"`
	ExpiresAt        string  `json:"expires_at"`
	CancelInitiated  *string `json:"cancel_initiated_at"`
	ResultsURL       *string `json:"results_url"`
	RequestCounts    struct {
		Processing, Succeeded, Errored, Canceled, Expired int
	} `json:"request_counts"`
}

type resultLine struct {
	CustomID string `json:"custom_id"`
	Result   struct {
		Type    string   `json:"type"`
		Message *message `json:"message"`
		Error   *struct {
			Type  string `json:"type"`
			Error struct {
				Type    string `json:"type"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"error"`
	} `json:"result"`
}

func decodeBatch(t *testing.T, r reply) batchObject {
	t.Helper()
	var b batchObject
	if r.status != http.StatusOK || json.Unmarshal(r.body, &b) != nil {
		t.Fatalf("HTTP %d %s, want a message batch", r.status, r.body)
	}
	return b
}

func createBatch(t *testing.T, srv *anthropictest.Server, reqs ...string) batchObject {
	t.Helper()
	return decodeBatch(t, batchCall(t, srv, http.MethodPost, anthropictest.BatchesPath, createBody(reqs...)))
}

func getBatch(t *testing.T, srv *anthropictest.Server, id string) batchObject {
	t.Helper()
	return decodeBatch(t, batchCall(t, srv, http.MethodGet, anthropictest.BatchesPath+"/"+id, ""))
}

// batchResults downloads the results of batch id.
func batchResults(t *testing.T, srv *anthropictest.Server, id string) []resultLine {
	t.Helper()
	r := batchCall(t, srv, http.MethodGet, anthropictest.BatchesPath+"/"+id+"/results", "")
	if r.status != http.StatusOK {
		t.Fatalf("results: HTTP %d %s", r.status, r.body)
	}
	var lines []resultLine
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	for sc.Scan() {
		var l resultLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines
}

// summary is "custom_id:type[:error type]" per result line.
func summary(lines []resultLine) []string {
	var out []string
	for _, l := range lines {
		s := l.CustomID + ":" + l.Result.Type
		if l.Result.Error != nil {
			s += ":" + l.Result.Error.Error.Type
		}
		out = append(out, s)
	}
	return out
}

func TestBatchLifecycle(t *testing.T) {
	t.Parallel()
	srv := anthropictest.NewServer()
	defer srv.Close()
	b := createBatch(t, srv, batchRequest("a", "x"), batchRequest("b", "y"))
	if b.Type != "message_batch" || b.ProcessingStatus != anthropictest.StatusInProgress || b.RequestCounts.Processing != 2 ||
		b.ResultsURL != nil || b.EndedAt != nil || b.CreatedAt == "" || b.ExpiresAt <= b.CreatedAt {
		t.Errorf("created batch %+v", b)
	}
	if srv.Jobs() != 1 {
		t.Errorf("Jobs() = %d", srv.Jobs())
	}
	if reqs := srv.BatchRequests(b.ID); len(reqs) != 2 || reqs[1].CustomID != "b" || reqs[1].System != "sys" || reqs[1].Messages[0].Content != "y" {
		t.Errorf("BatchRequests = %+v", reqs)
	}
	if r := batchCall(t, srv, http.MethodGet, anthropictest.BatchesPath+"/"+b.ID+"/results", ""); r.status != http.StatusBadRequest {
		t.Errorf("results before the end: HTTP %d, want 400", r.status)
	}
	if g := getBatch(t, srv, b.ID); g.ProcessingStatus != anthropictest.StatusInProgress {
		t.Errorf("polled batch %+v, want in_progress", g)
	}

	srv.CompleteBatches()
	g := getBatch(t, srv, b.ID)
	if g.ProcessingStatus != anthropictest.StatusEnded || g.EndedAt == nil || g.RequestCounts.Succeeded != 2 || g.RequestCounts.Processing != 0 {
		t.Fatalf("ended batch %+v", g)
	}
	if want := srv.URL + anthropictest.BatchesPath + "/" + b.ID + "/results"; g.ResultsURL == nil || *g.ResultsURL != want {
		t.Errorf("results_url %v, want %s", g.ResultsURL, want)
	}
	lines := batchResults(t, srv, b.ID)
	if len(lines) != 2 {
		t.Fatalf("%d result lines, want 2", len(lines))
	}
	for i, l := range lines {
		m := l.Result.Message
		want := anthropictest.Answer([]string{"x", "y"}[i])
		if l.CustomID != []string{"a", "b"}[i] || l.Result.Type != "succeeded" || m == nil || m.Type != "message" ||
			len(m.Content) != 1 || m.Content[0].Text != want || m.StopReason != "end_turn" || m.Usage.InputTokens <= 0 {
			t.Errorf("line %d: %+v (message %+v), want succeeded with %q", i, l, m, want)
		}
	}
}

func TestBatchResultControls(t *testing.T) {
	t.Parallel()
	reqs := []string{batchRequest("a", "x"), batchRequest("b", "y"), batchRequest("c", "z")}
	tests := []struct {
		name    string
		opts    []anthropictest.Option
		arrange func(*anthropictest.Server)
		end     func(*anthropictest.Server, string) error
		want    []string
	}{
		{"complete", nil, func(*anthropictest.Server) {}, completeBatches, []string{"a:succeeded", "b:succeeded", "c:succeeded"}},
		{"fail requests", nil, func(s *anthropictest.Server) { s.FailRequests("api_error", "y") }, completeBatches,
			[]string{"a:succeeded", "b:errored:api_error", "c:succeeded"}},
		{"fail requests undone", nil, func(s *anthropictest.Server) { s.FailRequests("api_error", "y"); s.FailRequests("", "y") }, completeBatches,
			[]string{"a:succeeded", "b:succeeded", "c:succeeded"}},
		{"reject and omit", nil, func(s *anthropictest.Server) { s.RejectInput("x", false); s.RejectInput("y", true); s.OmitInput("z") }, completeBatches,
			[]string{"a:errored:invalid_request_error", "b:errored:overloaded_error"}},
		{"unknown model", []anthropictest.Option{anthropictest.WithUnknownModels("claude-test")}, func(*anthropictest.Server) {}, completeBatches,
			[]string{"a:errored:not_found_error", "b:errored:not_found_error", "c:errored:not_found_error"}},
		{"expire", nil, func(*anthropictest.Server) {}, func(s *anthropictest.Server, id string) error { return s.ExpireBatch(id, 1) },
			[]string{"a:succeeded", "b:expired", "c:expired"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := anthropictest.NewServer(tt.opts...)
			defer srv.Close()
			tt.arrange(srv)
			b := createBatch(t, srv, reqs...)
			if err := tt.end(srv, b.ID); err != nil {
				t.Fatal(err)
			}
			if g := getBatch(t, srv, b.ID); g.ProcessingStatus != anthropictest.StatusEnded {
				t.Fatalf("status %q, want ended", g.ProcessingStatus)
			}
			if got := summary(batchResults(t, srv, b.ID)); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("results %v, want %v", got, tt.want)
			}
		})
	}
}

func completeBatches(s *anthropictest.Server, _ string) error { s.CompleteBatches(); return nil }

// Params the Messages API would refuse make their request errored at the
// end, as the real API validates them only then.
func TestBatchInvalidParams(t *testing.T) {
	t.Parallel()
	srv := anthropictest.NewServer()
	defer srv.Close()
	b := createBatch(t, srv,
		`{"custom_id":"no-model","params":{"max_tokens":10,"messages":[{"role":"user","content":"x"}]}}`,
		`{"custom_id":"no-max-tokens","params":{"model":"m","messages":[{"role":"user","content":"x"}]}}`,
		`{"custom_id":"assistant-last","params":{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}]}}`,
		batchRequest("ok", "x"),
	)
	srv.CompleteBatches()
	want := []string{"no-model:errored:invalid_request_error", "no-max-tokens:errored:invalid_request_error",
		"assistant-last:errored:invalid_request_error", "ok:succeeded"}
	if got := summary(batchResults(t, srv, b.ID)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("results %v, want %v", got, want)
	}
}

func TestBatchCallErrors(t *testing.T) {
	t.Parallel()
	srv := anthropictest.NewServer(anthropictest.WithAPIKey("k"))
	defer srv.Close()
	tests := []struct {
		name       string
		method     string
		path, body string
		wantStatus int
		wantType   string
	}{
		{"no requests", http.MethodPost, anthropictest.BatchesPath, `{"requests":[]}`, 400, "invalid_request_error"},
		{"not JSON", http.MethodPost, anthropictest.BatchesPath, `{"requests":`, 400, "invalid_request_error"},
		{"bad custom_id", http.MethodPost, anthropictest.BatchesPath, createBody(batchRequest("a/b", "x")), 400, "invalid_request_error"},
		{"repeated custom_id", http.MethodPost, anthropictest.BatchesPath, createBody(batchRequest("a", "x"), batchRequest("a", "y")), 400, "invalid_request_error"},
		{"params not an object", http.MethodPost, anthropictest.BatchesPath, `{"requests":[{"custom_id":"a","params":"x"}]}`, 400, "invalid_request_error"},
		{"get unknown", http.MethodGet, anthropictest.BatchesPath + "/msgbatch_none", "", 404, "not_found_error"},
		{"cancel unknown", http.MethodPost, anthropictest.BatchesPath + "/msgbatch_none/cancel", "", 404, "not_found_error"},
		{"results of unknown", http.MethodGet, anthropictest.BatchesPath + "/msgbatch_none/results", "", 404, "not_found_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := batchCall(t, srv, tt.method, tt.path, tt.body)
			var e errorBody
			if r.status != tt.wantStatus || json.Unmarshal(r.body, &e) != nil || e.Type != "error" || e.Error.Type != tt.wantType {
				t.Errorf("HTTP %d %s, want %d %s", r.status, r.body, tt.wantStatus, tt.wantType)
			}
		})
	}
	if srv.Jobs() != 0 {
		t.Errorf("Jobs() = %d after failed creations", srv.Jobs())
	}

	// A wrong key, a missing version, and FailNext apply to batch calls too.
	for _, h := range []struct {
		name       string
		header     map[string]string
		wantStatus int
	}{
		{"wrong key", map[string]string{"x-api-key": "wrong", "anthropic-version": anthropictest.Version}, http.StatusUnauthorized},
		{"no version", map[string]string{"x-api-key": "k"}, http.StatusBadRequest},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+anthropictest.BatchesPath+"/msgbatch_none", nil)
		for k, v := range h.header {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != h.wantStatus {
			t.Errorf("%s: HTTP %d, want %d", h.name, res.StatusCode, h.wantStatus)
		}
	}
	srv.FailNext(1, 529)
	if r := batchCall(t, srv, http.MethodPost, anthropictest.BatchesPath, createBody(batchRequest("a", "x"))); r.status != 529 {
		t.Errorf("create after FailNext: HTTP %d, want 529", r.status)
	}
	if srv.Calls() != 0 {
		t.Errorf("Calls() = %d, want 0: batch calls are not Messages calls", srv.Calls())
	}
}

func TestBatchCancel(t *testing.T) {
	t.Parallel()
	srv := anthropictest.NewServer()
	defer srv.Close()
	b := createBatch(t, srv, batchRequest("a", "x"), batchRequest("b", "y"))
	cancel := func() reply {
		return batchCall(t, srv, http.MethodPost, anthropictest.BatchesPath+"/"+b.ID+"/cancel", "")
	}
	for i := range 2 {
		if c := decodeBatch(t, cancel()); c.ProcessingStatus != anthropictest.StatusCanceling || c.CancelInitiated == nil {
			t.Errorf("cancel %d answered %+v, want canceling", i, c)
		}
	}
	srv.CompleteBatches() // does not touch a canceling batch
	if g := getBatch(t, srv, b.ID); g.ProcessingStatus != anthropictest.StatusEnded || g.RequestCounts.Canceled != 2 {
		t.Errorf("batch after cancel %+v, want ended with 2 canceled", g)
	}
	if got, want := summary(batchResults(t, srv, b.ID)), []string{"a:canceled", "b:canceled"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("results %v, want %v", got, want)
	}
	if r := cancel(); r.status != http.StatusBadRequest {
		t.Errorf("cancel of an ended batch: HTTP %d, want 400", r.status)
	}
	if srv.Cancelled() != 1 {
		t.Errorf("Cancelled() = %d, want 1", srv.Cancelled())
	}
	if err := srv.ExpireBatch(b.ID, 0); err == nil {
		t.Error("ExpireBatch of an ended batch succeeded")
	}
	if err := srv.ExpireBatch("msgbatch_none", 0); err == nil {
		t.Error("ExpireBatch of an unknown batch succeeded")
	}
}

func TestBatchCompleteAfterAndMalformed(t *testing.T) {
	t.Parallel()
	srv := anthropictest.NewServer(anthropictest.WithCompleteAfter(2))
	defer srv.Close()
	b := createBatch(t, srv, batchRequest("a", "x"), batchRequest("b", "y"))
	if g := getBatch(t, srv, b.ID); g.ProcessingStatus != anthropictest.StatusInProgress {
		t.Fatalf("first poll: %q, want in_progress", g.ProcessingStatus)
	}
	if g := getBatch(t, srv, b.ID); g.ProcessingStatus != anthropictest.StatusEnded {
		t.Fatalf("second poll: %q, want ended", g.ProcessingStatus)
	}
	srv.SetMalformedNext(1)
	r := batchCall(t, srv, http.MethodGet, anthropictest.BatchesPath+"/"+b.ID+"/results", "")
	var bad int
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	for sc.Scan() {
		if !json.Valid(sc.Bytes()) {
			bad++
		}
	}
	if r.status != http.StatusOK || bad == 0 {
		t.Errorf("malformed download: HTTP %d, %d invalid lines in %q; want 200 and a cut-off line", r.status, bad, r.body)
	}
	if lines := batchResults(t, srv, b.ID); len(lines) != 2 {
		t.Errorf("next download has %d lines, want 2", len(lines))
	}
}

func TestFailBatch(t *testing.T) {
	t.Parallel()
	srv := anthropictest.NewServer()
	t.Cleanup(srv.Close)
	b := createBatch(t, srv, batchRequest("r0", "a"), batchRequest("r1", "b"))
	if err := srv.FailBatch("msgbatch_none", "api_error"); err == nil {
		t.Error("FailBatch of an unknown batch: nil error")
	}
	if err := srv.FailBatch(b.ID, "overloaded_error"); err != nil {
		t.Fatal(err)
	}
	got := getBatch(t, srv, b.ID)
	if got.ProcessingStatus != anthropictest.StatusEnded || got.RequestCounts.Errored != 2 || got.RequestCounts.Succeeded != 0 {
		t.Errorf("failed batch = %+v, want ended with 2 errored", got)
	}
	if s := fmt.Sprint(summary(batchResults(t, srv, b.ID))); s != "[r0:errored:overloaded_error r1:errored:overloaded_error]" {
		t.Errorf("results %s", s)
	}
	if err := srv.FailBatch(b.ID, "api_error"); err == nil {
		t.Error("FailBatch of an ended batch: nil error")
	}
}
