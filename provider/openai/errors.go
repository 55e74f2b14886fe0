package openai

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/aibatch/aibatch/provider"
)

// ErrNotAsync is the cause of the permanent error SubmitJob, PollJob and
// CancelJob return when the Provider was not built with Mode ModeAsync.
// Check it with errors.Is.
var ErrNotAsync = errors.New("the provider was not built with Mode async")

// callError classifies the error of a Chat Completions call. raw is the HTTP
// response when there was one.
func callError(ctx context.Context, err error, raw *http.Response) *provider.Error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		if !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w: %w", ctxErr, err)
		}
		return &provider.Error{Err: err}
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

	pe := &provider.Error{StatusCode: status, Err: err, Permanent: permanentStatus(status)}
	if status != 0 && !pe.Permanent {
		pe.RetryAfter = provider.ParseRetryAfter(header, time.Now())
	}
	return pe
}

// permanentStatus reports whether retrying a call answered with status cannot
// help: 4xx except 408 (timeout), 409 (conflict), 425 (too early) and 429
// (rate limit).
func permanentStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooEarly, http.StatusTooManyRequests:
		return false
	}
	return status >= 400 && status < 500
}

// redact hides the API key should err's message contain it.
func (p *Provider) redact(err error) error {
	if p.apiKey == "" || !strings.Contains(err.Error(), p.apiKey) {
		return err
	}
	return &redactedError{err: err, key: p.apiKey}
}

// redactedError is err with the API key replaced in its message.
type redactedError struct {
	err error
	key string
}

func (e *redactedError) Error() string {
	return strings.ReplaceAll(e.err.Error(), e.key, "[REDACTED]")
}

func (e *redactedError) Unwrap() error { return e.err }
