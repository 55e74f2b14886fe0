package openaitest_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/aibatch/aibatch/provider/openaitest"
)

// call sends a request with a valid bearer token and returns the answer.
func call(t *testing.T, method, url, contentType string, body io.Reader) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer k")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
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

// upload posts data as a file with purpose and returns the answer.
func upload(t *testing.T, srv *openaitest.Server, purpose, data string) reply {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if purpose != "" {
		if err := mw.WriteField("purpose", purpose); err != nil {
			t.Fatal(err)
		}
	}
	fw, err := mw.CreateFormFile("file", "input.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return call(t, http.MethodPost, srv.URL+"/files", mw.FormDataContentType(), &buf)
}

// jobLine is one input line asking for a plain answer to input.
func jobLine(id, input string) string {
	in, _ := json.Marshal(input)
	return `{"custom_id":"` + id + `","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"system","content":"sys"},{"role":"user","content":` + string(in) + `}]}}` + "\n"
}

type fileObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Bytes   int    `json:"bytes"`
	Purpose string `json:"purpose"`
}

type batchObject struct {
	ID            string  `json:"id"`
	Object        string  `json:"object"`
	Endpoint      string  `json:"endpoint"`
	Status        string  `json:"status"`
	InputFileID   string  `json:"input_file_id"`
	OutputFileID  *string `json:"output_file_id"`
	ErrorFileID   *string `json:"error_file_id"`
	CreatedAt     int64   `json:"created_at"`
	CompletedAt   *int64  `json:"completed_at"`
	RequestCounts struct {
		Total     int `json:"total"`
		Completed int `json:"completed"`
		Failed    int `json:"failed"`
	} `json:"request_counts"`
	Errors *struct {
		Data []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Line    *int   `json:"line"`
		} `json:"data"`
	} `json:"errors"`
}

type outputLine struct {
	ID       string `json:"id"`
	CustomID string `json:"custom_id"`
	Response *struct {
		StatusCode int             `json:"status_code"`
		Body       json.RawMessage `json:"body"`
	} `json:"response"`
	Error *struct {
		Code string `json:"code"`
	} `json:"error"`
}

