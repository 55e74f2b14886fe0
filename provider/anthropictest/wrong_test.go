package anthropictest_test

import (
	"testing"

	"github.com/aibatch/aibatch/provider/anthropictest"
)

// SetWrongAfter spoils a batch answer's items past its position; a plain
// call for the same input stays right.
func TestSetWrongAfter(t *testing.T) {
	t.Parallel()
	srv := anthropictest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetWrongAfter(2)
	want := []anthropictest.Result{
		{ID: "a", Output: anthropictest.Answer("x")},
		{ID: "b", Output: anthropictest.Answer("y")},
		{ID: "c", Output: anthropictest.WrongAnswer},
	}
	got := results(t, answer(t, srv, batchBody("claude-test")))
	if len(got) != len(want) {
		t.Fatalf("results %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("result %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	m := answer(t, srv, plainBody("z"))
	if len(m.Content) != 1 || m.Content[0].Text != anthropictest.Answer("z") {
		t.Errorf("plain answer = %+v, want %q", m.Content, anthropictest.Answer("z"))
	}
}
