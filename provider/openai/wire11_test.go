package openai_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

// Wire format 1.1 through the openai provider: embeddings, structured
// output, plain calls with messages, parameters and provider options, and
// what the API's faults do to each.

func embeddingBatch(n, dims int) provider.Batch {
	b := provider.Batch{ID: "e", Model: "text-embedding-3-small", Kind: wire.KindEmbedding, Dimensions: dims}
	for i := range n {
		b.Requests = append(b.Requests, provider.Request{Key: strconv.Itoa(i), Input: "text " + strconv.Itoa(i)})
	}
	return b
}

func TestEmbeddingsAreExact(t *testing.T) {
	t.Parallel()
	for _, dims := range []int{0, 16} {
		t.Run(fmt.Sprintf("dimensions %d", dims), func(t *testing.T) {
			t.Parallel()
			s := setup(t)
			s.srv.Shuffle(true) // data out of order: matched by index
			b := embeddingBatch(300, dims)
			results, err := s.p.Complete(t.Context(), b)
			if err != nil {
				t.Fatal(err)
			}
			if len(results) != 300 || s.srv.EmbeddingCalls() != 1 || s.srv.Calls() != 1 || len(s.srv.Requests()) != 0 {
				t.Fatalf("%d results in %d embeddings calls (%d chat calls)", len(results), s.srv.EmbeddingCalls(), s.srv.Calls())
			}
			want := dims
			if want == 0 {
				want = openaitest.EmbeddingDims
			}
			var tokens int64
			for _, r := range results {
				i, _ := strconv.Atoi(r.Key)
				if r.Err != nil || !slices.Equal(r.Embedding, openaitest.Vector(b.Requests[i].Input, want)) || r.Output != "" {
					t.Fatalf("result %s: err %v, %d numbers, output %q", r.Key, r.Err, len(r.Embedding), r.Output)
				}
				tokens += r.Usage.InputTokens
			}
			sent := s.srv.EmbeddingRequests()[0]
			if sent.Dimensions != dims || sent.EncodingFormat != "float" || len(sent.Inputs) != 300 || tokens == 0 {
				t.Fatalf("sent %+v, usage %d", sent, tokens)
			}
		})
	}
}

func TestEmbeddingFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		arrange func(*openaitest.Server)
		n       int
		check   func(t *testing.T, results []provider.Result, err error)
	}{
		{"5xx", failNext(http.StatusInternalServerError), 3, wantCallError(provider.ScopeProvider, false)},
		{"429", failNext(http.StatusTooManyRequests), 3, func(t *testing.T, _ []provider.Result, err error) {
			wantCallError(provider.ScopeProvider, false)(t, nil, err)
			if provider.RetryAfter(err) != time.Second {
				t.Errorf("RetryAfter = %s, want 1s", provider.RetryAfter(err))
			}
		}},
		{"401", func(s *openaitest.Server) { s.RequireKey("another") }, 3, wantCallError(provider.ScopeProvider, false)},
		{"unknown model", nil, -1, func(t *testing.T, _ []provider.Result, err error) {
			if !errors.Is(err, provider.ErrUnknownModel) || !provider.IsPermanent(err) {
				t.Fatalf("error %v, want a permanent unknown model", err)
			}
		}},
		{"an input refused", func(s *openaitest.Server) { s.RejectInput("text 1", false) }, 3, wantCallError(provider.ScopeUnknown, true)},
		{"no data", func(s *openaitest.Server) { s.NoDataNext(1) }, 3, wantCallError(provider.ScopeBatch, false)},
		{"not JSON", func(s *openaitest.Server) { s.SetMalformedNext(1) }, 3, func(t *testing.T, _ []provider.Result, err error) {
			if err == nil || provider.IsPermanent(err) {
				t.Fatalf("error %v, want a transient one", err)
			}
		}},
		{"short data", func(s *openaitest.Server) { s.DropItems(2) }, 5, func(t *testing.T, results []provider.Result, err error) {
			if err != nil || len(results) != 3 {
				t.Fatalf("%d results, error %v; want the 3 answered, the rest left out", len(results), err)
			}
		}},
		{"an input left out", func(s *openaitest.Server) { s.OmitInput("text 2") }, 4, func(t *testing.T, results []provider.Result, err error) {
			if err != nil || len(results) != 3 || slices.ContainsFunc(results, func(r provider.Result) bool { return r.Key == "2" }) {
				t.Fatalf("results %+v, error %v; want all but 2", results, err)
			}
		}},
		{"wrong dimensions", func(s *openaitest.Server) { s.WrongDimensionsNext(1) }, 3, func(t *testing.T, results []provider.Result, err error) {
			if err != nil || len(results) != 3 {
				t.Fatalf("%d results, error %v", len(results), err)
			}
			for _, r := range results {
				if r.Embedding != nil || provider.ScopeOf(r.Err) != provider.ScopeRequest || provider.IsPermanent(r.Err) ||
					!strings.Contains(r.Err.Error(), "15 dimensions, 16 were asked") {
					t.Fatalf("result %+v, want a transient error of its own", r)
				}
			}
		}},
		{"over the API's inputs", nil, openai.MaxEmbeddingInputs + 1, wantCallError(provider.ScopeBatch, true)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := setup(t)
			if tt.arrange != nil {
				tt.arrange(s.srv)
			}
			b := embeddingBatch(max(tt.n, 1), 16)
			if tt.n < 0 {
				b.Model = "unknown-embedder"
			}
			results, err := s.p.Complete(t.Context(), b)
			tt.check(t, results, err)
			if err != nil && strings.Contains(err.Error(), testKey) {
				t.Fatal("the error shows the API key")
			}
		})
	}
}

