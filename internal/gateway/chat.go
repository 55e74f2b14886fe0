package gateway

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/aibatch/aibatch/wire"
)

// chatRequest is a chat completion request as the gateway carries it: the
// wire request, and how to answer.
type chatRequest struct {
	req          wire.Request
	stream       bool
	includeUsage bool
}

// soloFields are the chat completion fields the wire format does not
// model but the provider takes as they are: they travel in
// provider_options, and a request with any of them is sent alone (batch
// size 1), since they change the answer or its shape. Each lists the
// values that mean the same as leaving it out, which keep the request
// combinable ("frequency_penalty": 0 from a framework that sends every
// default).
var soloFields = map[string][]string{
	"tools":                  {"[]"},
	"tool_choice":            nil,
	"parallel_tool_calls":    nil,
	"functions":              {"[]"},
	"function_call":          nil,
	"frequency_penalty":      {"0"},
	"presence_penalty":       {"0"},
	"logit_bias":             {"{}"},
	"reasoning_effort":       nil,
	"verbosity":              nil,
	"prediction":             nil,
	"web_search_options":     nil,
	"service_tier":           {`"auto"`},
	"store":                  {"false"},
	"metadata":               {"{}"},
	"user":                   {`""`},
	"safety_identifier":      {`""`},
	"prompt_cache_key":       {`""`},
	"prompt_cache_retention": nil,
	"prompt_cache_options":   nil,
	"moderation":             nil,
}

// messageFields are the members a chat message may have. refusal, audio
// and function_call are accepted only as null: the wire format carries
// none of them.
var messageFields = map[string]bool{
	"role": true, "content": true, "name": true, "tool_call_id": true, "tool_calls": true,
	"refusal": true, "audio": true, "function_call": true,
}

// decodeChat reads a chat completion request body. Every member is either
// carried by a wire field, sent to the provider in provider_options (the
// request then goes alone), or refused with a 400 naming it.
func decodeChat(body []byte) (chatRequest, *apiError) {
	var c chatRequest
	f, e := decodeObject(body)
	if e != nil {
		return c, e
	}
	var (
		msgs                        []wire.Message
		maxTokens, maxCompletion    int64
		hasMaxTokens, hasCompletion bool
	)
	opts := map[string]json.RawMessage{}
	for _, name := range f.names() {
		raw := f[name]
		if isNull(raw) {
			continue
		}
		switch name {
		case "model":
			e = decodeField(name, raw, &c.req.Model, "a model name")
		case "messages":
			msgs, e = decodeMessages(raw)
		case "max_tokens":
			maxTokens, e = wholeNumber(name, raw, 0)
			hasMaxTokens = true
		case "max_completion_tokens":
			maxCompletion, e = wholeNumber(name, raw, 0)
			hasCompletion = true
		case "temperature":
			var v float64
			v, e = number(name, raw)
			c.req.Temperature = &v
		case "top_p":
			var v float64
			v, e = number(name, raw)
			c.req.TopP = &v
		case "seed":
			var v int64
			e = decodeField(name, raw, &v, "a whole number")
			c.req.Seed = &v
		case "stop":
			c.req.Stop, e = decodeStop(raw)
		case "response_format":
			var rf wire.ResponseFormat
			e = decodeField(name, raw, &rf, `{"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "json_schema": {...}}`)
			c.req.ResponseFormat = &rf
		case "stream":
			e = decodeField(name, raw, &c.stream, "true or false")
		case "stream_options":
			var so struct {
				IncludeUsage bool `json:"include_usage"`
				// The gateway sends no obfuscation padding either way.
				IncludeObfuscation bool `json:"include_obfuscation"`
			}
			e = decodeField(name, raw, &so, `{"include_usage": true}`)
			c.includeUsage = so.IncludeUsage
		case "n":
			if !isDefault(raw, "1") {
				e = unsupported(name, "only n=1: a result carries one answer. Send n requests instead; they may share a provider call.")
			}
		case "logprobs":
			if !isDefault(raw, "false") {
				e = unsupported(name, "a result carries no log probabilities.")
			}
		case "top_logprobs":
			e = unsupported(name, "a result carries no log probabilities.")
		case "modalities":
			if !isDefault(raw, `["text"]`) {
				e = unsupported(name, `only ["text"]: a result carries text, not audio.`)
			}
		case "audio":
			e = unsupported(name, "a result carries text, not audio.")
		default:
			defaults, solo := soloFields[name]
			switch {
			case !solo:
				e = unknownField(name)
			case !isDefault(raw, defaults...):
				opts[name] = raw
			}
		}
		if e != nil {
			return c, e
		}
	}
	if msgs == nil {
		return c, badRequest("messages", codeInvalidValue, "Missing required parameter: 'messages'.")
	}
	switch {
	case hasMaxTokens && hasCompletion && maxTokens != maxCompletion:
		return c, badRequest("max_tokens", codeInvalidValue, "max_tokens (%d) and max_completion_tokens (%d) disagree: set one of them.", maxTokens, maxCompletion)
	case hasCompletion:
		c.req.MaxOutputTokens = int(maxCompletion)
	case hasMaxTokens:
		c.req.MaxOutputTokens = int(maxTokens)
	}
	if len(opts) > 0 {
		c.req.ProviderOptions, _ = json.Marshal(opts)
	}
	// The conversation as the caller sent it, so that a message's index in
	// an error is the caller's.
	if err := (wire.Request{Messages: msgs}).Validate(); err != nil {
		return c, badRequest("messages", codeInvalidValue, "%s", wireMessage(err))
	}
	c.req.Instructions, msgs = splitInstructions(msgs)
	if prompt, ok := singlePrompt(msgs); ok {
		c.req.Input = prompt
	} else {
		c.req.Messages = msgs
	}
	if err := c.req.Validate(); err != nil {
		return c, badRequest("", codeInvalidValue, "%s", wireMessage(err))
	}
	return c, nil
}

