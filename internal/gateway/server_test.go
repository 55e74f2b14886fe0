package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/aibatch/aibatch/internal/gateway"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/wire"
)

func TestChatCompletionThroughTheSDK(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	var resp *http.Response
	c := s.client(testKey)
	got, err := c.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
		Model: "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("Answer in one line."),
			openai.UserMessage("What is NATS?"),
		},
		Temperature:         openai.Float(0.2),
		MaxCompletionTokens: openai.Int(100),
		Seed:                openai.Int(7),
		Stop:                openai.ChatCompletionNewParamsStopUnion{OfString: openai.String("END")},
	}, option.WithResponseInto(&resp))
	if err != nil {
		t.Fatalf("chat completion: %v", err)
	}
	if got.Choices[0].Message.Content != "echo: What is NATS?" || got.Choices[0].FinishReason != "stop" {
		t.Fatalf("answer %q finish %q, want the responder's echo and stop", got.Choices[0].Message.Content, got.Choices[0].FinishReason)
	}
	if got.Usage.PromptTokens != 3 || got.Usage.CompletionTokens != 2 || got.Usage.TotalTokens != 5 {
		t.Errorf("usage %+v, want 3 + 2 = 5", got.Usage)
	}
	if got.Model != "gpt-4o-mini" || !strings.HasPrefix(got.ID, "chatcmpl-") {
		t.Errorf("model %q id %q", got.Model, got.ID)
	}
	for h, want := range map[string]string{"X-Batch-Size": "1", "X-Batch-Trigger": "urgent", "X-Request-Id": got.ID, "X-Batch-Queued-Ms": "0"} {
		if v := resp.Header.Get(h); v != want {
			t.Errorf("header %s = %q, want %q", h, v, want)
		}
	}
	if !strings.HasPrefix(resp.Header.Get("X-Batch-Id"), "call-") {
		t.Errorf("X-Batch-Id = %q", resp.Header.Get("X-Batch-Id"))
	}
	reqs := s.resp.requests()
	if len(reqs) != 1 {
		t.Fatalf("the responder got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	// The system message became the instructions, the single user turn the
	// input: requests sharing the system prompt share a call.
	want := wire.Request{ID: got.ID, Model: "gpt-4o-mini", Input: "What is NATS?", Instructions: "Answer in one line.",
		MaxOutputTokens: 100, Temperature: r.req.Temperature, Seed: r.req.Seed, Stop: []string{"END"}}
	if r.req.Temperature == nil || *r.req.Temperature != 0.2 || r.req.Seed == nil || *r.req.Seed != 7 {
		t.Fatalf("temperature %v seed %v, want 0.2 and 7", r.req.Temperature, r.req.Seed)
	}
	if !equalJSON(t, r.req, want) {
		t.Errorf("wire request\n%s\nwant\n%s", mustMarshal(r.req), mustMarshal(want))
	}
	if r.subject != "ai.requests.tenant" {
		t.Errorf("published to %s, want the key's topic ai.requests.tenant", r.subject)
	}
	if rt := r.header.Get(wire.HeaderReplyTo); rt != s.srv.ReplySubject() || !strings.HasPrefix(rt, "ai.results.gateway.") {
		t.Errorf("Batch-Reply-To %q, want the gateway's subject %q under ai.results.", rt, s.srv.ReplySubject())
	}
	// The key is never forwarded.
	if bytes.Contains(r.raw, []byte(testKey)) || strings.Contains(mustMarshal(r.header), testKey) {
		t.Error("the published request carries the caller's key")
	}
	// The result is stored in AI_RESULTS, so a caller that gave up finds it.
	var stored int
	for _, m := range jetstreamtest.Messages(t, s.js, wire.ResultStream) {
		var res wire.Result
		if json.Unmarshal(m.Data, &res) == nil && res.ID == got.ID {
			stored++
		}
	}
	if stored != 1 {
		t.Errorf("AI_RESULTS holds %d results for %s, want 1", stored, got.ID)
	}
}

func TestConversationAndSoloFields(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	c := s.client(testKey)
	_, err := c.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
		Model: "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.DeveloperMessage("Be terse."),
			openai.UserMessage("Hi"),
			openai.AssistantMessage("Hello."),
			openai.UserMessage("Bye"),
		},
		ResponseFormat:   openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}},
		FrequencyPenalty: openai.Float(0),   // the default: the request stays combinable
		PresencePenalty:  openai.Float(0.5), // changes the answer: sent alone
		User:             openai.String("u-1"),
	}, option.WithHeader("X-Batch-Priority", "urgent"))
	if err != nil {
		t.Fatalf("chat completion: %v", err)
	}
	r := s.resp.requests()[0]
	if r.subject != "ai.urgent.tenant" {
		t.Errorf("published to %s, want the urgent lane ai.urgent.tenant", r.subject)
	}
	if r.req.Instructions != "Be terse." || r.req.Input != "" || len(r.req.Messages) != 3 {
		t.Fatalf("instructions %q input %q messages %d, want the developer message as instructions and 3 turns", r.req.Instructions, r.req.Input, len(r.req.Messages))
	}
	if r.req.ResponseFormat == nil || r.req.ResponseFormat.Type != wire.FormatJSONObject {
		t.Errorf("response_format %+v", r.req.ResponseFormat)
	}
	var opts map[string]any
	if err := json.Unmarshal(r.req.ProviderOptions, &opts); err != nil {
		t.Fatalf("provider_options %s: %v", r.req.ProviderOptions, err)
	}
	if len(opts) != 2 || opts["presence_penalty"] != 0.5 || opts["user"] != "u-1" {
		t.Errorf("provider_options %v, want presence_penalty and user only", opts)
	}
	if r.req.Combinable() {
		t.Error("a request with provider options is combinable")
	}
}

