package openaitest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aibatch/aibatch/provider/internal/fake"
)

// SchemaName is the name the batch json_schema response_format must carry.
const SchemaName = "batch_results"

// Request is one decoded chat completion request, as Requests returns it.
type Request struct {
	// Model is the requested model.
	Model string
	// Messages are the request's messages in order, text parts joined.
	Messages []Message
	// ResponseFormat is the raw response_format object; nil when absent.
	ResponseFormat json.RawMessage
	// IDEnum is the "enum" the batch json_schema gives the results' "id"
	// (the ids the model may answer for); nil when there is none.
	IDEnum []string
	// MaxCompletionTokens is max_completion_tokens; 0 when absent.
	MaxCompletionTokens int64
	// ServiceTier and PromptCacheKey are service_tier and
	// prompt_cache_key; empty when absent.
	ServiceTier    string
	PromptCacheKey string
	// Temperature, TopP and Seed are the sampling parameters; nil when
	// absent.
	Temperature *float64
	TopP        *float64
	Seed        *int64
	// Stop holds the stop sequences; nil when absent.
	Stop []string
	// Output is the schema a batch answer's outputs must match
	// ({"type":"string"} for free text); nil for a plain call.
	Output json.RawMessage
	// Items are a batch request's items; nil for a plain call.
	Items []Item
	// Body is the raw request body.
	Body []byte
}

// Message is one chat message of a Request.
type Message struct {
	Role    string
	Content string
}

// Item is one entry of a batch request's user message {"items":[...]}:
// an input, or a conversation (Messages), and the item's own cap.
type Item struct {
	ID              string `json:"id"`
	Input           string `json:"input,omitempty"`
	Messages        []Turn `json:"messages,omitempty"`
	MaxOutputTokens int    `json:"max_output_tokens,omitempty"`
}

// Turn is one turn of an item's conversation.
type Turn struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Prompt is what the fake model answers for the item: its input, or the
// content of its conversation's last user turn.
func (it Item) Prompt() string {
	if len(it.Messages) == 0 {
		return it.Input
	}
	for i := len(it.Messages) - 1; i >= 0; i-- {
		if it.Messages[i].Role == "user" {
			return it.Messages[i].Content
		}
	}
	return ""
}

// Result is one entry of a batch answer's content {"results":[...]}.
type Result struct {
	ID     string `json:"id"`
	Output string `json:"output"`
	// JSON, when set, is the output as a JSON value (structured output)
	// instead of the string Output.
	JSON string `json:"-"`
}

// MarshalJSON writes the output as JSON when it is set, else as Output.
func (r Result) MarshalJSON() ([]byte, error) {
	out := json.RawMessage(fake.MarshalJSON(r.Output))
	if r.JSON != "" {
		out = json.RawMessage(r.JSON)
	}
	return fake.MarshalJSON(struct {
		ID     string          `json:"id"`
		Output json.RawMessage `json:"output"`
	}{r.ID, out}), nil
}

