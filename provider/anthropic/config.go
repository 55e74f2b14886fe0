package anthropic

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/anthropics/anthropic-sdk-go/option"

	"github.com/aibatch/aibatch/provider/internal/validate"
)

// Mode says how a batch is turned into API calls.
type Mode string

const (
	// ModeCombined sends a whole batch as one Messages call whose answer is
	// forced into the batch_results tool. It is the default.
	ModeCombined Mode = "combined"
	// ModeSingle sends one plain Messages call per request, up to
	// Config.Concurrency at once.
	ModeSingle Mode = "single"
	// ModeAsync sends batches through the Message Batches API: the
	// Provider's SubmitJob, PollJob and CancelJob work only in this mode.
	// Complete stays available (it is the engine's synchronous fallback) and
	// behaves as in ModeCombined.
	ModeAsync Mode = "async"
)

// Defaults for the Config fields left at 0.
const (
	// DefaultConcurrency is the number of single-mode calls in flight at once.
	DefaultConcurrency = 8
	// DefaultMaxTokens is the max_tokens of a call whose batch plans no
	// budget (Batch.MaxOutputTokens 0) and whose request, in a plain call,
	// sets no MaxOutputTokens: the Messages API requires max_tokens.
	DefaultMaxTokens = 1024
)

// Config says how to reach the Anthropic API. The zero value is not valid:
// set APIKey at least.
type Config struct {
	// APIKey is sent as the x-api-key header. Required. It never appears in
	// the errors this package returns.
	APIKey string
	// BaseURL is the API's base URL without the version segment
	// (e.g. "https://api.anthropic.com" or an anthropictest.Server's URL);
	// calls go to BaseURL + "/v1/messages". Empty means the SDK's default,
	// https://api.anthropic.com. When set it must be an absolute http or
	// https URL. NormalizeBaseURL turns the form with the version segment
	// into this one.
	BaseURL string
	// HTTPClient carries the calls; nil means the SDK's default. Per-call
	// deadlines come from the ctx given to Complete.
	HTTPClient *http.Client
	// Mode is ModeCombined (one call per batch), ModeSingle (one call per
	// request) or ModeAsync (Message Batches, Complete as in ModeCombined).
	// Empty means ModeCombined.
	Mode Mode
	// Concurrency bounds the calls one Complete makes at once in ModeSingle.
	// 0 means DefaultConcurrency; negative is invalid.
	Concurrency int
	// MaxTokens is the max_tokens of a call when the batch plans no budget
	// (Batch.MaxOutputTokens 0) and, in a plain call, the request sets no
	// MaxOutputTokens. 0 means DefaultMaxTokens; negative is invalid.
	MaxTokens int
	// MaxCallTokens, when set, caps the max_tokens sent in one call,
	// whatever the batch planned or a request asked for. 0 means no cap
	// (the caller plans Batch.MaxOutputTokens within the model's limit, see
	// Provider.MaxOutputTokens); negative is invalid.
	MaxCallTokens int
}

// Validate reports the first problem with c, naming the field. It does not
// change c; New applies the defaults of empty fields.
func (c Config) Validate() error {
	err := validate.First(
		validate.Required("APIKey", c.APIKey),
		validate.Mode(c.Mode, ModeCombined, ModeSingle, ModeAsync),
		validate.NotNegative("Concurrency", c.Concurrency),
		validate.NotNegative("MaxTokens", c.MaxTokens),
		validate.NotNegative("MaxCallTokens", c.MaxCallTokens),
		validate.BaseURL(c.BaseURL),
	)
	if err != nil {
		return fmt.Errorf("anthropic: config: %w", err)
	}
	return nil
}

// Option changes how New builds a Provider.
type Option func(*options)

type options struct {
	requestOptions []option.RequestOption
}

// WithRequestOptions adds SDK request options (extra headers, beta flags,
// middleware, ...) to every call. They apply after the provider's own
// options and so can override them; do not re-enable the SDK's retries, the
// caller retries with its own backoff.
func WithRequestOptions(opts ...option.RequestOption) Option {
	return func(o *options) { o.requestOptions = append(o.requestOptions, opts...) }
}

// NormalizeBaseURL returns raw in the form Config.BaseURL wants, so that
// an operator may write the base URL with or without "/v1": a trailing
// "/v1" (the SDK adds it to every path) and trailing slashes are removed,
// so "https://api.anthropic.com/v1/" becomes "https://api.anthropic.com"
// instead of sending calls to …/v1/v1/messages. Empty, and text that is not
// a URL, come back unchanged (Validate reports the latter).
func NormalizeBaseURL(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if raw == "" || err != nil || u.Host == "" {
		return raw
	}
	p := strings.TrimRight(u.Path, "/")
	p = strings.TrimSuffix(p, "/v1")
	u.Path, u.RawPath = strings.TrimRight(p, "/"), ""
	return u.String()
}
