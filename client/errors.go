package client

import "errors"

var (
	// ErrInvalidOption is wrapped by the errors New returns for a bad
	// option; the message names the option.
	ErrInvalidOption = errors.New("client: invalid option")
	// ErrInvalidRequest is wrapped by the errors Submit returns for a
	// request the worker would refuse: what wire.Request.Validate refuses
	// (blank input, both input and messages, parameters out of range,
	// negative max_output_tokens, ...; the error wraps
	// wire.ErrInvalidRequest too), metadata that is not valid JSON, an id
	// with control characters.
	ErrInvalidRequest = errors.New("client: invalid request")
	// ErrDuplicateID is wrapped by the error Submit returns when a request
	// with the same id is already waiting on this client.
	ErrDuplicateID = errors.New("client: a request with this id is already waiting")
	// ErrNotConfirmed is wrapped by the error a wait returns when the
	// broker did not confirm storing the request (no PubAck in time, a
	// disconnect, a full stream). The request may or may not be stored;
	// submitting it again with the same id is safe within the request
	// stream's duplicate window, which drops a second copy.
	ErrNotConfirmed = errors.New("client: request not confirmed as stored")
	// ErrFailed is wrapped by the error a wait returns together with a
	// result whose Status is "error"; Result.Error says why.
	ErrFailed = errors.New("client: request failed")
	// ErrDiscarded is returned by Wait after Discard.
	ErrDiscarded = errors.New("client: wait discarded")
	// ErrClosed is returned by calls on a closed client, and by waits the
	// client was closed under.
	ErrClosed = errors.New("client: closed")
)
