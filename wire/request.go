package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Kinds of request.
const (
	// KindChat asks a chat model for an answer; the default.
	KindChat = "chat"
	// KindEmbedding asks an embedding model for the vector of Input.
	KindEmbedding = "embedding"
)

// Request is the JSON body producers publish to a request subject.
//
// Since wire format 1.1 a request carries chat turns (Messages), the
// sampling parameters, a structured-output format, and embedding requests.
// Requests share a provider call only with requests of the same group:
// equal Model, Instructions and ParamsKey (and topic, when the worker
// isolates topics).
type Request struct {
	// ID identifies the request to its producer. When empty, the worker uses
	// the Batch-Request-Id header, then Nats-Msg-Id, then the stream
	// sequence.
	ID string `json:"id,omitempty"`
	// Kind is KindChat (the default when empty) or KindEmbedding.
	Kind string `json:"kind,omitempty"`
	// Input is the prompt (or, for an embedding, the text to embed). A chat
	// request has Input or Messages, not both; Input is the shorthand for
	// one user message.
	Input string `json:"input,omitempty"`
	// Messages are the chat turns, oldest first, in OpenAI's shape. A
	// request with a single user message of text is combined exactly like
	// one with Input.
	Messages []Message `json:"messages,omitempty"`
	// Instructions is the system prompt; requests are combined only with
	// others that have the same Instructions and Model.
	Instructions string `json:"instructions,omitempty"`
	// Model defaults to the worker's MODEL (EMBEDDING_MODEL for embeddings).
	Model string `json:"model,omitempty"`
	// MaxOutputTokens caps the answer; 0 means the provider's default.
	MaxOutputTokens int `json:"max_output_tokens,omitempty"`
	// Temperature, between 0 and 2; nil means the provider's default.
	Temperature *float64 `json:"temperature,omitempty"`
	// TopP, between 0 and 1; nil means the provider's default.
	TopP *float64 `json:"top_p,omitempty"`
	// Seed asks for a deterministic sample where the provider supports it.
	Seed *int64 `json:"seed,omitempty"`
	// Stop holds up to 4 sequences that end the answer.
	Stop []string `json:"stop,omitempty"`
	// ResponseFormat asks for structured output; nil means free text.
	ResponseFormat *ResponseFormat `json:"response_format,omitempty"`
	// Dimensions asks an embedding model for vectors of this length; 0
	// means the model's own.
	Dimensions int `json:"dimensions,omitempty"`
	// ProviderOptions holds further fields of the provider's chat request
	// that the wire format does not model (tools, tool_choice, n, logprobs,
	// ...), as a JSON object merged into the call. A request with options
	// is never combined: it is sent alone, with batch size 1.
	ProviderOptions json.RawMessage `json:"provider_options,omitempty"`
	// Metadata is any JSON value, returned unchanged in the result.
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// Roles of chat messages.
const (
	RoleSystem    = "system"
	RoleDeveloper = "developer"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Message is one chat turn, in OpenAI's shape.
type Message struct {
	// Role is one of RoleSystem, RoleDeveloper, RoleUser, RoleAssistant and
	// RoleTool.
	Role string `json:"role"`
	// Content is a JSON string, or an array of content parts as OpenAI
	// takes them ({"type":"text","text":...}, images, audio). Only text
	// can be combined; a request with other parts is sent alone.
	Content json.RawMessage `json:"content,omitempty"`
	// Name is the participant's name, when the API takes one.
	Name string `json:"name,omitempty"`
	// ToolCallID names the call a RoleTool message answers.
	ToolCallID string `json:"tool_call_id,omitempty"`
	// ToolCalls are an assistant turn's tool calls, in OpenAI's shape.
	ToolCalls json.RawMessage `json:"tool_calls,omitempty"`
}

// Text returns the message's content as text: the string, or the text
// parts joined by newlines. ok is false when the content holds anything
// but text (an image, audio, a file) or is not a string or an array of
// parts.
func (m Message) Text() (text string, ok bool) {
	content := bytes.TrimSpace(m.Content)
	if len(content) == 0 || bytes.Equal(content, []byte("null")) {
		return "", true
	}
	if content[0] == '"' {
		if err := json.Unmarshal(content, &text); err != nil {
			return "", false
		}
		return text, true
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(content, &parts); err != nil {
		return "", false
	}
	texts := make([]string, 0, len(parts))
	for _, p := range parts {
		if p.Type != "text" || p.Text == nil {
			return "", false
		}
		texts = append(texts, *p.Text)
	}
	return strings.Join(texts, "\n"), true
}

// TextMessage returns a message of role with plain text content.
func TextMessage(role, text string) Message {
	content, _ := json.Marshal(text)
	return Message{Role: role, Content: content}
}

// Formats of ResponseFormat.Type.
const (
	FormatText       = "text"
	FormatJSONObject = "json_object"
	FormatJSONSchema = "json_schema"
)

// ResponseFormat asks for structured output, in OpenAI's shape.
type ResponseFormat struct {
	// Type is FormatText, FormatJSONObject or FormatJSONSchema.
	Type string `json:"type"`
	// JSONSchema is required when Type is FormatJSONSchema.
	JSONSchema *JSONSchema `json:"json_schema,omitempty"`
}

// JSONSchema names a JSON Schema an answer must match.
type JSONSchema struct {
	// Name identifies the schema; letters, digits, _ and -.
	Name string `json:"name"`
	// Description tells the model what the schema is for.
	Description string `json:"description,omitempty"`
	// Schema is the JSON Schema object.
	Schema json.RawMessage `json:"schema"`
	// Strict asks for OpenAI's strict mode.
	Strict *bool `json:"strict,omitempty"`
}

// IsEmbedding reports whether r asks for an embedding.
func (r Request) IsEmbedding() bool { return r.Kind == KindEmbedding }

// Prompt returns the text a combined call carries for r: Input, or the text
// of r's only message when that is a user message of text. ok is false
// when r is a conversation (its turns travel as Messages) or has content
// that is not text.
func (r Request) Prompt() (prompt string, ok bool) {
	if len(r.Messages) == 0 {
		return r.Input, true
	}
	if len(r.Messages) != 1 || r.Messages[0].Role != RoleUser {
		return "", false
	}
	return r.Messages[0].Text()
}

// Combinable reports whether r may share a call with other requests of its
// group. Requests with ProviderOptions or with content other than text are
// sent alone.
func (r Request) Combinable() bool {
	if len(r.ProviderOptions) > 0 {
		return false
	}
	for _, m := range r.Messages {
		if _, ok := m.Text(); !ok || len(m.ToolCalls) > 0 || m.Role == RoleTool {
			return false
		}
	}
	return true
}

// ParamsKey returns a canonical text of r's answer-changing parameters
// beyond Model and Instructions: the kind, temperature, top_p, seed, stop
// sequences, response format and dimensions. Two requests with the same
// ParamsKey (and Model and Instructions) may share a call; it is "" for a
// chat request that sets none of them.
func (r Request) ParamsKey() string {
	if r.Kind != KindEmbedding && r.Temperature == nil && r.TopP == nil && r.Seed == nil &&
		len(r.Stop) == 0 && r.ResponseFormat == nil && r.Dimensions == 0 {
		return ""
	}
	key := struct {
		Kind        string          `json:"k,omitempty"`
		Temperature *float64        `json:"t,omitempty"`
		TopP        *float64        `json:"p,omitempty"`
		Seed        *int64          `json:"s,omitempty"`
		Stop        []string        `json:"x,omitempty"`
		Format      *ResponseFormat `json:"f,omitempty"`
		Dimensions  int             `json:"d,omitempty"`
	}{r.Kind, r.Temperature, r.TopP, r.Seed, r.Stop, canonicalFormat(r.ResponseFormat), r.Dimensions}
	if key.Kind == KindChat {
		key.Kind = ""
	}
	out, _ := json.Marshal(key)
	return string(out)
}

// canonicalFormat returns f with its schema compacted, so that schemas that
// differ only in spacing or key order group together.
func canonicalFormat(f *ResponseFormat) *ResponseFormat {
	if f == nil || f.JSONSchema == nil {
		return f
	}
	c := *f
	s := *f.JSONSchema
	var v any
	if json.Unmarshal(s.Schema, &v) == nil {
		s.Schema, _ = json.Marshal(v) // maps marshal with sorted keys
	}
	c.JSONSchema = &s
	return &c
}

// The limits Validate enforces.
const (
	// MaxStopSequences is OpenAI's limit on stop sequences.
	MaxStopSequences = 4
)

// ErrInvalidRequest is wrapped by every error DecodeRequest and
// Request.Validate return: the request can never succeed.
var ErrInvalidRequest = errors.New("invalid request")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidRequest}, args...)...)
}