func TestStreamedCompletionReadBySDK(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	c := s.client(testKey)
	stream := c.Chat.Completions.NewStreaming(ctxT(t), openai.ChatCompletionNewParams{
		Model:         "gpt-4o-mini",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream me")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var acc openai.ChatCompletionAccumulator
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != "echo: stream me" || acc.Choices[0].FinishReason != "stop" {
		t.Fatalf("accumulated %+v", acc.ChatCompletion)
	}
	if acc.Usage.TotalTokens != 5 || chunks != 4 {
		t.Errorf("usage %+v over %d chunks, want 5 tokens in the role, content, finish and usage chunks", acc.Usage, chunks)
	}
}

func TestToolCallsPassThrough(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	message := `{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Oslo\"}"}}],"refusal":null}`
	s.resp.setAnswer(func(req wire.Request) (wire.Result, bool) {
		return wire.Result{Status: wire.StatusOK, FinishReason: "tool_calls", Message: json.RawMessage(message)}, false
	})
	c := s.client(testKey)
	params := openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather in Oslo?")},
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name: "weather", Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
		})},
	}
	got, err := c.Chat.Completions.New(ctxT(t), params)
	if err != nil {
		t.Fatal(err)
	}
	calls := got.Choices[0].Message.ToolCalls
	if got.Choices[0].FinishReason != "tool_calls" || len(calls) != 1 || calls[0].Function.Name != "weather" || calls[0].Function.Arguments != `{"city":"Oslo"}` {
		t.Fatalf("answer %+v", got.Choices[0])
	}
	if !strings.Contains(string(s.resp.requests()[0].req.ProviderOptions), `"tools"`) {
		t.Error("tools did not travel in provider_options")
	}
	// Streamed, the tool call arrives with its index, as the accumulator
	// needs it.
	stream := c.Chat.Completions.NewStreaming(ctxT(t), params)
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if calls := acc.Choices[0].Message.ToolCalls; len(calls) != 1 || calls[0].Function.Arguments != `{"city":"Oslo"}` {
		t.Fatalf("streamed tool calls %+v", acc.Choices[0].Message)
	}
}