// wireRequest is the part of the chat completion request body the fake reads.
type wireRequest struct {
	Model               string          `json:"model"`
	Messages            []wireMessage   `json:"messages"`
	ResponseFormat      json.RawMessage `json:"response_format"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	ServiceTier         string          `json:"service_tier"`
	PromptCacheKey      string          `json:"prompt_cache_key"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	Seed                *int64          `json:"seed"`
	Stop                json.RawMessage `json:"stop"`
	Tools               []wireTool      `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	N                   *int            `json:"n"`
	Logprobs            *bool           `json:"logprobs"`
}

type wireMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// wireTool is a function tool of a request.
type wireTool struct {
	Type     string `json:"type"`
	Function struct {
		Name       string          `json:"name"`
		Parameters json.RawMessage `json:"parameters"`
	} `json:"function"`
}

// text returns the message content, joining text parts of an array content.
func (m wireMessage) text() (string, error) {
	if len(m.Content) == 0 || string(m.Content) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(m.Content, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(m.Content, &parts); err != nil {
		return "", fmt.Errorf("content is neither a string nor an array of parts: %w", err)
	}
	var out string
	for _, p := range parts {
		if p.Type == "text" {
			out += p.Text
		}
	}
	return out, nil
}

type wireResponseFormat struct {
	Type       string `json:"type"`
	JSONSchema *struct {
		Name   string          `json:"name"`
		Strict *bool           `json:"strict"`
		Schema json.RawMessage `json:"schema"`
	} `json:"json_schema"`
}

type wireItems struct {
	Items []Item `json:"items"`
}

// format is what a request's response_format asks.
type format struct {
	// batch: a combined answer, as answer declares.
	batch  bool
	answer fake.BatchAnswer
	// typ is the response_format type of a plain call ("text" when none),
	// schema its json_schema.
	typ    string
	schema json.RawMessage
}

type wireResults struct {
	Results []Result `json:"results"`
}

type wireCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []wireChoice `json:"choices"`
	Usage   wireUsage    `json:"usage"`
	// ServiceTier is the tier that answered (costs.go).
	ServiceTier string `json:"service_tier,omitempty"`
}

type wireChoice struct {
	Index        int             `json:"index"`
	Message      wireAnswer      `json:"message"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

type wireAnswer struct {
	Role      string         `json:"role"`
	Content   *string        `json:"content"`
	Refusal   *string        `json:"refusal"`
	ToolCalls []wireToolCall `json:"tool_calls,omitempty"`
}

// wireToolCall is a tool call of an answer.
type wireToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type wireUsage struct {
	PromptTokens        int64             `json:"prompt_tokens"`
	CompletionTokens    int64             `json:"completion_tokens"`
	TotalTokens         int64             `json:"total_tokens"`
	PromptTokensDetails wirePromptDetails `json:"prompt_tokens_details"`
}

type wirePromptDetails struct {
	CachedTokens int64 `json:"cached_tokens"`
}

// apiError is an OpenAI error body's "error" object.
type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// apiCall wraps a handler with what every call does: read the body, wait
// SetDelay, check the bearer token, fail as FailNext says, and answer a body
// that could not be read (too large) with status and msg.
func (s *Server) apiCall(status int, msg string, h func(w http.ResponseWriter, r *http.Request, body []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, bodyErr := io.ReadAll(http.MaxBytesReader(w, r.Body, fake.MaxBodyBytes))
		if !s.ctl.Wait(r) || !s.ctl.Hang(r) {
			return
		}
		if key, ok := bearer(r); !ok || !s.ctl.KeyAccepted(key) {
			writeError(w, http.StatusUnauthorized, "Incorrect API key provided: "+mask(key)+". You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error", "", "invalid_api_key")
			return
		}
		if failure := s.ctl.TakeFailure(); failure != 0 {
			writeFailure(w, failure)
			return
		}
		if failure := s.ctl.Failing(); failure != 0 {
			writeFailure(w, failure)
			return
		}
		if bodyErr != nil {
			writeError(w, status, msg, "invalid_request_error", "", "")
			return
		}
		h(w, r, body)
	}
}

func (s *Server) serveChatCompletions(w http.ResponseWriter, r *http.Request, body []byte) {
	var req wireRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)", "invalid_request_error", "", "")
		return
	}
	rec, err := decodeRequest(req, body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "invalid_request_error", "messages", "")
		return
	}
	f, ferr := readFormat(req.ResponseFormat)
	var items []Item
	var itemsErr error
	user := lastUser(rec.Messages)
	if ferr == nil && f.batch && user != nil {
		items, itemsErr = batchItems(user.Content)
		rec.Items, rec.Output = items, f.answer.Output
	}
	s.requests.Add(rec)
	if !s.admit(w, rec) {
		return
	}

	switch {
	case req.Model == "":
		writeError(w, http.StatusBadRequest, "you must provide a model parameter", "invalid_request_error", "model", "")
		return
	case s.isUnknownModel(req.Model):
		writeError(w, http.StatusNotFound, fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", req.Model), "invalid_request_error", "", "model_not_found")
		return
	}
	if status, e := s.tierFailure(req.Model, req.ServiceTier); status != 0 {
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		fake.WriteJSON(w, status, map[string]apiError{"error": e})
		return
	}
	switch {
	case user == nil:
		writeError(w, http.StatusBadRequest, "messages must contain a user message", "invalid_request_error", "messages", "")
		return
	case ferr != nil:
		writeError(w, http.StatusBadRequest, ferr.Error(), "invalid_request_error", "response_format", "")
		return
	case itemsErr != nil:
		writeError(w, http.StatusBadRequest, itemsErr.Error(), "invalid_request_error", "messages", "")
		return
	}

	if f.batch {
		s.ctl.RecordSize(len(items))
	} else {
		s.ctl.RecordSize(1)
		if rejected, retryable := s.ctl.Rejected(user.Content); rejected {
			if retryable {
				writeFailure(w, http.StatusServiceUnavailable)
			} else {
				writeError(w, http.StatusBadRequest, "Invalid prompt: your prompt was flagged as potentially violating our usage policy.", "invalid_request_error", "", "invalid_prompt")
			}
			return
		}
	}

	b := s.takeBehaviour()
	if !f.batch && b.Shuffle && !fake.Sleep(r, time.Duration(rand.IntN(10_001))*time.Microsecond) {
		return
	}
	inputs := []string{user.Content}
	var content string
	var toolCalls []wireToolCall
	finish := "stop"
	switch {
	case f.batch:
		inputs = make([]string, len(items))
		for i, it := range items {
			inputs[i] = it.Prompt()
		}
		content = batchContent(items, f.answer, objectOutputs(rec.Messages), b, s.ctl.AnswerAt)
	default:
		content, toolCalls, finish, err = plainContent(req, rec, f, user.Content, s.seq.Add(1))
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error(), "invalid_request_error", "", "")
			return
		}
	}

	answer := wireAnswer{Role: "assistant", Content: &content, ToolCalls: toolCalls}
	if toolCalls != nil {
		answer.Content = nil
	}
	switch {
	case b.refuse || s.ctl.Refused(inputs...):
		refusal := "I'm sorry, but I can't help with that request."
		answer.Content, answer.Refusal, answer.ToolCalls = nil, &refusal, nil
		content, finish = refusal, "stop"
	case b.truncate:
		content = content[:len(content)/2]
		finish = "length"
	case b.malformed && f.batch:
		content = `{"results": [{"id": "oops", "output": ` // cut off: not JSON
	case toolCalls != nil:
	default:
		var cut bool
		if f.batch {
			content, cut = fake.CutAnswer(content, len(items), s.ctl.OutputCap(), s.ctl.CutOff(len(items)), rec.MaxCompletionTokens)
		} else {
			content, cut = fake.CutAnswer(content, 1, 0, false, rec.MaxCompletionTokens)
		}
		if cut {
			finish = "length"
		}
	}

	var prompt int
	for _, m := range rec.Messages {
		prompt += len(m.Content)
	}
	usage := wireUsage{PromptTokens: fake.Tokens(prompt), CompletionTokens: fake.Tokens(len(content))}
	usage.PromptTokensDetails.CachedTokens = s.cachedTokens(rec)
	logprobs := json.RawMessage("null")
	if req.Logprobs != nil && *req.Logprobs {
		logprobs = json.RawMessage(`{"content":[],"refusal":null}`)
	}
	n := 1
	if req.N != nil && *req.N > 1 && !f.batch {
		n = *req.N
	}
	choices := make([]wireChoice, n)
	for i := range choices {
		choices[i] = wireChoice{Index: i, Message: answer, Logprobs: logprobs, FinishReason: finish}
	}
	if !f.batch && b.LeftOut(user.Content) {
		choices, usage.CompletionTokens = []wireChoice{}, 0
	}
	usage.TotalTokens = usage.PromptTokens + usage.CompletionTokens

	completion := wireCompletion{
		ID:      "chatcmpl-fake" + strconv.FormatInt(s.seq.Add(1), 10),
		Object:  "chat.completion",
		Created: time.Now().Unix(),
		Model:   req.Model,
		Choices: choices,
		Usage:   usage,

		ServiceTier: answeredTier(req.ServiceTier),
	}
	fake.WriteAnswer(w, completion, !f.batch && b.malformed) // a batch answer's content is malformed instead
}