// Validate reports the first thing that makes r a request the worker
// refuses, wrapping ErrInvalidRequest. The error names the field.
func (r Request) Validate() error {
	switch r.Kind {
	case "", KindChat:
		if err := r.validateChat(); err != nil {
			return err
		}
	case KindEmbedding:
		if err := r.validateEmbedding(); err != nil {
			return err
		}
	default:
		return invalid("\"kind\" is %q, want %q or %q", r.Kind, KindChat, KindEmbedding)
	}
	if r.MaxOutputTokens < 0 {
		return invalid("\"max_output_tokens\" is %d, want 0 or more", r.MaxOutputTokens)
	}
	if len(r.ProviderOptions) > 0 && !isObject(r.ProviderOptions) {
		return invalid("\"provider_options\" must be a JSON object")
	}
	return nil
}

func (r Request) validateChat() error {
	hasInput := strings.TrimSpace(r.Input) != ""
	switch {
	case len(r.Messages) == 0 && !hasInput:
		return invalid("\"input\" is missing or empty")
	case len(r.Messages) > 0 && r.Input != "":
		return invalid("both \"input\" and \"messages\" are set; \"input\" is the shorthand for one user message, give one of them")
	}
	for i, m := range r.Messages {
		if err := m.validate(i); err != nil {
			return err
		}
	}
	if len(r.Messages) > 0 && !r.hasPrompt() {
		return invalid("\"messages\" has no user, tool or assistant turn with content")
	}
	if t := r.Temperature; t != nil && (math.IsNaN(*t) || *t < 0 || *t > 2) {
		return invalid("\"temperature\" is %v, want 0 to 2", *t)
	}
	if p := r.TopP; p != nil && (math.IsNaN(*p) || *p < 0 || *p > 1) {
		return invalid("\"top_p\" is %v, want 0 to 1", *p)
	}
	if len(r.Stop) > MaxStopSequences {
		return invalid("\"stop\" has %d sequences, at most %d allowed", len(r.Stop), MaxStopSequences)
	}
	for i, s := range r.Stop {
		if s == "" {
			return invalid("\"stop\"[%d] is empty", i)
		}
	}
	if r.ResponseFormat != nil {
		if err := r.ResponseFormat.validate(); err != nil {
			return err
		}
	}
	if r.Dimensions != 0 {
		return invalid("\"dimensions\" is for embeddings only (\"kind\": %q)", KindEmbedding)
	}
	return nil
}

