package fake_test

import (
	"testing"

	"github.com/aibatch/aibatch/provider/internal/fake"
)

// SetWrongAfter spoils combined answers past its position, never a call of
// one request, and 0 turns it off.
func TestWrongAfter(t *testing.T) {
	t.Parallel()
	var c fake.Controls[result]
	if got := c.AnswerAt(5, 10, "right"); got != "right" {
		t.Fatalf("AnswerAt with the control off = %q", got)
	}
	c.SetWrongAfter(2)
	for _, tt := range []struct {
		i, n int
		want string
	}{
		{0, 3, "right"}, {1, 3, "right"}, {2, 3, fake.WrongAnswer}, {9, 10, fake.WrongAnswer},
		{0, 1, "right"}, // a plain call stays right
	} {
		if got := c.AnswerAt(tt.i, tt.n, "right"); got != tt.want {
			t.Errorf("AnswerAt(%d, %d) = %q, want %q", tt.i, tt.n, got, tt.want)
		}
	}
	c.SetWrongAfter(0)
	if got := c.AnswerAt(2, 3, "right"); got != "right" {
		t.Errorf("AnswerAt after SetWrongAfter(0) = %q", got)
	}
}
