package openai

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/openai/openai-go/v3/option"

	"github.com/aibatch/aibatch/provider/internal/validate"
)

// Mode says how a batch is turned into API calls.
type Mode string

const (
	// ModeCombined sends a whole batch as one Chat Completions call whose
	// answer is the strict json_schema "batch_results". It is the default.
	ModeCombined Mode = "combined"
	// ModeSingle sends one plain Chat Completions call per request, up to
	// Config.Concurrency at once.
	ModeSingle Mode = "single"
	// ModeAsync sends batches through the Batch API: the Provider's
	// SubmitJob, PollJob and CancelJob work only in this mode. Complete
	// stays available (it is the engine's synchronous fallback) and behaves
	// as in ModeCombined.
	ModeAsync Mode = "async"
)

// DefaultConcurrency is the number of single-mode calls in flight at once
// when Config.Concurrency is 0.
const DefaultConcurrency = 8

// Config says how to reach the OpenAI API. The zero value is not valid: set
// APIKey at least.
type Config struct {
	// APIKey is sent as "Authorization: Bearer <APIKey>". Required. It never
	// appears in the errors this package returns.
	APIKey string
	// BaseURL is the API's base URL, ending in the version segment
	// (e.g. "https://api.openai.com/v1" or an openaitest.Server's URL).
	// Empty means the SDK's default, https://api.openai.com/v1. When set it
	// must be an absolute http or https URL. NormalizeBaseURL turns the
	// form without the version segment into this one.
	BaseURL string
	// HTTPClient carries the calls; nil means the SDK's default
	// (http.DefaultClient). Per-call deadlines come from the ctx given to
	// Complete, so the client needs no Timeout of its own.
	HTTPClient *http.Client
	// Mode is ModeCombined (one call per batch), ModeSingle (one call per
	// request) or ModeAsync (Batch API jobs, Complete as in ModeCombined).
	// Empty means ModeCombined.
	Mode Mode
	// Concurrency bounds the calls one Complete makes at once in ModeSingle.
	// 0 means DefaultConcurrency; negative is invalid. Combined mode ignores it.
	Concurrency int
	// TierRejected, when set, is told the first time a model refuses a
	// batch's service tier (HTTP 400 naming service_tier); the call, and
	// every later one of that model, then goes to the default tier. It
	// must return quickly. nil: nobody is told.
	TierRejected func(model, tier, reason string)
}

// Validate reports the first problem with c, naming the field. It does not
// change c; New applies the defaults of empty fields.
func (c Config) Validate() error {
	err := validate.First(
		validate.Required("APIKey", c.APIKey),
		validate.Mode(c.Mode, ModeCombined, ModeSingle, ModeAsync),
		validate.NotNegative("Concurrency", c.Concurrency),
		validate.BaseURL(c.BaseURL),
	)
	if err != nil {
		return fmt.Errorf("openai: config: %w", err)
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

// NormalizeBaseURL returns raw in the form Config.BaseURL wants, so that
// an operator may write the base URL with or without "/v1": a URL with no
// path ("http://127.0.0.1:8089", with or without a trailing slash) gets
// "/v1", and a trailing slash is dropped. A URL with a path of its own
// ("https://gateway.example/openai/v1", "/api/v4") keeps it: OpenAI-
// compatible servers put their version segment in different places. Empty,
// and text that is not a URL, come back unchanged (Validate reports the
// latter).
func NormalizeBaseURL(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if raw == "" || err != nil || u.Host == "" {
		return raw
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	if u.Path == "" {
		u.Path = "/v1"
	}
	return u.String()
}
