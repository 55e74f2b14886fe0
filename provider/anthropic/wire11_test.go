package anthropic_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/anthropic"
	"github.com/aibatch/aibatch/provider/anthropictest"
	"github.com/aibatch/aibatch/wire"
)

// Wire format 1.1 through the anthropic provider.

func TestNoEmbeddings(t *testing.T) {
	t.Parallel()
	srv, p := setup(t, anthropic.Config{})
	if err := p.Supports(wire.KindEmbedding); !errors.Is(err, anthropic.ErrNoEmbeddings) || !errors.Is(err, provider.ErrUnsupported) {
		t.Fatalf("Supports(embedding) = %v", err)
	}
	if err := p.Supports(wire.KindChat); err != nil {
		t.Fatalf("Supports(chat) = %v", err)
	}
	b := provider.Batch{ID: "e", Model: "m", Kind: wire.KindEmbedding, Requests: []provider.Request{{Key: "0", Input: "a"}, {Key: "1", Input: "b"}}}
	results, err := p.Complete(t.Context(), b)
	if err != nil || len(results) != 2 || srv.Calls() != 0 {
		t.Fatalf("results %+v, error %v, %d calls; want each request refused without a call", results, err, srv.Calls())
	}
	for _, r := range results {
		if !provider.IsPermanent(r.Err) || provider.ScopeOf(r.Err) != provider.ScopeRequest || !strings.Contains(r.Err.Error(), "no embeddings API") {
			t.Fatalf("result %+v", r)
		}
	}
}

