package httpcall_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/httpcall"
)

func TestPermanentStatus(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]bool{
		0: false, 200: false, 304: false, 400: true, 404: true, 413: true, 422: true, 499: true,
		401: false, 402: false, 403: false, 408: false, 409: false, 425: false, 429: false, 500: false, 503: false, 529: false,
	} {
		if got := httpcall.PermanentStatus(status); got != want {
			t.Errorf("PermanentStatus(%d) = %v, want %v", status, got, want)
		}
	}
}

func TestStatusError(t *testing.T) {
	t.Parallel()
	retry := http.Header{"Retry-After": {"2"}}
	tests := []struct {
		name          string
		status        int
		header        http.Header
		wantPermanent bool
		wantScope     provider.Scope
		wantWait      time.Duration
	}{
		{"rate limited waits as asked", 429, retry, false, provider.ScopeProvider, 2 * time.Second},
		{"server error in milliseconds", 503, http.Header{"Retry-After-Ms": {"1500"}}, false, provider.ScopeProvider, 1500 * time.Millisecond},
		{"transient without header", 500, nil, false, provider.ScopeProvider, 0},
		{"overloaded", 529, retry, false, provider.ScopeProvider, 2 * time.Second},
		{"wrong key", 401, nil, false, provider.ScopeProvider, 0},
		{"revoked access", 403, nil, false, provider.ScopeProvider, 0},
		{"timeout", 408, nil, false, provider.ScopeProvider, 0},
		{"too large", 413, retry, true, provider.ScopeBatch, 0},
		{"permanent ignores the header", 400, retry, true, provider.ScopeUnknown, 0},
		{"unprocessable", 422, nil, true, provider.ScopeUnknown, 0},
		{"not found", 404, nil, true, provider.ScopeUnknown, 0},
		{"no answer ignores the header", 0, retry, false, provider.ScopeProvider, 0},
		{"redirect", 302, nil, false, provider.ScopeProvider, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cause := errors.New("cause")
			pe := httpcall.StatusError(tt.status, tt.header, cause)
			if pe.StatusCode != tt.status || pe.Permanent != tt.wantPermanent || pe.Scope != tt.wantScope || pe.RetryAfter != tt.wantWait {
				t.Errorf("StatusError = %+v, want status %d, permanent %v, scope %v, wait %v", pe, tt.status, tt.wantPermanent, tt.wantScope, tt.wantWait)
			}
			if got := httpcall.StatusScope(tt.status); got != tt.wantScope {
				t.Errorf("StatusScope(%d) = %v, want %v", tt.status, got, tt.wantScope)
			}
			if !errors.Is(pe, cause) {
				t.Errorf("%v does not wrap its cause", pe)
			}
		})
	}
}

func TestInterrupted(t *testing.T) {
	t.Parallel()
	if pe := httpcall.Interrupted(t.Context(), errors.New("boom")); pe != nil {
		t.Errorf("Interrupted with a live ctx = %v, want nil", pe)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name    string
		err     error
		wantMsg string
	}{
		{"joins an unrelated error", errors.New("read: connection reset"), "context canceled: read: connection reset"},
		{"keeps an error that wraps it", fmt.Errorf("post: %w", context.Canceled), "post: context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pe := httpcall.Interrupted(ctx, tt.err)
			if pe == nil || pe.Permanent || pe.StatusCode != 0 || pe.Scope != provider.ScopeProvider {
				t.Fatalf("Interrupted = %+v, want a transient ScopeProvider error without status", pe)
			}
			if !errors.Is(pe, context.Canceled) || !errors.Is(pe, tt.err) {
				t.Errorf("%v does not wrap both context.Canceled and %v", pe, tt.err)
			}
			if pe.Err.Error() != tt.wantMsg {
				t.Errorf("cause %q, want %q", pe.Err, tt.wantMsg)
			}
		})
	}
}