// wantCallError checks that a whole call failed with scope.
func wantCallError(scope provider.Scope, permanent bool) func(t *testing.T, results []provider.Result, err error) {
	return func(t *testing.T, results []provider.Result, err error) {
		t.Helper()
		if err == nil || results != nil || provider.ScopeOf(err) != scope || provider.IsPermanent(err) != permanent {
			t.Fatalf("results %v, error %v (scope %s, permanent %v); want a call error of scope %s, permanent %v",
				results, err, provider.ScopeOf(err), provider.IsPermanent(err), scope, permanent)
		}
	}
}

func TestEmbeddingSlowCallEndsWithTheContext(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.srv.SetDelay(time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := s.p.Complete(ctx, embeddingBatch(2, 0))
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || provider.ScopeOf(err) != provider.ScopeProvider {
		t.Fatalf("error %v, want the deadline as a provider-scope failure", err)
	}
}

// reviewSchema is a strict schema with a definition and a reference to it.
const reviewSchema = `{"type":"object","properties":{"summary":{"type":"string"},"score":{"type":"integer","minimum":1},
"tags":{"type":"array","items":{"$ref":"#/$defs/tag"}}},"required":["summary","score","tags"],"additionalProperties":false,
"$defs":{"tag":{"type":"object","properties":{"label":{"type":"string"}},"required":["label"],"additionalProperties":false}}}`

func jsonSchemaFormat(schema string, strict bool) *wire.ResponseFormat {
	return &wire.ResponseFormat{Type: wire.FormatJSONSchema, JSONSchema: &wire.JSONSchema{Name: "review", Strict: &strict, Schema: json.RawMessage(schema)}}
}

func compile(t *testing.T, schema string) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("s.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("s.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validJSON(t *testing.T, s *jsonschema.Schema, text string) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(text)))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

