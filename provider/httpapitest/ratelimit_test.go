package httpapitest_test

import (
	"net/http"
	"testing"

	"github.com/aibatch/aibatch/provider/httpapitest"
)

// An endpoint of 2 calls a minute answers with OpenAI's x-ratelimit-*
// headers by default, Anthropic's with WithAnthropicRateHeaders, and
// refuses the third call with 429 and Retry-After.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		opts      []httpapitest.Option
		remaining string
	}{
		{"OpenAI's headers", nil, "x-ratelimit-remaining-requests"},
		{"Anthropic's headers", []httpapitest.Option{httpapitest.WithAnthropicRateHeaders()}, "anthropic-ratelimit-requests-remaining"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httpapitest.NewServer(tt.opts...)
			t.Cleanup(srv.Close)
			srv.SetRateLimit(2, 0)
			for _, want := range []string{"1", "0"} {
				r, err := send(t, t.Context(), srv, http.MethodPost, "application/json", "", items)
				if err != nil || r.status != http.StatusOK {
					t.Fatalf("call: %d %s, %v", r.status, r.body, err)
				}
				if got := r.header.Get(tt.remaining); got != want {
					t.Errorf("%s = %q, want %s (headers %v)", tt.remaining, got, want, r.header)
				}
			}
			r, err := send(t, t.Context(), srv, http.MethodPost, "application/json", "", items)
			if err != nil || r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "30" {
				t.Fatalf("third call: %d %v %s, %v; want 429 with Retry-After 30", r.status, r.header, r.body, err)
			}
			if srv.RateLimited() != 1 || srv.Calls() != 3 {
				t.Errorf("RateLimited %d, Calls %d; want 1 and 3", srv.RateLimited(), srv.Calls())
			}
		})
	}
}
