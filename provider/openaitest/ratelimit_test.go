package openaitest_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/aibatch/aibatch/provider/openaitest"
)

// An account of 3 calls a minute: every answer says what is left, as
// OpenAI's x-ratelimit-* headers do; the fourth call is refused with
// Retry-After and takes nothing.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	if r, err := post(t, t.Context(), srv, "Bearer k", plainBody("x")); err != nil || r.header.Get("x-ratelimit-remaining-requests") != "" {
		t.Fatalf("without a limit: %v, headers %v; want no rate-limit headers", err, r.header)
	}
	srv.SetRateLimit(3, 1000)
	for want := 2; want >= 0; want-- {
		r, err := post(t, t.Context(), srv, "Bearer k", plainBody("x"))
		if err != nil || r.status != http.StatusOK {
			t.Fatalf("call: %d %s, %v", r.status, r.body, err)
		}
		h := r.header
		if h.Get("x-ratelimit-limit-requests") != "3" || h.Get("x-ratelimit-remaining-requests") != itoa(want) || h.Get("x-ratelimit-reset-requests") == "" {
			t.Errorf("requests headers %v; want limit 3, %d left, a reset", h, want)
		}
		if h.Get("x-ratelimit-limit-tokens") != "1000" || h.Get("x-ratelimit-remaining-tokens") == "" || !strings.HasSuffix(h.Get("x-ratelimit-reset-tokens"), "s") {
			t.Errorf("tokens headers %v; want limit 1000, what is left and a reset as a duration", h)
		}
	}
	r, err := post(t, t.Context(), srv, "Bearer k", plainBody("x"))
	if err != nil || r.status != http.StatusTooManyRequests {
		t.Fatalf("fourth call: %d %s, %v; want 429", r.status, r.body, err)
	}
	var e struct{ Error struct{ Type, Code string } }
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Code != "rate_limit_exceeded" || e.Error.Type != "requests" {
		t.Errorf("429 body %s; want OpenAI's rate_limit_exceeded error", r.body)
	}
	// A call a minute is 20s apart: the next one in 20s, rounded up.
	if got := r.header.Get("Retry-After"); got != "20" {
		t.Errorf("Retry-After %q, want 20", got)
	}
	if r.header.Get("x-ratelimit-remaining-requests") != "0" {
		t.Errorf("the 429's headers %v: want 0 requests left", r.header)
	}
	if srv.RateLimited() != 1 || srv.LowestRemaining() != 0 {
		t.Errorf("RateLimited %d, LowestRemaining %d; want 1 and 0", srv.RateLimited(), srv.LowestRemaining())
	}
	// A prompt larger than the tokens left is refused too.
	srv.SetRateLimit(100, 30)
	for i, want := range []int{http.StatusOK, http.StatusTooManyRequests} {
		if r, _ := post(t, t.Context(), srv, "Bearer k", plainBody(strings.Repeat("x", 80))); r.status != want {
			t.Errorf("20-token prompt %d of a 30-token minute: %d, want %d", i+1, r.status, want)
		}
	}
}

// A batch that would pass the model's enqueued token limit fails at its
// first GET with token_limit_exceeded, naming the limit; one that fits
// runs.
func TestEnqueuedTokenLimit(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetEnqueuedTokenLimit(15)
	// Each line's messages are 40 bytes ("sys" and 37): 10 tokens.
	line := func(id string) string { return jobLine(id, strings.Repeat("y", 37)) }
	first := startJob(t, srv, line("a")).ID
	second := startJob(t, srv, line("b")).ID
	if st := getJob(t, srv, first); st.Status != openaitest.StatusInProgress {
		t.Errorf("the batch within the limit is %s, want in_progress", st.Status)
	}
	st := getJob(t, srv, second)
	if st.Status != openaitest.StatusFailed || st.Errors == nil || len(st.Errors.Data) != 1 ||
		st.Errors.Data[0].Code != "token_limit_exceeded" || !strings.Contains(st.Errors.Data[0].Message, "Limit: 15 enqueued tokens") {
		t.Errorf("the batch over the limit: %+v; want failed, token_limit_exceeded naming the limit", st)
	}
	if srv.QueueRefused() != 1 {
		t.Errorf("QueueRefused = %d, want 1", srv.QueueRefused())
	}
	srv.CompleteJobs()
	if st := getJob(t, srv, startJob(t, srv, line("c")).ID); st.Status != openaitest.StatusInProgress {
		t.Errorf("a batch after the first ended is %s, want in_progress", st.Status)
	}
}
