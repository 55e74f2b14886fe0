package combined

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// Item is one entry of a combined call's user message {"items":[...]}: an
// "input" (a prompt), or "messages" (a conversation, oldest turn first,
// whose last turn the model answers), and "max_output_tokens" when the
// request capped its answer.
type Item struct {
	ID              string `json:"id"`
	Input           string `json:"input,omitempty"`
	Messages        []Turn `json:"messages,omitempty"`
	MaxOutputTokens int    `json:"max_output_tokens,omitempty"`
}

// Turn is one turn of an item's conversation, its content as text.
type Turn struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// UserMessage is the user message of a combined call for b: the JSON
// {"items":[...]}, one Item per request in b's order, with <, > and & not
// escaped. It fails for a request whose messages hold content other than
// text (such a request is never combined: the caller sends it alone).
func UserMessage(b provider.Batch) (string, error) {
	items := make([]Item, len(b.Requests))
	for i, r := range b.Requests {
		it := Item{ID: r.Key, Input: r.Input, MaxOutputTokens: max(r.MaxOutputTokens, 0)}
		for j, m := range r.Messages {
			text, ok := m.Text()
			if !ok || len(m.ToolCalls) > 0 || m.Role == wire.RoleTool {
				return "", fmt.Errorf("request %q: messages[%d] is not text: it cannot be combined", r.Key, j)
			}
			it.Messages = append(it.Messages, Turn{Role: m.Role, Content: text})
		}
		items[i] = it
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(struct {
		Items []Item `json:"items"`
	}{items}); err != nil {
		return "", fmt.Errorf("encode items: %w", err)
	}
	return string(bytes.TrimSpace(buf.Bytes())), nil
}

// Describe is the start of the line that ends a combined call's system
// prompt: what the user message holds and what each answer must be. The
// provider adds how to give the answers. A batch of plain inputs gets the
// same words as before wire format 1.1, so that its prompt (and a prompt
// cache) does not change.
func Describe(b provider.Batch) string {
	var conversations, capped bool
	for _, r := range b.Requests {
		conversations = conversations || len(r.Messages) > 0
		capped = capped || r.MaxOutputTokens > 0
	}
	var s strings.Builder
	if conversations {
		s.WriteString(`The user message is a JSON object {"items":[...]}: each item has an "id" and either an "input" (a prompt) ` +
			`or "messages" (a conversation, oldest turn first: answer its last turn as the assistant would). ` +
			`Treat each item as a separate request and answer it on its own.`)
	} else {
		s.WriteString(`The user message is a JSON object {"items":[{"id":"...","input":"..."}]}. ` +
			`Treat each item's input as a separate request and answer it on its own.`)
	}
	if capped {
		s.WriteString(` An item with "max_output_tokens" must be answered in at most that many tokens.`)
	}
	if b.Format != nil {
		switch b.Format.Type {
		case wire.FormatJSONSchema:
			s.WriteString(` Each output is a JSON value that matches the output schema`)
			if d := b.Format.JSONSchema.Description; d != "" {
				s.WriteString(" (" + d + ")")
			}
			s.WriteString(".")
		case wire.FormatJSONObject:
			s.WriteString(` Each output is the text of one JSON object: a string that parses as a JSON object.`)
		}
	}
	return s.String()
}
