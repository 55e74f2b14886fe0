package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/anthropictest"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

// Wire format 1.1 through a real worker process, a real NATS server and the
// openai provider against the fake OpenAI API: the acceptance of chat
// requests, embeddings and structured output.

// startWire11 runs a NATS server, the fake API (arranged by arrange, when
// set, before the worker starts) and a worker whose groups go out at
// MAX_BATCH_SIZE 50 or after MAX_WAIT, with extra settings.
func startWire11(t *testing.T, arrange func(*openaitest.Server), extra ...string) (*openaitest.Server, natsjs.JetStream, *workerProc) {
	t.Helper()
	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	logQueueOnFailure(t, js)
	fake := newFake(t)
	if arrange != nil {
		arrange(fake)
	}
	env := map[string]string{
		"NATS_URL":        ns.ClientURL(),
		"OPENAI_BASE_URL": fake.URL,
		"OPENAI_API_KEY":  procSecret,
		"MAX_BATCH_SIZE":  "50",
		"MAX_WAIT":        "2s",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	w := startWorker(t, "", env)
	waitStreams(t, js)
	return fake, js, w
}

// publishBodies stores each body on ai.requests.proc and waits for the
// PubAcks.
func publishBodies(t *testing.T, js natsjs.JetStream, bodies [][]byte) {
	t.Helper()
	futures := make([]natsjs.PubAckFuture, 0, len(bodies))
	for _, body := range bodies {
		f, err := js.PublishAsync("ai.requests.proc", body)
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		futures = append(futures, f)
	}
	timeout := time.After(30 * time.Second)
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatalf("publish: %v", err)
		case <-timeout:
			t.Fatal("publish: no PubAck")
		}
	}
}

// storedResults waits for n results and an empty request stream, and
// returns the results by id; there must be no dead letter.
func storedResults(t *testing.T, js natsjs.JetStream, n int) map[string]wire.Result {
	t.Helper()
	jetstreamtest.Eventually(t, 30*time.Second, fmt.Sprintf("%d results stored", n), func() bool {
		return jetstreamtest.Count(t, js, "AI_RESULTS") >= uint64(n)
	})
	jetstreamtest.Eventually(t, 10*time.Second, "every request acked", func() bool {
		return jetstreamtest.Count(t, js, "AI_REQUESTS") == 0
	})
	byID := map[string]wire.Result{}
	for _, m := range jetstreamtest.Messages(t, js, "AI_RESULTS") {
		var r wire.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("result %d is not JSON: %v", m.Sequence, err)
		}
		if _, dup := byID[r.ID]; dup {
			t.Fatalf("a second result for %s", r.ID)
		}
		if r.Status != wire.StatusOK {
			t.Fatalf("result %s: status %s, error %q", r.ID, r.Status, r.Error)
		}
		byID[r.ID] = r
	}
	if len(byID) != n {
		t.Fatalf("results for %d requests, want %d", len(byID), n)
	}
	if d := jetstreamtest.Count(t, js, "AI_DEAD"); d != 0 {
		t.Fatalf("dead letters = %d, want 0", d)
	}
	return byID
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProcessChatCompletionsShareCalls sends 200 chat requests as the
// gateway does (a lone user message, sampling parameters) and counts the
// provider calls: at MAX_BATCH_SIZE 50 they take 4, well within 10.
func TestProcessChatCompletionsShareCalls(t *testing.T) {
	t.Parallel()
	fake, js, w := startWire11(t, nil)
	temp := 0.2
	bodies := make([][]byte, 200)
	for i := range bodies {
		bodies[i] = mustJSON(t, wire.Request{ID: "c-" + strconv.Itoa(i), Temperature: &temp,
			Messages: []wire.Message{wire.TextMessage(wire.RoleUser, "question "+strconv.Itoa(i))}})
	}
	publishBodies(t, js, bodies)
	got := storedResults(t, js, 200)
	for i := range 200 {
		r := got["c-"+strconv.Itoa(i)]
		if want := openaitest.Answer("question " + strconv.Itoa(i)); r.Output != want || r.FinishReason != "stop" {
			t.Fatalf("result c-%d: output %q finish %q, want %q and stop", i, r.Output, r.FinishReason, want)
		}
	}
	t.Logf("200 chat requests: %d provider calls", fake.Calls())
	if calls := fake.Calls(); calls > 10 {
		t.Fatalf("200 chat requests took %d provider calls, want at most 10", calls)
	}
	for _, req := range fake.Requests() {
		if req.Temperature == nil || *req.Temperature != temp {
			t.Fatalf("a call carried temperature %v, want %v", req.Temperature, temp)
		}
	}
	w.stop(t)
}

