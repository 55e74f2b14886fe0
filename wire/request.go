package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Request is the JSON body producers publish to a request subject.
type Request struct {
	// ID identifies the request to its producer. When empty, the worker uses
	// the Batch-Request-Id header, then Nats-Msg-Id, then the stream
	// sequence.
	ID string `json:"id,omitempty"`
	// Input is the prompt; required.
	Input string `json:"input"`
	// Instructions is the system prompt; requests are combined only with
	// others that have the same Instructions and Model.
	Instructions string `json:"instructions,omitempty"`
	// Model defaults to the worker's MODEL.
	Model string `json:"model,omitempty"`
	// MaxOutputTokens caps the answer; 0 means the provider's default.
	MaxOutputTokens int `json:"max_output_tokens,omitempty"`
	// Metadata is any JSON value, returned unchanged in the result.
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// ErrInvalidRequest is wrapped by every error DecodeRequest and
// Request.Validate return: the request can never succeed.
var ErrInvalidRequest = errors.New("invalid request")

// Validate reports the first thing that makes r a request the worker
// refuses, wrapping ErrInvalidRequest.
func (r Request) Validate() error {
	if strings.TrimSpace(r.Input) == "" {
		return fmt.Errorf("%w: \"input\" is missing or empty", ErrInvalidRequest)
	}
	if r.MaxOutputTokens < 0 {
		return fmt.Errorf("%w: \"max_output_tokens\" is %d, want 0 or more", ErrInvalidRequest, r.MaxOutputTokens)
	}
	return nil
}

// DecodeRequest parses and checks one request body as the worker does.
// maxBytes <= 0 means no size limit. Every error wraps ErrInvalidRequest and
// says what is wrong; the returned Request holds whatever could be read.
func DecodeRequest(body []byte, maxBytes int) (Request, error) {
	var r Request
	if maxBytes > 0 && len(body) > maxBytes {
		return r, fmt.Errorf("%w: body is %d bytes, over MAX_REQUEST_BYTES (%d)", ErrInvalidRequest, len(body), maxBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return r, fmt.Errorf("%w: empty body, want a JSON object with \"input\"", ErrInvalidRequest)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("%w: body is not a JSON request object: %v", ErrInvalidRequest, err)
	}
	return r, r.Validate()
}
