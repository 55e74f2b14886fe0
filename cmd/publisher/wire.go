package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Headers, subjects and statuses of the wire format shared with the worker.
const (
	// HeaderReplyTo names the subject the worker publishes a request's result to.
	HeaderReplyTo = "Batch-Reply-To"
	// HeaderMsgID is JetStream's de-duplication header; the publisher sets it
	// to "<run-id>-<n>" on every request.
	HeaderMsgID = "Nats-Msg-Id"

	requestsPrefix     = "ai.requests."
	urgentPrefix       = "ai.urgent."
	resultsPrefix      = "ai.results."
	publisherReplyBase = "ai.results.publisher."

	statusOK    = "ok"
	statusError = "error"
)

// Request is the JSON body of one AI request, as published to
// ai.requests.<topic> or ai.urgent.<topic>.
type Request struct {
	// ID identifies the request in its result. The publisher fills it with
	// "<run-id>-<n>" when the input does not set it.
	ID string `json:"id,omitempty"`
	// Input is the text to send to the model. Required.
	Input string `json:"input"`
	// Instructions is the system prompt; requests with equal Instructions and
	// Model can share one provider call.
	Instructions string `json:"instructions,omitempty"`
	// Model overrides the worker's default model.
	Model string `json:"model,omitempty"`
	// MaxOutputTokens caps the answer's length; 0 means the worker's default.
	MaxOutputTokens int `json:"max_output_tokens,omitempty"`
	// Metadata is an arbitrary JSON object the worker copies into the result.
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// validate reports the first thing wrong with r.
func (r *Request) validate() error {
	if strings.TrimSpace(r.Input) == "" {
		return errors.New(`"input" is required`)
	}
	if r.MaxOutputTokens < 0 {
		return fmt.Errorf(`"max_output_tokens" is %d, must be >= 0`, r.MaxOutputTokens)
	}
	if m := bytes.TrimSpace(r.Metadata); len(m) > 0 {
		switch {
		case bytes.Equal(m, []byte("null")):
			r.Metadata = nil
		case m[0] != '{':
			return errors.New(`"metadata" must be a JSON object`)
		}
	}
	return nil
}

// Result is the JSON body the worker publishes to a request's Batch-Reply-To
// subject.
type Result struct {
	// ID is the ID of the request this result answers.
	ID string `json:"id"`
	// Status is "ok" or "error".
	Status string `json:"status"`
	// Output is the model's answer when Status is "ok".
	Output string `json:"output,omitempty"`
	// Error says what went wrong when Status is "error".
	Error string `json:"error,omitempty"`
	// Model is the model that answered.
	Model string `json:"model,omitempty"`
	// Metadata is the request's metadata, copied.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// Usage is the request's share of the provider's token usage.
	Usage Usage `json:"usage"`
	// Batch describes the provider call that carried the request.
	Batch BatchInfo `json:"batch"`
	// QueuedMS is how long the request waited in the worker before its batch
	// was sent, in milliseconds.
	QueuedMS int64 `json:"queued_ms"`
	// Attempts is how many provider calls the request took.
	Attempts int `json:"attempts"`
}

// Usage counts tokens.
type Usage struct {
	// InputTokens is the number of prompt tokens.
	InputTokens int64 `json:"input_tokens"`
	// OutputTokens is the number of generated tokens.
	OutputTokens int64 `json:"output_tokens"`
}

// BatchInfo describes one combined provider call.
type BatchInfo struct {
	// ID identifies the batch; results that share it came from one call.
	ID string `json:"id"`
	// Size is the number of requests in the batch.
	Size int `json:"size"`
	// Trigger is why the worker sent the batch ("size", "interval", ...).
	Trigger string `json:"trigger"`
}

// defaultReplyTo derives the results subject for a request subject without
// --wait: ai.requests.<topic> and ai.urgent.<topic> answer to
// ai.results.<topic>. ok is false for subjects outside those prefixes.
func defaultReplyTo(subject string) (replyTo string, ok bool) {
	for _, p := range []string{requestsPrefix, urgentPrefix} {
		if topic, found := strings.CutPrefix(subject, p); found && topic != "" {
			return resultsPrefix + topic, true
		}
	}
	return "", false
}

// validSubject reports whether s can be published to: non-empty tokens,
// no wildcards, no whitespace.
func validSubject(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n*>") {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" {
			return false
		}
	}
	return true
}
