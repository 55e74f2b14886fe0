package anthropic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/anthropics/anthropic-sdk-go"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/httpcall"
)

// ErrNotAsync is the cause of the permanent error SubmitJob, PollJob and
// CancelJob return when the Provider was not built with Mode ModeAsync.
// Check it with errors.Is.
var ErrNotAsync = errors.New("the provider was not built with Mode async")

// callError classifies the error of a Messages or Message Batches call
// (see Complete). raw is the HTTP response when there was one.
func callError(ctx context.Context, err error, raw *http.Response) *provider.Error {
	if pe := httpcall.Interrupted(ctx, err); pe != nil {
		return pe
	}
	var status int
	var header http.Header
	var typ, msg string
	var apiErr *anthropic.Error
	switch {
	case errors.As(err, &apiErr):
		status = apiErr.StatusCode
		if apiErr.Response != nil {
			header = apiErr.Response.Header
		}
		typ, msg = string(apiErr.Type()), errorMessage(apiErr.RawJSON())
		if typ != "" {
			err = fmt.Errorf("%w (type %s)", err, typ)
		}
	case raw != nil && raw.StatusCode >= 400:
		status, header = raw.StatusCode, raw.Header
	}
	return classify(status, header, typ, msg, err)
}

// errorMessage is the message of the API's error JSON body, or "".
func errorMessage(body string) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &e)
	return e.Error.Message
}

// classify is the *provider.Error of a call answered with status and the
// API error type typ and message msg (either may be empty), whose cause is
// err: an unknown model (404 not_found_error "model: ...") wraps
// provider.ErrUnknownModel; a prompt too long (400 invalid_request_error
// "prompt is too long") is ScopeBatch; the rest as httpcall.StatusError.
func classify(status int, header http.Header, typ, msg string, err error) *provider.Error {
	pe := httpcall.StatusError(status, header, err)
	switch {
	case status == http.StatusNotFound && typ == "not_found_error" && strings.HasPrefix(msg, "model:"):
		return httpcall.UnknownModel(pe)
	case status == http.StatusBadRequest && typ == "invalid_request_error" && strings.Contains(strings.ToLower(msg), "prompt is too long"):
		return httpcall.BatchError(pe)
	}
	return pe
}

// typeStatus is the HTTP status the Messages API answers an error of type
// typ with, as a Message Batch result's error carries only the type; 0 for
// a type it does not know.
func typeStatus(typ string) int {
	switch typ {
	case "invalid_request_error":
		return http.StatusBadRequest
	case "authentication_error":
		return http.StatusUnauthorized
	case "billing_error":
		return http.StatusPaymentRequired
	case "permission_error":
		return http.StatusForbidden
	case "not_found_error":
		return http.StatusNotFound
	case "request_too_large":
		return http.StatusRequestEntityTooLarge
	case "rate_limit_error":
		return http.StatusTooManyRequests
	case "api_error":
		return http.StatusInternalServerError
	case "timeout_error":
		return http.StatusGatewayTimeout
	case "overloaded_error":
		return 529
	}
	return 0
}