func TestStructuredOutputIsCombined(t *testing.T) {
	t.Parallel()
	s := setup(t)
	b := newBatch(20)
	b.Format = jsonSchemaFormat(reviewSchema, true)
	results, err := s.p.Complete(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 20 || s.srv.Calls() != 1 {
		t.Fatalf("%d results in %d calls, want 20 in one", len(results), s.srv.Calls())
	}
	schema := compile(t, reviewSchema)
	for _, r := range results {
		i := slices.IndexFunc(b.Requests, func(q provider.Request) bool { return q.Key == r.Key })
		if err := validJSON(t, schema, r.Output); err != nil || r.Err != nil || r.FinishReason != "stop" {
			t.Fatalf("result %s: %q (finish %q, err %v) not valid: %v", r.Key, r.Output, r.FinishReason, r.Err, err)
		}
		var answer struct{ Summary string }
		if err := json.Unmarshal([]byte(r.Output), &answer); err != nil || answer.Summary != openaitest.Answer(b.Requests[i].Input) {
			t.Fatalf("result %s: %s does not answer its own input", r.Key, r.Output)
		}
	}
	// The call's schema: the request's schema under each output, its
	// definitions at the root, its reference rewritten to match.
	sent := s.srv.Requests()[0]
	var out map[string]any
	if err := json.Unmarshal(sent.Output, &out); err != nil || out["type"] != "object" {
		t.Fatalf("output schema %s", sent.Output)
	}
	if !strings.Contains(string(sent.ResponseFormat), `"$defs":{"tag"`) || !strings.Contains(string(sent.ResponseFormat), `"$ref":"#/$defs/tag"`) {
		t.Fatalf("response_format %s: want the definitions at the root", sent.ResponseFormat)
	}
}

func TestJSONObjectOutputsAreObjects(t *testing.T) {
	t.Parallel()
	s := setup(t)
	b := newBatch(5)
	b.Format = &wire.ResponseFormat{Type: wire.FormatJSONObject}
	results, err := s.p.Complete(t.Context(), b)
	if err != nil || len(results) != 5 || s.srv.Calls() != 1 {
		t.Fatalf("%d results in %d calls, error %v", len(results), s.srv.Calls(), err)
	}
	for _, r := range results {
		var obj map[string]any
		if err := json.Unmarshal([]byte(r.Output), &obj); err != nil {
			t.Fatalf("result %s: %q is not a JSON object", r.Key, r.Output)
		}
	}
	// An output that is not an object leaves its request unanswered.
	s.srv.SetResultsFunc(func(rs []openaitest.Result) []openaitest.Result {
		rs[0].Output = "not an object"
		return rs
	})
	results, err = s.p.Complete(t.Context(), b)
	if err != nil || len(results) != 4 {
		t.Fatalf("%d results, error %v; want the one that is not an object left out", len(results), err)
	}
}

func TestCombinesFormat(t *testing.T) {
	t.Parallel()
	p, err := openai.New(openai.Config{APIKey: "k", BaseURL: "http://127.0.0.1:1/v1"})
	if err != nil {
		t.Fatal(err)
	}
	deep := `{"type":"string"}`
	for range 9 {
		deep = `{"type":"object","properties":{"x":` + deep + `},"required":["x"],"additionalProperties":false}`
	}
	var many strings.Builder
	many.WriteString(`{"type":"object","properties":{`)
	for i := range 5000 {
		if i > 0 {
			many.WriteString(",")
		}
		fmt.Fprintf(&many, `"p%d":{"type":"string"}`, i)
	}
	many.WriteString(`},"additionalProperties":false,"required":[`)
	for i := range 5000 {
		if i > 0 {
			many.WriteString(",")
		}
		fmt.Fprintf(&many, `"p%d"`, i)
	}
	many.WriteString(`]}`)
	tests := []struct {
		name   string
		f      wire.ResponseFormat
		reason string // "" when it combines
	}{
		{"text", wire.ResponseFormat{Type: wire.FormatText}, ""},
		{"json_object", wire.ResponseFormat{Type: wire.FormatJSONObject}, ""},
		{"strict schema", *jsonSchemaFormat(reviewSchema, true), ""},
		{"open object", *jsonSchemaFormat(`{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}`, false), "additionalProperties"},
		{"optional property", *jsonSchemaFormat(`{"type":"object","properties":{"a":{"type":"string"}},"required":[],"additionalProperties":false}`, true), `"a" is not in "required"`},
		{"allOf", *jsonSchemaFormat(`{"type":"object","properties":{},"additionalProperties":false,"allOf":[{}]}`, true), `"allOf"`},
		{"root not an object", *jsonSchemaFormat(`{"type":"array","items":{"type":"string"}}`, true), "root"},
		{"9 levels: 11 once combined", *jsonSchemaFormat(deep, true), "levels of nesting"},
		{"5000 properties: 5003 once combined", *jsonSchemaFormat(many.String(), true), "object properties"},
	}
	for _, tt := range tests {
		err := p.CombinesFormat(tt.f)
		switch {
		case tt.reason == "" && err != nil:
			t.Errorf("%s: CombinesFormat = %v, want nil", tt.name, err)
		case tt.reason != "" && (err == nil || !strings.Contains(err.Error(), tt.reason)):
			t.Errorf("%s: CombinesFormat = %v, want an error about %s", tt.name, err, tt.reason)
		}
	}
}

func TestUncombinableSchemaIsSentAlone(t *testing.T) {
	t.Parallel()
	s := setup(t)
	loose := `{"type":"object","properties":{"a":{"type":"string"}}}`
	b := newBatch(3)
	b.Format = jsonSchemaFormat(loose, false)
	results, err := s.p.Complete(t.Context(), b)
	if err != nil || len(results) != 3 || s.srv.Calls() != 3 {
		t.Fatalf("%d results in %d calls, error %v; want each alone", len(results), s.srv.Calls(), err)
	}
	for _, req := range s.srv.Requests() {
		if !strings.Contains(string(req.ResponseFormat), `"name":"review"`) || !strings.Contains(string(req.ResponseFormat), `"strict":false`) {
			t.Fatalf("response_format %s, want the request's own", req.ResponseFormat)
		}
	}
	schema := compile(t, loose)
	for _, r := range results {
		if err := validJSON(t, schema, r.Output); err != nil {
			t.Fatalf("result %s: %q: %v", r.Key, r.Output, err)
		}
	}
}

func TestCombinedStopAndCapsAreAppliedPerAnswer(t *testing.T) {
	t.Parallel()
	s := setup(t)
	b := provider.Batch{ID: "b", Model: "m", Params: provider.Params{Stop: []string{"#"}}, Requests: []provider.Request{
		{Key: "0", Input: "before#after"},
		{Key: "1", Input: strings.Repeat("long ", 20), MaxOutputTokens: 3},
		{Key: "2", Input: "short"},
	}}
	results, err := s.p.Complete(t.Context(), b)
	if err != nil || len(results) != 3 {
		t.Fatalf("%d results, error %v", len(results), err)
	}
	got := map[string]provider.Result{}
	for _, r := range results {
		got[r.Key] = r
	}
	if r := got["0"]; r.Output != openaitest.Answer("before") || r.FinishReason != "stop" {
		t.Errorf("stopped answer %+v", r)
	}
	if r := got["1"]; r.Output != openaitest.Answer(strings.Repeat("long ", 20))[:12] || r.FinishReason != "length" {
		t.Errorf("capped answer %+v, want its first 12 bytes and length", r)
	}
	if r := got["2"]; r.Output != openaitest.Answer("short") || r.FinishReason != "stop" {
		t.Errorf("answer %+v", r)
	}
	if sent := s.srv.Requests()[0]; sent.Stop != nil {
		t.Errorf("the combined call carried stop %v: it would end every answer at once", sent.Stop)
	}
	if items := s.srv.Requests()[0].Items; items[1].MaxOutputTokens != 3 {
		t.Errorf("items %+v, want the cap told to the model", items)
	}
}

func TestPlainCallCarriesWhatTheRequestAsked(t *testing.T) {
	t.Parallel()
	s := setup(t)
	temp, topP, seed := 0.3, 0.8, int64(42)
	turns := []wire.Message{
		wire.TextMessage(wire.RoleDeveloper, "be brief"),
		{Role: wire.RoleUser, Content: json.RawMessage(`[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]`)},
		{Role: wire.RoleAssistant, ToolCalls: json.RawMessage(`[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]`)},
		{Role: wire.RoleTool, ToolCallID: "c1", Content: json.RawMessage(`"42"`)},
		wire.TextMessage(wire.RoleUser, "and now?"),
	}
	b := provider.Batch{ID: "b", Model: "m", Instructions: "sys", Params: provider.Params{Temperature: &temp, TopP: &topP, Seed: &seed, Stop: []string{"now"}},
		Requests: []provider.Request{{Key: "0", Messages: turns}}}
	results, err := s.p.Complete(t.Context(), b)
	if err != nil || len(results) != 1 || results[0].Err != nil {
		t.Fatalf("results %+v, error %v", results, err)
	}
	if r := results[0]; r.Output != openaitest.Answer("and ") || r.FinishReason != "stop" || r.Message != nil {
		t.Fatalf("result %+v", r)
	}
	sent := s.srv.Requests()[0]
	if *sent.Temperature != temp || *sent.TopP != topP || *sent.Seed != seed || !slices.Equal(sent.Stop, []string{"now"}) {
		t.Fatalf("sent %+v", sent)
	}
	var body struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(sent.Body, &body); err != nil || len(body.Messages) != 6 {
		t.Fatalf("messages %v (%v), want the system message and the 5 turns", body.Messages, err)
	}
	for _, want := range []string{`"image_url"`, `"tool_calls"`, `"tool_call_id":"c1"`, `"role":"developer"`} {
		if !bytes.Contains(sent.Body, []byte(want)) {
			t.Errorf("the body has no %s: %s", want, sent.Body)
		}
	}
}

func TestPlainCallWithProviderOptions(t *testing.T) {
	t.Parallel()
	s := setup(t)
	options := json.RawMessage(`{"tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object","properties":{"q":{"type":"string"}},"required":["q"],"additionalProperties":false}}}],"n":2,"logprobs":true}`)
	b := provider.Batch{ID: "b", Model: "m", Requests: []provider.Request{{Key: "0", Input: "find it", Options: options}}}
	results, err := s.p.Complete(t.Context(), b)
	if err != nil || len(results) != 1 || results[0].Err != nil {
		t.Fatalf("results %+v, error %v", results, err)
	}
	r := results[0]
	var msg struct {
		ToolCalls []struct {
			Function struct{ Name, Arguments string }
		} `json:"tool_calls"`
	}
	if err := json.Unmarshal(r.Message, &msg); err != nil || len(msg.ToolCalls) != 1 || msg.ToolCalls[0].Function.Name != "lookup" || r.FinishReason != "tool_calls" {
		t.Fatalf("result %+v: want the raw message with its tool call", r)
	}
	if !bytes.Contains(s.srv.Requests()[0].Body, []byte(`"n":2`)) || !bytes.Contains(s.srv.Requests()[0].Body, []byte(`"logprobs":true`)) {
		t.Fatalf("options not merged: %s", s.srv.Requests()[0].Body)
	}

	// An option the provider sets itself is refused, for good, without a call.
	b.Requests[0].Options = json.RawMessage(`{"stream":true}`)
	results, err = s.p.Complete(t.Context(), b)
	if err != nil || len(results) != 1 || !provider.IsPermanent(results[0].Err) || provider.ScopeOf(results[0].Err) != provider.ScopeRequest ||
		!errors.Is(results[0].Err, provider.ErrUnsupported) || s.srv.Calls() != 1 {
		t.Fatalf("results %+v, error %v, %d calls", results, err, s.srv.Calls())
	}
}

func TestPlainCallFinishReasonLength(t *testing.T) {
	t.Parallel()
	s := setup(t)
	b := provider.Batch{ID: "b", Model: "m", Requests: []provider.Request{{Key: "0", Input: strings.Repeat("x", 100), MaxOutputTokens: 5}}}
	results, err := s.p.Complete(t.Context(), b)
	if err != nil || len(results) != 1 || results[0].FinishReason != "length" || len(results[0].Output) != 20 {
		t.Fatalf("results %+v, error %v; want 20 bytes and length", results, err)
	}
}
