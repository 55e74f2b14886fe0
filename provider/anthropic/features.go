package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/anthropics/anthropic-sdk-go"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/combined"
	"github.com/aibatch/aibatch/wire"
)

// What the Messages API takes of wire format 1.1, and how (see the package
// doc): chat turns are mapped to Anthropic's messages, structured output
// goes through a forced tool, embeddings are not served.

var _ provider.Supporter = (*Provider)(nil)

// ErrNoEmbeddings is wrapped by the error of an embedding request: the
// Messages API has no embeddings.
var ErrNoEmbeddings = fmt.Errorf("%w: Anthropic has no embeddings API; send embedding requests to a worker with PROVIDER=openai or http", provider.ErrUnsupported)

// maxTemperature is the Messages API's largest temperature (OpenAI's is 2).
const maxTemperature = 1.0

// Supports returns nil for chat requests and an error wrapping
// ErrNoEmbeddings for embeddings. It implements provider.Supporter.
func (p *Provider) Supports(kind string) error {
	if kind == wire.KindEmbedding {
		return ErrNoEmbeddings
	}
	return nil
}

// refuseAll answers every request of b with err, a permanent ScopeRequest
// failure, without a call.
func refuseAll(b provider.Batch, err error) []provider.Result {
	out := make([]provider.Result, len(b.Requests))
	for i, r := range b.Requests {
		out[i] = provider.Result{Key: r.Key, Err: fmt.Errorf("anthropic: request %q: %w", r.Key, requestError(true, err))}
	}
	return out
}

// checkBatch returns why no request of b can be sent, or nil.
func checkBatch(b provider.Batch) error {
	switch {
	case b.Kind == wire.KindEmbedding:
		return ErrNoEmbeddings
	case b.Params.Temperature != nil && *b.Params.Temperature > maxTemperature:
		return fmt.Errorf("%w: temperature %v is over the Messages API's %v", provider.ErrUnsupported, *b.Params.Temperature, maxTemperature)
	}
	return nil
}

// setSampling sets temperature and top_p; Anthropic has no seed (it is
// ignored) and the stop sequences are the caller's.
func setSampling(params *anthropic.MessageNewParams, ps provider.Params) {
	if ps.Temperature != nil {
		params.Temperature = anthropic.Float(*ps.Temperature)
	}
	if ps.TopP != nil {
		params.TopP = anthropic.Float(*ps.TopP)
	}
}

// combinedTool is the batch_results tool of a combined call for b: its
// input_schema is combined.Schema's, the definitions of a request's schema
// at its root.
func combinedTool(b provider.Batch) (anthropic.ToolParam, error) {
	keys := make([]string, len(b.Requests))
	for i, r := range b.Requests {
		keys[i] = r.Key
	}
	root, err := combined.Schema(b, map[string]any{"type": "string", "enum": keys})
	if err != nil {
		return anthropic.ToolParam{}, err
	}
	data, err := json.Marshal(root)
	if err != nil {
		return anthropic.ToolParam{}, fmt.Errorf("encode the answer schema: %w", err)
	}
	tool, err := schemaTool(ToolName, toolDescription, data)
	if err != nil {
		return anthropic.ToolParam{}, err
	}
	return tool, nil
}

// formatLine ends every combined system prompt: it tells the model what
// the user message holds and how to answer it.
func formatLine(b provider.Batch) string {
	return combined.Describe(b) + ` Give all answers in one call of the batch_results tool: one result per item, ` +
		`the item's id copied unchanged, your answer as output.`
}

// formatTool is the tool a plain call forces for structured output f: the
// request's json_schema as input_schema (its root must be an object), or
// any object for json_object. The answer is the tool's input.
func formatTool(f wire.ResponseFormat) (anthropic.ToolParam, error) {
	if f.Type == wire.FormatJSONObject {
		return anthropic.ToolParam{Name: "json_object", Description: anthropic.String("Give your answer as a JSON object."),
			InputSchema: anthropic.ToolInputSchemaParam{}}, nil
	}
	desc := f.JSONSchema.Description
	if desc == "" {
		desc = "Give your answer as this tool's input."
	}
	return schemaTool(toolName(f.JSONSchema.Name), desc, f.JSONSchema.Schema)
}