// TestProcessEmbeddingsAreBatchedNatively sends 500 embedding requests: at
// most 2 embeddings calls, and each request gets exactly its own vector.
func TestProcessEmbeddingsAreBatchedNatively(t *testing.T) {
	t.Parallel()
	fake, js, w := startWire11(t, nil)
	const dims = 64
	bodies := make([][]byte, 500)
	for i := range bodies {
		bodies[i] = mustJSON(t, wire.Request{ID: "e-" + strconv.Itoa(i), Kind: wire.KindEmbedding, Input: "text " + strconv.Itoa(i), Dimensions: dims})
	}
	publishBodies(t, js, bodies)
	got := storedResults(t, js, 500)
	for i := range 500 {
		r := got["e-"+strconv.Itoa(i)]
		if want := openaitest.Vector("text "+strconv.Itoa(i), dims); !slices.Equal(r.Embedding, want) {
			t.Fatalf("result e-%d: vector of %d numbers, not the one of its input", i, len(r.Embedding))
		}
		if r.Model != "text-embedding-3-small" || r.Output != "" || r.FinishReason != "" || r.Usage.InputTokens == 0 {
			t.Fatalf("result e-%d: model %q output %q finish %q usage %+v", i, r.Model, r.Output, r.FinishReason, r.Usage)
		}
	}
	t.Logf("500 embedding requests: %d embeddings calls", fake.EmbeddingCalls())
	if calls := fake.EmbeddingCalls(); calls < 1 || calls > 2 {
		t.Fatalf("500 embedding requests took %d embeddings calls, want 1 or 2", calls)
	}
	if n := len(fake.Requests()); n != 0 {
		t.Fatalf("%d chat calls for embedding requests, want none", n)
	}
	w.stop(t)
}

// structuredSchema is a strict schema with nesting, an enum, an array and
// a definition.
const structuredSchema = `{"type":"object","properties":{
 "summary":{"type":"string"},
 "sentiment":{"type":"string","enum":["positive","neutral","negative"]},
 "score":{"type":"integer","minimum":1,"maximum":5},
 "tags":{"type":"array","items":{"$ref":"#/$defs/tag"}},
 "author":{"type":"object","properties":{"name":{"type":["string","null"]}},"required":["name"],"additionalProperties":false}
},"required":["summary","sentiment","score","tags","author"],"additionalProperties":false,
"$defs":{"tag":{"type":"object","properties":{"label":{"type":"string"}},"required":["label"],"additionalProperties":false}}}`

// TestProcessStructuredOutputSharesCalls sends 100 requests with one
// response_format schema: they share calls, and each output is JSON valid
// against the schema that answers its own input.
func TestProcessStructuredOutputSharesCalls(t *testing.T) {
	t.Parallel()
	fake, js, w := startWire11(t, nil)
	strict := true
	format := &wire.ResponseFormat{Type: wire.FormatJSONSchema, JSONSchema: &wire.JSONSchema{
		Name: "review", Strict: &strict, Schema: json.RawMessage(structuredSchema)}}
	bodies := make([][]byte, 100)
	for i := range bodies {
		bodies[i] = mustJSON(t, wire.Request{ID: "s-" + strconv.Itoa(i), Input: "review " + strconv.Itoa(i), ResponseFormat: format})
	}
	publishBodies(t, js, bodies)
	got := storedResults(t, js, 100)

	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(structuredSchema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("review.json", doc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("review.json")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		r := got["s-"+strconv.Itoa(i)]
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(r.Output)))
		if err != nil {
			t.Fatalf("result s-%d: output is not JSON: %v: %q", i, err, r.Output)
		}
		if err := schema.Validate(inst); err != nil {
			t.Fatalf("result s-%d: output %s is not valid against its schema: %v", i, r.Output, err)
		}
		if !strings.Contains(r.Output, openaitest.Answer("review "+strconv.Itoa(i))) || r.FinishReason != "stop" {
			t.Fatalf("result s-%d: output %s (finish %q) does not answer its own input", i, r.Output, r.FinishReason)
		}
	}
	t.Logf("100 structured requests: %d provider calls", fake.Calls())
	if calls := fake.Calls(); calls > 4 {
		t.Fatalf("100 structured requests took %d calls, want them combined (2 at MAX_BATCH_SIZE 50)", calls)
	}
	w.stop(t)
}

