package openai

import (
	"fmt"
	"net/http"

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
	// must be an absolute http or https URL.
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
