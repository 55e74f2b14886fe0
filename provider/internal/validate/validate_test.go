package validate_test

import (
	"errors"
	"net/url"
	"testing"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/validate"
)

type mode string

func TestChecks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		err     error
		wantMsg string // "" means valid
	}{
		{"required set", validate.Required("APIKey", "k"), ""},
		{"required empty", validate.Required("APIKey", ""), "APIKey is required"},
		{"mode empty", validate.Mode(mode(""), "a", "b"), ""},
		{"mode valid", validate.Mode(mode("b"), "a", "b"), ""},
		{"mode of three", validate.Mode(mode("x"), "combined", "single", "async"), `Mode "x" must be "combined", "single" or "async"`},
		{"mode of two", validate.Mode(mode("x"), "a", "b"), `Mode "x" must be "a" or "b"`},
		{"mode of one", validate.Mode(mode("x"), "a"), `Mode "x" must be "a"`},
		{"not negative zero", validate.NotNegative("Concurrency", 0), ""},
		{"negative", validate.NotNegative("Concurrency", -1), "Concurrency -1 must not be negative"},
		{"base URL empty", validate.BaseURL(""), ""},
		{"base URL https", validate.BaseURL("https://api.example.com/v1"), ""},
		{"base URL http", validate.BaseURL("http://127.0.0.1:8080"), ""},
		{"base URL relative", validate.BaseURL("api.example.com/v1"), `BaseURL "api.example.com/v1" must be an absolute http or https URL`},
		{"base URL other scheme", validate.BaseURL("ftp://example.com"), `BaseURL "ftp://example.com" must be an absolute http or https URL`},
		{"base URL without host", validate.BaseURL("http://"), `BaseURL "http://" must be an absolute http or https URL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			switch {
			case tt.wantMsg == "" && tt.err != nil:
				t.Errorf("error %v, want none", tt.err)
			case tt.wantMsg != "" && (tt.err == nil || tt.err.Error() != tt.wantMsg):
				t.Errorf("error %v, want %q", tt.err, tt.wantMsg)
			}
		})
	}
}

// A BaseURL that does not parse keeps the parse error in the chain.
func TestBaseURLParseError(t *testing.T) {
	t.Parallel()
	err := validate.BaseURL("http://[::1")
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Errorf("error %v does not wrap the *url.Error", err)
	}
}

func TestFirst(t *testing.T) {
	t.Parallel()
	a, b := errors.New("a"), errors.New("b")
	tests := []struct {
		name string
		errs []error
		want error
	}{
		{"none", nil, nil},
		{"all nil", []error{nil, nil}, nil},
		{"first non-nil wins", []error{nil, a, b}, a},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := validate.First(tt.errs...); got != tt.want {
				t.Errorf("First = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBatch(t *testing.T) {
	t.Parallel()
	reqs := []provider.Request{{Key: "0", Input: "a"}}
	tests := []struct {
		name    string
		b       provider.Batch
		wantMsg string
	}{
		{"valid", provider.Batch{Model: "m", Requests: reqs}, ""},
		{"no requests", provider.Batch{Model: "m"}, "batch has no requests"},
		{"no model", provider.Batch{Requests: reqs}, "batch has no model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := validate.Batch(tt.b)
			if tt.wantMsg == "" {
				if err != nil {
					t.Errorf("error %v, want none", err)
				}
				return
			}
			var pe *provider.Error
			if !errors.As(err, &pe) || !pe.Permanent || pe.Err.Error() != tt.wantMsg {
				t.Errorf("error %v, want permanent %q", err, tt.wantMsg)
			}
		})
	}
}
