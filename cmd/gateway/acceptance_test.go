package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

// The acceptance tests of the gateway: the official openai-go SDK, its base
// URL pointing at the gateway, a real worker process on an embedded
// JetStream server, and the fake OpenAI provider.

func TestAcceptanceConcurrentChatCompletions(t *testing.T) {
	t.Parallel()
	s := startSystem(t, map[string]string{"MAX_BATCH_SIZE": "50", "MAX_WAIT": "2s", "BATCH_INTERVAL": "1h"}, nil)
	c := s.client(apiKey)
	const n = 200
	var wg sync.WaitGroup
	headers := make([]http.Header, n)
	for i := range n {
		wg.Go(func() {
			var resp *http.Response
			input := "question " + strconv.Itoa(i)
			got, err := c.Chat.Completions.New(testCtx(t), openai.ChatCompletionNewParams{
				Model: "gpt-4o-mini",
				Messages: []openai.ChatCompletionMessageParamUnion{
					openai.SystemMessage("Answer in one line."),
					openai.UserMessage(input),
				},
			}, option.WithResponseInto(&resp))
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			if want := openaitest.Answer(input); got.Choices[0].Message.Content != want || got.Choices[0].FinishReason != "stop" {
				t.Errorf("request %d: answer %q (%s), want %q", i, got.Choices[0].Message.Content, got.Choices[0].FinishReason, want)
			}
			if got.Usage.TotalTokens == 0 {
				t.Errorf("request %d: no usage", i)
			}
			headers[i] = resp.Header
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	calls := s.fake.Calls()
	if calls > 10 {
		t.Errorf("%d concurrent chat completions took %d provider calls, want at most 10", n, calls)
	}
	sizes := 0
	for i, h := range headers {
		size, err := strconv.Atoi(h.Get("X-Batch-Size"))
		if err != nil || size < 1 || h.Get("X-Batch-Id") == "" || h.Get("X-Batch-Trigger") == "" || h.Get("X-Batch-Queued-Ms") == "" {
			t.Fatalf("request %d: batch headers %v", i, h)
		}
		sizes += size
	}
	t.Logf("%d requests, %d provider calls, mean batch size seen by a request %.1f", n, calls, float64(sizes)/n)
}

func TestAcceptanceStreamedCompletion(t *testing.T) {
	t.Parallel()
	s := startSystem(t, map[string]string{"MAX_WAIT": "1h"}, nil)
	c := s.client(apiKey)
	// Urgent: answered at once, without waiting for a batch.
	stream := c.Chat.Completions.NewStreaming(testCtx(t), openai.ChatCompletionNewParams{
		Model:         "gpt-4o-mini",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell me about streams.")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}, option.WithHeader("X-Batch-Priority", "urgent"))
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != openaitest.Answer("Tell me about streams.") || acc.Choices[0].FinishReason != "stop" {
		t.Fatalf("streamed answer %+v", acc.ChatCompletion)
	}
	if acc.Usage.TotalTokens == 0 {
		t.Error("the stream carried no usage, though include_usage was set")
	}
}

func TestAcceptanceErrors(t *testing.T) {
	t.Parallel()
	// The stream takes 5 requests, a batch's worth; the provider takes 4s
	// to answer and the gateway waits 1s.
	s := startSystem(t, map[string]string{"MAX_BATCH_SIZE": "5", "MAX_WAIT": "1h", "STREAM_MAX_MSGS": "5"},
		map[string]string{"GATEWAY_TIMEOUT": "1s"})
	s.fake.SetDelay(4 * time.Second)
	params := func(input string) openai.ChatCompletionNewParams {
		return openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(input)}}
	}
	var apiErr *openai.Error

	wrong := s.client("sk-not-a-key")
	if _, err := wrong.Chat.Completions.New(testCtx(t), params("x")); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a wrong key: %v, want 401", err)
	}

	// The SDK's default retries stay on: the gateway's x-should-retry:
	// false keeps it from publishing a request again after a 504.
	c := s.client(apiKey)
	var resp *http.Response
	_, err := c.Chat.Completions.New(testCtx(t), params("waits"), option.WithResponseInto(&resp))
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("a request that waits: %v, want 504", err)
	}
	id := resp.Header.Get("X-Request-Id")
	if id == "" || !strings.Contains(apiErr.Message, id) {
		t.Fatalf("the 504 %q does not name the request id %q", apiErr.Message, id)
	}
	if n := jetstreamtest.Count(t, s.js, wire.RequestStream); n != 1 {
		t.Fatalf("the request stream holds %d requests after a 504, want the one still waiting", n)
	}
	// Four more fill the stream (and a batch, whose slow call holds them).
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			var e *openai.Error
			if _, err := c.Chat.Completions.New(testCtx(t), params("fill "+strconv.Itoa(i))); !errors.As(err, &e) || e.StatusCode != http.StatusGatewayTimeout {
				t.Errorf("fill %d: %v, want 504", i, err)
			}
		})
	}
	wg.Wait()
	// The next is refused with 429. No retries here: the SDK would honour
	// Retry-After and try again.
	_, err = c.Chat.Completions.New(testCtx(t), params("one too many"), option.WithMaxRetries(0), option.WithResponseInto(&resp))
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("into a full stream: %v, want 429 with Retry-After", err)
	}
	// The slow call ends: the first request's result is in AI_RESULTS
	// under the id the 504 named.
	jetstreamtest.Eventually(t, 30*time.Second, "the waiting requests were answered", func() bool {
		return jetstreamtest.Count(t, s.js, wire.ResultStream) >= 5
	})
	found := false
	for _, m := range jetstreamtest.Messages(t, s.js, wire.ResultStream) {
		var r wire.Result
		if json.Unmarshal(m.Data, &r) == nil && r.ID == id && r.Output == openaitest.Answer("waits") {
			found = true
		}
	}
	if !found {
		t.Errorf("no result for %s in AI_RESULTS", id)
	}
	if items := s.providerItems(); items != 5 {
		t.Errorf("provider items %d, want 5: every request once, none again after its 504", items)
	}
}

func TestAcceptanceIdempotencyKey(t *testing.T) {
	t.Parallel()
	s := startSystem(t, map[string]string{"MAX_WAIT": "1s"}, nil)
	c := s.client(apiKey)
	var ids []string
	for range 2 {
		got, err := c.Chat.Completions.New(testCtx(t), openai.ChatCompletionNewParams{
			Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("pay once")},
		}, option.WithHeader("Idempotency-Key", "invoice-7"))
		if err != nil {
			t.Fatal(err)
		}
		if got.Choices[0].Message.Content != openaitest.Answer("pay once") {
			t.Fatalf("answer %q", got.Choices[0].Message.Content)
		}
		ids = append(ids, got.ID)
	}
	if ids[0] != ids[1] {
		t.Errorf("ids %v: one key, one request", ids)
	}
	if items := s.providerItems(); items != 1 {
		t.Errorf("the same Idempotency-Key twice cost %d provider items, want 1", items)
	}
}