// wireMessage is the text of a wire validation error without its
// "invalid request: " prefix.
func wireMessage(err error) string {
	return strings.TrimPrefix(err.Error(), wire.ErrInvalidRequest.Error()+": ")
}

// decodeMessages reads the messages array, refusing members the wire
// format does not carry.
func decodeMessages(raw json.RawMessage) ([]wire.Message, *apiError) {
	var items []fields
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, badRequest("messages", codeInvalidValue, "Invalid value for messages: want an array of message objects (%v).", err)
	}
	msgs := make([]wire.Message, 0, len(items))
	for i, item := range items {
		param := "messages[" + strconv.Itoa(i) + "]"
		if item == nil {
			return nil, badRequest(param, codeInvalidValue, "Invalid value for %s: want a message object.", param)
		}
		for _, name := range item.names() {
			switch {
			case !messageFields[name]:
				return nil, unknownField(param + "." + name)
			case (name == "refusal" || name == "audio" || name == "function_call") && !isNull(item[name]):
				return nil, unsupported(param+"."+name, "the wire format carries a message's role, content, name, tool_call_id and tool_calls only.")
			}
		}
		var m wire.Message
		if e := decodeField(param, mustJSON(item), &struct {
			*wire.Message
			Refusal      json.RawMessage `json:"refusal"`
			Audio        json.RawMessage `json:"audio"`
			FunctionCall json.RawMessage `json:"function_call"`
		}{Message: &m}, "a message object"); e != nil {
			return nil, e
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// decodeStop reads stop: a string or an array of strings.
func decodeStop(raw json.RawMessage) ([]string, *apiError) {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, badRequest("stop", codeInvalidValue, "Invalid value for stop: want a string or an array of strings.")
	}
	return many, nil
}

// splitInstructions moves a leading system or developer message into
// Instructions, so that requests sharing a system prompt share a provider
// call. The worker sends Instructions as the call's system message, first,
// so the model sees the same turns in the same order. Only a message whose
// content is a plain string and that has no name moves, and only when
// turns follow it; a developer message becomes a system one, which OpenAI
// treats alike (it takes system messages as developer messages for the
// models that have them).
func splitInstructions(msgs []wire.Message) (string, []wire.Message) {
	if len(msgs) < 2 {
		return "", msgs
	}
	first := msgs[0]
	if (first.Role != wire.RoleSystem && first.Role != wire.RoleDeveloper) || first.Name != "" {
		return "", msgs
	}
	text, ok := stringContent(first.Content)
	if !ok || strings.TrimSpace(text) == "" {
		return "", msgs
	}
	return text, msgs[1:]
}

// singlePrompt returns the text of msgs when it is one user message of
// plain string content without a name: the wire's "input", which every
// worker combines.
func singlePrompt(msgs []wire.Message) (string, bool) {
	if len(msgs) != 1 || msgs[0].Role != wire.RoleUser || msgs[0].Name != "" {
		return "", false
	}
	return stringContent(msgs[0].Content)
}

// stringContent returns content when it is a JSON string.
func stringContent(content json.RawMessage) (string, bool) {
	content = bytes.TrimSpace(content)
	if len(content) == 0 || content[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(content, &s) != nil {
		return "", false
	}
	return s, true
}

// chatCompletion is OpenAI's chat.completion object.
type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   chatUsage    `json:"usage"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      json.RawMessage `json:"message"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

type chatUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

var jsonNull = json.RawMessage("null")

// answerMessage is the assistant message of r: the provider's message
// verbatim when the worker passed it on (a request sent alone, with tool
// calls and the rest), else one with the output as its content.
func answerMessage(r wire.Result) json.RawMessage {
	if len(r.Message) > 0 {
		return r.Message
	}
	return mustJSON(struct {
		Role    string          `json:"role"`
		Content string          `json:"content"`
		Refusal json.RawMessage `json:"refusal"`
	}{wire.RoleAssistant, r.Output, jsonNull})
}

// finishReason is r's finish_reason; "stop" when the worker said none.
func finishReason(r wire.Result) string {
	if r.FinishReason != "" {
		return r.FinishReason
	}
	return "stop"
}

func usageOf(u wire.Usage) chatUsage {
	return chatUsage{PromptTokens: u.InputTokens, CompletionTokens: u.OutputTokens, TotalTokens: u.InputTokens + u.OutputTokens}
}

// completion is the chat.completion answering r.
func completion(r wire.Result, model string, created int64) chatCompletion {
	if r.Model != "" {
		model = r.Model
	}
	return chatCompletion{
		ID: r.ID, Object: "chat.completion", Created: created, Model: model,
		Choices: []chatChoice{{Message: answerMessage(r), Logprobs: jsonNull, FinishReason: finishReason(r)}},
		Usage:   usageOf(r.Usage),
	}
}
