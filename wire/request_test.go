package wire

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeRequestInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		body     []byte
		maxBytes int
		wantErr  string // substring naming the problem
	}{
		{"one byte over the limit", []byte(`{"input":"hello"}`), 16, "17 bytes, over MAX_REQUEST_BYTES (16)"},
		{"far over the limit", []byte(`{"input":"` + strings.Repeat("x", 1000) + `"}`), 100, "over MAX_REQUEST_BYTES (100)"},
		{"oversize is checked before anything else", []byte("   "), 2, "over MAX_REQUEST_BYTES"},
		{"nil body", nil, 0, "empty body"},
		{"empty body", []byte{}, 1024, "empty body"},
		{"whitespace body", []byte(" \n\t\r "), 1024, "empty body"},
		{"truncated JSON", []byte(`{"input":`), 1024, "not a JSON request object"},
		{"unquoted keys", []byte(`{input: "x"}`), 1024, "not a JSON request object"},
		{"binary garbage", []byte{0x00, 0xff, 0xfe, 0x01, 0x7f}, 1024, "not a JSON request object"},
		{"JSON array", []byte(`[{"input":"x"}]`), 1024, "not a JSON request object"},
		{"JSON string", []byte(`"hello"`), 1024, "not a JSON request object"},
		{"JSON number", []byte(`42`), 1024, "not a JSON request object"},
		{"input of the wrong type", []byte(`{"input":5}`), 1024, "not a JSON request object"},
		{"trailing garbage after the object", []byte(`{"input":"x"} extra`), 1024, "not a JSON request object"},
		{"JSON null", []byte(`null`), 1024, `"input" is missing or empty`},
		{"empty object", []byte(`{}`), 1024, `"input" is missing or empty`},
		{"input missing", []byte(`{"model":"m","instructions":"be brief"}`), 1024, `"input" is missing or empty`},
		{"input empty", []byte(`{"input":""}`), 1024, `"input" is missing or empty`},
		{"input blank", []byte(`{"input":" \n\t "}`), 1024, `"input" is missing or empty`},
		{"negative max_output_tokens", []byte(`{"input":"x","max_output_tokens":-1}`), 1024, `"max_output_tokens" is -1`},
		{"unknown field named", []byte(`{"input":"x","priority":"high"}`), 1024, `unknown field "priority"`},
		{"typo of a field named", []byte(`{"input":"x","instruction":"be brief"}`), 1024, `unknown field "instruction"`},
		{"unknown kind", []byte(`{"kind":"image","input":"x"}`), 1024, `"kind" is "image"`},
		{"input and messages", []byte(`{"input":"x","messages":[{"role":"user","content":"y"}]}`), 1024, `both "input" and "messages"`},
		{"message without role", []byte(`{"messages":[{"content":"y"}]}`), 1024, `"messages"[0].role is missing`},
		{"message of unknown role", []byte(`{"messages":[{"role":"bot","content":"y"}]}`), 1024, `"messages"[0].role is "bot"`},
		{"message content a number", []byte(`{"messages":[{"role":"user","content":5}]}`), 1024, `"messages"[0].content must be`},
		{"only a system message", []byte(`{"messages":[{"role":"system","content":"be brief"}]}`), 1024, `no user, tool or assistant turn`},
		{"tool message without call id", []byte(`{"messages":[{"role":"user","content":"q"},{"role":"tool","content":"r"}]}`), 1024, `without "tool_call_id"`},
		{"temperature over 2", []byte(`{"input":"x","temperature":2.5}`), 1024, `"temperature" is 2.5, want 0 to 2`},
		{"negative top_p", []byte(`{"input":"x","top_p":-0.1}`), 1024, `"top_p" is -0.1, want 0 to 1`},
		{"five stop sequences", []byte(`{"input":"x","stop":["a","b","c","d","e"]}`), 1024, `"stop" has 5 sequences, at most 4`},
		{"empty stop sequence", []byte(`{"input":"x","stop":[""]}`), 1024, `"stop"[0] is empty`},
		{"stop as a string", []byte(`{"input":"x","stop":"a"}`), 1024, `not a JSON request object`},
		{"unknown response format", []byte(`{"input":"x","response_format":{"type":"yaml"}}`), 1024, `"response_format".type is "yaml"`},
		{"json_schema without schema", []byte(`{"input":"x","response_format":{"type":"json_schema"}}`), 1024, `no "json_schema"`},
		{"json_schema without name", []byte(`{"input":"x","response_format":{"type":"json_schema","json_schema":{"schema":{}}}}`), 1024, `json_schema.name is missing`},
		{"json_schema schema not an object", []byte(`{"input":"x","response_format":{"type":"json_schema","json_schema":{"name":"a","schema":[]}}}`), 1024, `json_schema.schema must be a JSON Schema object`},
		{"dimensions on a chat request", []byte(`{"input":"x","dimensions":8}`), 1024, `"dimensions" is for embeddings only`},
		{"embedding without input", []byte(`{"kind":"embedding"}`), 1024, `an embedding request embeds "input"`},
		{"embedding with messages", []byte(`{"kind":"embedding","input":"x","messages":[{"role":"user","content":"y"}]}`), 1024, `"messages" is for chat requests`},
		{"embedding with temperature", []byte(`{"kind":"embedding","input":"x","temperature":0}`), 1024, `are for chat requests, not embeddings`},
		{"embedding with negative dimensions", []byte(`{"kind":"embedding","input":"x","dimensions":-1}`), 1024, `"dimensions" is -1`},
		{"provider options not an object", []byte(`{"input":"x","provider_options":[1]}`), 1024, `"provider_options" must be a JSON object`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := DecodeRequest(tt.body, tt.maxBytes)
			if err == nil {
				t.Fatalf("DecodeRequest(%q) = nil error, want one about %q", tt.body, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("DecodeRequest(%q) error %v does not wrap ErrInvalidRequest", tt.body, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("DecodeRequest(%q) error = %q, want it to contain %q", tt.body, err, tt.wantErr)
			}
		})
	}
}