func TestEmbeddingsInOrder(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	c := s.client(testKey)
	inputs := []string{"a", "bb", "ccc", "dddd", "eeeee"}
	for _, format := range []openai.EmbeddingNewParamsEncodingFormat{openai.EmbeddingNewParamsEncodingFormatFloat, openai.EmbeddingNewParamsEncodingFormatBase64} {
		got, err := c.Embeddings.New(ctxT(t), openai.EmbeddingNewParams{
			Model: openai.EmbeddingModelTextEmbedding3Small, Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs},
			EncodingFormat: format, Dimensions: openai.Int(3),
		})
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if len(got.Data) != len(inputs) || got.Usage.PromptTokens != 15 {
			t.Fatalf("%s: %d vectors, usage %+v", format, len(got.Data), got.Usage)
		}
		for i, d := range got.Data {
			want := vectorOf(inputs[i])
			if d.Index != int64(i) || len(d.Embedding) != len(want) {
				t.Fatalf("%s: vector %d: index %d, %d values", format, i, d.Index, len(d.Embedding))
			}
			for j := range want {
				if float32(d.Embedding[j]) != want[j] {
					t.Fatalf("%s: vector %d = %v, want exactly %v", format, i, d.Embedding, want)
				}
			}
		}
	}
	reqs := s.resp.requests()
	if len(reqs) != 2*len(inputs) {
		t.Fatalf("responder got %d requests, want one per input", len(reqs))
	}
	for _, r := range reqs {
		if !r.req.IsEmbedding() || r.req.Dimensions != 3 || r.req.Model != "text-embedding-3-small" {
			t.Fatalf("wire request %s", r.raw)
		}
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	for _, key := range []string{"", "sk-wrong", testKey + "x"} {
		req, _ := http.NewRequest(http.MethodPost, s.base+"/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"x"}]}`))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, body := do(t, s.httpClient(), req)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"type":"invalid_request_error"`) {
			t.Errorf("key %q: %d %s, want 401 in OpenAI's error shape", key, resp.StatusCode, body)
		}
	}
	var apiErr *openai.Error
	wc := s.client("sk-wrong")
	_, err := wc.Models.List(ctxT(t))
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized || apiErr.Code != "invalid_api_key" {
		t.Errorf("SDK with a wrong key: %v, want a 401 invalid_api_key", err)
	}
	if n := len(s.resp.requests()); n != 0 {
		t.Errorf("%d requests reached the stream without a valid key", n)
	}
}

func TestUnsupportedFieldsAre400(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	c := s.client(testKey)
	tests := []struct {
		name  string
		body  string
		param string
	}{
		{"unknown field", `{"model":"m","messages":[{"role":"user","content":"x"}],"temprature":1}`, "temprature"},
		{"n above 1", `{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}`, "n"},
		{"logprobs", `{"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true}`, "logprobs"},
		{"unknown message field", `{"model":"m","messages":[{"role":"user","content":"x","weight":1}]}`, "messages[0].weight"},
		{"audio output", `{"model":"m","messages":[{"role":"user","content":"x"}],"modalities":["text","audio"]}`, "modalities"},
		{"no messages", `{"model":"m"}`, "messages"},
		{"bad role", `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"robot","content":"y"}]}`, "messages"},
		{"temperature out of range", `{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}`, ""},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(http.MethodPost, s.base+"/v1/chat/completions", strings.NewReader(tt.body))
		req.Header.Set("Authorization", "Bearer "+testKey)
		resp, body := do(t, s.httpClient(), req)
		var e struct {
			Error struct {
				Message string  `json:"message"`
				Param   *string `json:"param"`
			} `json:"error"`
		}
		_ = json.Unmarshal([]byte(body), &e)
		param := ""
		if e.Error.Param != nil {
			param = *e.Error.Param
		}
		if resp.StatusCode != http.StatusBadRequest || param != tt.param || e.Error.Message == "" {
			t.Errorf("%s: %d %s, want 400 naming %q", tt.name, resp.StatusCode, body, tt.param)
		}
	}
	_, err := c.Embeddings.New(ctxT(t), openai.EmbeddingNewParams{
		Model: openai.EmbeddingModelTextEmbedding3Small, Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfTokens: []int64{1, 2}},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Param != "input" {
		t.Errorf("token input: %v, want a 400 naming input", err)
	}
	if n := len(s.resp.requests()); n != 0 {
		t.Errorf("%d refused requests reached the stream", n)
	}
}

func TestTimeoutIs504WithTheID(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{config: gateway.Config{Timeout: 300 * time.Millisecond}})
	hold := true
	var mu sync.Mutex
	s.resp.setAnswer(func(req wire.Request) (wire.Result, bool) {
		mu.Lock()
		defer mu.Unlock()
		res, _ := echo(req)
		return res, hold
	})
	var resp *http.Response
	_, err := s.client(testKey, option.WithMaxRetries(2)).Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
		Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("slow")},
	}, option.WithResponseInto(&resp))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("err %v, want a 504", err)
	}
	id := resp.Header.Get("X-Request-Id")
	if id == "" || !strings.Contains(apiErr.Message, id) || !strings.Contains(apiErr.Message, "GATEWAY_TIMEOUT") {
		t.Errorf("504 message %q does not name the request id %q", apiErr.Message, id)
	}
	// x-should-retry: false stops the SDK's retries, which would pay for
	// the request again.
	if n := len(s.resp.requests()); n != 1 || resp.Header.Get("X-Should-Retry") != "false" {
		t.Errorf("%d requests published, X-Should-Retry %q; want 1 and false", n, resp.Header.Get("X-Should-Retry"))
	}
	if s.resp.requests()[0].req.ID != id {
		t.Errorf("the 504 names %s, the request published is %s", id, s.resp.requests()[0].req.ID)
	}
}

