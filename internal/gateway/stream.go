package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/aibatch/aibatch/wire"
)

// chunk is OpenAI's chat.completion.chunk object.
type chunk struct {
	ID      string          `json:"id"`
	Object  string          `json:"object"`
	Created int64           `json:"created"`
	Model   string          `json:"model"`
	Choices []chunkChoice   `json:"choices"`
	Usage   json.RawMessage `json:"usage,omitempty"`
}

type chunkChoice struct {
	Index        int             `json:"index"`
	Delta        json.RawMessage `json:"delta"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
}

// streamChunks are the chunks that stream r, as OpenAI streams an answer:
// the role, the content (with tool calls or a refusal, if any), an empty
// delta with the finish_reason, and, when includeUsage, a last chunk with
// no choices and the usage (every chunk before it then has "usage": null).
func streamChunks(r wire.Result, model string, created int64, includeUsage bool) []chunk {
	if r.Model != "" {
		model = r.Model
	}
	base := chunk{ID: r.ID, Object: "chat.completion.chunk", Created: created, Model: model}
	if includeUsage {
		base.Usage = jsonNull
	}
	with := func(delta json.RawMessage, finish *string) chunk {
		c := base
		c.Choices = []chunkChoice{{Delta: delta, Logprobs: jsonNull, FinishReason: finish}}
		return c
	}
	out := []chunk{with(json.RawMessage(`{"role":"assistant","content":""}`), nil)}
	if d := contentDelta(answerMessage(r)); d != nil {
		out = append(out, with(d, nil))
	}
	finish := finishReason(r)
	out = append(out, with(json.RawMessage(`{}`), &finish))
	if includeUsage {
		last := base
		last.Choices = []chunkChoice{}
		last.Usage = mustJSON(usageOf(r.Usage))
		out = append(out, last)
	}
	return out
}

// contentDelta is the delta that carries message's content, refusal and
// tool calls (each numbered by "index", as stream readers expect), or nil
// when it has none of them.
func contentDelta(message json.RawMessage) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(message, &m) != nil {
		return nil
	}
	delete(m, "role")
	for k, v := range m {
		if isNull(v) {
			delete(m, k)
		}
	}
	if calls, ok := m["tool_calls"]; ok {
		var list []map[string]json.RawMessage
		if json.Unmarshal(calls, &list) == nil {
			for i, c := range list {
				c["index"] = mustJSON(i)
			}
			m["tool_calls"] = mustJSON(list)
		}
	}
	if len(m) == 0 {
		return nil
	}
	return mustJSON(m)
}

// writeStream answers chunks as server-sent events, then "data: [DONE]".
func writeStream(w http.ResponseWriter, chunks []chunk) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	for _, c := range chunks {
		buf.WriteString("data: ")
		buf.Write(mustJSON(c))
		buf.WriteString("\n\n")
	}
	buf.WriteString("data: [DONE]\n\n")
	_, _ = w.Write(buf.Bytes())
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}