func TestDecodeRequestValid(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("y", 100_000)
	tests := []struct {
		name     string
		body     string
		maxBytes int
		want     Request
	}{
		{"input only", `{"input":"hi"}`, 1024, Request{Input: "hi"}},
		{"exactly at the limit", `{"input":"hello"}`, 17, Request{Input: "hello"}},
		{"no limit", `{"input":"` + big + `"}`, 0, Request{Input: big}},
		{"negative limit means none", `{"input":"` + big + `"}`, -1, Request{Input: big}},
		{"surrounding whitespace", "\n  {\"input\":\"hi\"}  \n", 1024, Request{Input: "hi"}},
		{"input with surrounding spaces kept as sent", `{"input":"  hi  "}`, 1024, Request{Input: "  hi  "}},
		{"zero max_output_tokens", `{"input":"x","max_output_tokens":0}`, 1024, Request{Input: "x"}},
		{"a conversation", `{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":[{"type":"text","text":"and?"}]}]}`, 1024,
			Request{Messages: []Message{TextMessage("user", "hi"), TextMessage("assistant", "hello"),
				{Role: "user", Content: json.RawMessage(`[{"type":"text","text":"and?"}]`)}}}},
		{"an embedding", `{"kind":"embedding","input":"x","dimensions":8}`, 1024, Request{Kind: "embedding", Input: "x", Dimensions: 8}},
		{"sampling parameters", `{"input":"x","temperature":0,"top_p":1,"seed":7,"stop":["\n"]}`, 1024,
			Request{Input: "x", Temperature: ptr(0.0), TopP: ptr(1.0), Seed: ptr(int64(7)), Stop: []string{"\n"}}},
		{"provider options kept raw", `{"input":"x","provider_options":{"n":2}}`, 1024, Request{Input: "x", ProviderOptions: json.RawMessage(`{"n":2}`)}},
		{"every field",
			`{"id":"r-1","input":"Summarise","instructions":"Be brief.","model":"gpt-x","max_output_tokens":256,"metadata":{"trace": [1, 2], "k": "v"}}`,
			1024,
			Request{ID: "r-1", Input: "Summarise", Instructions: "Be brief.", Model: "gpt-x", MaxOutputTokens: 256,
				// Kept byte for byte, spacing included.
				Metadata: json.RawMessage(`{"trace": [1, 2], "k": "v"}`)}},
		{"scalar metadata kept raw", `{"input":"x","metadata":"tag-7"}`, 1024,
			Request{Input: "x", Metadata: json.RawMessage(`"tag-7"`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeRequest([]byte(tt.body), tt.maxBytes)
			if err != nil {
				t.Fatalf("DecodeRequest: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecodeRequest = %+v (metadata %s), want %+v (metadata %s)", got, got.Metadata, tt.want, tt.want.Metadata)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestRequestPromptAndCombinable(t *testing.T) {
	t.Parallel()
	image := Message{Role: "user", Content: json.RawMessage(`[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]`)}
	tests := []struct {
		name           string
		req            Request
		wantPrompt     string
		wantPromptOK   bool
		wantCombinable bool
	}{
		{"input", Request{Input: "q"}, "q", true, true},
		{"one user message is the input", Request{Messages: []Message{TextMessage("user", "q")}}, "q", true, true},
		{"text parts joined", Request{Messages: []Message{{Role: "user", Content: json.RawMessage(`[{"type":"text","text":"a"},{"type":"text","text":"b"}]`)}}}, "a\nb", true, true},
		{"a conversation is combined as messages", Request{Messages: []Message{TextMessage("user", "q"), TextMessage("assistant", "a"), TextMessage("user", "q2")}}, "", false, true},
		{"an image is sent alone", Request{Messages: []Message{image}}, "", false, false},
		{"provider options are sent alone", Request{Input: "q", ProviderOptions: json.RawMessage(`{"tools":[]}`)}, "q", true, false},
		{"a tool turn is sent alone", Request{Messages: []Message{TextMessage("user", "q"), {Role: "tool", ToolCallID: "c1", Content: json.RawMessage(`"42"`)}}}, "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prompt, ok := tt.req.Prompt()
			if prompt != tt.wantPrompt || ok != tt.wantPromptOK {
				t.Errorf("Prompt() = %q, %v; want %q, %v", prompt, ok, tt.wantPrompt, tt.wantPromptOK)
			}
			if got := tt.req.Combinable(); got != tt.wantCombinable {
				t.Errorf("Combinable() = %v, want %v", got, tt.wantCombinable)
			}
		})
	}
}

func TestParamsKey(t *testing.T) {
	t.Parallel()
	schema := func(s string) *ResponseFormat {
		return &ResponseFormat{Type: FormatJSONSchema, JSONSchema: &JSONSchema{Name: "a", Schema: json.RawMessage(s)}}
	}
	if got := (Request{Input: "x", Kind: KindChat}).ParamsKey(); got != "" {
		t.Errorf("a plain chat request has ParamsKey %q, want empty (it groups with 1.0 requests)", got)
	}
	same := [][2]Request{
		{{Input: "a", Temperature: ptr(0.5)}, {Input: "b", Temperature: ptr(0.5)}},
		{{ResponseFormat: schema(`{"type":"object","required":["a"]}`)}, {ResponseFormat: schema(`{ "required": ["a"], "type": "object" }`)}},
	}
	for _, p := range same {
		if p[0].ParamsKey() != p[1].ParamsKey() {
			t.Errorf("ParamsKey differs for requests that may share a call: %q vs %q", p[0].ParamsKey(), p[1].ParamsKey())
		}
	}
	different := []Request{
		{},
		{Temperature: ptr(0.0)},
		{Temperature: ptr(0.5)},
		{TopP: ptr(0.5)},
		{Seed: ptr(int64(1))},
		{Stop: []string{"."}},
		{ResponseFormat: &ResponseFormat{Type: FormatJSONObject}},
		{ResponseFormat: schema(`{"type":"object"}`)},
		{ResponseFormat: schema(`{"type":"array"}`)},
		{Kind: KindEmbedding},
		{Kind: KindEmbedding, Dimensions: 8},
	}
	seen := map[string]int{}
	for i, r := range different {
		k := r.ParamsKey()
		if j, dup := seen[k]; dup {
			t.Errorf("requests %d and %d differ in an answer-changing parameter but share ParamsKey %q", j, i, k)
		}
		seen[k] = i
	}
}