func TestFullStreamIs429(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{topology: jetstream.Topology{MaxMsgs: 3}, noResponder: true,
		config: gateway.Config{Timeout: 200 * time.Millisecond}})
	hc := s.httpClient()
	post := func() (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, s.base+"/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"x"}]}`))
		req.Header.Set("Authorization", "Bearer "+testKey)
		return do(t, hc, req)
	}
	for i := range 3 {
		if resp, body := post(); resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("request %d into a stream with room: %d %s, want it stored and a 504", i, resp.StatusCode, body)
		}
	}
	resp, body := post()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" || !strings.Contains(body, "maximum messages exceeded") {
		t.Fatalf("full stream: %d Retry-After %q %s, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if n := jetstreamtest.Count(t, s.js, wire.RequestStream); n != 3 {
		t.Errorf("the stream holds %d requests, want 3", n)
	}
}

func TestErrorResults(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	tests := []struct {
		error  string
		status int
		code   string
	}{
		{"provider refused the request: content policy", http.StatusBadGateway, "provider_error"},
		{`invalid request: model "big" is not in ALLOWED_MODELS (gpt-4o-mini)`, http.StatusNotFound, "model_not_found"},
		{`invalid request: "max_output_tokens" is 9000, over MAX_OUTPUT_TOKENS_LIMIT (100)`, http.StatusBadRequest, "invalid_value"},
		{"budget exceeded: topic tenant used 10 of 5 tokens today", http.StatusTooManyRequests, "insufficient_quota"},
	}
	for _, tt := range tests {
		s.resp.setAnswer(func(req wire.Request) (wire.Result, bool) {
			return wire.Result{Status: wire.StatusError, Error: tt.error}, false
		})
		var resp *http.Response
		_, err := s.client(testKey, option.WithMaxRetries(2)).Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
			Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")},
		}, option.WithResponseInto(&resp))
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != tt.status || apiErr.Code != tt.code || !strings.Contains(apiErr.Message, tt.error) {
			t.Errorf("error result %q: %v, want %d %s", tt.error, err, tt.status, tt.code)
			continue
		}
		if resp.Header.Get("X-Should-Retry") != "false" {
			t.Errorf("error result %q: X-Should-Retry %q; the worker's outcome is final", tt.error, resp.Header.Get("X-Should-Retry"))
		}
	}
	if n := len(s.resp.requests()); n != len(tests) {
		t.Errorf("%d requests published, want %d: the SDK retried a final error", n, len(tests))
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	// A 1s duplicate window, so the test can also send a key again after
	// it, when only the stored result stands in the way of a second call.
	s := newStack(t, stackOptions{topology: jetstream.Topology{DedupeWindow: time.Second}})
	c := s.client(testKey)
	ask := func(key, input string) (string, error) {
		got, err := c.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
			Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(input)},
		}, option.WithHeader("Idempotency-Key", key))
		if err != nil {
			return "", err
		}
		return got.Choices[0].Message.Content + " " + got.ID, nil
	}
	// Concurrent requests with one key while the first waits.
	release := make(chan struct{})
	s.resp.setAnswer(func(req wire.Request) (wire.Result, bool) {
		<-release
		return echo(req)
	})
	answers := make([]string, 5)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() {
			a, err := ask("order-1", "first")
			if err != nil {
				t.Errorf("request %d: %v", i, err)
			}
			answers[i] = a
		})
	}
	jetstreamtest.Eventually(t, 10*time.Second, "the first request reached the responder", func() bool { return len(s.resp.requests()) > 0 })
	time.Sleep(100 * time.Millisecond) // let the others publish into the duplicate window
	close(release)
	wg.Wait()
	for _, a := range answers[1:] {
		if a != answers[0] || !strings.HasPrefix(a, "echo: first ") {
			t.Fatalf("answers %q, want one answer for all", answers)
		}
	}
	if n := len(s.resp.requests()); n != 1 {
		t.Fatalf("%d requests published for one key, want 1", n)
	}
	// After the duplicate window: the stored result answers.
	time.Sleep(1100 * time.Millisecond)
	again, err := ask("order-1", "first")
	if err != nil || again != answers[0] {
		t.Fatalf("the key sent again after the window: %q %v, want %q", again, err, answers[0])
	}
	if n := len(s.resp.requests()); n != 1 {
		t.Fatalf("%d requests published, want still 1", n)
	}
	// Another key is another request.
	if _, err := ask("order-2", "second"); err != nil {
		t.Fatal(err)
	}
	reqs := s.resp.requests()
	if len(reqs) != 2 || reqs[0].header.Get("Nats-Msg-Id") == reqs[1].header.Get("Nats-Msg-Id") {
		t.Fatalf("requests %d, want 2 with distinct Nats-Msg-Id", len(reqs))
	}
	if !strings.HasPrefix(reqs[0].header.Get(wire.HeaderReplyTo), "ai.results.gateway.key.") {
		t.Errorf("a keyed request's reply subject is %q", reqs[0].header.Get(wire.HeaderReplyTo))
	}
}

