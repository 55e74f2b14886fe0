package client_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/aibatch/aibatch/client"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/wire"
)

// TestSchemasMatchRealMessagesOfEveryKind validates requests of every kind
// wire format 1.1 has, and the results a real engine (openai provider,
// fake OpenAI API) stores for them, against docs/schema: conversations
// with sampling parameters, structured output (json_schema and
// json_object), requests sent alone (provider options, an image), and
// embeddings.
func TestSchemasMatchRealMessagesOfEveryKind(t *testing.T) {
	t.Parallel()
	reqSchema := compileSchema(t, "request.schema.json")
	resSchema := compileSchema(t, "result.schema.json")

	e := setup(t, jetstream.Topology{})
	c := e.newClient(t, client.WithTopic("schema11"))
	ctx := ctxFor(t, 30*time.Second)
	temp, seed, strict := 0.3, int64(5), true
	requests := []wire.Request{
		{ID: "conversation", Temperature: &temp, TopP: &temp, Seed: &seed, Stop: []string{"\n\n"}, Messages: []wire.Message{
			wire.TextMessage(wire.RoleSystem, "be brief"), wire.TextMessage(wire.RoleUser, "hi"),
			wire.TextMessage(wire.RoleAssistant, "hello"), wire.TextMessage(wire.RoleUser, "and now?")}},
		{ID: "lone-message", Messages: []wire.Message{wire.TextMessage(wire.RoleUser, "one question")}, MaxOutputTokens: 50},
		{ID: "json-schema", Input: "review this", ResponseFormat: &wire.ResponseFormat{Type: wire.FormatJSONSchema, JSONSchema: &wire.JSONSchema{
			Name: "review", Strict: &strict, Schema: json.RawMessage(`{"type":"object","properties":{"summary":{"type":"string"}},"required":["summary"],"additionalProperties":false}`)}}},
		{ID: "json-object", Input: "as an object", ResponseFormat: &wire.ResponseFormat{Type: wire.FormatJSONObject}},
		{ID: "tools", Input: "look it up", ProviderOptions: json.RawMessage(`{"tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object","properties":{"q":{"type":"string"}},"required":["q"],"additionalProperties":false}}}]}`)},
		{ID: "image", Messages: []wire.Message{{Role: wire.RoleUser, Content: json.RawMessage(`[{"type":"text","text":"what is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]`)}}},
		{ID: "embedding", Kind: wire.KindEmbedding, Input: "embed me", Dimensions: 8},
	}
	var pending []*client.Pending
	for _, r := range requests {
		p, err := c.Submit(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, p)
	}
	jetstreamtest.Eventually(t, 10*time.Second, "requests stored", func() bool {
		return jetstreamtest.Count(t, e.js, e.topo.RequestStream) == uint64(len(requests))
	})
	for _, m := range jetstreamtest.Messages(t, e.js, e.topo.RequestStream) {
		if err := validate(reqSchema, m.Data); err != nil {
			t.Errorf("request %s does not match the schema: %v", m.Data, err)
		}
		if _, err := wire.DecodeRequest(m.Data, 0); err != nil {
			t.Errorf("request %s: the worker refuses it: %v", m.Data, err)
		}
	}

	e.start(t, engineConfig())
	got := map[string]wire.Result{}
	for _, p := range pending {
		r, err := p.Wait(ctx)
		if err != nil {
			t.Fatalf("wait: %v", err)
		}
		got[r.ID] = r
	}
	jetstreamtest.Eventually(t, 10*time.Second, "every result stored", func() bool {
		return jetstreamtest.Count(t, e.js, e.topo.ResultStream) == uint64(len(requests))
	})
	for _, m := range jetstreamtest.Messages(t, e.js, e.topo.ResultStream) {
		if err := validate(resSchema, m.Data); err != nil {
			t.Errorf("result on %s does not match the schema: %v\n%s", m.Subject, err, m.Data)
		}
	}
	for id, r := range got {
		if r.Status != wire.StatusOK {
			t.Fatalf("%s: %+v", id, r)
		}
	}
	if r := got["embedding"]; len(r.Embedding) != 8 || r.Output != "" || r.FinishReason != "" {
		t.Errorf("embedding result %+v", r)
	}
	if r := got["tools"]; r.FinishReason != "tool_calls" || len(r.Message) == 0 || r.Batch.Size != 1 {
		t.Errorf("tools result %+v", r)
	}
	if r := got["image"]; r.Batch.Size != 1 || r.FinishReason != "stop" {
		t.Errorf("image result %+v", r)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(got["json-object"].Output), &obj); err != nil {
		t.Errorf("json-object output %q: %v", got["json-object"].Output, err)
	}

	// The schemas refuse what the worker refuses too.
	refused := []string{
		`{"input":"x","messages":[{"role":"user","content":"y"}]}`,
		`{"kind":"embedding","input":"x","temperature":1}`,
		`{"input":"x","dimensions":8}`,
		`{"input":"x","temperature":3}`,
		`{"input":"x","stop":["a","b","c","d","e"]}`,
		`{"input":"x","response_format":{"type":"json_schema"}}`,
		`{"messages":[{"role":"narrator","content":"x"}]}`,
		`{"kind":"vector","input":"x"}`,
	}
	for _, doc := range refused {
		if err := validate(reqSchema, []byte(doc)); err == nil {
			t.Errorf("the request schema accepts %s", doc)
		}
		if _, err := wire.DecodeRequest([]byte(doc), 0); err == nil {
			t.Errorf("the worker accepts %s", doc)
		}
	}
	if err := validate(resSchema, []byte(`{"id":"a","status":"ok","finish_reason":"maybe","usage":{"input_tokens":0,"output_tokens":0},"batch":{"size":1},"queued_ms":0,"attempts":1}`)); err == nil {
		t.Error("the result schema accepts an unknown finish_reason")
	}
}
