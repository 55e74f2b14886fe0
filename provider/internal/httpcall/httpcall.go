// Package httpcall holds what the HTTP providers (provider/openai,
// provider/anthropic and provider/httpapi) share about a failed call: how a
// status is classified (retrying can help or not, whose failure it is), the
// *provider.Error for an answered status or for a call cut short by its
// context, what becomes of an error in a one-request call, and keeping
// secrets out of error messages.
//
// # Classification
//
//	status / condition                      Scope           Permanent
//	no answer (0), connection error         ScopeProvider   false
//	401, 402, 403 (key, billing, access)    ScopeProvider   false
//	408, 409, 425, 429                      ScopeProvider   false (RetryAfter)
//	5xx, 529 overloaded                     ScopeProvider   false (RetryAfter)
//	unexpected 1xx, 2xx, 3xx                ScopeProvider   false
//	413 request too large                   ScopeBatch      true
//	other 4xx (400, 404, 422, ...)          ScopeUnknown    true
//
// The providers refine it with what the error body says: a prompt too
// long for the model's context (OpenAI code context_length_exceeded,
// Anthropic "prompt is too long") is ScopeBatch; a 404 for an unknown model
// wraps provider.ErrUnknownModel and keeps ScopeUnknown. In a one-request
// plain call, a permanent error other than an unknown model is that
// request's own (ScopeRequest): see Plain.
package httpcall

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aibatch/aibatch/provider"
)

// PermanentStatus reports whether retrying a call answered with status
// cannot help: 4xx except 401, 402 and 403 (a key, billing or access
// problem the operator may fix at any moment, e.g. by rotating the key),
// 408 (timeout), 409 (conflict), 425 (too early) and 429 (rate limit).
// Other statuses (5xx, including Anthropic's 529 overloaded, an unexpected
// 1xx or 3xx, and 0 for no answer) are transient.
func PermanentStatus(status int) bool {
	switch status {
	case http.StatusUnauthorized, http.StatusPaymentRequired, http.StatusForbidden,
		http.StatusRequestTimeout, http.StatusConflict, http.StatusTooEarly, http.StatusTooManyRequests:
		return false
	}
	return status >= 400 && status < 500
}

// StatusScope is the Scope of a call answered with status (0 when there
// was no answer), from the status alone: ScopeBatch for 413 (the call is too
// large), ScopeUnknown for the other permanent statuses (PermanentStatus),
// ScopeProvider for the rest (no answer, 401, 402, 403, 408, 409, 425, 429,
// 5xx).
func StatusScope(status int) provider.Scope {
	switch {
	case status == http.StatusRequestEntityTooLarge:
		return provider.ScopeBatch
	case PermanentStatus(status):
		return provider.ScopeUnknown
	}
	return provider.ScopeProvider
}

// StatusError is the *provider.Error of a call answered with status (0 when
// there was no answer) whose cause is err: permanent as PermanentStatus
// says, scoped as StatusScope says; when transient with a status,
// RetryAfter is the wait header asks for (provider.ParseRetryAfter; header
// may be nil).
func StatusError(status int, header http.Header, err error) *provider.Error {
	pe := &provider.Error{StatusCode: status, Err: err, Permanent: PermanentStatus(status), Scope: StatusScope(status)}
	if status != 0 && !pe.Permanent {
		pe.RetryAfter = provider.ParseRetryAfter(header, time.Now())
	}
	return pe
}

// BatchError returns err as the permanent ScopeBatch *provider.Error of a
// call whose shape failed though its status was 4xx: a prompt too long for
// the model's context. It keeps pe's status.
func BatchError(pe *provider.Error) *provider.Error {
	pe.Permanent, pe.Scope, pe.RetryAfter = true, provider.ScopeBatch, 0
	return pe
}

// UnknownModel returns pe, a 404's error, with its cause wrapping
// provider.ErrUnknownModel: permanent, ScopeUnknown (the caller decides
// whose failure an unknown model is).
func UnknownModel(pe *provider.Error) *provider.Error {
	pe.Err = fmt.Errorf("%w: %w", provider.ErrUnknownModel, pe.Err)
	pe.Permanent, pe.Scope, pe.RetryAfter = true, provider.ScopeUnknown, 0
	return pe
}

// Plain says what becomes of err, the failure of a one-request plain call:
// a permanent error other than an unknown model (a 4xx refusal of the
// request, a prompt too long) is that request's own and is returned with
// ScopeRequest and true (report it in the request's Result.Err); any other
// error (ScopeProvider, an unknown model, ctx ending) is returned unchanged
// with false: it concerns more than that request. err's *provider.Error is
// changed in place.
func Plain(err error) (error, bool) {
	var pe *provider.Error
	if !errors.As(err, &pe) || !pe.Permanent || errors.Is(err, provider.ErrUnknownModel) {
		return err, false
	}
	pe.Scope = provider.ScopeRequest
	return err, true
}

// Interrupted returns the transient ScopeProvider *provider.Error of a call
// that failed with err after ctx ended, its cause err wrapped with ctx's
// error unless err already wraps it (so errors.Is(cause, context.Canceled)
// holds); nil when ctx has not ended.
func Interrupted(ctx context.Context, err error) *provider.Error {
	ctxErr := ctx.Err()
	if ctxErr == nil {
		return nil
	}
	if !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w: %w", ctxErr, err)
	}
	return &provider.Error{Err: err, Scope: provider.ScopeProvider}
}

// Shorten cuts s to at most limit bytes, on a rune boundary, adding "..."
// when it cut.
func Shorten(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
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

// RedactString returns s with every secret replaced by "[REDACTED]".
func (r Redactor) RedactString(s string) string {
	for _, secret := range r.secrets {
		s = strings.ReplaceAll(s, secret, "[REDACTED]")
	}
	return s
}