// TestProcessAnthropicRefusesEmbeddings runs a worker with PROVIDER=anthropic:
// an embedding request ends at once as an error result and a dead letter
// that say Anthropic has no embeddings, without a call; chat is answered.
func TestProcessAnthropicRefusesEmbeddings(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	logQueueOnFailure(t, js)
	fake := anthropictest.NewServer()
	t.Cleanup(fake.Close)
	w := startWorker(t, "", map[string]string{
		"NATS_URL":           ns.ClientURL(),
		"PROVIDER":           "anthropic",
		"MODEL":              "claude-test",
		"ANTHROPIC_BASE_URL": fake.URL,
		"ANTHROPIC_API_KEY":  procSecret,
		"MAX_WAIT":           "500ms",
	})
	waitStreams(t, js)
	publishBodies(t, js, [][]byte{
		mustJSON(t, wire.Request{ID: "embed", Kind: wire.KindEmbedding, Input: "a text"}),
		mustJSON(t, wire.Request{ID: "chat", Input: "a question"}),
	})
	jetstreamtest.Eventually(t, 20*time.Second, "both results stored", func() bool {
		return jetstreamtest.Count(t, js, "AI_RESULTS") == 2 && jetstreamtest.Count(t, js, "AI_REQUESTS") == 0
	})
	got := map[string]wire.Result{}
	for _, m := range jetstreamtest.Messages(t, js, "AI_RESULTS") {
		var r wire.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		got[r.ID] = r
	}
	if r := got["embed"]; r.Status != wire.StatusError || !strings.Contains(r.Error, "Anthropic has no embeddings API") || r.Batch.Size != 0 {
		t.Fatalf("embedding result %+v, want an error saying Anthropic has no embeddings, before any call", r)
	}
	if r := got["chat"]; r.Status != wire.StatusOK || r.Output != anthropictest.Answer("a question") {
		t.Fatalf("chat result %+v", r)
	}
	dead := jetstreamtest.Messages(t, js, "AI_DEAD")
	if len(dead) != 1 || !strings.Contains(dead[0].Header.Get(wire.HeaderError), "no embeddings API") {
		t.Fatalf("dead letters %+v, want the embedding's", dead)
	}
	if fake.Calls() != 1 {
		t.Fatalf("%d calls to the Messages API, want 1 (the chat request's)", fake.Calls())
	}
	w.stop(t)
}

// TestProcessEmbeddingsOutlastTheAPIsFaults sends embedding requests into
// an outage (503 for a while), then an answer without "data" and one with
// vectors of the wrong length: nothing is dead-lettered, and every request
// ends with exactly its own vector.
func TestProcessEmbeddingsOutlastTheAPIsFaults(t *testing.T) {
	t.Parallel()
	fake, js, w := startWire11(t, func(f *openaitest.Server) {
		f.FailFor(1500*time.Millisecond, 503)
		f.NoDataNext(1)
		f.WrongDimensionsNext(1)
	}, "MAX_WAIT", "200ms", "RETRY_BACKOFF", "100ms", "RETRY_MAX_BACKOFF", "200ms", "PROVIDER_PROBE_INTERVAL", "500ms")
	const n, dims = 60, 16
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = mustJSON(t, wire.Request{ID: "e-" + strconv.Itoa(i), Kind: wire.KindEmbedding, Input: "text " + strconv.Itoa(i), Dimensions: dims})
	}
	publishBodies(t, js, bodies)
	got := storedResults(t, js, n)
	for i := range n {
		if r := got["e-"+strconv.Itoa(i)]; !slices.Equal(r.Embedding, openaitest.Vector("text "+strconv.Itoa(i), dims)) {
			t.Fatalf("result e-%d: %+v, not its input's vector", i, r)
		}
	}
	// At least: a call into the outage, the answer without data, the one
	// with wrong vectors, and the calls that answered.
	if calls := fake.EmbeddingCalls(); calls < 4 {
		t.Fatalf("%d embeddings calls: the faults were not met", calls)
	}
	t.Logf("%d embedding requests through the faults: %d embeddings calls", n, fake.EmbeddingCalls())
	w.stop(t)
}