// batchItems reads the items of a batch request's user message.
func batchItems(content string) ([]Item, error) {
	var wi wireItems
	dec := json.NewDecoder(strings.NewReader(content))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&wi); err != nil || len(wi.Items) == 0 {
		return nil, errors.New(`with response_format batch_results the user message must be {"items":[{"id":"...","input":"..."}]} (or "messages" instead of "input")`)
	}
	for i, it := range wi.Items {
		if (it.Input == "") == (len(it.Messages) == 0) {
			return nil, fmt.Errorf(`items[%d] must have "input" or "messages"`, i)
		}
	}
	return wi.Items, nil
}

// objectOutputs reports whether the system message asks for each output
// to be the text of a JSON object (a json_object batch), as a model reads
// its instructions.
func objectOutputs(msgs []Message) bool {
	for _, m := range msgs {
		if m.Role == "system" && strings.Contains(m.Content, "JSON object: a string") {
			return true
		}
	}
	return false
}

// plainContent is the answer to a plain call for prompt: a tool call when
// the request declares tools (and does not turn them off), else text, a
// JSON object or an instance of the json_schema, cut at the first stop
// sequence. It returns the content, the tool calls and the finish reason.
func plainContent(req wireRequest, rec Request, f format, prompt string, seq int64) (string, []wireToolCall, string, error) {
	if len(req.Tools) > 0 && string(req.ToolChoice) != `"none"` {
		t := req.Tools[0].Function
		args, err := fake.Instance(t.Parameters, nil, Answer(prompt))
		if len(t.Parameters) == 0 {
			args, err = "{}", nil
		}
		if err != nil {
			return "", nil, "", fmt.Errorf("tools[0].function.parameters: %w", err)
		}
		call := wireToolCall{ID: "call_fake" + strconv.FormatInt(seq, 10), Type: "function"}
		call.Function.Name, call.Function.Arguments = t.Name, args
		return "", []wireToolCall{call}, "tool_calls", nil
	}
	switch f.typ {
	case "json_schema":
		out, err := fake.Instance(f.schema, nil, Answer(prompt))
		return out, nil, "stop", err
	case "json_object":
		return string(fake.MarshalJSON(map[string]string{"output": Answer(prompt)})), nil, "stop", nil
	}
	out := Answer(prompt)
	for _, stop := range rec.Stop {
		if i := strings.Index(out, stop); i >= 0 {
			out = out[:i]
		}
	}
	return out, nil, "stop", nil
}

