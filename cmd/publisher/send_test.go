package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibatch/aibatch/wire"
	"github.com/nats-io/nats.go/jetstream"
)

func TestSendSyntheticWait(t *testing.T) {
	t.Parallel()
	b := setup(t)
	startResponder(t, b, answerOK)

	code, stdout, stderr := runCLI(t, "send", "--server", b.srv.ClientURL(), "--synthetic", "200", "--wait", "--json")
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	s := decodeSummary(t, stdout)
	if s.Requests != 200 || s.Sent != 200 || s.OK != 200 || s.Error != 0 || s.Missing != 0 || s.Duplicates != 0 ||
		s.PublishFailed != 0 || s.NotSent != 0 || s.Unknown != 0 || s.Invalid != 0 {
		t.Errorf("counts: %+v", s)
	}
	if s.Latency.P50 <= 0 || s.Latency.P95 < s.Latency.P50 || s.Latency.P99 < s.Latency.P95 || s.Latency.Max < s.Latency.P99 {
		t.Errorf("latency: %+v", s.Latency)
	}
	if s.Batches < 4 { // 200 requests, at most 50 per batch
		t.Errorf("batches = %d, want >= 4", s.Batches)
	}
	var results, batches int
	for trig, n := range s.ResultsByTrigger {
		results += n
		batches += s.BatchesByTrigger[trig]
	}
	if results != 200 || batches != s.Batches {
		t.Errorf("by trigger: results %v, batches %v; want 200 results in %d batches", s.ResultsByTrigger, s.BatchesByTrigger, s.Batches)
	}
	if s.ElapsedMS <= 0 || s.Throughput <= 0 {
		t.Errorf("elapsed %v ms, throughput %v/s", s.ElapsedMS, s.Throughput)
	}
	if s.Usage.OutputTokens != 3*200 {
		t.Errorf("output tokens = %d, want 600", s.Usage.OutputTokens)
	}
	if want := publisherReplyBase + s.RunID; s.ReplyTo != want || s.Subject != "ai.requests.demo" || !s.Waited {
		t.Errorf("subject %q, reply-to %q (want %q), waited %v", s.Subject, s.ReplyTo, want, s.Waited)
	}
}