// schemaTool is a tool whose input_schema is schema, a JSON schema whose
// root is an object.
func schemaTool(name, description string, schema json.RawMessage) (anthropic.ToolParam, error) {
	// Raw JSON values, not decoded ones: the SDK would write a json.Number
	// as a string, and a float64 may lose a large integer.
	var root map[string]json.RawMessage
	if err := json.Unmarshal(schema, &root); err != nil || root == nil {
		return anthropic.ToolParam{}, fmt.Errorf("schema of %q is not a JSON object: %v", name, err)
	}
	if t, ok := root["type"]; ok && string(bytes.TrimSpace(t)) != `"object"` {
		return anthropic.ToolParam{}, fmt.Errorf("%w: the schema of %q must be an object at its root for a tool's input_schema", provider.ErrUnsupported, name)
	}
	in := anthropic.ToolInputSchemaParam{ExtraFields: map[string]any{}}
	if props, ok := root["properties"]; ok {
		in.Properties = props
	}
	if req, ok := root["required"]; ok {
		if err := json.Unmarshal(req, &in.Required); err != nil {
			return anthropic.ToolParam{}, fmt.Errorf("schema of %q: \"required\" is not a list of names: %w", name, err)
		}
	}
	for k, v := range root {
		switch k {
		case "type", "properties", "required", "$schema", "$id":
		default:
			in.ExtraFields[k] = v
		}
	}
	tool := anthropic.ToolParam{Name: name, InputSchema: in}
	if description != "" {
		tool.Description = anthropic.String(description)
	}
	return tool, nil
}

// toolName is name as a tool name the API takes: letters, digits, _ and -,
// at most 64.
func toolName(name string) string {
	name = strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, name)
	if name == "" {
		return "structured_output"
	}
	return name[:min(len(name), 64)]
}

// conversation maps the turns of r, one request of b, to the Messages
// API: system and developer turns join the system prompt (after b's
// Instructions), text parts become text blocks, image_url parts image
// blocks (a data: URL as base64, else by URL), an assistant's tool_calls
// tool_use blocks, and tool turns tool_result blocks in a user turn;
// consecutive turns of one role are merged, as the API wants them to
// alternate. Other content (audio, files) fails, wrapping
// provider.ErrUnsupported.
func conversation(b provider.Batch, r provider.Request) (system string, msgs []anthropic.MessageParam, err error) {
	systems := []string{}
	if b.Instructions != "" {
		systems = append(systems, b.Instructions)
	}
	if len(r.Messages) == 0 {
		return b.Instructions, []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(r.Input))}, nil
	}
	add := func(role anthropic.MessageParamRole, blocks ...anthropic.ContentBlockParamUnion) {
		if n := len(msgs); n > 0 && msgs[n-1].Role == role {
			msgs[n-1].Content = append(msgs[n-1].Content, blocks...)
			return
		}
		msgs = append(msgs, anthropic.MessageParam{Role: role, Content: blocks})
	}
	for i, m := range r.Messages {
		switch m.Role {
		case wire.RoleSystem, wire.RoleDeveloper:
			text, ok := m.Text()
			if !ok {
				return "", nil, fmt.Errorf("%w: messages[%d]: a %s turn must be text", provider.ErrUnsupported, i, m.Role)
			}
			systems = append(systems, text)
		case wire.RoleTool:
			text, ok := m.Text()
			if !ok {
				return "", nil, fmt.Errorf("%w: messages[%d]: a tool turn must be text", provider.ErrUnsupported, i)
			}
			add(anthropic.MessageParamRoleUser, anthropic.NewToolResultBlock(m.ToolCallID, text, false))
		case wire.RoleUser, wire.RoleAssistant:
			blocks, err := contentBlocks(m.Content)
			if err != nil {
				return "", nil, fmt.Errorf("messages[%d]: %w", i, err)
			}
			calls, err := toolUses(m.ToolCalls)
			if err != nil {
				return "", nil, fmt.Errorf("messages[%d]: %w", i, err)
			}
			role := anthropic.MessageParamRoleUser
			if m.Role == wire.RoleAssistant {
				role = anthropic.MessageParamRoleAssistant
			}
			if len(blocks)+len(calls) > 0 {
				add(role, append(blocks, calls...)...)
			}
		}
	}
	return strings.Join(systems, "\n\n"), msgs, nil
}