// admit charges the call against SetRateLimit's limits, its prompt
// tokens counted as in the answer's usage, and writes the rate-limit
// headers. A refused call is answered 429 with Retry-After, as the real
// API refuses it, and admit returns false.
func (s *Server) admit(w http.ResponseWriter, rec Request) bool {
	var prompt int
	for _, m := range rec.Messages {
		prompt += len(m.Content)
	}
	st, ok := s.ctl.Admit(fake.Tokens(prompt))
	fake.OpenAIRateHeaders(w.Header(), st)
	if !ok {
		wait := strconv.FormatFloat(st.RetryAfter.Seconds(), 'f', 3, 64)
		writeError(w, http.StatusTooManyRequests, "Rate limit reached for requests. Please try again in "+wait+"s.", "requests", "", "rate_limit_exceeded")
	}
	return ok
}

// bearer returns the call's bearer token, and false when it has none.
func bearer(r *http.Request) (string, bool) {
	const prefix = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(prefix) || h[:len(prefix)] != prefix {
		return "", false
	}
	return h[len(prefix):], true
}

// mask hides most of key as the real API does when it quotes a wrong key:
// its first 3 and last 4 characters around asterisks.
func mask(key string) string {
	if len(key) <= 8 {
		return strings.Repeat("*", len(key))
	}
	return key[:3] + strings.Repeat("*", len(key)-7) + key[len(key)-4:]
}

// decodeRequest turns the wire request into the record Requests returns.
func decodeRequest(req wireRequest, body []byte) (Request, error) {
	rec := Request{Model: req.Model, ResponseFormat: req.ResponseFormat, Body: body,
		ServiceTier: req.ServiceTier, PromptCacheKey: req.PromptCacheKey,
		Temperature: req.Temperature, TopP: req.TopP, Seed: req.Seed}
	if string(rec.ResponseFormat) == "null" {
		rec.ResponseFormat = nil
	}
	if f, err := readFormat(rec.ResponseFormat); err == nil && f.batch {
		rec.IDEnum = f.answer.IDs
	}
	if req.MaxCompletionTokens != nil {
		rec.MaxCompletionTokens = *req.MaxCompletionTokens
	}
	if len(req.Stop) > 0 && string(req.Stop) != "null" {
		var one string
		if json.Unmarshal(req.Stop, &one) == nil {
			rec.Stop = []string{one}
		} else if err := json.Unmarshal(req.Stop, &rec.Stop); err != nil {
			return Request{}, fmt.Errorf("stop: want a string or an array of strings: %w", err)
		}
	}
	for i, m := range req.Messages {
		text, err := m.text()
		if err != nil {
			return Request{}, fmt.Errorf("messages[%d]: %w", i, err)
		}
		rec.Messages = append(rec.Messages, Message{Role: m.Role, Content: text})
	}
	return rec, nil
}

func lastUser(msgs []Message) *Message {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			return &msgs[i]
		}
	}
	return nil
}

