package openaitest_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/aibatch/aibatch/provider/openaitest"
)

// SetWrongAfter spoils a batch answer's items past its position; a plain
// call for the same input stays right.
func TestSetWrongAfter(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetWrongAfter(1)
	want := []openaitest.Result{
		{ID: "a", Output: openaitest.Answer("x")},
		{ID: "b", Output: openaitest.WrongAnswer},
		{ID: "c", Output: openaitest.WrongAnswer},
	}
	got := batchResults(t, srv)
	if len(got) != len(want) {
		t.Fatalf("results %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("result %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	r, err := post(t, t.Context(), srv, "Bearer k", plainBody("y"))
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("plain post = %d %s, %v", r.status, r.body, err)
	}
	var c completion
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatal(err)
	}
	if got := *c.Choices[0].Message.Content; got != openaitest.Answer("y") {
		t.Errorf("plain answer = %q, want %q", got, openaitest.Answer("y"))
	}

	srv.SetWrongAfter(0)
	if got := batchResults(t, srv); got[2].Output != openaitest.Answer("z") {
		t.Errorf("after SetWrongAfter(0): %+v", got)
	}
}
