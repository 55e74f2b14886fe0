package ratelimit_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/anthropic"
	"github.com/aibatch/aibatch/provider/anthropictest"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/provider/ratelimit"
)

// jobBatch is a batch of n requests of 40 bytes each: 10 tokens a request
// in a job.
func jobBatch(n int) provider.Batch {
	b := provider.Batch{ID: "b", Model: "gpt-test"}
	for i := range n {
		b.Requests = append(b.Requests, provider.Request{Key: strconv.Itoa(i), Input: strings.Repeat("x", 38) + strconv.Itoa(i%10) + "."})
	}
	return b
}

func TestEstimateJobTokens(t *testing.T) {
	t.Parallel()
	b := provider.Batch{Instructions: "abcd", Requests: []provider.Request{{Input: "abcd"}, {Input: "a"}}}
	// Each request is a call of its own: (4+4)/4 + (4+1)/4 rounded up.
	if got := ratelimit.EstimateJobTokens(b); got != 4 {
		t.Errorf("EstimateJobTokens = %d, want 4", got)
	}
	if got := ratelimit.EstimateJobTokens(jobBatch(10)); got != 100 {
		t.Errorf("EstimateJobTokens(10 requests) = %d, want 100", got)
	}
}

// submitted submits b through q in the background; the channel gets the
// job id (or the error's text) once it is submitted.
func submitted(t *testing.T, q *ratelimit.Queue, b provider.Batch) <-chan string {
	done := make(chan string, 1)
	go func() {
		id, err := q.SubmitJob(t.Context(), b)
		if err != nil {
			id = "error: " + err.Error()
		}
		done <- id
	}()
	return done
}

// receive waits up to 10s for a submission to finish.
func receive(t *testing.T, c <-chan string) string {
	t.Helper()
	select {
	case id := <-c:
		if strings.HasPrefix(id, "error: ") {
			t.Fatal(id)
		}
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("the submission did not finish in 10s")
		return ""
	}
}

// stillWaiting requires a submission to be waiting.
func stillWaiting(t *testing.T, c <-chan string, what string) {
	t.Helper()
	select {
	case id := <-c:
		t.Fatalf("%s went out (%s), want it waiting for room in the queue", what, id)
	case <-time.After(1500 * time.Millisecond): // more than a recheck: it would have gone
	}
}

// TestQueueWaitsForRoom: OpenAI's organization may hold 250 enqueued tokens
// of the model; jobs hold 100. Two go at once, the third waits until one
// ends, and no job is refused.
func TestQueueWaitsForRoom(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetEnqueuedTokenLimit(250)
	inner, err := openai.New(openai.Config{APIKey: "sk-test", BaseURL: srv.URL, Mode: openai.ModeAsync})
	if err != nil {
		t.Fatal(err)
	}
	q, err := ratelimit.NewQueue(inner, ratelimit.QueueLimits{Tokens: 250})
	if err != nil {
		t.Fatal(err)
	}
	first := receive(t, submitted(t, q, jobBatch(10)))
	receive(t, submitted(t, q, jobBatch(10)))
	third := submitted(t, q, jobBatch(10))
	stillWaiting(t, third, "a job over the enqueued token limit")
	if st := q.Status(); st.Waiting != 1 || st.Enqueued["gpt-test"].Tokens != 200 {
		t.Errorf("Status() = %+v, want one waiting and 200 tokens enqueued", st)
	}
	srv.CompleteJobs()
	if st, err := q.PollJob(t.Context(), first); err != nil || !st.Done || st.Failed {
		t.Fatalf("PollJob(first) = %+v, %v", st, err)
	}
	receive(t, third)
	if n := srv.QueueRefused(); n != 0 {
		t.Errorf("%d jobs refused for the enqueued token limit, want 0", n)
	}
	if n := srv.Jobs(); n != 3 {
		t.Errorf("%d jobs made, want 3", n)
	}
}