func decode[T any](t *testing.T, r reply) T {
	t.Helper()
	var v T
	if r.status != http.StatusOK {
		t.Fatalf("HTTP %d: %s", r.status, r.body)
	}
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

// startJob uploads input and creates a batch for it.
func startJob(t *testing.T, srv *openaitest.Server, input string) batchObject {
	t.Helper()
	f := decode[fileObject](t, upload(t, srv, "batch", input))
	body := `{"input_file_id":"` + f.ID + `","endpoint":"/v1/chat/completions","completion_window":"24h"}`
	return decode[batchObject](t, call(t, http.MethodPost, srv.URL+"/batches", "application/json", strings.NewReader(body)))
}

func getJob(t *testing.T, srv *openaitest.Server, id string) batchObject {
	t.Helper()
	return decode[batchObject](t, call(t, http.MethodGet, srv.URL+"/batches/"+id, "", nil))
}

// fileLines downloads file id and decodes its lines; a nil id has none.
func fileLines(t *testing.T, srv *openaitest.Server, id *string) []outputLine {
	t.Helper()
	if id == nil {
		return nil
	}
	r := call(t, http.MethodGet, srv.URL+"/files/"+*id+"/content", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("content of %s: HTTP %d %s", *id, r.status, r.body)
	}
	var lines []outputLine
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	for sc.Scan() {
		var l outputLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines
}

func TestJobLifecycle(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	defer srv.Close()
	f := decode[fileObject](t, upload(t, srv, "batch", jobLine("a", "x")+jobLine("b", "y")))
	if f.Object != "file" || f.Purpose != "batch" || f.Bytes == 0 || !strings.HasPrefix(f.ID, "file-") {
		t.Errorf("file object %+v", f)
	}
	b := startJob(t, srv, jobLine("a", "x")+jobLine("b", "y"))
	if b.Object != "batch" || b.Endpoint != "/v1/chat/completions" || b.Status != openaitest.StatusValidating || b.CreatedAt == 0 || b.RequestCounts.Total != 2 {
		t.Errorf("created batch %+v", b)
	}
	if srv.Jobs() != 1 {
		t.Errorf("Jobs() = %d", srv.Jobs())
	}
	if reqs := srv.JobRequests(b.ID); len(reqs) != 2 || reqs[1].CustomID != "b" || reqs[1].Messages[1].Content != "y" {
		t.Errorf("JobRequests = %+v", reqs)
	}
	if g := getJob(t, srv, b.ID); g.Status != openaitest.StatusInProgress || g.OutputFileID != nil {
		t.Errorf("polled batch %+v, want in_progress without output", g)
	}
	srv.CompleteJobs()
	g := getJob(t, srv, b.ID)
	if g.Status != openaitest.StatusCompleted || g.CompletedAt == nil || g.ErrorFileID != nil || g.RequestCounts.Completed != 2 {
		t.Fatalf("completed batch %+v", g)
	}
	lines := fileLines(t, srv, g.OutputFileID)
	if len(lines) != 2 {
		t.Fatalf("output has %d lines, want 2", len(lines))
	}
	for i, l := range lines {
		var c completion
		if l.Response == nil || l.Response.StatusCode != http.StatusOK || l.Error != nil || json.Unmarshal(l.Response.Body, &c) != nil {
			t.Fatalf("line %d: %+v", i, l)
		}
		want := openaitest.Answer([]string{"x", "y"}[i])
		if l.CustomID != []string{"a", "b"}[i] || c.Object != "chat.completion" || *c.Choices[0].Message.Content != want || c.Usage.PromptTokens <= 0 {
			t.Errorf("line %d: custom_id %q, answer %+v; want %q", i, l.CustomID, c, want)
		}
	}
}

func TestJobLineControls(t *testing.T) {
	t.Parallel()
	input := jobLine("a", "x") + jobLine("b", "y") + jobLine("c", "z")
	tests := []struct {
		name      string
		arrange   func(*openaitest.Server)
		end       func(*openaitest.Server, string) error
		wantState string
		wantOut   []string       // custom_ids in the output file
		wantErr   map[string]int // custom_id -> status (0: an error object line)
	}{
		{"complete", func(*openaitest.Server) {}, complete, openaitest.StatusCompleted, []string{"a", "b", "c"}, nil},
		{"fail lines", func(s *openaitest.Server) { s.FailLines(http.StatusTooManyRequests, "y") }, complete, openaitest.StatusCompleted,
			[]string{"a", "c"}, map[string]int{"b": 429}},
		{"fail lines undone", func(s *openaitest.Server) { s.FailLines(500, "y"); s.FailLines(0, "y") }, complete, openaitest.StatusCompleted,
			[]string{"a", "b", "c"}, nil},
		{"reject and omit", func(s *openaitest.Server) { s.RejectInput("x", false); s.RejectInput("y", true); s.OmitInput("z") }, complete,
			openaitest.StatusCompleted, nil, map[string]int{"a": 400, "b": 503}},
		{"expire", func(*openaitest.Server) {}, func(s *openaitest.Server, id string) error { return s.ExpireJob(id, 1) }, openaitest.StatusExpired,
			[]string{"a"}, map[string]int{"b": 0, "c": 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := openaitest.NewServer()
			defer srv.Close()
			tt.arrange(srv)
			b := startJob(t, srv, input)
			if err := tt.end(srv, b.ID); err != nil {
				t.Fatal(err)
			}
			g := getJob(t, srv, b.ID)
			if g.Status != tt.wantState {
				t.Fatalf("status %q, want %q", g.Status, tt.wantState)
			}
			var out []string
			for _, l := range fileLines(t, srv, g.OutputFileID) {
				out = append(out, l.CustomID)
			}
			if fmt.Sprint(out) != fmt.Sprint(tt.wantOut) {
				t.Errorf("output custom_ids %v, want %v", out, tt.wantOut)
			}
			errs := map[string]int{}
			for _, l := range fileLines(t, srv, g.ErrorFileID) {
				switch {
				case l.Response != nil:
					errs[l.CustomID] = l.Response.StatusCode
					var e errorBody
					if json.Unmarshal(l.Response.Body, &e) != nil || e.Error.Message == "" {
						t.Errorf("line %q: body %s is not OpenAI's error JSON", l.CustomID, l.Response.Body)
					}
				case l.Error != nil && l.Error.Code == "batch_expired":
					errs[l.CustomID] = 0
				default:
					t.Errorf("error line %+v", l)
				}
			}
			if fmt.Sprint(errs) != fmt.Sprint(map[string]int(tt.wantErr)) {
				t.Errorf("error lines %v, want %v", errs, tt.wantErr)
			}
		})
	}
}

func complete(s *openaitest.Server, _ string) error { s.CompleteJobs(); return nil }

func TestJobInvalidInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		input    string
		wantCode string
	}{
		{"not JSON", jobLine("a", "x") + "{oops\n", "invalid_json_line"},
		{"duplicate custom_id", jobLine("a", "x") + jobLine("a", "y"), "duplicate_custom_id"},
		{"other endpoint", strings.Replace(jobLine("a", "x"), "/v1/chat/completions", "/v1/embeddings", 1), "mismatched_endpoint"},
		{"no custom_id", jobLine("", "x"), "missing_required_parameter"},
		{"empty", "\n", "empty_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := openaitest.NewServer()
			defer srv.Close()
			b := startJob(t, srv, tt.input)
			g := getJob(t, srv, b.ID)
			if g.Status != openaitest.StatusFailed || g.Errors == nil || len(g.Errors.Data) == 0 || g.Errors.Data[0].Code != tt.wantCode {
				t.Errorf("batch %+v (errors %+v), want failed with %s", g, g.Errors, tt.wantCode)
			}
			if err := srv.ExpireJob(b.ID, 0); err == nil {
				t.Error("ExpireJob of a failed job succeeded")
			}
		})
	}
}

