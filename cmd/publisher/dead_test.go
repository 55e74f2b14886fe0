package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/client"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/wire"
)

// deadLetters reads the dead-letter stream back.
func (w *workerEnv) deadLetters(t *testing.T) []*jetstream.RawStreamMsg {
	t.Helper()
	return jetstreamtest.Messages(t, w.js, w.topo.DeadStream)
}

// makeDeadLetters has the worker dead-letter two requests the model refuses,
// one that can never succeed (no input), and one for an unknown model, and
// returns the client that sent them.
func makeDeadLetters(t *testing.T, w *workerEnv) *client.Client {
	t.Helper()
	c := w.newClient(t, "dl")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, id := range []string{"t-1", "t-2"} {
		w.fake.RefuseInput("input of " + id)
		if _, err := c.Do(ctx, wire.Request{ID: id, Input: "input of " + id}); !errors.Is(err, client.ErrFailed) {
			t.Fatalf("do %s: %v, want a failed result", id, err)
		}
		w.fake.AcceptInput("input of " + id)
	}
	if _, err := c.Do(ctx, wire.Request{ID: "m-1", Input: "x", Model: "unknown-model"}); !errors.Is(err, client.ErrFailed) {
		t.Fatalf("do m-1: %v, want a failed result", err)
	}
	if err := w.nc.Publish("ai.requests.dl", []byte(`{"id":"no-input"}`)); err != nil {
		t.Fatal(err)
	}
	jetstreamtest.Eventually(t, 10*time.Second, "four dead letters", func() bool {
		return jetstreamtest.Count(t, w.js, w.topo.DeadStream) == 4
	})
	return c
}

func deadConfig1() batch.Config {
	cfg := workerConfig()
	cfg.MaxDeliver = 1
	return cfg
}

