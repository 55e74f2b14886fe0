// Package httpcall holds what the HTTP providers (provider/openai,
// provider/anthropic and provider/httpapi) share about a failed call: which
// statuses retrying cannot help, the *provider.Error for an answered status
// or for a call cut short by its context, and keeping secrets out of error
// messages.
package httpcall

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aibatch/aibatch/provider"
)

// PermanentStatus reports whether retrying a call answered with status
// cannot help: 4xx except 408 (timeout), 409 (conflict), 425 (too early) and
// 429 (rate limit). Other statuses (5xx, including Anthropic's 529
// overloaded, an unexpected 1xx or 3xx, and 0 for no answer) are transient.
func PermanentStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooEarly, http.StatusTooManyRequests:
		return false
	}
	return status >= 400 && status < 500
}

// StatusError is the *provider.Error of a call answered with status (0 when
// there was no answer) whose cause is err: permanent as PermanentStatus
// says; when transient with a status, RetryAfter is the wait header asks
// for (provider.ParseRetryAfter; header may be nil).
func StatusError(status int, header http.Header, err error) *provider.Error {
	pe := &provider.Error{StatusCode: status, Err: err, Permanent: PermanentStatus(status)}
	if status != 0 && !pe.Permanent {
		pe.RetryAfter = provider.ParseRetryAfter(header, time.Now())
	}
	return pe
}

// Interrupted returns the transient *provider.Error of a call that failed
// with err after ctx ended, its cause err wrapped with ctx's error unless
// err already wraps it (so errors.Is(cause, context.Canceled) holds);
// nil when ctx has not ended.
func Interrupted(ctx context.Context, err error) *provider.Error {
	ctxErr := ctx.Err()
	if ctxErr == nil {
		return nil
	}
	if !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w: %w", ctxErr, err)
	}
	return &provider.Error{Err: err}
}

// Redactor keeps secrets (API keys, tokens, passwords) out of error
// messages. The zero value redacts nothing; it is safe for concurrent use.
type Redactor struct {
	secrets []string
}

// NewRedactor returns a Redactor for secrets; empty ones are ignored.
func NewRedactor(secrets ...string) Redactor {
	var r Redactor
	for _, s := range secrets {
		if s != "" {
			r.secrets = append(r.secrets, s)
		}
	}
	return r
}

// Redact returns err unchanged when its message holds no secret, and
// otherwise err with every secret in its message replaced by
// "[REDACTED]"; errors.Is and errors.As still see through it. err must not
// be nil.
func (r Redactor) Redact(err error) error {
	msg := err.Error()
	for _, s := range r.secrets {
		if strings.Contains(msg, s) {
			return &redactedError{err: err, secrets: r.secrets}
		}
	}
	return err
}

// redactedError is err with the secrets replaced in its message.
type redactedError struct {
	err     error
	secrets []string
}

func (e *redactedError) Error() string {
	msg := e.err.Error()
	for _, s := range e.secrets {
		msg = strings.ReplaceAll(msg, s, "[REDACTED]")
	}
	return msg
}

func (e *redactedError) Unwrap() error { return e.err }