func TestJobCallErrors(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer(openaitest.WithAPIKey("k"))
	defer srv.Close()
	good := decode[fileObject](t, upload(t, srv, "batch", jobLine("a", "x")))
	other := decode[fileObject](t, upload(t, srv, "user_data", jobLine("a", "x")))
	create := func(file, endpoint, window string) string {
		return `{"input_file_id":"` + file + `","endpoint":"` + endpoint + `","completion_window":"` + window + `"}`
	}
	tests := []struct {
		name       string
		do         func() reply
		wantStatus int
	}{
		{"upload without purpose", func() reply { return upload(t, srv, "", "x") }, 400},
		{"upload with unknown purpose", func() reply { return upload(t, srv, "nonsense", "x") }, 400},
		{"upload not multipart", func() reply {
			return call(t, http.MethodPost, srv.URL+"/files", "application/json", strings.NewReader("{}"))
		}, 400},
		{"unknown file content", func() reply { return call(t, http.MethodGet, srv.URL+"/files/file-none/content", "", nil) }, 404},
		{"create for unknown file", func() reply {
			return call(t, http.MethodPost, srv.URL+"/batches", "application/json", strings.NewReader(create("file-none", "/v1/chat/completions", "24h")))
		}, 400},
		{"create for a file not meant for batches", func() reply {
			return call(t, http.MethodPost, srv.URL+"/batches", "application/json", strings.NewReader(create(other.ID, "/v1/chat/completions", "24h")))
		}, 400},
		{"create for another endpoint", func() reply {
			return call(t, http.MethodPost, srv.URL+"/batches", "application/json", strings.NewReader(create(good.ID, "/v1/embeddings", "24h")))
		}, 400},
		{"create with another window", func() reply {
			return call(t, http.MethodPost, srv.URL+"/batches", "application/json", strings.NewReader(create(good.ID, "/v1/chat/completions", "1h")))
		}, 400},
		{"get unknown batch", func() reply { return call(t, http.MethodGet, srv.URL+"/batches/batch_none", "", nil) }, 404},
		{"cancel unknown batch", func() reply { return call(t, http.MethodPost, srv.URL+"/batches/batch_none/cancel", "", nil) }, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.do()
			var e errorBody
			if r.status != tt.wantStatus || json.Unmarshal(r.body, &e) != nil || e.Error.Message == "" {
				t.Errorf("HTTP %d %s, want %d with OpenAI's error JSON", r.status, r.body, tt.wantStatus)
			}
		})
	}
	if srv.Jobs() != 0 {
		t.Errorf("Jobs() = %d after failed creations", srv.Jobs())
	}

	// A wrong key, and FailNext, apply to Files and Batch calls too.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/batches/batch_none", nil)
	req.Header.Set("Authorization", "Bearer wrong")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong key: HTTP %d, want 401", res.StatusCode)
	}
	srv.FailNext(1, http.StatusTooManyRequests)
	if r := upload(t, srv, "batch", jobLine("a", "x")); r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "1" {
		t.Errorf("upload after FailNext: HTTP %d, Retry-After %q; want 429, 1", r.status, r.header.Get("Retry-After"))
	}
	if srv.Calls() != 0 {
		t.Errorf("Calls() = %d, want 0: Files and Batch calls are not chat completions", srv.Calls())
	}
}