func TestRedactor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		secrets []string
		msg     string
		wantMsg string
	}{
		{"no secret in the message", []string{"sk-1"}, "bad request", "bad request"},
		{"every occurrence", []string{"sk-1"}, "key sk-1 invalid (sk-1)", "key [REDACTED] invalid ([REDACTED])"},
		{"several secrets", []string{"tok", "pw"}, "tok and pw", "[REDACTED] and [REDACTED]"},
		{"empty secrets are ignored", []string{"", ""}, "bad request", "bad request"},
		{"zero secrets", nil, "sk-1", "sk-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cause := provider.Permanent(errors.New(tt.msg))
			got := httpcall.NewRedactor(tt.secrets...).Redact(cause)
			if got.Error() != "permanent provider error: "+tt.wantMsg {
				t.Errorf("Redact = %q, want the message %q", got, tt.wantMsg)
			}
			if tt.msg == tt.wantMsg && got != cause {
				t.Errorf("Redact changed an error without secrets: %#v", got)
			}
			var pe *provider.Error
			if !errors.As(got, &pe) || !provider.IsPermanent(got) {
				t.Errorf("Redact hides the error's kind: %#v", got)
			}
		})
	}
}

func TestRefinements(t *testing.T) {
	t.Parallel()
	cause := errors.New("cause")
	unknown := httpcall.UnknownModel(httpcall.StatusError(404, nil, cause))
	if !errors.Is(unknown, provider.ErrUnknownModel) || !errors.Is(unknown, cause) || !unknown.Permanent ||
		unknown.Scope != provider.ScopeUnknown || unknown.StatusCode != 404 {
		t.Errorf("UnknownModel = %+v, want a permanent ScopeUnknown 404 wrapping ErrUnknownModel and its cause", unknown)
	}
	batch := httpcall.BatchError(httpcall.StatusError(400, http.Header{"Retry-After": {"3"}}, cause))
	if !batch.Permanent || batch.Scope != provider.ScopeBatch || batch.StatusCode != 400 || batch.RetryAfter != 0 {
		t.Errorf("BatchError = %+v, want a permanent ScopeBatch 400", batch)
	}
}

func TestPlain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		err       error
		wantOwn   bool
		wantScope provider.Scope
	}{
		{"bad request", httpcall.StatusError(400, nil, errors.New("invalid prompt")), true, provider.ScopeRequest},
		{"prompt too long", httpcall.BatchError(httpcall.StatusError(400, nil, errors.New("too long"))), true, provider.ScopeRequest},
		{"too large", httpcall.StatusError(413, nil, errors.New("too large")), true, provider.ScopeRequest},
		{"refusal", provider.Permanent(errors.New("refused")), true, provider.ScopeRequest},
		{"wrapped", fmt.Errorf("call: %w", httpcall.StatusError(422, nil, errors.New("x"))), true, provider.ScopeRequest},
		{"unknown model", httpcall.UnknownModel(httpcall.StatusError(404, nil, errors.New("model"))), false, provider.ScopeUnknown},
		{"server error", httpcall.StatusError(500, nil, errors.New("oops")), false, provider.ScopeProvider},
		{"wrong key", httpcall.StatusError(401, nil, errors.New("key")), false, provider.ScopeProvider},
		{"rate limit", httpcall.StatusError(429, nil, errors.New("slow down")), false, provider.ScopeProvider},
		{"not a provider error", errors.New("plain"), false, provider.ScopeUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, own := httpcall.Plain(tt.err)
			if got != tt.err || own != tt.wantOwn || provider.ScopeOf(got) != tt.wantScope {
				t.Errorf("Plain(%v) = %v (scope %v), %v; want the same error, scope %v, %v", tt.err, got, provider.ScopeOf(got), own, tt.wantScope, tt.wantOwn)
			}
		})
	}
}

func TestShorten(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		s     string
		limit int
		want  string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"a longer message", 8, "a longer..."},
		{"ééé", 3, "é..."}, // never cuts a rune in two
	} {
		if got := httpcall.Shorten(tt.s, tt.limit); got != tt.want {
			t.Errorf("Shorten(%q, %d) = %q, want %q", tt.s, tt.limit, got, tt.want)
		}
	}
}

func TestRedactString(t *testing.T) {
	t.Parallel()
	r := httpcall.NewRedactor("sk-1", "pw")
	if got := r.RedactString("key sk-1 and pw"); got != "key [REDACTED] and [REDACTED]" {
		t.Errorf("RedactString = %q", got)
	}
	if got := (httpcall.Redactor{}).RedactString("sk-1"); got != "sk-1" {
		t.Errorf("zero Redactor changed %q", got)
	}
}