func TestStructuredOutputThroughTools(t *testing.T) {
	t.Parallel()
	schema := `{"type":"object","properties":{"summary":{"type":"string"},"n":{"type":"integer","minimum":2}},"required":["summary","n"],"additionalProperties":false}`
	format := &wire.ResponseFormat{Type: wire.FormatJSONSchema, JSONSchema: &wire.JSONSchema{Name: "answer card", Schema: json.RawMessage(schema)}}
	check := func(t *testing.T, input, out string) {
		t.Helper()
		var v struct {
			Summary string
			N       int
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil || v.Summary != anthropictest.Answer(input) || v.N != 2 {
			t.Fatalf("output %q for %q (%v)", out, input, err)
		}
	}
	t.Run("combined", func(t *testing.T) {
		t.Parallel()
		srv, p := setup(t, anthropic.Config{})
		b := newBatch(4)
		b.Format = format
		results, err := p.Complete(t.Context(), b)
		if err != nil || len(results) != 4 || srv.Calls() != 1 {
			t.Fatalf("%d results in %d calls, error %v", len(results), srv.Calls(), err)
		}
		for _, r := range results {
			i := slices.IndexFunc(b.Requests, func(q provider.Request) bool { return q.Key == r.Key })
			check(t, b.Requests[i].Input, r.Output)
		}
		if out := srv.Requests()[0].Output; !bytes.Contains(out, []byte(`"minimum":2`)) {
			t.Fatalf("the tool's output schema %s is not the request's", out)
		}
	})
	t.Run("alone", func(t *testing.T) {
		t.Parallel()
		srv, p := setup(t, anthropic.Config{})
		b := provider.Batch{ID: "b", Model: "m", Format: format, Requests: []provider.Request{{Key: "0", Input: "one"}}}
		results, err := p.Complete(t.Context(), b)
		if err != nil || len(results) != 1 || results[0].Err != nil || results[0].FinishReason != "stop" {
			t.Fatalf("results %+v, error %v", results, err)
		}
		check(t, "one", results[0].Output)
		sent := srv.Requests()[0]
		if sent.ToolChoice == nil || sent.ToolChoice.Type != "tool" || sent.ToolChoice.Name != "answer_card" || len(sent.Tools) != 1 {
			t.Fatalf("tools %+v, choice %+v; want the schema as a forced tool", sent.Tools, sent.ToolChoice)
		}
	})
}

func TestConversationIsMapped(t *testing.T) {
	t.Parallel()
	srv, p := setup(t, anthropic.Config{})
	temp := 0.5
	turns := []wire.Message{
		wire.TextMessage(wire.RoleSystem, "be kind"),
		{Role: wire.RoleUser, Content: json.RawMessage(`[{"type":"text","text":"see"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]`)},
		{Role: wire.RoleAssistant, ToolCalls: json.RawMessage(`[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]`)},
		{Role: wire.RoleTool, ToolCallID: "c1", Content: json.RawMessage(`"42"`)},
		wire.TextMessage(wire.RoleUser, "so?"),
	}
	b := provider.Batch{ID: "b", Model: "m", Instructions: "sys", Params: provider.Params{Temperature: &temp, Stop: []string{"?"}},
		Requests: []provider.Request{{Key: "0", Messages: turns}}}
	results, err := p.Complete(t.Context(), b)
	if err != nil || len(results) != 1 || results[0].Err != nil {
		t.Fatalf("results %+v, error %v", results, err)
	}
	if r := results[0]; r.Output != anthropictest.Answer("so") || r.FinishReason != "stop" {
		t.Fatalf("result %+v, want the answer to the last turn, stopped", r)
	}
	sent := srv.Requests()[0]
	if sent.System != "sys\n\nbe kind" || *sent.Temperature != temp || !slices.Equal(sent.StopSequences, []string{"?"}) {
		t.Fatalf("sent system %q, temperature %v, stop %v", sent.System, sent.Temperature, sent.StopSequences)
	}
	if roles := []string{sent.Messages[0].Role, sent.Messages[1].Role, sent.Messages[2].Role}; len(sent.Messages) != 3 ||
		!slices.Equal(roles, []string{"user", "assistant", "user"}) {
		t.Fatalf("messages %+v, want user, assistant, user (the tool result merged into the last)", sent.Messages)
	}
	for _, want := range []string{`{"source":{"data":"AAAA","media_type":"image/png","type":"base64"},"type":"image"}`, `"type":"tool_use"`, `"tool_use_id":"c1"`} {
		if !bytes.Contains(sent.Body, []byte(want)) {
			t.Errorf("body has no %s: %s", want, sent.Body)
		}
	}
}

func TestProviderOptionsAreMappedOrRefused(t *testing.T) {
	t.Parallel()
	srv, p := setup(t, anthropic.Config{})
	options := json.RawMessage(`{"tools":[{"type":"function","function":{"name":"lookup","description":"d","parameters":{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}}}],"tool_choice":"required","parallel_tool_calls":false}`)
	b := provider.Batch{ID: "b", Model: "m", Requests: []provider.Request{{Key: "0", Input: "find", Options: options}}}
	results, err := p.Complete(t.Context(), b)
	if err != nil || len(results) != 1 || results[0].Err != nil {
		t.Fatalf("results %+v, error %v", results, err)
	}
	var msg struct {
		ToolCalls []struct {
			Function struct{ Name, Arguments string }
		} `json:"tool_calls"`
	}
	if err := json.Unmarshal(results[0].Message, &msg); err != nil || len(msg.ToolCalls) != 1 || msg.ToolCalls[0].Function.Name != "lookup" ||
		results[0].FinishReason != "tool_calls" {
		t.Fatalf("result %+v: want an OpenAI-shaped message with the tool call", results[0])
	}
	if c := srv.Requests()[0].ToolChoice; c == nil || c.Type != "any" || !c.DisableParallelToolUse {
		t.Fatalf("tool_choice %+v", c)
	}
	for _, bad := range []string{`{"logprobs":true}`, `{"n":3}`, `{"frequency_penalty":1}`} {
		b.Requests[0].Options = json.RawMessage(bad)
		results, err := p.Complete(t.Context(), b)
		if err != nil || len(results) != 1 || !errors.Is(results[0].Err, provider.ErrUnsupported) || !provider.IsPermanent(results[0].Err) ||
			provider.ScopeOf(results[0].Err) != provider.ScopeRequest {
			t.Fatalf("options %s: results %+v, error %v", bad, results, err)
		}
	}
	if srv.Calls() != 1 {
		t.Fatalf("%d calls, want none for the refused options", srv.Calls()-1)
	}
}

func TestTemperatureOverOneIsRefused(t *testing.T) {
	t.Parallel()
	srv, p := setup(t, anthropic.Config{})
	hot := 1.5
	b := newBatch(3)
	b.Params.Temperature = &hot
	results, err := p.Complete(t.Context(), b)
	if err != nil || len(results) != 3 || srv.Calls() != 0 {
		t.Fatalf("results %+v, error %v, %d calls", results, err, srv.Calls())
	}
	for _, r := range results {
		if !errors.Is(r.Err, provider.ErrUnsupported) || !strings.Contains(r.Err.Error(), "temperature 1.5") {
			t.Fatalf("result %+v", r)
		}
	}
}
