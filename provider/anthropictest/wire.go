package anthropictest

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

// ToolName is the name of the tool a batch request must force with
// tool_choice.
const ToolName = "batch_results"

// Request is one decoded Messages request, as Requests returns it.
type Request struct {
	// Model is the requested model.
	Model string
	// MaxTokens is max_tokens.
	MaxTokens int64
	// System is the system prompt, text blocks joined.
	System string
	// CacheControl is true when a system block carries cache_control
	// {"type":"ephemeral"} (see promptcache.go).
	CacheControl bool
	// Messages are the request's messages in order, text blocks joined.
	Messages []Message
	// Tools are the declared tools.
	Tools []Tool
	// IDEnum is the "enum" the batch tool's input_schema gives the results'
	// "id" (the ids the model may answer for); nil when there is none.
	IDEnum []string
	// ToolChoice is the tool_choice object; nil when absent.
	ToolChoice *ToolChoice
	// Temperature and TopP are the sampling parameters; nil when absent.
	Temperature *float64
	TopP        *float64
	// StopSequences are the stop sequences; nil when absent.
	StopSequences []string
	// Output is the schema a batch answer's outputs must match
	// ({"type":"string"} for free text); nil for a plain call.
	Output json.RawMessage
	// Items are a batch request's items; nil for a plain call.
	Items []Item
	// Header holds the request's HTTP headers.
	Header http.Header
	// Body is the raw request body.
	Body []byte
}

// Message is one message of a Request.
type Message struct {
	Role    string
	Content string
}

// Tool is one declared tool of a Request.
type Tool struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"input_schema"`
}

// ToolChoice is a Request's tool_choice.
type ToolChoice struct {
	Type                   string `json:"type"`
	Name                   string `json:"name"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use"`
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

// Result is one entry of a batch answer's tool input {"results":[...]}.
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