func TestJobCancel(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	defer srv.Close()
	b := startJob(t, srv, jobLine("a", "x"))
	cancel := func() reply { return call(t, http.MethodPost, srv.URL+"/batches/"+b.ID+"/cancel", "", nil) }
	if c := decode[batchObject](t, cancel()); c.Status != openaitest.StatusCancelling {
		t.Errorf("cancel answered %+v, want cancelling", c)
	}
	if c := decode[batchObject](t, cancel()); c.Status != openaitest.StatusCancelling {
		t.Errorf("second cancel answered %+v, want cancelling", c)
	}
	srv.CompleteJobs() // does not touch a cancelling job
	if g := getJob(t, srv, b.ID); g.Status != openaitest.StatusCancelled || g.OutputFileID != nil || g.ErrorFileID != nil {
		t.Errorf("batch after cancel %+v, want cancelled without files", g)
	}
	if r := cancel(); r.status != http.StatusBadRequest {
		t.Errorf("cancel of a cancelled batch: HTTP %d, want 400", r.status)
	}
	if srv.Cancelled() != 1 {
		t.Errorf("Cancelled() = %d, want 1", srv.Cancelled())
	}
	if err := srv.ExpireJob(b.ID, 0); err == nil {
		t.Error("ExpireJob of a cancelled job succeeded")
	}
	if err := srv.ExpireJob("batch_none", 0); err == nil {
		t.Error("ExpireJob of an unknown job succeeded")
	}
}

func TestJobCompleteAfterAndMalformed(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer(openaitest.WithCompleteAfter(2))
	defer srv.Close()
	b := startJob(t, srv, jobLine("a", "x")+jobLine("b", "y"))
	if g := getJob(t, srv, b.ID); g.Status != openaitest.StatusInProgress {
		t.Fatalf("first poll: %q, want in_progress", g.Status)
	}
	g := getJob(t, srv, b.ID)
	if g.Status != openaitest.StatusCompleted || g.OutputFileID == nil {
		t.Fatalf("second poll: %+v, want completed", g)
	}
	srv.SetMalformedNext(1)
	r := call(t, http.MethodGet, srv.URL+"/files/"+*g.OutputFileID+"/content", "", nil)
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	var bad int
	for sc.Scan() {
		if !json.Valid(sc.Bytes()) {
			bad++
		}
	}
	if r.status != http.StatusOK || bad == 0 {
		t.Errorf("malformed download: HTTP %d, %d invalid lines in %q; want 200 and a cut-off line", r.status, bad, r.body)
	}
	if lines := fileLines(t, srv, g.OutputFileID); len(lines) != 2 {
		t.Errorf("next download has %d lines, want 2", len(lines))
	}
}

func TestFailJob(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	j := startJob(t, srv, jobLine("0", "a")+jobLine("1", "b"))
	if err := srv.FailJob("no-such-job"); err == nil {
		t.Error("FailJob of an unknown job: nil error")
	}
	if err := srv.FailJob(j.ID); err != nil {
		t.Fatal(err)
	}
	got := getJob(t, srv, j.ID)
	if got.Status != openaitest.StatusFailed || got.OutputFileID != nil || got.ErrorFileID != nil ||
		got.Errors == nil || len(got.Errors.Data) != 1 || got.Errors.Data[0].Code != "token_limit_exceeded" {
		t.Errorf("failed job = %+v, want failed with token_limit_exceeded and no files", got)
	}
	srv.CompleteJobs() // must not revive it
	if got := getJob(t, srv, j.ID); got.Status != openaitest.StatusFailed {
		t.Errorf("CompleteJobs revived a failed job: %s", got.Status)
	}
	if err := srv.FailJob(j.ID); err == nil {
		t.Error("FailJob of a failed job: nil error")
	}
}

func TestDeleteFile(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	f := decode[fileObject](t, upload(t, srv, "batch", jobLine("0", "a")))
	if !srv.HasFile(f.ID) || srv.DeletedFiles() != nil {
		t.Fatalf("before the delete: HasFile %v, DeletedFiles %v", srv.HasFile(f.ID), srv.DeletedFiles())
	}
	type fileDeleted struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Deleted bool   `json:"deleted"`
	}
	deleted := decode[fileDeleted](t, call(t, http.MethodDelete, srv.URL+"/files/"+f.ID, "", nil))
	if deleted.ID != f.ID || deleted.Object != "file" || !deleted.Deleted {
		t.Errorf("delete answer = %+v", deleted)
	}
	if srv.HasFile(f.ID) || fmt.Sprint(srv.DeletedFiles()) != "["+f.ID+"]" {
		t.Errorf("after the delete: HasFile %v, DeletedFiles %v", srv.HasFile(f.ID), srv.DeletedFiles())
	}
	if r := call(t, http.MethodDelete, srv.URL+"/files/"+f.ID, "", nil); r.status != http.StatusNotFound {
		t.Errorf("second delete: HTTP %d %s, want 404", r.status, r.body)
	}
	if r := call(t, http.MethodGet, srv.URL+"/files/"+f.ID+"/content", "", nil); r.status != http.StatusNotFound {
		t.Errorf("content of a deleted file: HTTP %d, want 404", r.status)
	}
}
