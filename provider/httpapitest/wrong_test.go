package httpapitest_test

import (
	"slices"
	"testing"

	"github.com/aibatch/aibatch/provider/httpapitest"
)

// SetWrongAfter spoils the items of a call past its position; a call of one
// item stays right.
func TestSetWrongAfter(t *testing.T) {
	t.Parallel()
	srv := httpapitest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetWrongAfter(1)
	want := []string{"a=" + httpapitest.Answer("x"), "b=" + httpapitest.WrongAnswer, "c=" + httpapitest.WrongAnswer}
	if got := summary(results(t, srv)); !slices.Equal(got, want) {
		t.Errorf("answer %v, want %v", got, want)
	}
	one := `{"items":[{"id":"b","input":"y","instructions":"i","model":"m"}]}`
	got, _ := answerOf(t, srv, "", one)
	if s := summary(got); !slices.Equal(s, []string{"b=" + httpapitest.Answer("y")}) {
		t.Errorf("a call of one item answered %v", s)
	}
}