func TestDead(t *testing.T) {
	t.Parallel()
	w := startWorker(t, deadConfig1())
	c := makeDeadLetters(t, w)

	code, stdout, stderr := runCLI(t, "dead", "--server", w.url())
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	for _, want := range []string{
		`(?m)^SEQ +STORED +REQUEST SUBJECT +ATTEMPTS +ID +ERROR$`,
		`(?m)^1 +\S+Z +ai\.requests\.dl +1 +t-1 +\S.*refused`,
		`(?m)^2 +\S+Z +ai\.requests\.dl +1 +t-2 +\S.*refused`,
		`(?m)^3 +\S+Z +ai\.requests\.dl +1 +m-1 +.*model_not_found`,
		`(?m)^4 +\S+Z +ai\.requests\.dl +1 +no-input +invalid request: "input" is missing or empty$`,
		`(?m)^4 dead letters$`,
	} {
		if !regexp.MustCompile(want).MatchString(stdout) {
			t.Errorf("stdout does not match %s:\n%s", want, stdout)
		}
	}

	cases := []struct {
		name    string
		args    []string
		wantIDs []string
	}{
		{"by error", []string{"--error", "MODEL_NOT_FOUND"}, []string{"m-1"}},
		{"by id", []string{"--id", "t-2,no-input"}, []string{"t-2", "no-input"}},
		{"by id and error", []string{"--id", "t-2,no-input", "--error", "refused"}, []string{"t-2"}},
		{"none", []string{"--error", "no such error"}, nil},
		{"other topic", []string{"--subject", "ai.dead.other"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCLI(t, append([]string{"dead", "--server", w.url(), "--json"}, tc.args...)...)
			if code != exitOK {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			var ids []string
			dec := json.NewDecoder(strings.NewReader(stdout))
			for dec.More() {
				var d deadLetter
				if err := dec.Decode(&d); err != nil {
					t.Fatalf("decode %q: %v", stdout, err)
				}
				if d.RequestSubject != "ai.requests.dl" || d.Subject != "ai.dead.dl" || d.Attempts != 1 || d.Error == "" || d.RequestSeq == 0 {
					t.Errorf("dead letter %+v", d)
				}
				if wantReply := d.ID != "no-input"; (d.ReplyTo == c.ReplySubject()) != wantReply {
					t.Errorf("dead letter %s: reply-to %q", d.ID, d.ReplyTo)
				}
				if d.ID == "no-input" && d.Body != `{"id":"no-input"}` {
					t.Errorf("body %q, want the original", d.Body)
				}
				ids = append(ids, d.ID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tc.wantIDs) {
				t.Errorf("ids %v, want %v", ids, tc.wantIDs)
			}
		})
	}
}

func TestReplay(t *testing.T) {
	t.Parallel()
	w := startWorker(t, deadConfig1())
	c := makeDeadLetters(t, w)

	// A dry run changes nothing.
	code, stdout, stderr := runCLI(t, "replay", "--server", w.url(), "--error", "refused", "--dry-run")
	if code != exitOK || strings.Count(stdout, "would replay dead letter") != 2 || !strings.Contains(stdout, "2 dead letters would be replayed") {
		t.Fatalf("dry run: exit %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if n := jetstreamtest.Count(t, w.js, w.topo.DeadStream); n != 4 {
		t.Fatalf("%d dead letters after a dry run, want 4", n)
	}

	// The model answers them now (AcceptInput above): replay the two it refused.
	code, stdout, stderr = runCLI(t, "replay", "--server", w.url(), "--error", "refused")
	if code != exitOK {
		t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		regexp.QuoteMeta(`replayed dead letter 1 (id "t-1") to ai.requests.dl as request `) + `\d+\n`,
		regexp.QuoteMeta(`replayed dead letter 2 (id "t-2") to ai.requests.dl as request `) + `\d+\n`,
		`replayed 2 of 2 dead letters\n$`,
	} {
		if !regexp.MustCompile(want).MatchString(stdout) {
			t.Errorf("stdout does not match %s:\n%s", want, stdout)
		}
	}
	// Only the two replayed dead letters are gone.
	var left []uint64
	for _, m := range w.deadLetters(t) {
		left = append(left, m.Sequence)
	}
	if fmt.Sprint(left) != "[3 4]" {
		t.Errorf("dead letters left: %v, want [3 4]", left)
	}
	// Each got a new, ok result on the original reply subject, from a fresh
	// request (the replay's Nats-Msg-Id was not dropped as a duplicate).
	jetstreamtest.Eventually(t, 10*time.Second, "replayed requests answered", func() bool {
		n := 0
		for _, m := range jetstreamtest.Messages(t, w.js, w.topo.ResultStream) {
			var r wire.Result
			_ = json.Unmarshal(m.Data, &r)
			if m.Subject == c.ReplySubject() && r.Status == wire.StatusOK && strings.HasPrefix(r.ID, "t-") && r.Output == "processed: input of "+r.ID {
				n++
			}
		}
		return n == 2
	})

	// A request that can never succeed comes back as a new dead letter.
	code, stdout, stderr = runCLI(t, "replay", "--server", w.url(), "--id", "no-input")
	if code != exitOK || !strings.Contains(stdout, "replayed 1 of 1 dead letter\n") {
		t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	jetstreamtest.Eventually(t, 10*time.Second, "dead-lettered again", func() bool {
		ds := w.deadLetters(t)
		return len(ds) == 2 && ds[1].Sequence == 5 && string(ds[1].Data) == `{"id":"no-input"}`
	})

	// Nothing selected: nothing to do, exit 0.
	code, stdout, _ = runCLI(t, "replay", "--server", w.url(), "--id", "nope")
	if code != exitOK || !strings.Contains(stdout, "replayed 0 of 0 dead letters") {
		t.Errorf("exit %d, stdout:\n%s", code, stdout)
	}
}

// A dead letter whose subject no longer lands in the request stream is kept.
func TestReplayKeepsWhatItCannotPublish(t *testing.T) {
	t.Parallel()
	w := startWorker(t, deadConfig1())
	makeDeadLetters(t, w)
	code, stdout, stderr := runCLI(t, "replay", "--server", w.url(), "--all", "--request-stream", "OTHER", "--timeout", "2s")
	if code != exitFailed {
		t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, exitFailed, stdout, stderr)
	}
	if !strings.Contains(stdout, "replayed 0 of 4 dead letters (4 failed)") || strings.Count(stderr, "the dead letter is kept") != 4 {
		t.Errorf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
	if n := jetstreamtest.Count(t, w.js, w.topo.DeadStream); n != 4 {
		t.Errorf("%d dead letters, want all 4 kept", n)
	}
}
