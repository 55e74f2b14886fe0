package anthropictest_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider/anthropictest"
)

// An account of 2 calls a minute: every answer says what is left, as
// Anthropic's anthropic-ratelimit-* headers do (resets as RFC 3339 times);
// the third call is refused with 429 rate_limit_error and retry-after.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	srv := anthropictest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetRateLimit(2, 1000)
	for _, want := range []string{"1", "0"} {
		before := time.Now().Truncate(time.Second)
		r, err := post(t, t.Context(), srv, nil, plainBody("x"))
		if err != nil || r.status != http.StatusOK {
			t.Fatalf("call: %d %s, %v", r.status, r.body, err)
		}
		h := r.header
		reset, err := time.Parse(time.RFC3339, h.Get("anthropic-ratelimit-requests-reset"))
		if h.Get("anthropic-ratelimit-requests-limit") != "2" || h.Get("anthropic-ratelimit-requests-remaining") != want || err != nil || reset.Before(before) {
			t.Errorf("requests headers %v; want limit 2, %s left, an RFC 3339 reset ahead", h, want)
		}
		if h.Get("anthropic-ratelimit-tokens-limit") != "1000" || h.Get("anthropic-ratelimit-input-tokens-remaining") == "" {
			t.Errorf("tokens headers %v; want the tokens and input tokens windows", h)
		}
	}
	r, err := post(t, t.Context(), srv, nil, plainBody("x"))
	if err != nil || r.status != http.StatusTooManyRequests || r.header.Get("retry-after") != "30" {
		t.Fatalf("third call: %d %v %s, %v; want 429 with retry-after 30", r.status, r.header, r.body, err)
	}
	if srv.RateLimited() != 1 {
		t.Errorf("RateLimited = %d, want 1", srv.RateLimited())
	}
}

// The processing queue holds 3 batch requests: a batch that would pass it
// is refused with 429 and retry-after, and none is made; once a batch
// ends there is room again.
func TestQueueLimit(t *testing.T) {
	t.Parallel()
	srv := anthropictest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetQueueLimit(3)
	createBatch(t, srv, batchRequest("a", "x"), batchRequest("b", "y"))
	r := batchCall(t, srv, http.MethodPost, anthropictest.BatchesPath, createBody(batchRequest("c", "z"), batchRequest("d", "w")))
	if r.status != http.StatusTooManyRequests || r.header.Get("retry-after") == "" {
		t.Fatalf("a batch over the queue: %d %v %s; want 429 with retry-after", r.status, r.header, r.body)
	}
	if srv.QueueRefused() != 1 || srv.Jobs() != 1 {
		t.Errorf("QueueRefused %d, Jobs %d; want 1 and 1", srv.QueueRefused(), srv.Jobs())
	}
	srv.CompleteBatches()
	createBatch(t, srv, batchRequest("c", "z"), batchRequest("d", "w"))
}
