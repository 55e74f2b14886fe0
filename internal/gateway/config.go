package gateway

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/aibatch/aibatch/wire"
)

// Defaults of Config.
const (
	// DefaultAddr is where the gateway listens: loopback only, so that a
	// gateway without keys is never reachable from other machines.
	DefaultAddr = "127.0.0.1:8090"
	// DefaultTopic is the topic of every request when no keys are
	// configured (a loopback gateway): requests go to ai.requests.default.
	DefaultTopic = "default"
	// TimeoutMargin is what the default GATEWAY_TIMEOUT adds to MAX_WAIT
	// and PROVIDER_TIMEOUT: time for the worker's poll, the result's way
	// back and a retry's backoff.
	TimeoutMargin = 30 * time.Second
	// DefaultMaxRequestBytes is the worker's MAX_REQUEST_BYTES default: the
	// largest wire request body the gateway publishes.
	DefaultMaxRequestBytes = 64 << 10
	// DefaultMaxBodyBytes bounds an HTTP request body: an embeddings
	// request of MaxEmbeddingInputs texts fits.
	DefaultMaxBodyBytes = 32 << 20
	// DefaultShutdownTimeout is how long waiting requests get to be
	// answered after a stop signal.
	DefaultShutdownTimeout = 30 * time.Second
	// MaxEmbeddingInputs is OpenAI's limit on the inputs of one
	// embeddings request.
	MaxEmbeddingInputs = 2048
	// RetryAfter is the Retry-After of a 429 for a full request stream.
	RetryAfter = time.Second
)

// DefaultTimeout is GATEWAY_TIMEOUT's default for workers configured with
// maxWait (MAX_WAIT) and providerTimeout (PROVIDER_TIMEOUT): the longest a
// request waits for its batch, plus one provider call, plus TimeoutMargin.
func DefaultTimeout(maxWait, providerTimeout time.Duration) time.Duration {
	return maxWait + providerTimeout + TimeoutMargin
}

// Config is what a gateway serves and how. Only Timeout has no default.
type Config struct {
	// Addr is the host:port to listen on (GATEWAY_ADDR). Default
	// DefaultAddr; a port of 0 picks a free one (Server.Addr tells which).
	// An address beyond loopback requires Keys.
	Addr string
	// Keys maps the API keys callers present to their topics
	// (GATEWAY_KEYS, GATEWAY_KEYS_FILE). Empty: no key is asked for and
	// every request goes to DefaultTopic; allowed on loopback only.
	Keys *Keys
	// Timeout bounds the wait for a result (GATEWAY_TIMEOUT); the caller
	// then gets 504 with the request id. Required; DefaultTimeout gives the
	// usual value.
	Timeout time.Duration
	// Models are the models GET /v1/models lists, in order.
	Models []string
	// Name identifies this gateway's reply subject,
	// ai.results.gateway.<Name>: letters, digits, - and _. Default: a
	// random unique name. Two gateways running at once must not share one.
	Name string
	// MaxRequestBytes is the largest wire request body the gateway
	// publishes (the workers' MAX_REQUEST_BYTES); a larger request is a
	// 400. Default DefaultMaxRequestBytes.
	MaxRequestBytes int
	// MaxBodyBytes bounds an HTTP request body (413 beyond). Default
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// ShutdownTimeout is how long Shutdown lets waiting requests be
	// answered before it answers them 503. Default DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// ParkAfter is how long a request waits on net/http's goroutine before
	// the gateway takes its connection over (park.go). Default
	// DefaultParkAfter.
	ParkAfter time.Duration
	// Log receives one line per failed request and the gateway's own
	// events; default none. Keys are never logged.
	Log *zap.Logger
}

// WithDefaults returns c with every unset field at its default (but
// Timeout, which has none, and Name, which New draws).
func (c Config) WithDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.ParkAfter == 0 {
		c.ParkAfter = DefaultParkAfter
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	return c
}

// ErrExposed is wrapped by the error Validate returns for a gateway that
// would listen beyond this machine without keys.
var ErrExposed = errors.New("gateway: API reachable from other machines without keys")

// Validate reports every setting that cannot work, naming the variable.
func (c Config) Validate() error {
	var errs []error
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		errs = append(errs, fmt.Errorf("GATEWAY_ADDR=%q: want host:port such as 127.0.0.1:8090: %v", c.Addr, err))
	} else if _, err := net.LookupPort("tcp", port); err != nil {
		errs = append(errs, fmt.Errorf("GATEWAY_ADDR=%q: bad port: %v", c.Addr, err))
	} else if c.Keys.Len() == 0 && !isLoopback(host) {
		errs = append(errs, fmt.Errorf("%w: GATEWAY_ADDR=%q listens beyond this machine and no keys are set: set GATEWAY_KEYS or GATEWAY_KEYS_FILE, or bind GATEWAY_ADDR to a loopback address such as 127.0.0.1:8090", ErrExposed, c.Addr))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("GATEWAY_TIMEOUT=%s: want a duration above 0, such as 7m30s", c.Timeout))
	}
	if c.Name != "" && !validName(c.Name) {
		errs = append(errs, fmt.Errorf("gateway name %q: want letters, digits, - and _ only", c.Name))
	}
	if c.MaxRequestBytes < 16 {
		errs = append(errs, fmt.Errorf("MAX_REQUEST_BYTES=%d: want at least 16", c.MaxRequestBytes))
	}
	if c.MaxBodyBytes < int64(c.MaxRequestBytes) {
		errs = append(errs, fmt.Errorf("the HTTP body limit (%d bytes) is below MAX_REQUEST_BYTES (%d)", c.MaxBodyBytes, c.MaxRequestBytes))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("SHUTDOWN_TIMEOUT=%s: want 0 or more", c.ShutdownTimeout))
	}
	if c.ParkAfter < 0 {
		errs = append(errs, fmt.Errorf("park after %s: want 0 or more", c.ParkAfter))
	}
	for _, m := range c.Models {
		if strings.TrimSpace(m) == "" {
			errs = append(errs, errors.New("models: an empty model name (MODEL, EMBEDDING_MODEL, ALLOWED_MODELS)"))
			break
		}
	}
	return errors.Join(errs...)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, _, _ := strings.Cut(host, "%")
	parsed := net.ParseIP(ip)
	return parsed != nil && parsed.IsLoopback()
}

// validName reports whether s is one subject token of letters, digits, -
// and _.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// validTopic reports whether s is a topic: dot-separated tokens of
// letters, digits, - and _, as it appears after ai.requests.
func validTopic(s string) bool {
	for tok := range strings.SplitSeq(s, ".") {
		if !validName(tok) {
			return false
		}
	}
	return s != ""
}

// replyPrefix is where the gateway's results go: ai.results.gateway.
const replyPrefix = wire.ResultPrefix + ".gateway."

// instanceSubject is the reply subject of a gateway's requests without an
// Idempotency-Key.
func instanceSubject(name string) string { return replyPrefix + name }

// keySubject is the reply subject of the requests of one Idempotency-Key
// (its digest), whichever gateway sent them: a retry through another
// gateway finds the stored result there.
func keySubject(digest string) string { return replyPrefix + "key." + digest }
