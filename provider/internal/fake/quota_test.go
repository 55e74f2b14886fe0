package fake_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider/internal/fake"
)

func TestAdmit(t *testing.T) {
	t.Parallel()
	var c fake.Controls[result]
	if st, ok := c.Admit(1_000_000); !ok || st.Requests.Set || st.Tokens.Set {
		t.Fatalf("without limits: %+v, %v; want admitted, no bucket", st, ok)
	}
	c.SetRateLimit(60, 100)
	st, ok := c.Admit(40)
	if !ok || st.Requests != (fake.Bucket{Set: true, Limit: 60, Remaining: 59, Reset: st.Requests.Reset}) || st.Tokens.Remaining != 60 {
		t.Fatalf("first call: %+v, %v; want 59 requests and 60 tokens left", st, ok)
	}
	// A bucket of 60 a minute refills one a second: one taken, full again
	// in about a second; 40 of 100 tokens, full in 24s.
	if d := st.Requests.Reset; d < 990*time.Millisecond || d > time.Second {
		t.Errorf("requests reset in %v, want about 1s", d)
	}
	if d := st.Tokens.Reset; d < 23900*time.Millisecond || d > 24*time.Second {
		t.Errorf("tokens reset in %v, want about 24s", d)
	}
	c.Admit(40)
	st, ok = c.Admit(40) // 20 tokens left: refused, nothing taken
	if ok || st.RetryAfter < 11*time.Second || st.RetryAfter > 12*time.Second || st.Requests.Remaining != 58 {
		t.Errorf("a call over the tokens left: %+v, %v; want refused, retry after about 12s, the requests untouched", st, ok)
	}
	if c.RateLimited() != 1 || c.LowestRemaining() != 58 {
		t.Errorf("RateLimited %d, LowestRemaining %d; want 1 and 58", c.RateLimited(), c.LowestRemaining())
	}
}

func TestRateHeaders(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 250_000_000, time.UTC)
	st := fake.QuotaState{
		Requests:   fake.Bucket{Set: true, Limit: 60, Remaining: 0, Reset: 250 * time.Millisecond},
		Tokens:     fake.Bucket{Set: true, Limit: 150000, Remaining: 1000, Reset: 6 * time.Minute},
		RetryAfter: 1500 * time.Millisecond,
	}
	h := http.Header{}
	fake.OpenAIRateHeaders(h, st)
	for k, want := range map[string]string{
		"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "250ms",
		"x-ratelimit-limit-tokens": "150000", "x-ratelimit-remaining-tokens": "1000", "x-ratelimit-reset-tokens": "6m0s",
		"Retry-After": "2",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("OpenAI %s = %q, want %q", k, got, want)
		}
	}
	h = http.Header{}
	fake.AnthropicRateHeaders(h, st, now)
	for k, want := range map[string]string{
		"anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": "2026-01-02T03:04:06Z",
		"anthropic-ratelimit-tokens-limit": "150000", "anthropic-ratelimit-input-tokens-reset": "2026-01-02T03:10:06Z",
		"Retry-After": "2",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("Anthropic %s = %q, want %q", k, got, want)
		}
	}
}