func TestSendFile(t *testing.T) {
	t.Parallel()
	lines := `{"id":"a","input":"first","model":"m1","metadata":{"k":"v"}}

{"input":"second","instructions":"own","max_output_tokens":50}
{"id":"c","input":"third"}
`
	// Without --wait nobody answers; the requests stay in the stream to be read back.
	cases := []struct {
		name    string
		args    []string
		stdin   string
		subject string
	}{
		{name: "file", args: []string{"--file", "FILE"}, subject: "ai.requests.demo"},
		{name: "stdin urgent", args: []string{"--file", "-", "--urgent"}, stdin: lines, subject: "ai.urgent.demo"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			path := filepath.Join(t.TempDir(), "requests.jsonl")
			if err := os.WriteFile(path, []byte(lines), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"send", "--server", b.srv.ClientURL(), "--json", "--instructions", "default instr"}
			for _, a := range tc.args {
				args = append(args, strings.ReplaceAll(a, "FILE", path))
			}
			var out, errOut bytes.Buffer
			a := newApp(strings.NewReader(tc.stdin), &out, &errOut, func(string) string { return "" })
			if code := a.run(t.Context(), args); code != exitOK {
				t.Fatalf("exit %d, stderr:\n%s", code, errOut.String())
			}
			s := decodeSummary(t, out.String())
			if s.Requests != 3 || s.Sent != 3 || s.Waited || s.Subject != tc.subject || s.ReplyTo != "ai.results.demo" {
				t.Fatalf("summary: %+v", s)
			}

			stream, err := b.js.Stream(t.Context(), "AI_REQUESTS")
			if err != nil {
				t.Fatal(err)
			}
			want := []string{
				`{"id":"a","input":"first","instructions":"default instr","model":"m1","metadata":{"k":"v"}}`,
				fmt.Sprintf(`{"id":"%s-2","input":"second","instructions":"own","max_output_tokens":50}`, s.RunID),
				`{"id":"c","input":"third","instructions":"default instr"}`,
			}
			for i, body := range want {
				msg, err := stream.GetMsg(t.Context(), uint64(i+1))
				if err != nil {
					t.Fatalf("get message %d: %v", i+1, err)
				}
				if msg.Subject != tc.subject {
					t.Errorf("message %d: subject %q, want %q", i+1, msg.Subject, tc.subject)
				}
				if !jsonEqual(t, msg.Data, []byte(body)) {
					t.Errorf("message %d: body\n%s\nwant\n%s", i+1, msg.Data, body)
				}
				if got, want := msg.Header.Get(wire.HeaderMsgID), fmt.Sprintf("%s-%d", s.RunID, i+1); got != want {
					t.Errorf("message %d: %s %q, want %q", i+1, wire.HeaderMsgID, got, want)
				}
				if got := msg.Header.Get(wire.HeaderReplyTo); got != "ai.results.demo" {
					t.Errorf("message %d: %s %q, want ai.results.demo", i+1, wire.HeaderReplyTo, got)
				}
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("decode %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return bytes.Equal(ja, jb)
}

func TestSendDuplicates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	startResponder(t, b, func(req wire.Request) []wire.Result {
		rs := answerOK(req)
		// Not the last id: the run may end as soon as every id has one result.
		if seqOf(req.ID)%10 == 1 {
			rs = append(rs, wire.Result{ID: req.ID, Status: wire.StatusError, Error: "late duplicate"})
		}
		return rs
	})

	code, stdout, stderr := runCLI(t, "send", "--server", b.srv.ClientURL(), "--synthetic", "200", "--wait", "--json")
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	s := decodeSummary(t, stdout)
	if s.OK != 200 || s.Error != 0 || s.Duplicates != 20 || len(s.DuplicateIDs) != maxListedIDs || s.Missing != 0 {
		t.Errorf("summary: %+v", s)
	}
}

func TestSendErrorResults(t *testing.T) {
	t.Parallel()
	b := setup(t)
	startResponder(t, b, func(req wire.Request) []wire.Result {
		if seqOf(req.ID)%10 == 0 {
			return []wire.Result{{ID: req.ID, Status: wire.StatusError, Error: "provider refused"}}
		}
		return answerOK(req)
	})

	code, stdout, stderr := runCLI(t, "send", "--server", b.srv.ClientURL(), "--synthetic", "200", "--wait")
	if code != exitFailed {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitFailed, stderr)
	}
	for _, want := range []string{`(?m)^results ok +180$`, `(?m)^results error +20$`, `(?m)^missing +0$`, `(?m)^failure +\S+-10: error: provider refused$`} {
		if !regexp.MustCompile(want).MatchString(stdout) {
			t.Errorf("summary does not match %s:\n%s", want, stdout)
		}
	}
}

func TestSendMissingResults(t *testing.T) {
	t.Parallel()
	b := setup(t)
	startResponder(t, b, func(req wire.Request) []wire.Result {
		if seqOf(req.ID)%50 == 0 {
			return nil
		}
		return answerOK(req)
	})

	code, stdout, stderr := runCLI(t, "send", "--server", b.srv.ClientURL(), "--synthetic", "200", "--wait", "--timeout", "500ms", "--json")
	if code != exitFailed {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitFailed, stderr)
	}
	s := decodeSummary(t, stdout)
	if s.OK != 196 || s.Missing != 4 || len(s.MissingIDs) != 4 || s.Sent != 200 {
		t.Errorf("summary: %+v", s)
	}
}

func TestSendRate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	startResponder(t, b, answerOK)

	start := time.Now()
	code, stdout, stderr := runCLI(t, "send", "--server", b.srv.ClientURL(), "--synthetic", "11", "--rate", "50", "--wait", "--json")
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	// 11 requests at 50/s with a burst of 1 are spread over at least 200ms.
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("took %s, want >= 200ms", took)
	}
	if s := decodeSummary(t, stdout); s.OK != 11 {
		t.Errorf("summary: %+v", s)
	}
}