// TestQueueLearnsOpenAIsLimit: without a configured limit the first job
// over it fails with token_limit_exceeded; its message names the limit,
// and from then on jobs wait instead.
func TestQueueLearnsOpenAIsLimit(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetEnqueuedTokenLimit(250)
	inner, err := openai.New(openai.Config{APIKey: "sk-test", BaseURL: srv.URL, Mode: openai.ModeAsync})
	if err != nil {
		t.Fatal(err)
	}
	q, err := ratelimit.NewQueue(inner, ratelimit.QueueLimits{})
	if err != nil {
		t.Fatal(err)
	}
	first := receive(t, submitted(t, q, jobBatch(10)))
	receive(t, submitted(t, q, jobBatch(10)))
	refused := receive(t, submitted(t, q, jobBatch(10)))
	st, err := q.PollJob(t.Context(), refused)
	if err != nil || !st.Failed || !strings.Contains(strings.Join(st.Errors, " "), "token_limit_exceeded") {
		t.Fatalf("PollJob(third) = %+v, %v; want it failed for the enqueued token limit", st, err)
	}
	if got := q.Status().LearnedTokens["gpt-test"]; got != 250 {
		t.Fatalf("learned a limit of %d tokens, want 250 (from the message)", got)
	}
	again := submitted(t, q, jobBatch(10))
	stillWaiting(t, again, "the refused job sent again")
	srv.CompleteJobs()
	if _, err := q.PollJob(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	receive(t, again)
	if n := srv.QueueRefused(); n != 1 {
		t.Errorf("%d jobs refused, want only the one that taught the limit", n)
	}
}

// TestQueueLearnsAnthropicsLimit: Anthropic refuses a Message Batch over
// its processing queue with 429; the submission learns the limit, waits
// until a batch ends and goes again, and the next one waits instead of
// being refused.
func TestQueueLearnsAnthropicsLimit(t *testing.T) {
	t.Parallel()
	srv := anthropictest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetQueueLimit(25)
	inner, err := anthropic.New(anthropic.Config{APIKey: "sk-ant-test", BaseURL: srv.URL, Mode: anthropic.ModeAsync})
	if err != nil {
		t.Fatal(err)
	}
	q, err := ratelimit.NewQueue(inner, ratelimit.QueueLimits{})
	if err != nil {
		t.Fatal(err)
	}
	first := receive(t, submitted(t, q, jobBatch(10)))
	receive(t, submitted(t, q, jobBatch(10)))
	third := submitted(t, q, jobBatch(10))
	stillWaiting(t, third, "a batch over the processing queue")
	if n := srv.QueueRefused(); n != 1 {
		t.Fatalf("%d batches refused, want 1 (the one that teaches the limit)", n)
	}
	if got := q.Status().LearnedRequest; got != 20 {
		t.Errorf("learned a limit of %d requests, want 20 (what the queue held)", got)
	}
	srv.CompleteBatches()
	if st, err := q.PollJob(t.Context(), first); err != nil || !st.Done {
		t.Fatalf("PollJob(first) = %+v, %v", st, err)
	}
	receive(t, third)
	fourth := submitted(t, q, jobBatch(10))
	stillWaiting(t, fourth, "the next batch over the learned limit")
	if n := srv.QueueRefused(); n != 1 {
		t.Errorf("%d batches refused, want 1: the learned limit keeps the next one back", n)
	}
}

func TestNewQueueRefusesBadLimits(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	inner, err := openai.New(openai.Config{APIKey: "sk-test", BaseURL: srv.URL, Mode: openai.ModeAsync})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ratelimit.NewQueue(inner, ratelimit.QueueLimits{Tokens: -1}); err == nil {
		t.Error("NewQueue accepted a negative limit")
	}
	if _, err := ratelimit.NewQueue(nil, ratelimit.QueueLimits{}); err == nil {
		t.Error("NewQueue accepted no provider")
	}
}

// A job of combined lines (ASYNC_COMBINE) waits for room as a plain one
// does: each line is one request in the queue, holding its batch's prompt.
func TestQueueCombinedJobs(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	inner, err := openai.New(openai.Config{APIKey: "sk-test", BaseURL: srv.URL, Mode: openai.ModeAsync})
	if err != nil {
		t.Fatal(err)
	}
	// Two lines of 10 requests: 2 × 100 estimated tokens; room for one job.
	q, err := ratelimit.NewQueue(inner, ratelimit.QueueLimits{Tokens: 300})
	if err != nil {
		t.Fatal(err)
	}
	lines := []provider.Batch{jobBatch(10), jobBatch(10)}
	for n, l := range lines {
		for i := range l.Requests {
			l.Requests[i].Key = provider.CombinedKey(n, i)
		}
	}
	combined := func() <-chan string {
		done := make(chan string, 1)
		go func() {
			id, err := q.SubmitCombinedJob(t.Context(), lines)
			if err != nil {
				id = "error: " + err.Error()
			}
			done <- id
		}()
		return done
	}
	first := receive(t, combined())
	if st := q.Status(); st.Enqueued["gpt-test"].Requests != 2 || st.Enqueued["gpt-test"].Tokens != 200 {
		t.Fatalf("Status() = %+v, want one job of 2 lines and 200 tokens", st)
	}
	second := combined()
	stillWaiting(t, second, "a combined job over the limit")
	srv.CompleteJobs()
	if _, err := q.PollJob(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	receive(t, second)
	if srv.Jobs() != 2 {
		t.Errorf("%d jobs made, want 2", srv.Jobs())
	}
}