// contentBlocks maps an OpenAI message content (a string or parts).
func contentBlocks(content json.RawMessage) ([]anthropic.ContentBlockParamUnion, error) {
	content = bytes.TrimSpace(content)
	if len(content) == 0 || string(content) == "null" {
		return nil, nil
	}
	var s string
	if content[0] == '"' {
		if err := json.Unmarshal(content, &s); err != nil {
			return nil, err
		}
		if s == "" {
			return nil, nil
		}
		return []anthropic.ContentBlockParamUnion{anthropic.NewTextBlock(s)}, nil
	}
	var parts []struct {
		Type     string `json:"type"`
		Text     string `json:"text"`
		ImageURL struct {
			URL string `json:"url"`
		} `json:"image_url"`
	}
	if err := json.Unmarshal(content, &parts); err != nil {
		return nil, fmt.Errorf("content is neither a string nor an array of parts: %w", err)
	}
	var out []anthropic.ContentBlockParamUnion
	for j, p := range parts {
		switch p.Type {
		case "text":
			out = append(out, anthropic.NewTextBlock(p.Text))
		case "image_url":
			block, err := imageBlock(p.ImageURL.URL)
			if err != nil {
				return nil, fmt.Errorf("content[%d]: %w", j, err)
			}
			out = append(out, block)
		default:
			return nil, fmt.Errorf("%w: content[%d] of type %q has no Messages API equivalent here", provider.ErrUnsupported, j, p.Type)
		}
	}
	return out, nil
}

// imageBlock maps an image_url: a data: URL becomes a base64 source.
func imageBlock(url string) (anthropic.ContentBlockParamUnion, error) {
	if rest, ok := strings.CutPrefix(url, "data:"); ok {
		meta, data, found := strings.Cut(rest, ",")
		mediaType, isBase64 := strings.CutSuffix(meta, ";base64")
		if !found || !isBase64 {
			return anthropic.ContentBlockParamUnion{}, fmt.Errorf("%w: an image data: URL must be base64", provider.ErrUnsupported)
		}
		return anthropic.NewImageBlockBase64(mediaType, data), nil
	}
	return anthropic.NewImageBlock(anthropic.URLImageSourceParam{URL: url}), nil
}

// toolUses maps an assistant turn's OpenAI tool_calls to tool_use blocks.
func toolUses(raw json.RawMessage) ([]anthropic.ContentBlockParamUnion, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var calls []struct {
		ID       string `json:"id"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &calls); err != nil {
		return nil, fmt.Errorf("tool_calls: %w", err)
	}
	out := make([]anthropic.ContentBlockParamUnion, len(calls))
	for i, c := range calls {
		input := json.RawMessage(c.Function.Arguments)
		if !json.Valid(input) {
			input = json.RawMessage("{}")
		}
		out[i] = anthropic.NewToolUseBlock(c.ID, input, c.Function.Name)
	}
	return out, nil
}

// setOptions maps a request's provider_options, in OpenAI's terms, to the
// Messages API: tools (function tools), tool_choice ("auto", "none",
// "required", or a function by name), parallel_tool_calls, and user; n 1
// and logprobs false are accepted as they change nothing. Anything else
// fails naming the option, wrapping provider.ErrUnsupported.
func setOptions(params *anthropic.MessageNewParams, options json.RawMessage) error {
	if len(options) == 0 {
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(options, &fields); err != nil {
		return fmt.Errorf("provider_options is not a JSON object: %w", err)
	}
	var parallel *bool
	for k, v := range fields {
		switch k {
		case "tools":
			tools, err := mapTools(v)
			if err != nil {
				return err
			}
			params.Tools = append(params.Tools, tools...)
		case "tool_choice":
			choice, err := mapToolChoice(v)
			if err != nil {
				return err
			}
			params.ToolChoice = choice
		case "parallel_tool_calls":
			var b bool
			if err := json.Unmarshal(v, &b); err != nil {
				return fmt.Errorf("provider_options.parallel_tool_calls: %w", err)
			}
			parallel = &b
		case "user":
			var u string
			if err := json.Unmarshal(v, &u); err != nil {
				return fmt.Errorf("provider_options.user: %w", err)
			}
			params.Metadata.UserID = anthropic.String(u)
		case "n", "logprobs":
			if s := string(bytes.TrimSpace(v)); s == "1" || s == "false" || s == "null" {
				continue
			}
			return fmt.Errorf("%w: provider_options.%s %s: the Messages API has no equivalent", provider.ErrUnsupported, k, v)
		default:
			return fmt.Errorf("%w: provider_options.%s: the Messages API has no equivalent the worker maps", provider.ErrUnsupported, k)
		}
	}
	if parallel != nil && !*parallel {
		switch c := &params.ToolChoice; {
		case c.OfAny != nil:
			c.OfAny.DisableParallelToolUse = anthropic.Bool(true)
		case c.OfTool != nil:
			c.OfTool.DisableParallelToolUse = anthropic.Bool(true)
		default:
			if c.OfNone == nil {
				c.OfAuto = &anthropic.ToolChoiceAutoParam{DisableParallelToolUse: anthropic.Bool(true)}
			}
		}
	}
	return nil
}

func mapTools(raw json.RawMessage) ([]anthropic.ToolUnionParam, error) {
	var tools []struct {
		Type     string `json:"type"`
		Function struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Parameters  json.RawMessage `json:"parameters"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &tools); err != nil {
		return nil, fmt.Errorf("provider_options.tools: %w", err)
	}
	out := make([]anthropic.ToolUnionParam, len(tools))
	for i, t := range tools {
		if t.Type != "function" {
			return nil, fmt.Errorf("%w: provider_options.tools[%d] of type %q: only function tools map to the Messages API", provider.ErrUnsupported, i, t.Type)
		}
		schema := json.RawMessage(`{"type":"object","properties":{}}`)
		if len(t.Function.Parameters) > 0 {
			schema = t.Function.Parameters
		}
		tool, err := schemaTool(t.Function.Name, t.Function.Description, schema)
		if err != nil {
			return nil, fmt.Errorf("provider_options.tools[%d]: %w", i, err)
		}
		out[i] = anthropic.ToolUnionParam{OfTool: &tool}
	}
	return out, nil
}

