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
		0: false, 200: false, 304: false, 400: true, 401: true, 403: true, 404: true, 413: true, 422: true, 499: true,
		408: false, 409: false, 425: false, 429: false, 500: false, 503: false, 529: false,
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
		wantWait      time.Duration
	}{
		{"rate limited waits as asked", 429, retry, false, 2 * time.Second},
		{"server error in milliseconds", 503, http.Header{"Retry-After-Ms": {"1500"}}, false, 1500 * time.Millisecond},
		{"transient without header", 500, nil, false, 0},
		{"permanent ignores the header", 400, retry, true, 0},
		{"no answer ignores the header", 0, retry, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cause := errors.New("cause")
			pe := httpcall.StatusError(tt.status, tt.header, cause)
			if pe.StatusCode != tt.status || pe.Permanent != tt.wantPermanent || pe.RetryAfter != tt.wantWait {
				t.Errorf("StatusError = %+v, want status %d, permanent %v, wait %v", pe, tt.status, tt.wantPermanent, tt.wantWait)
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
			if pe == nil || pe.Permanent || pe.StatusCode != 0 {
				t.Fatalf("Interrupted = %+v, want a transient error without status", pe)
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