func TestIdempotencyKeysOfTenantsDoNotCollide(t *testing.T) {
	t.Parallel()
	keys, err := gateway.ParseKeys("sk-a=alpha,sk-b=beta", ',', "test")
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, stackOptions{config: gateway.Config{Keys: keys}})
	for _, key := range []string{"sk-a", "sk-b"} {
		got, err := s.client(key).Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
			Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(key)},
		}, option.WithHeader("Idempotency-Key", "same"))
		if err != nil || got.Choices[0].Message.Content != "echo: "+key {
			t.Fatalf("tenant %s: %v %+v, want its own answer", key, err, got)
		}
	}
	var subjects []string
	for _, r := range s.resp.requests() {
		subjects = append(subjects, r.subject)
	}
	if !slices.Equal(subjects, []string{"ai.requests.alpha", "ai.requests.beta"}) {
		t.Errorf("subjects %v", subjects)
	}
}

func TestModels(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{config: gateway.Config{Models: []string{"gpt-4o-mini", "text-embedding-3-small", "gpt-4o"}}})
	c := s.client(testKey)
	page, err := c.Models.List(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []string{"gpt-4o-mini", "text-embedding-3-small", "gpt-4o"}) {
		t.Errorf("models %v", ids)
	}
	if m, err := c.Models.Get(ctxT(t), "gpt-4o"); err != nil || m.ID != "gpt-4o" {
		t.Errorf("get gpt-4o: %v %v", m, err)
	}
	var apiErr *openai.Error
	if _, err := c.Models.Get(ctxT(t), "gpt-5"); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
		t.Errorf("get an unknown model: %v, want 404", err)
	}
}

