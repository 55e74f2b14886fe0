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

// callError classifies the error of a Chat Completions call. raw is the HTTP
// response when there was one.
func callError(ctx context.Context, err error, raw *http.Response) *provider.Error {
	if pe := httpcall.Interrupted(ctx, err); pe != nil {
		return pe
	}
	var status int
	var header http.Header
	var apiErr *openai.Error
	switch {
	case errors.As(err, &apiErr):
		status = apiErr.StatusCode
		if apiErr.Response != nil {
			header = apiErr.Response.Header
		}
		if apiErr.Code != "" {
			// Code is a fixed identifier; Message may quote the key.
			err = fmt.Errorf("%w (code %s)", err, apiErr.Code)
		}
	case raw != nil && raw.StatusCode >= 400:
		// An error body that is not OpenAI's error JSON.
		status, header = raw.StatusCode, raw.Header
	}
	return httpcall.StatusError(status, header, err)
}

// permanentStatus reports whether retrying a call answered with status
// cannot help. It is httpcall.PermanentStatus, under the name this package's
// tests check the classification by.
func permanentStatus(status int) bool { return httpcall.PermanentStatus(status) }