func (r Request) hasPrompt() bool {
	for _, m := range r.Messages {
		if m.Role == RoleSystem || m.Role == RoleDeveloper {
			continue
		}
		if text, ok := m.Text(); !ok || strings.TrimSpace(text) != "" || len(m.ToolCalls) > 0 {
			return true
		}
	}
	return false
}

func (r Request) validateEmbedding() error {
	switch {
	case strings.TrimSpace(r.Input) == "":
		return invalid("\"input\" is missing or empty: an embedding request embeds \"input\"")
	case len(r.Messages) > 0:
		return invalid("\"messages\" is for chat requests; an embedding request has \"input\" only")
	case r.Instructions != "":
		return invalid("\"instructions\" is for chat requests, not embeddings")
	case r.Temperature != nil || r.TopP != nil || r.Seed != nil || len(r.Stop) > 0:
		return invalid("\"temperature\", \"top_p\", \"seed\" and \"stop\" are for chat requests, not embeddings")
	case r.ResponseFormat != nil:
		return invalid("\"response_format\" is for chat requests, not embeddings")
	case r.MaxOutputTokens != 0:
		return invalid("\"max_output_tokens\" is for chat requests, not embeddings")
	case len(r.ProviderOptions) > 0:
		return invalid("\"provider_options\" is for chat requests, not embeddings")
	case r.Dimensions < 0:
		return invalid("\"dimensions\" is %d, want 0 or more", r.Dimensions)
	}
	return nil
}