// readFormat reads a response_format: a batch answer (a strict
// json_schema named "batch_results" whose schema is the batch schema), or
// a plain call's text, json_object or json_schema. It errors when it is a
// response_format the fake does not serve.
func readFormat(raw json.RawMessage) (format, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return format{typ: "text"}, nil
	}
	var rf wireResponseFormat
	if err := json.Unmarshal(raw, &rf); err != nil {
		return format{}, fmt.Errorf("invalid response_format: %w", err)
	}
	switch rf.Type {
	case "text", "json_object":
		return format{typ: rf.Type}, nil
	case "json_schema":
	default:
		return format{}, fmt.Errorf("response_format type %q is not supported; use text, json_object or json_schema", rf.Type)
	}
	js := rf.JSONSchema
	if js == nil || js.Name == "" || len(js.Schema) == 0 {
		return format{}, errors.New("response_format json_schema needs a name and a schema")
	}
	if js.Name != SchemaName {
		return format{typ: rf.Type, schema: js.Schema}, nil
	}
	if js.Strict == nil || !*js.Strict {
		return format{}, fmt.Errorf("response_format must be a strict json_schema named %q", SchemaName)
	}
	switch answer, same, err := fake.ParseBatchSchema(js.Schema); {
	case err != nil:
		return format{}, fmt.Errorf("invalid response_format.json_schema.schema: %w", err)
	case !same:
		return format{}, errors.New("response_format.json_schema.schema is not the batch_results schema")
	default:
		return format{batch: true, answer: answer, typ: rf.Type}, nil
	}
}

// batchContent builds the JSON content answering items as b and answerAt
// (SetWrongAfter) say: each output the answer to the item's prompt, as
// JSON valid against the output schema when it is structured, or as the
// text of a JSON object when object says the instructions ask for that.
func batchContent(items []Item, answer fake.BatchAnswer, object bool, b behaviour, answerAt func(i, n int, right string) string) string {
	structured := answer.Structured()
	results := make([]Result, 0, len(items))
	for i, it := range items[:b.Kept(len(items))] {
		if b.LeftOut(it.Prompt()) {
			continue
		}
		text := answerAt(i, len(items), Answer(it.Prompt()))
		res := Result{ID: it.ID, Output: text}
		switch {
		case structured:
			out, err := fake.Instance(answer.Output, answer.Root, text)
			if err != nil {
				out = string(fake.MarshalJSON(err.Error())) // the model could not follow the schema
			}
			res.JSON = out
		case object:
			res.Output = string(fake.MarshalJSON(map[string]string{"output": text}))
		}
		results = append(results, res)
	}
	results = b.Finish(results, func(x, y Result) bool { return x == y }, func(first Result) (Result, Result) {
		again := first
		again.Output = "repeated: " + first.Output
		return Result{ID: "not-asked", Output: Answer("not asked")}, again
	})
	return string(fake.MarshalJSON(wireResults{Results: results}))
}

// writeFailure answers status with an error body like the real API's.
func writeFailure(w http.ResponseWriter, status int) {
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	fake.WriteJSON(w, status, map[string]apiError{"error": failure(status)})
}

// failure is the error object the real API answers status with.
func failure(status int) apiError {
	typ, code, msg := "invalid_request_error", "", "Injected failure."
	switch {
	case status == http.StatusUnauthorized:
		code, msg = "invalid_api_key", "Incorrect API key provided."
	case status == http.StatusForbidden:
		typ, msg = "permission_error", "You are not allowed to make this request."
	case status == http.StatusNotFound:
		code, msg = "model_not_found", "The model does not exist or you do not have access to it."
	case status == http.StatusTooManyRequests:
		typ, code, msg = "requests", "rate_limit_exceeded", "Rate limit reached. Please try again in 1s."
	case status >= 500:
		typ, msg = "server_error", "The server had an error while processing your request. Sorry about that!"
	}
	return newAPIError(msg, typ, "", code)
}

// newAPIError is an error object; empty param and code are null.
func newAPIError(msg, typ, param, code string) apiError {
	e := apiError{Message: msg, Type: typ}
	if param != "" {
		e.Param = &param
	}
	if code != "" {
		e.Code = &code
	}
	return e
}

// writeError answers with OpenAI's error JSON; empty param and code are null.
func writeError(w http.ResponseWriter, status int, msg, typ, param, code string) {
	fake.WriteJSON(w, status, map[string]apiError{"error": newAPIError(msg, typ, param, code)})
}
