package openai

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/openai/openai-go/v3"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/httpcall"
)

// ErrNotAsync is the cause of the permanent error SubmitJob, PollJob and
// CancelJob return when the Provider was not built with Mode ModeAsync.
// Check it with errors.Is.
var ErrNotAsync = errors.New("the provider was not built with Mode async")

// Error codes of OpenAI's error JSON that classify a call's failure beyond
// its status.
const (
	codeModelNotFound   = "model_not_found"
	codeContextTooLarge = "context_length_exceeded"
)

// callError classifies the error of a Chat Completions, Files or Batches
// call (see Complete). raw is the HTTP response when there was one.
func callError(ctx context.Context, err error, raw *http.Response) *provider.Error {
	if pe := httpcall.Interrupted(ctx, err); pe != nil {
		return pe
	}
	var status int
	var header http.Header
	var code string
	var apiErr *openai.Error
	switch {
	case errors.As(err, &apiErr):
		status, code = apiErr.StatusCode, apiErr.Code
		if apiErr.Response != nil {
			header = apiErr.Response.Header
		}
		if code != "" {
			// Code is a fixed identifier; Message may quote the key.
			err = fmt.Errorf("%w (code %s)", err, code)
		}
	case raw != nil && raw.StatusCode >= 400:
		// An error body that is not OpenAI's error JSON.
		status, header = raw.StatusCode, raw.Header
	}
	return classify(status, header, code, err)
}

// classify is the *provider.Error of a call answered with status and the
// error code code (either may be empty), whose cause is err.
func classify(status int, header http.Header, code string, err error) *provider.Error {
	pe := httpcall.StatusError(status, header, err)
	switch {
	case status == http.StatusNotFound && code == codeModelNotFound:
		return httpcall.UnknownModel(pe)
	case status == http.StatusBadRequest && code == codeContextTooLarge:
		return httpcall.BatchError(pe)
	}
	return pe
}

// permanentStatus reports whether retrying a call answered with status
// cannot help. It is httpcall.PermanentStatus, under the name this package's
// tests check the classification by.
func permanentStatus(status int) bool { return httpcall.PermanentStatus(status) }