func mapToolChoice(raw json.RawMessage) (anthropic.ToolChoiceUnionParam, error) {
	var word string
	if json.Unmarshal(raw, &word) == nil {
		switch word {
		case "auto":
			return anthropic.ToolChoiceUnionParam{OfAuto: &anthropic.ToolChoiceAutoParam{}}, nil
		case "none":
			return anthropic.ToolChoiceUnionParam{OfNone: &anthropic.ToolChoiceNoneParam{}}, nil
		case "required":
			return anthropic.ToolChoiceUnionParam{OfAny: &anthropic.ToolChoiceAnyParam{}}, nil
		}
		return anthropic.ToolChoiceUnionParam{}, fmt.Errorf("%w: provider_options.tool_choice %q", provider.ErrUnsupported, word)
	}
	var named struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &named); err != nil || named.Function.Name == "" {
		return anthropic.ToolChoiceUnionParam{}, fmt.Errorf("%w: provider_options.tool_choice %s", provider.ErrUnsupported, raw)
	}
	return anthropic.ToolChoiceUnionParam{OfTool: &anthropic.ToolChoiceToolParam{Name: named.Function.Name}}, nil
}

// finishReason is stop_reason in OpenAI's terms.
func finishReason(stop anthropic.StopReason) string {
	switch stop {
	case anthropic.StopReasonMaxTokens, anthropic.StopReasonModelContextWindowExceeded:
		return "length"
	case anthropic.StopReasonToolUse:
		return "tool_calls"
	case anthropic.StopReasonRefusal:
		return "content_filter"
	}
	return "stop"
}

// openAIMessage is an answer as OpenAI's choices[0].message: its text as
// content and its tool_use blocks as tool_calls, for a request with
// provider options.
func openAIMessage(msg *anthropic.Message) (json.RawMessage, error) {
	type call struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	}
	out := struct {
		Role      string  `json:"role"`
		Content   *string `json:"content"`
		ToolCalls []call  `json:"tool_calls,omitempty"`
	}{Role: "assistant"}
	var text strings.Builder
	var hasText bool
	for _, block := range msg.Content {
		switch block.Type {
		case "text":
			text.WriteString(block.Text)
			hasText = true
		case "tool_use":
			c := call{ID: block.ID, Type: "function"}
			c.Function.Name, c.Function.Arguments = block.Name, string(block.Input)
			out.ToolCalls = append(out.ToolCalls, c)
		}
	}
	if hasText {
		s := text.String()
		out.Content = &s
	}
	if !hasText && len(out.ToolCalls) == 0 {
		return nil, errors.New("answer has neither text nor tool_use")
	}
	return json.Marshal(out)
}