// UnmarshalJSON reads an output that is a string into Output, and any
// other JSON into JSON.
func (r *Result) UnmarshalJSON(data []byte) error {
	var raw struct {
		ID     string          `json:"id"`
		Output json.RawMessage `json:"output"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	r.ID, r.Output, r.JSON = raw.ID, "", ""
	if err := json.Unmarshal(raw.Output, &r.Output); err != nil {
		r.JSON = string(raw.Output)
	}
	return nil
}

type wireRequest struct {
	Model         string          `json:"model"`
	MaxTokens     *int64          `json:"max_tokens"`
	System        json.RawMessage `json:"system"`
	Messages      []wireMessage   `json:"messages"`
	Tools         []Tool          `json:"tools"`
	ToolChoice    *ToolChoice     `json:"tool_choice"`
	Temperature   *float64        `json:"temperature"`
	TopP          *float64        `json:"top_p"`
	StopSequences []string        `json:"stop_sequences"`
}

type wireMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// text returns content as text: a string, or the text blocks of an array
// joined.
func text(content json.RawMessage) (string, error) {
	if len(content) == 0 || string(content) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(content, &s); err == nil {
		return s, nil
	}
	var blocks []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(content, &blocks); err != nil {
		return "", fmt.Errorf("content is neither a string nor an array of content blocks: %w", err)
	}
	var out strings.Builder
	for _, b := range blocks {
		if b.Type == "text" {
			out.WriteString(b.Text)
		}
	}
	return out.String(), nil
}

type textBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type toolUseBlock struct {
	Type  string          `json:"type"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

type wireAnswer struct {
	ID           string           `json:"id"`
	Type         string           `json:"type"`
	Role         string           `json:"role"`
	Model        string           `json:"model"`
	Content      []any            `json:"content"`
	StopReason   string           `json:"stop_reason"`
	StopSequence *string          `json:"stop_sequence"`
	StopDetails  *wireStopDetails `json:"stop_details"`
	Usage        wireUsage        `json:"usage"`
}

// wireStopDetails is the stop_details of a refusal.
type wireStopDetails struct {
	Type        string  `json:"type"`
	Category    *string `json:"category"`
	Explanation *string `json:"explanation"`
}

// refusalDetails is what the fake's refusals say.
func refusalDetails() *wireStopDetails {
	category, explanation := "general_harms", "The request was declined under the usage policy."
	return &wireStopDetails{Type: "refusal", Category: &category, Explanation: &explanation}
}

type wireUsage struct {
	InputTokens              int64  `json:"input_tokens"`
	OutputTokens             int64  `json:"output_tokens"`
	CacheCreationInputTokens int64  `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64  `json:"cache_read_input_tokens"`
	ServiceTier              string `json:"service_tier"`
}

// apiCall wraps a Messages or Message Batches handler with what every call
// does: read the body, wait SetDelay, check the x-api-key and
// anthropic-version headers, fail as FailNext says.
func (s *Server) apiCall(h func(w http.ResponseWriter, r *http.Request, body []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, bodyErr := io.ReadAll(http.MaxBytesReader(w, r.Body, fake.MaxBodyBytes))
		if !s.ctl.Wait(r) || !s.ctl.Hang(r) {
			return
		}
		if !s.ctl.KeyAccepted(r.Header.Get("x-api-key")) {
			writeError(w, http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
			return
		}
		if r.Header.Get("anthropic-version") == "" {
			writeError(w, http.StatusBadRequest, "invalid_request_error", "anthropic-version: header is required")
			return
		}
		if status := s.ctl.TakeFailure(); status != 0 {
			writeFailure(w, status)
			return
		}
		if status := s.ctl.Failing(); status != 0 {
			writeFailure(w, status)
			return
		}
		if bodyErr != nil {
			writeError(w, http.StatusRequestEntityTooLarge, "request_too_large", "Request exceeds the maximum allowed number of bytes.")
			return
		}
		h(w, r, body)
	}
}

func (s *Server) serveMessages(w http.ResponseWriter, r *http.Request, body []byte) {
	var req wireRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "There was an issue with the JSON body of your request.")
		return
	}
	rec, err := decodeRequest(req, r.Header, body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", err.Error())
		return
	}
	s.requests.Add(rec)
	if !s.admit(w, rec) {
		return
	}

	switch {
	case req.Model == "":
		writeError(w, http.StatusBadRequest, "invalid_request_error", "model: Field required")
		return
	case req.MaxTokens == nil:
		writeError(w, http.StatusBadRequest, "invalid_request_error", "max_tokens: Field required")
		return
	case *req.MaxTokens < 1:
		writeError(w, http.StatusBadRequest, "invalid_request_error", "max_tokens: Input should be greater than or equal to 1")
		return
	case len(req.Messages) == 0:
		writeError(w, http.StatusBadRequest, "invalid_request_error", "messages: Field required")
		return
	case s.isUnknownModel(req.Model):
		writeError(w, http.StatusNotFound, "not_found_error", "model: "+req.Model)
		return
	}
	user := lastUser(rec.Messages)
	if user == nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "messages: the last message must have role \"user\"")
		return
	}
	use, err := toolUse(req)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", err.Error())
		return
	}
	batch := use.batch
	var items []Item
	inputs := []string{user.Content}
	if batch {
		var wi struct {
			Items []Item `json:"items"`
		}
		dec := json.NewDecoder(strings.NewReader(user.Content))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&wi); err != nil || len(wi.Items) == 0 {
			writeError(w, http.StatusBadRequest, "invalid_request_error", `with the batch_results tool the user message must be {"items":[{"id":"...","input":"..."}]} (or "messages" instead of "input")`)
			return
		}
		items = wi.Items
		inputs = make([]string, len(items))
		for i, it := range items {
			if (it.Input == "") == (len(it.Messages) == 0) {
				writeError(w, http.StatusBadRequest, "invalid_request_error", fmt.Sprintf(`items[%d] must have "input" or "messages"`, i))
				return
			}
			inputs[i] = it.Prompt()
		}
		s.ctl.RecordSize(len(items))
	} else {
		s.ctl.RecordSize(1)
		if rejected, retryable := s.ctl.Rejected(user.Content); rejected {
			if retryable {
				writeFailure(w, 529)
			} else {
				writeError(w, http.StatusBadRequest, "invalid_request_error", "Output blocked by content filtering policy")
			}
			return
		}
	}

	b := s.takeBehaviour()
	if !batch && b.Shuffle && !fake.Sleep(r, time.Duration(rand.IntN(10_001))*time.Microsecond) {
		return
	}
	answer := wireAnswer{
		ID:    "msg_fake" + strconv.FormatInt(s.seq.Add(1), 10),
		Type:  "message",
		Role:  "assistant",
		Model: req.Model,
	}
	var out string
	switch {
	case b.refuse || s.ctl.Refused(inputs...):
		answer.Content, answer.StopReason, answer.StopDetails = []any{}, "refusal", refusalDetails()
	case batch:
		out = resultsJSON(items, use.answer, strings.Contains(rec.System, "JSON object: a string"), b, s.ctl.AnswerAt)
		switch {
		case b.truncate:
			answer.Content = []any{s.toolUse(ToolName, json.RawMessage("{}"))}
			answer.StopReason, out = "max_tokens", out[:len(out)/2]
		case b.noTool:
			answer.Content, answer.StopReason = []any{textBlock{Type: "text", Text: out}}, "end_turn"
		default:
			written, cut := fake.CutAnswer(out, len(items), s.ctl.OutputCap(), s.ctl.CutOff(len(items)), rec.MaxTokens)
			input := json.RawMessage(out)
			answer.StopReason = "tool_use"
			if cut {
				input, out, answer.StopReason = partialInput(out, len(written)), written, "max_tokens"
			}
			answer.Content = []any{s.toolUse(ToolName, input)}
		}
	case b.LeftOut(user.Content):
		answer.Content, answer.StopReason = []any{}, "end_turn"
	case use.tool != nil:
		input, err := fake.Instance(use.tool.InputSchema, nil, Answer(user.Content))
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request_error", "tools: input_schema: "+err.Error())
			return
		}
		out = input
		answer.Content, answer.StopReason = []any{s.toolUse(use.tool.Name, json.RawMessage(input))}, "tool_use"
	default:
		out = Answer(user.Content)
		answer.StopReason = "end_turn"
		for _, stop := range req.StopSequences {
			if i := strings.Index(out, stop); i >= 0 && stop != "" {
				out, answer.StopReason = out[:i], "stop_sequence"
				answer.StopSequence = &stop
			}
		}
		if b.truncate {
			out, answer.StopReason = out[:len(out)/2], "max_tokens"
		} else if written, cut := fake.CutAnswer(out, 1, 0, false, rec.MaxTokens); cut {
			out, answer.StopReason = written, "max_tokens"
		}
		answer.Content = []any{textBlock{Type: "text", Text: out}}
	}

	prompt := len(rec.System)
	for _, m := range rec.Messages {
		prompt += len(m.Content)
	}
	answer.Usage = s.prompts.usage(req, prompt, fake.Tokens(len(out)))
	answer.Usage.ServiceTier = "standard"

	fake.WriteAnswer(w, answer, b.malformed)
}

// toolUse is a tool_use block for the tool name with input.
func (s *Server) toolUse(name string, input json.RawMessage) toolUseBlock {
	return toolUseBlock{Type: "tool_use", ID: "toolu_fake" + strconv.FormatInt(s.seq.Add(1), 10), Name: name, Input: input}
}

// partialInput is the tool input the API makes of a results JSON full that
// the model stopped writing after n bytes: the results written whole, and
// the one it was writing with its output cut short. It is a JSON object, as
// the API parses what the model wrote as far as it goes.
func partialInput(full string, n int) json.RawMessage {
	var all struct {
		Results []Result `json:"results"`
	}
	if err := json.Unmarshal([]byte(full), &all); err != nil {
		return json.RawMessage("{}")
	}
	kept := []Result{}
	used := len(`{"results":[`)
	for _, r := range all.Results {
		size := len(fake.MarshalJSON(r)) + 1
		if used+size > n {
			// The model stopped inside this result: after its id, within its
			// output (the output's closing quote never came).
			prefix := len(`{"id":,"output":"`) + len(fake.MarshalJSON(r.ID))
			if rest := min(n-used-prefix, len(r.Output)-1); rest >= 0 {
				kept = append(kept, Result{ID: r.ID, Output: fake.CutBytes(r.Output, rest)})
			}
			break
		}
		kept = append(kept, r)
		used += size
	}
	return fake.MarshalJSON(struct {
		Results []Result `json:"results"`
	}{kept})
}

// decodeRequest turns the wire request into the record Requests returns.
func decodeRequest(req wireRequest, h http.Header, body []byte) (Request, error) {
	rec := Request{Model: req.Model, Tools: req.Tools, IDEnum: idEnum(req.Tools), ToolChoice: req.ToolChoice, Header: h.Clone(), Body: body,
		Temperature: req.Temperature, TopP: req.TopP, StopSequences: req.StopSequences}
	if use, err := toolUse(req); err == nil && use.batch {
		rec.Output = use.answer.Output
		var wi struct {
			Items []Item `json:"items"`
		}
		if len(req.Messages) > 0 {
			if t, err := text(req.Messages[len(req.Messages)-1].Content); err == nil && json.Unmarshal([]byte(t), &wi) == nil {
				rec.Items = wi.Items
			}
		}
	}
	if req.MaxTokens != nil {
		rec.MaxTokens = *req.MaxTokens
	}
	sys, err := text(req.System)
	if err != nil {
		return Request{}, fmt.Errorf("system: %w", err)
	}
	rec.System, rec.CacheControl = sys, marked(req)
	for i, m := range req.Messages {
		if m.Role != "user" && m.Role != "assistant" {
			return Request{}, fmt.Errorf("messages.%d.role: Input should be 'user' or 'assistant'", i)
		}
		t, err := text(m.Content)
		if err != nil {
			return Request{}, fmt.Errorf("messages.%d.content: %w", i, err)
		}
		rec.Messages = append(rec.Messages, Message{Role: m.Role, Content: t})
	}
	return rec, nil
}

// lastUser returns the last message if its role is user.
func lastUser(msgs []Message) *Message {
	if len(msgs) == 0 || msgs[len(msgs)-1].Role != "user" {
		return nil
	}
	return &msgs[len(msgs)-1]
}

// use is the tool a request makes the model use: the batch tool (a
// combined answer, as answer declares), another tool, or none (text).
type use struct {
	batch  bool
	answer fake.BatchAnswer
	tool   *Tool
}

// toolUse reads which tool req makes the model use: the one tool_choice
// "tool" names (the batch tool makes a combined answer), the first tool
// for "any" and "auto", none for "none" or without tools. It errors when
// its tools or tool_choice are inconsistent.
func toolUse(req wireRequest) (use, error) {
	tools := map[string]Tool{}
	for i, t := range req.Tools {
		if t.Name == "" || len(t.InputSchema) == 0 {
			return use{}, fmt.Errorf("tools.%d: name and input_schema are required", i)
		}
		tools[t.Name] = t
	}
	tc := req.ToolChoice
	switch {
	case len(req.Tools) == 0 || (tc != nil && tc.Type == "none"):
		return use{}, nil
	case tc == nil || tc.Type == "auto" || tc.Type == "any":
		t := req.Tools[0]
		return use{tool: &t}, nil
	case tc.Type != "tool":
		return use{}, fmt.Errorf("tool_choice.type %q is not one the API takes", tc.Type)
	}
	t, ok := tools[tc.Name]
	if !ok {
		return use{}, fmt.Errorf("tool_choice.name: tool %q not found in tools", tc.Name)
	}
	if t.Name != ToolName {
		return use{tool: &t}, nil
	}
	switch answer, same, err := fake.ParseBatchSchema(t.InputSchema); {
	case err != nil:
		return use{}, fmt.Errorf("tools: input_schema: %w", err)
	case !same:
		return use{}, errors.New("tools: the batch_results input_schema is not the batch schema")
	default:
		return use{batch: true, answer: answer}, nil
	}
}

// idEnum is the enum of ids the batch tool's input_schema declares, nil
// when it has none.
func idEnum(tools []Tool) []string {
	for _, t := range tools {
		if t.Name == ToolName {
			answer, _, _ := fake.ParseBatchSchema(t.InputSchema)
			return answer.IDs
		}
	}
	return nil
}

// resultsJSON builds the tool input answering items as b and answerAt
// (SetWrongAfter) say: each output the answer to the item's prompt, as JSON
// valid against the output schema when it is structured, or as the text
// of a JSON object when object says the instructions ask for that.
func resultsJSON(items []Item, answer fake.BatchAnswer, object bool, b behaviour, answerAt func(i, n int, right string) string) string {
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
	return string(fake.MarshalJSON(struct {
		Results []Result `json:"results"`
	}{results}))
}

// admit charges the call against SetRateLimit's limits, its prompt
// tokens counted as in the answer's usage, and writes the rate-limit
// headers. A refused call is answered 429 rate_limit_error with
// retry-after, as the real API refuses it, and admit returns false.
func (s *Server) admit(w http.ResponseWriter, rec Request) bool {
	prompt := len(rec.System)
	for _, m := range rec.Messages {
		prompt += len(m.Content)
	}
	st, ok := s.ctl.Admit(fake.Tokens(prompt))
	fake.AnthropicRateHeaders(w.Header(), st, time.Now())
	if !ok {
		writeError(w, http.StatusTooManyRequests, "rate_limit_error", "This request would exceed your organization's rate limit. Please reduce the prompt length or the maximum tokens requested, or try again later.")
	}
	return ok
}

// writeFailure answers status with an error body like the real API's.
func writeFailure(w http.ResponseWriter, status int) {
	typ, msg := "invalid_request_error", "Injected failure."
	switch {
	case status == http.StatusUnauthorized:
		typ, msg = "authentication_error", "invalid x-api-key"
	case status == http.StatusForbidden:
		typ, msg = "permission_error", "Your API key does not have permission to use the specified resource."
	case status == http.StatusNotFound:
		typ, msg = "not_found_error", "The requested resource could not be found."
	case status == http.StatusRequestEntityTooLarge:
		typ, msg = "request_too_large", "Request exceeds the maximum allowed number of bytes."
	case status == http.StatusTooManyRequests:
		w.Header().Set("retry-after", "1")
		typ, msg = "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."
	case status == 529:
		typ, msg = "overloaded_error", "Overloaded"
	case status == http.StatusGatewayTimeout:
		typ, msg = "timeout_error", "Request timed out."
	case status >= 500:
		typ, msg = "api_error", "Internal server error"
	}
	writeError(w, status, typ, msg)
}

// writeError answers with the API's error JSON.
func writeError(w http.ResponseWriter, status int, typ, msg string) {
	fake.WriteJSON(w, status, map[string]any{
		"type":  "error",
		"error": map[string]string{"type": typ, "message": msg},
	})
}