func TestShutdownAnswersWaitingRequests(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{config: gateway.Config{ShutdownTimeout: 200 * time.Millisecond}})
	s.resp.setAnswer(func(req wire.Request) (wire.Result, bool) { return wire.Result{}, true })
	done := make(chan error, 1)
	go func() {
		_, err := s.client(testKey).Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
			Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")},
		})
		done <- err
	}()
	jetstreamtest.Eventually(t, 10*time.Second, "the request was published", func() bool { return len(s.resp.requests()) == 1 })
	if err := s.srv.Shutdown(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var apiErr *openai.Error
	if err := <-done; !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable || !strings.Contains(apiErr.Message, s.resp.requests()[0].req.ID) {
		t.Fatalf("waiting request at shutdown: %v, want 503 naming its id", err)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	c := s.client(testKey)
	if _, err := c.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
		Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")},
	}); err != nil {
		t.Fatal(err)
	}
	bc := s.client("bad")
	_, _ = bc.Models.List(ctxT(t))
	req, _ := http.NewRequest(http.MethodGet, s.base+"/metrics", nil)
	resp, body := do(t, s.httpClient(), req)
	for _, want := range []string{
		`aibatch_gateway_requests_total{endpoint="chat_completions",status="200"} 1`,
		`aibatch_gateway_requests_total{endpoint="models",status="401"} 1`,
		`aibatch_gateway_request_duration_seconds_count{endpoint="chat_completions",status="200"} 1`,
		`aibatch_gateway_waiting_requests{endpoint="chat_completions"} 0`,
	} {
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		req, _ := http.NewRequest(http.MethodGet, s.base+path, nil)
		if resp, body := do(t, s.httpClient(), req); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
}