func (m Message) validate(i int) error {
	switch m.Role {
	case RoleSystem, RoleDeveloper, RoleUser, RoleAssistant, RoleTool:
	case "":
		return invalid("\"messages\"[%d].role is missing", i)
	default:
		return invalid("\"messages\"[%d].role is %q, want system, developer, user, assistant or tool", i, m.Role)
	}
	if _, ok := m.Text(); !ok && !isArray(m.Content) {
		return invalid("\"messages\"[%d].content must be a string or an array of content parts", i)
	}
	if m.Role == RoleTool && m.ToolCallID == "" {
		return invalid("\"messages\"[%d] is a tool message without \"tool_call_id\"", i)
	}
	if len(m.ToolCalls) > 0 && !isArray(m.ToolCalls) {
		return invalid("\"messages\"[%d].tool_calls must be an array", i)
	}
	return nil
}

func (f ResponseFormat) validate() error {
	switch f.Type {
	case FormatText, FormatJSONObject:
		if f.JSONSchema != nil {
			return invalid("\"response_format\".json_schema is set but type is %q, want %q", f.Type, FormatJSONSchema)
		}
	case FormatJSONSchema:
		if f.JSONSchema == nil {
			return invalid("\"response_format\" has type %q but no \"json_schema\"", FormatJSONSchema)
		}
		if f.JSONSchema.Name == "" {
			return invalid("\"response_format\".json_schema.name is missing")
		}
		if !isObject(f.JSONSchema.Schema) {
			return invalid("\"response_format\".json_schema.schema must be a JSON Schema object")
		}
	default:
		return invalid("\"response_format\".type is %q, want text, json_object or json_schema", f.Type)
	}
	return nil
}

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{' && json.Valid(raw)
}

func isArray(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '[' && json.Valid(raw)
}

// DecodeRequest parses and checks one request body as the worker does.
// maxBytes <= 0 means no size limit. Unknown fields are refused, naming the
// field, so that a typo ("instruction") or a parameter the format does not
// carry is never dropped silently. Every error wraps ErrInvalidRequest and
// says what is wrong; the returned Request holds whatever could be read.
func DecodeRequest(body []byte, maxBytes int) (Request, error) {
	if maxBytes > 0 && len(body) > maxBytes {
		return Request{}, invalid("body is %d bytes, over MAX_REQUEST_BYTES (%d)", len(body), maxBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return Request{}, invalid("empty body, want a JSON object with \"input\"")
	}
	if fast, ok := decodeRequestFast(body); ok {
		return fast, fast.Validate()
	}
	return decodeRequestSlow(body)
}

// decodeRequestSlow decodes body with encoding/json. It is a function of
// its own because its Request escapes to the heap, and the fast path's
// must not.
func decodeRequestSlow(body []byte) (Request, error) {
	var r Request
	if err := unmarshalStrict(body, &r); err != nil {
		return r, invalid("body is not a JSON request object: %v", err)
	}
	return r, r.Validate()
}
