package openai

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/openai/openai-go/v3/option"
)

// Config says how to reach the OpenAI API. The zero value is not valid: set
// APIKey at least.
type Config struct {
	// APIKey is sent as "Authorization: Bearer <APIKey>". Required. It never
	// appears in the errors this package returns.
	APIKey string
	// BaseURL is the API's base URL, ending in the version segment
	// (e.g. "https://api.openai.com/v1" or an openaitest.Server's URL).
	// Empty means the SDK's default, https://api.openai.com/v1. When set it
	// must be an absolute http or https URL.
	BaseURL string
	// HTTPClient carries the calls; nil means the SDK's default
	// (http.DefaultClient). Per-call deadlines come from the ctx given to
	// Complete, so the client needs no Timeout of its own.
	HTTPClient *http.Client
}

// Validate reports the first problem with c, naming the field.
func (c Config) Validate() error {
	if c.APIKey == "" {
		return errors.New("openai: config: APIKey is required")
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil {
			return fmt.Errorf("openai: config: BaseURL: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("openai: config: BaseURL %q must be an absolute http or https URL", c.BaseURL)
		}
	}
	return nil
}

// Option changes how New builds a Provider.
type Option func(*options)

type options struct {
	requestOptions []option.RequestOption
}

// WithRequestOptions adds SDK request options (extra headers, organization,
// project, middleware, ...) to every call. They apply after the provider's
// own options and so can override them; do not re-enable the SDK's retries,
// the caller retries with its own backoff.
func WithRequestOptions(opts ...option.RequestOption) Option {
	return func(o *options) { o.requestOptions = append(o.requestOptions, opts...) }
}