func do(t *testing.T, hc *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func mustMarshal(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	return mustMarshal(a) == mustMarshal(b)
}

// TestParkedRequests runs requests that wait longer than ParkAfter: the
// gateway takes their connections over and answers on them later.
func TestParkedRequests(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{config: gateway.Config{ParkAfter: 10 * time.Millisecond, Timeout: 3 * time.Second}})
	var mu sync.Mutex
	hold := map[string]bool{"never": true}
	release := make(chan struct{})
	var releaseOnce sync.Once
	open := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(open) // before the responder stops, should the test fail early
	s.resp.setAnswer(func(req wire.Request) (wire.Result, bool) {
		prompt, _ := req.Prompt()
		mu.Lock()
		h := hold[prompt]
		mu.Unlock()
		if h {
			return wire.Result{}, true
		}
		<-release // answered only after the gateway parked the wait
		return echo(req)
	})
	c := s.client(testKey)
	var wg sync.WaitGroup
	var plain *openai.ChatCompletion
	var resp *http.Response
	var acc openai.ChatCompletionAccumulator
	var emb *openai.CreateEmbeddingResponse
	errs := make([]error, 4)
	wg.Go(func() {
		plain, errs[0] = c.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
			Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("parked")},
		}, option.WithResponseInto(&resp))
	})
	wg.Go(func() {
		stream := c.Chat.Completions.NewStreaming(ctxT(t), openai.ChatCompletionNewParams{
			Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("streamed")},
		})
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		errs[1] = stream.Err()
	})
	wg.Go(func() {
		emb, errs[2] = c.Embeddings.New(ctxT(t), openai.EmbeddingNewParams{
			Model: openai.EmbeddingModelTextEmbedding3Small, Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"x", "yy"}},
		})
	})
	var timeoutResp *http.Response
	wg.Go(func() {
		_, errs[3] = c.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
			Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("never")},
		}, option.WithResponseInto(&timeoutResp))
	})
	jetstreamtest.Eventually(t, 10*time.Second, "every request was published", func() bool { return len(s.resp.requests()) == 5 })
	jetstreamtest.Eventually(t, 10*time.Second, "the waits were parked", func() bool {
		m := scrape(t, s)
		return strings.Contains(m, `aibatch_gateway_parked_total{endpoint="chat_completions"} 3`) &&
			strings.Contains(m, `aibatch_gateway_parked_total{endpoint="embeddings"} 1`)
	})
	open()
	wg.Wait()
	for i, err := range errs[:3] {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if plain.Choices[0].Message.Content != "echo: parked" || !resp.Close || resp.Header.Get("X-Batch-Size") != "1" {
		t.Errorf("parked answer %q, headers %v", plain.Choices[0].Message.Content, resp.Header)
	}
	if acc.Choices[0].Message.Content != "echo: streamed" || acc.Choices[0].FinishReason != "stop" {
		t.Errorf("parked stream %+v", acc.ChatCompletion)
	}
	if len(emb.Data) != 2 || emb.Data[1].Embedding[0] != 2 {
		t.Errorf("parked embeddings %+v", emb.Data)
	}
	var apiErr *openai.Error
	if !errors.As(errs[3], &apiErr) || apiErr.StatusCode != http.StatusGatewayTimeout || timeoutResp.Header.Get("X-Should-Retry") != "false" {
		t.Errorf("a parked request past GATEWAY_TIMEOUT: %v, want a 504 the SDK does not retry", errs[3])
	}
	metrics := scrape(t, s)
	for _, want := range []string{
		`aibatch_gateway_requests_total{endpoint="chat_completions",status="200"} 2`,
		`aibatch_gateway_requests_total{endpoint="chat_completions",status="504"} 1`,
		`aibatch_gateway_requests_total{endpoint="embeddings",status="200"} 1`,
		`aibatch_gateway_waiting_requests{endpoint="chat_completions"} 0`,
		`aibatch_gateway_parked_total{endpoint="chat_completions"} 3`,
		`aibatch_gateway_parked_total{endpoint="embeddings"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	// Stopping answers a parked request 503 with its id.
	done := make(chan error, 1)
	go func() {
		_, err := c.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
			Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("never")},
		})
		done <- err
	}()
	jetstreamtest.Eventually(t, 10*time.Second, "the last request was parked", func() bool {
		return strings.Contains(scrape(t, s), `aibatch_gateway_parked_total{endpoint="chat_completions"} 4`)
	})
	if err := s.srv.Shutdown(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable || !strings.Contains(apiErr.Message, s.resp.requests()[5].req.ID) {
		t.Fatalf("a parked request at shutdown: %v, want 503 naming its id", err)
	}
}

func scrape(t *testing.T, s *stack) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.base+"/metrics", nil)
	_, body := do(t, s.httpClient(), req)
	return body
}

// TestResultsAcrossANATSRestart restarts the server while requests wait:
// their results, stored after it, still reach the callers.
func TestResultsAcrossANATSRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ns := jetstreamtest.RunServer(t, dir)
	_, js := jetstreamtest.Connect(t, ns)
	ctx := ctxT(t)
	topo := jetstream.Topology{}.WithDefaults()
	if _, _, _, err := jetstream.Ensure(ctx, js, topo); err != nil {
		t.Fatal(err)
	}
	gnc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gnc.Close)
	reg := prometheus.NewRegistry()
	srv, err := gateway.New(gateway.Config{Addr: "127.0.0.1:0", Timeout: 30 * time.Second, Log: zaptest.NewLogger(t)}, reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	if err := srv.Connect(ctx, gnc); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := openai.NewClient(option.WithBaseURL("http://"+srv.Addr()+"/v1"), option.WithAPIKey("x"), option.WithMaxRetries(0),
		option.WithHTTPClient(&http.Client{Transport: tr}))
	const n = 5
	answers := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
				Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("q" + strconv.Itoa(i))},
			})
			errs[i] = err
			if err == nil {
				answers[i] = got.Choices[0].Message.Content
			}
		})
	}
	jetstreamtest.Eventually(t, 10*time.Second, "every request stored", func() bool {
		return jetstreamtest.Count(t, js, wire.RequestStream) == n
	})
	// The broker restarts with the requests in its store; a responder then
	// answers them, perhaps before the gateway is connected again.
	ns = jetstreamtest.RestartServer(t, ns, dir)
	_, rjs := jetstreamtest.Connect(t, ns)
	resp := &responder{t: t, js: rjs, answer: echo}
	resp.start(ctx, topo)
	t.Cleanup(resp.stop)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || answers[i] != "echo: q"+strconv.Itoa(i) {
			t.Errorf("request %d across the restart: %q %v", i, answers[i], errs[i])
		}
	}
}