func TestSendProviderStats(t *testing.T) {
	t.Parallel()
	b := setup(t)
	startResponder(t, b, answerOK)
	var gets atomic.Int32
	stats := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stats" {
			http.NotFound(w, r)
			return
		}
		gets.Add(1)
		fmt.Fprint(w, `{"calls": 4, "other": true}`)
	}))
	t.Cleanup(stats.Close)

	code, stdout, stderr := runCLI(t, "send", "--server", b.srv.ClientURL(), "--synthetic", "200", "--wait", "--provider-stats", stats.URL+"/stats")
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "\n200 requests -> 4 API calls (98.0% fewer)\n") {
		t.Errorf("summary lacks the provider line:\n%s", stdout)
	}
	if n := gets.Load(); n != 1 {
		t.Errorf("stats fetched %d times, want 1", n)
	}

	// A stats URL that fails still prints the summary, then exits 2.
	code, stdout, stderr = runCLI(t, "send", "--server", b.srv.ClientURL(), "--synthetic", "5", "--wait", "--json", "--provider-stats", stats.URL+"/nope")
	if code != exitUsage || !strings.Contains(stderr, "404") {
		t.Errorf("exit %d, stderr %q; want %d and the status", code, stderr, exitUsage)
	}
	if s := decodeSummary(t, stdout); s.OK != 5 || s.ProviderCalls != nil {
		t.Errorf("summary: %+v", s)
	}
}

func TestSendNotReady(t *testing.T) {
	t.Parallel()
	srv := startServer(t) // JetStream, but no streams

	cases := []struct {
		name       string
		args       []string
		wantStderr []string
	}{
		{
			name:       "stream never appears",
			args:       []string{"--server", srv.ClientURL()},
			wantStderr: []string{"not ready after 500ms", `stream "AI_REQUESTS"`, jetstream.ErrStreamNotFound.Error()},
		},
		{
			name:       "no server",
			args:       []string{"--server", "nats://127.0.0.1:1"},
			wantStderr: []string{"not ready after 500ms", "connect to nats://127.0.0.1:1"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			code, _, stderr := runCLI(t, append([]string{"send", "--synthetic", "3", "--ready-timeout", "500ms"}, tc.args...)...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if took := time.Since(start); took < 500*time.Millisecond || took > 10*time.Second {
				t.Errorf("gave up after %s, want about 500ms", took)
			}
			for _, want := range tc.wantStderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
		})
	}
}

func TestSendSubjectNotInStream(t *testing.T) {
	t.Parallel()
	b := setup(t)
	code, _, stderr := runCLI(t, "send", "--server", b.srv.ClientURL(), "--synthetic", "1", "--subject", "other.demo", "--reply-to", "other.results")
	if code != exitUsage || !strings.Contains(stderr, `subject "other.demo"`) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// The worker may create the stream after the publisher started.
func TestSendWaitsForStream(t *testing.T) {
	t.Parallel()
	srv := startServer(t)

	type outcome struct {
		code           int
		stdout, stderr string
	}
	done := make(chan outcome, 1)
	go func() {
		var out, errOut bytes.Buffer
		code := run(t.Context(), []string{"send", "--server", srv.ClientURL(), "--synthetic", "10", "--wait", "--json"}, &out, &errOut)
		done <- outcome{code, out.String(), errOut.String()}
	}()

	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := srv.NumClients(); n == 0 {
			return errors.New("publisher not connected")
		}
		return nil
	})
	nc, js := connect(t, srv)
	b := &testBundle{srv: srv, nc: nc, js: js}
	createStreams(t, js)
	startResponder(t, b, answerOK)

	o := <-done
	if o.code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", o.code, o.stderr)
	}
	if s := decodeSummary(t, o.stdout); s.OK != 10 {
		t.Errorf("summary: %+v", s)
	}
}

func TestSendInterrupted(t *testing.T) {
	t.Parallel()
	b := setup(t) // nobody answers
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	type outcome struct {
		code           int
		stdout, stderr string
	}
	done := make(chan outcome, 1)
	go func() {
		var out, errOut bytes.Buffer
		code := run(ctx, []string{"send", "--server", b.srv.ClientURL(), "--synthetic", "20", "--wait", "--json"}, &out, &errOut)
		done <- outcome{code, out.String(), errOut.String()}
	}()

	stream, err := b.js.Stream(t.Context(), "AI_REQUESTS")
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		info, err := stream.Info(t.Context())
		if err != nil {
			return err
		}
		if info.State.Msgs != 20 {
			return fmt.Errorf("%d requests in the stream, want 20", info.State.Msgs)
		}
		return nil
	})
	cancel()

	o := <-done
	if o.code != exitFailed {
		t.Fatalf("exit %d, want %d; stderr:\n%s", o.code, exitFailed, o.stderr)
	}
	if s := decodeSummary(t, o.stdout); !s.Interrupted || s.Missing+s.PublishFailed != 20 || s.OK != 0 {
		t.Errorf("summary: %+v", s)
	}
}
