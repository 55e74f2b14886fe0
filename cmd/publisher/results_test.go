package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibatch/aibatch/client"
	"github.com/aibatch/aibatch/wire"
)

func TestResults(t *testing.T) {
	t.Parallel()
	w := startWorker(t, workerConfig())
	c := w.newClient(t, "res")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, r := range []wire.Request{
		{ID: "a", Input: "first"},
		{ID: "b", Input: "second", Model: "unknown-model"},
		{ID: "c", Input: "third\nline"},
	} {
		if _, err := c.Do(ctx, r); err != nil && !errors.Is(err, client.ErrFailed) {
			t.Fatalf("do %s: %v", r.ID, err)
		}
	}
	// line matches one printed result whose text matches the regexp tail.
	line := func(id, status, tail string) string {
		return `(?m)^\S+Z ` + regexp.QuoteMeta(c.ReplySubject()+" "+id+" "+status+" ") + tail + `$`
	}
	okA, okC := regexp.QuoteMeta("processed: first"), regexp.QuoteMeta(`processed: third\nline`)
	errB := `openai: .*model_not_found.*`
	cases := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string
		wantLines  int
		wantStderr string
	}{
		{name: "all stored", args: []string{"--from-start", "--follow=false"}, wantCode: exitFailed, wantLines: 3,
			wantStdout: []string{line("a", "ok", okA), line("b", "error", errB), line("c", "ok", okC)}},
		{name: "by id", args: []string{"--id", "c,a"}, wantCode: exitOK, wantLines: 2,
			wantStdout: []string{line("a", "ok", okA), line("c", "ok", okC)}},
		{name: "error by id", args: []string{"--id", "b", "--subject", c.ReplySubject()}, wantCode: exitFailed, wantLines: 1,
			wantStdout: []string{line("b", "error", errB)}},
		{name: "missing id", args: []string{"--id", "a", "--id", "nope", "--follow=false"}, wantCode: exitFailed, wantLines: 1,
			wantStderr: "no result for 1 of 2 ids: nope"},
		{name: "missing id at timeout", args: []string{"--id", "nope", "--timeout", "300ms"}, wantCode: exitFailed, wantLines: 0,
			wantStderr: "no result for 1 of 1 ids: nope"},
		{name: "only new ones", args: []string{"--timeout", "300ms"}, wantCode: exitOK, wantLines: 0},
		{name: "other subject", args: []string{"--from-start", "--follow=false", "--subject", "ai.results.elsewhere"}, wantCode: exitOK, wantLines: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCLI(t, append([]string{"results", "--server", w.url()}, tc.args...)...)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, stderr)
			}
			if n := strings.Count(stdout, "\n"); n != tc.wantLines {
				t.Errorf("%d lines, want %d:\n%s", n, tc.wantLines, stdout)
			}
			for _, re := range tc.wantStdout {
				if !regexp.MustCompile(re).MatchString(stdout) {
					t.Errorf("stdout does not match %s:\n%s", re, stdout)
				}
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantStderr, stderr)
			}
		})
	}
}

func TestResultsJSON(t *testing.T) {
	t.Parallel()
	w := startWorker(t, workerConfig())
	c := w.newClient(t, "json")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	want, err := c.Do(ctx, wire.Request{ID: "j", Input: "json please", Metadata: json.RawMessage(`{"k":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "results", "--server", w.url(), "--id", "j", "--json")
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	var got wire.Result
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("decode %q: %v", stdout, err)
	}
	if got.ID != want.ID || got.Output != want.Output || got.Batch.ID != want.Batch.ID || string(got.Metadata) != string(want.Metadata) {
		t.Errorf("printed %+v, want %+v", got, want)
	}
}

// lockedBuffer is a bytes.Buffer safe to read while a command writes it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// results follows the stream from the moment it starts: a result stored
// before is not printed, one stored after is, until it is interrupted.
func TestResultsFollow(t *testing.T) {
	t.Parallel()
	w := startWorker(t, workerConfig())
	c := w.newClient(t, "follow")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := c.Do(ctx, wire.Request{ID: "old", Input: "before"}); err != nil {
		t.Fatal(err)
	}

	runCtx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	var stdout, stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(runCtx, []string{"results", "--server", w.url(), "--subject", c.ReplySubject()}, &stdout, &stderr)
	}()
	// The follower's ordered consumer exists once the stream has two
	// consumers: the client's and its own.
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		s, err := w.js.Stream(ctx, w.topo.ResultStream)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Consumers < 2 {
			return errors.New("follower not started")
		}
		return nil
	})
	if _, err := c.Do(ctx, wire.Request{ID: "new", Input: "after"}); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !strings.Contains(stdout.String(), " new ok processed: after\n") {
			return errors.New("new result not printed yet")
		}
		return nil
	})
	interrupt()
	if code := <-done; code != exitOK {
		t.Errorf("exit %d after interrupt, stderr:\n%s", code, stderr.String())
	}
	if out := stdout.String(); strings.Contains(out, " old ") || strings.Count(out, "\n") != 1 {
		t.Errorf("printed:\n%s\nwant only the new result", out)
	}
}
