package batchtest_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aibatch/aibatch/batch/batchtest"
	"github.com/aibatch/aibatch/provider"
)

func testBatch(inputs ...string) provider.Batch {
	b := provider.Batch{ID: "b", Model: "m"}
	for i, in := range inputs {
		b.Requests = append(b.Requests, provider.Request{Key: strconv.Itoa(i), Input: in})
	}
	return b
}

// outputs maps each answered key to its output, or to "error: ..." for a
// per-request error.
func outputs(rs []provider.Result) map[string]string {
	out := map[string]string{}
	for _, r := range rs {
		if r.Err != nil {
			out[r.Key] = "error: " + r.Err.Error()
			continue
		}
		out[r.Key] = r.Output
	}
	return out
}

func TestProviderEchoesAndRecords(t *testing.T) {
	t.Parallel()
	p := batchtest.NewProvider()
	if p.Name() != batchtest.ProviderName {
		t.Errorf("Name = %q", p.Name())
	}
	rs, err := p.Complete(t.Context(), testBatch("a", "bb"))
	if err != nil {
		t.Fatal(err)
	}
	if got := outputs(rs); got["0"] != "echo: a" || got["1"] != "echo: bb" || len(got) != 2 {
		t.Fatalf("answers %v", got)
	}
	if u := rs[1].Usage; u.InputTokens != 2 || u.OutputTokens != int64(len("echo: bb")) {
		t.Errorf("usage %+v, want a token per byte", u)
	}
	p.SetAnswer(func(in string) string { return "<" + in + ">" })
	rs, _ = p.Complete(t.Context(), testBatch("c"))
	if rs[0].Output != "<c>" {
		t.Errorf("SetAnswer: %q", rs[0].Output)
	}
	p.SetAnswer(nil)
	if rs, _ = p.Complete(t.Context(), testBatch("d")); rs[0].Output != batchtest.Echo("d") {
		t.Errorf("SetAnswer(nil): %q", rs[0].Output)
	}
	batches := p.Batches()
	if p.Calls() != 3 || len(batches) != 3 || batches[0].Requests[1].Input != "bb" {
		t.Fatalf("calls %d, batches %+v", p.Calls(), batches)
	}
	batches[0].Requests[0].Input = "changed"
	if p.Batches()[0].Requests[0].Input != "a" {
		t.Error("Batches returned the recorded requests themselves")
	}
}

func TestProviderFailNext(t *testing.T) {
	t.Parallel()
	p := batchtest.NewProvider()
	p.FailNext(1, nil)
	p.FailNext(1, provider.Permanent(errors.New("unknown model")))
	if _, err := p.Complete(t.Context(), testBatch("a")); err == nil || provider.IsPermanent(err) || !errors.Is(err, batchtest.ErrInjected) {
		t.Errorf("first call: %v, want a transient injected error", err)
	}
	if _, err := p.Complete(t.Context(), testBatch("a")); !provider.IsPermanent(err) {
		t.Errorf("second call: %v, want the permanent error", err)
	}
	if _, err := p.Complete(t.Context(), testBatch("a")); err != nil {
		t.Errorf("third call: %v", err)
	}
}

func TestProviderOmitAndFailItem(t *testing.T) {
	t.Parallel()
	p := batchtest.NewProvider()
	p.Omit("gone once", 1)
	p.Omit("gone always", -1)
	p.FailItem("refused", provider.Permanent(errors.New("refused")), 1)
	rs, err := p.Complete(t.Context(), testBatch("gone once", "gone always", "refused", "fine"))
	if err != nil {
		t.Fatal(err)
	}
	got := outputs(rs)
	if _, ok := got["0"]; ok || len(got) != 2 || got["3"] != "echo: fine" {
		t.Fatalf("first answer %v", got)
	}
	if r := rs[0]; r.Key != "2" || !provider.IsPermanent(r.Err) {
		t.Fatalf("failed item %+v", r)
	}
	got = outputs(mustComplete(t, p, testBatch("gone once", "gone always", "refused")))
	if len(got) != 2 || got["0"] != "echo: gone once" || got["2"] != "echo: refused" {
		t.Fatalf("second answer %v: the one-time controls should be used up", got)
	}
}

func mustComplete(t *testing.T, p *batchtest.Provider, b provider.Batch) []provider.Result {
	t.Helper()
	rs, err := p.Complete(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestProviderPanicNext(t *testing.T) {
	t.Parallel()
	p := batchtest.NewProvider()
	p.PanicNext(1)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("no panic")
			}
		}()
		_, _ = p.Complete(t.Context(), testBatch("a"))
	}()
	mustComplete(t, p, testBatch("a"))
	if p.Calls() != 2 {
		t.Errorf("calls = %d, want the panicked one counted", p.Calls())
	}
}

func TestProviderDelay(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := batchtest.NewProvider()
		p.SetDelay(time.Minute)
		start := time.Now()
		mustComplete(t, p, testBatch("a"))
		if d := time.Since(start); d != time.Minute {
			t.Errorf("call took %s", d)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, err := p.Complete(ctx, testBatch("a")); !errors.Is(err, context.DeadlineExceeded) || provider.IsPermanent(err) {
			t.Errorf("call past its deadline: %v, want a transient error wrapping the context's", err)
		}
	})
}

func TestProviderHold(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := batchtest.NewProvider()
		release := p.Hold()
		var wg sync.WaitGroup
		results := make([]error, 3)
		ctx, cancel := context.WithCancel(t.Context())
		for i := range results {
			wg.Go(func() {
				c := t.Context()
				if i == 2 {
					c = ctx
				}
				_, results[i] = p.Complete(c, testBatch("a"))
			})
		}
		synctest.Wait()
		if n := p.Held(); n != 3 {
			t.Fatalf("Held = %d, want 3", n)
		}
		cancel()
		synctest.Wait()
		if n := p.Held(); n != 2 || results[2] == nil {
			t.Fatalf("after cancelling one: Held = %d, its error %v", n, results[2])
		}
		release()
		release() // releasing twice is harmless
		wg.Wait()
		if results[0] != nil || results[1] != nil || p.Held() != 0 {
			t.Fatalf("after release: %v, Held %d", results, p.Held())
		}
		mustComplete(t, p, testBatch("a")) // no hold any more
	})
}

func TestProviderWrongAfter(t *testing.T) {
	t.Parallel()
	p := batchtest.NewProvider()
	p.WrongAfter(2)
	rs, err := p.Complete(t.Context(), testBatch("a", "b", "c", "d"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"0": "echo: a", "1": "echo: b", "2": batchtest.WrongAnswer, "3": batchtest.WrongAnswer}
	if got := outputs(rs); len(got) != 4 || got["0"] != want["0"] || got["1"] != want["1"] || got["2"] != want["2"] || got["3"] != want["3"] {
		t.Fatalf("combined answers %v, want %v", got, want)
	}
	// Alone, every request is answered right.
	if rs, _ := p.Complete(t.Context(), testBatch("d")); rs[0].Output != batchtest.Echo("d") {
		t.Errorf("a call of one answered %q", rs[0].Output)
	}
	p.WrongAfter(0)
	if rs, _ := p.Complete(t.Context(), testBatch("a", "b", "c")); outputs(rs)["2"] != batchtest.Echo("c") {
		t.Errorf("after WrongAfter(0): %v", outputs(rs))
	}
}
