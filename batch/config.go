package batch

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aibatch/aibatch/wire"
)

// Config holds the engine's settings. The zero value of every field means
// its default; call WithDefaults to see them filled in.
type Config struct {
	// Immediate sends every request alone as soon as it arrives, the baseline
	// batching is measured against (USE_BATCHED_CLIENT=false). Default false.
	Immediate bool
	// Async sends batches through the provider's Batch API instead of a
	// combined call (BATCH_MODE=async); MaxInflight then bounds the jobs
	// running at once. Default false.
	Async bool
	// JobPollInterval is how often a Batch API job is polled. Default 30s.
	JobPollInterval time.Duration
	// MaxBatchSize is the most requests in one call, and in one fetch.
	// Default 50.
	MaxBatchSize int
	// HoldMaxRequests and HoldMaxBytes bound the batch lane's holding
	// window: the fetched requests it holds (unacked, kept alive) until
	// their group fills a call or is otherwise due. When it is full the
	// group waiting longest is sent as it is (trigger window_full).
	// Memory is about HoldMaxBytes plus ~1 KiB per held request.
	// Defaults 5000 (or MaxBatchSize when larger) and 32 MiB.
	HoldMaxRequests int
	HoldMaxBytes    int
	// MixTopics lets requests of different topics (the subject tokens after
	// the lane's prefix) share a call (ISOLATE_TOPICS=false). By default
	// they never do: one producer's input could sway the answers to
	// another's. Default false.
	MixTopics bool
	// Interval is how often whatever waits is sent. Default 1h.
	Interval time.Duration
	// MaxWait is the longest a request waits before its batch is sent
	// whatever its size. Default 5m.
	MaxWait time.Duration
	// PollInterval is how often the lane's backlog is read to decide whether
	// a batch is due. Default 250ms.
	PollInterval time.Duration
	// MaxDeliver is how many deliveries a request gets before it is ended as
	// an error result and a dead letter. Default 5.
	MaxDeliver int
	// MaxRequestBytes is the largest request body accepted. Default 64 KiB.
	MaxRequestBytes int
	// MaxBatchTokens caps a call's estimated prompt size (bytes/4, see
	// EstimateTokens); a group of requests over it is split into several
	// calls, and a request over it alone fails. 0 means no cap. Default 0.
	MaxBatchTokens int
	// MaxResultBytes is the largest result body the broker accepts; a
	// larger answer ends as an error result (and a dead letter) rather than
	// a publish that fails on every attempt. Default 1 MiB less 8 KiB for
	// headers (the NATS default max_payload).
	MaxResultBytes int
	// MaxInflight is how many batches may be in calls at once, per lane.
	// Default 4.
	MaxInflight int
	// CallTimeout bounds one provider call. Default 2m.
	CallTimeout time.Duration
	// AckWait is the broker's redelivery timer for the consumer; the engine
	// reports progress every AckWait/3 while a request is in a call.
	// Default 60s.
	AckWait time.Duration
	// RetryBackoff is the delay before the first retry of a failed request;
	// it doubles with each attempt up to RetryMaxBackoff, with jitter.
	// Defaults 1s and 1m.
	RetryBackoff    time.Duration
	RetryMaxBackoff time.Duration
	// ShutdownTimeout is how long Run lets in-flight calls finish after its
	// context ends; requests not done by then are handed back to the broker.
	// Default 30s.
	ShutdownTimeout time.Duration
	// RequestTTL is the longest a request may wait, counted from when the
	// broker stored it; an older one ends as an error result "expired" and
	// a dead letter, whatever the provider's state. Default 24h.
	RequestTTL time.Duration
	// ProbeInterval is the longest wait between two probe calls while the
	// provider cannot serve anyone (a circuit breaker is open); the first
	// probe comes after a second and the wait doubles up to it.
	// Default 1m.
	ProbeInterval time.Duration
	// ModelMaxOutputTokens overrides the output limit per call of the named
	// models (MODEL_MAX_OUTPUT_TOKENS); other models' limits come from the
	// provider's built-in table when it has one (provider.OutputLimiter).
	// A combined call takes only as many requests as their expected answers
	// fit.
	ModelMaxOutputTokens map[string]int
	// DefaultOutputTokens is the answer length the planner expects of a
	// request without max_output_tokens before its group's average is
	// learned. Default 256.
	DefaultOutputTokens int
	// DefaultModel is used for requests that name no model. Required.
	DefaultModel string
	// EmbeddingModel is used for embedding requests (kind "embedding")
	// that name no model (EMBEDDING_MODEL). An embedding request may always
	// name it, as any request may name DefaultModel. Default
	// DefaultEmbeddingModel.
	EmbeddingModel string
	// EmbeddingMaxInputs is the most embedding requests one embeddings
	// call carries (EMBEDDING_MAX_INPUTS); an embedding group fills a call
	// at this size. Default 2048, OpenAI's limit per call.
	EmbeddingMaxInputs int
	// RequestSubjects and UrgentSubjects are the subject filters of the two
	// lanes; the topic of a request is what their > wildcard covers.
	// Defaults "ai.requests.>" and "ai.urgent.>".
	RequestSubjects []string
	UrgentSubjects  []string
	// ResultPrefix is where results go without a Batch-Reply-To header:
	// <ResultPrefix>.<topic>. Default "ai.results".
	ResultPrefix string
	// DeadPrefix is where dead letters go: <DeadPrefix>.<topic>.
	// Default "ai.dead".
	DeadPrefix string

	// ReplySubjects are the filters a request's Batch-Reply-To must match
	// (REPLY_SUBJECTS). A request naming another subject ends, before any
	// call, as an error result on <ResultPrefix>.<topic> and a dead letter:
	// the worker never publishes to it. Default wire.ReplySubjects
	// ("ai.results.>" and "_INBOX.>"); ">" allows any subject the other
	// checks allow.
	ReplySubjects []string
	// AllowedModels are the models a request may name (ALLOWED_MODELS); a
	// request naming another ends, before any call, as an error result and
	// a dead letter. DefaultModel is always allowed. Nil, or a list holding
	// "*", allows any model. Default nil.
	AllowedModels []string
	// MaxOutputTokensLimit is the largest max_output_tokens a request may
	// ask for (MAX_OUTPUT_TOKENS_LIMIT); a request asking for more ends,
	// before any call, as an error result and a dead letter. 0 means no
	// limit but the model's own. Default 0.
	MaxOutputTokensLimit int
}

// Defaults of Config's fields: the one place each is stated. cmd/worker's
// settings default to the same values (a test checks that they agree, and
// with the README and the Kubernetes ConfigMap).
const (
	DefaultMaxBatchSize    = 50
	DefaultHoldMaxRequests = 5000
	DefaultHoldMaxBytes    = 32 << 20
	DefaultJobPollInterval = 30 * time.Second
	DefaultInterval        = time.Hour
	DefaultMaxWait         = 5 * time.Minute
	DefaultPollInterval    = 250 * time.Millisecond
	DefaultMaxDeliver      = 5
	DefaultMaxRequestBytes = 64 << 10
	// DefaultMaxResultBytes is the NATS default max_payload (1 MiB) less
	// 8 KiB for headers.
	DefaultMaxResultBytes  = 1<<20 - 8<<10
	DefaultMaxInflight     = 4
	DefaultCallTimeout     = 2 * time.Minute
	DefaultAckWait         = 60 * time.Second
	DefaultRetryBackoff    = time.Second
	DefaultRetryMaxBackoff = time.Minute
	DefaultShutdownTimeout = 30 * time.Second
	DefaultRequestTTL      = 24 * time.Hour
	DefaultProbeInterval   = time.Minute
	// DefaultOutputTokens is a request's expected answer length before
	// its group's average is known.
	DefaultOutputTokens = 256
	// DefaultMaxOutputTokensLimit: no limit on a request's
	// max_output_tokens but the model's own.
	DefaultMaxOutputTokensLimit = 0
	// AnyModel in AllowedModels allows every model.
	AnyModel = "*"
	// DefaultEmbeddingModel is the model of embedding requests that name
	// none.
	DefaultEmbeddingModel = "text-embedding-3-small"
	// DefaultEmbeddingMaxInputs is OpenAI's limit of inputs per
	// embeddings call.
	DefaultEmbeddingMaxInputs = 2048
)

// DefaultReplySubjects are ReplySubjects' default filters: wire.ReplySubjects.
func DefaultReplySubjects() []string { return strings.Split(wire.ReplySubjects, ",") }

// firstProbe is the wait before the first probe of an open breaker.
const firstProbe = time.Second

// WithDefaults returns c with every unset field given its default.
func (c Config) WithDefaults() Config {
	setDefault(&c.MaxBatchSize, DefaultMaxBatchSize)
	setDefault(&c.HoldMaxRequests, max(DefaultHoldMaxRequests, c.MaxBatchSize))
	setDefault(&c.HoldMaxBytes, DefaultHoldMaxBytes)
	setDefault(&c.JobPollInterval, DefaultJobPollInterval)
	setDefault(&c.Interval, DefaultInterval)
	setDefault(&c.MaxWait, DefaultMaxWait)
	setDefault(&c.PollInterval, DefaultPollInterval)
	setDefault(&c.MaxDeliver, DefaultMaxDeliver)
	setDefault(&c.MaxRequestBytes, DefaultMaxRequestBytes)
	setDefault(&c.MaxResultBytes, DefaultMaxResultBytes)
	setDefault(&c.MaxInflight, DefaultMaxInflight)
	setDefault(&c.CallTimeout, DefaultCallTimeout)
	setDefault(&c.AckWait, DefaultAckWait)
	setDefault(&c.RetryBackoff, DefaultRetryBackoff)
	setDefault(&c.RetryMaxBackoff, DefaultRetryMaxBackoff)
	setDefault(&c.ShutdownTimeout, DefaultShutdownTimeout)
	setDefault(&c.RequestTTL, DefaultRequestTTL)
	setDefault(&c.ProbeInterval, DefaultProbeInterval)
	setDefault(&c.DefaultOutputTokens, DefaultOutputTokens)
	setDefault(&c.EmbeddingModel, DefaultEmbeddingModel)
	setDefault(&c.EmbeddingMaxInputs, DefaultEmbeddingMaxInputs)
	setDefault(&c.ResultPrefix, wire.ResultPrefix)
	setDefault(&c.DeadPrefix, wire.DeadPrefix)
	if len(c.RequestSubjects) == 0 {
		c.RequestSubjects = []string{wire.RequestSubjects}
	}
	if len(c.UrgentSubjects) == 0 {
		c.UrgentSubjects = []string{wire.UrgentSubjects}
	}
	if len(c.ReplySubjects) == 0 {
		c.ReplySubjects = DefaultReplySubjects()
	}
	return c
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// Validate reports every setting that is out of range, naming the field and
// what is allowed. It expects defaults to be filled in.
func (c Config) Validate() error {
	var errs []error
	positive := func(name string, v int) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s is %d, want a whole number of 1 or more", name, v))
		}
	}
	positiveDur := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s is %s, want a duration above 0", name, d))
		}
	}
	positive("MaxBatchSize", c.MaxBatchSize)
	positive("HoldMaxRequests", c.HoldMaxRequests)
	positive("HoldMaxBytes", c.HoldMaxBytes)
	if c.HoldMaxRequests > 0 && c.HoldMaxRequests < c.MaxBatchSize {
		errs = append(errs, fmt.Errorf("HoldMaxRequests (%d) is below MaxBatchSize (%d): the window must hold a full call", c.HoldMaxRequests, c.MaxBatchSize))
	}
	positive("MaxDeliver", c.MaxDeliver)
	positive("MaxRequestBytes", c.MaxRequestBytes)
	positive("MaxResultBytes", c.MaxResultBytes)
	positive("MaxInflight", c.MaxInflight)
	if c.MaxBatchTokens < 0 {
		errs = append(errs, fmt.Errorf("MaxBatchTokens is %d, want 0 (no cap) or more", c.MaxBatchTokens))
	}
	positiveDur("Interval", c.Interval)
	positiveDur("MaxWait", c.MaxWait)
	positiveDur("PollInterval", c.PollInterval)
	positiveDur("CallTimeout", c.CallTimeout)
	positiveDur("AckWait", c.AckWait)
	positiveDur("RetryBackoff", c.RetryBackoff)
	positiveDur("ShutdownTimeout", c.ShutdownTimeout)
	positiveDur("JobPollInterval", c.JobPollInterval)
	positiveDur("RequestTTL", c.RequestTTL)
	positiveDur("ProbeInterval", c.ProbeInterval)
	positive("DefaultOutputTokens", c.DefaultOutputTokens)
	positive("EmbeddingMaxInputs", c.EmbeddingMaxInputs)
	for model, n := range c.ModelMaxOutputTokens {
		if n <= 0 || model == "" {
			errs = append(errs, fmt.Errorf("ModelMaxOutputTokens[%q] is %d, want a model name and a whole number of 1 or more", model, n))
		}
	}
	if c.Async && c.Immediate {
		errs = append(errs, errors.New("Async and Immediate exclude each other: a Batch API job is a batch"))
	}
	if c.RetryMaxBackoff < c.RetryBackoff {
		errs = append(errs, fmt.Errorf("RetryMaxBackoff (%s) is below RetryBackoff (%s)", c.RetryMaxBackoff, c.RetryBackoff))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("AckWait is %s, want at least 1s so progress reports reach the broker in time", c.AckWait))
	}
	if c.DefaultModel == "" {
		errs = append(errs, errors.New("DefaultModel is empty, want the model for requests that name none"))
	}
	if c.ResultPrefix == "" || c.DeadPrefix == "" {
		errs = append(errs, errors.New("ResultPrefix and DeadPrefix must not be empty"))
	}
	for _, f := range c.ReplySubjects {
		if !validFilter(f) {
			errs = append(errs, fmt.Errorf("ReplySubjects holds %q, want subject filters such as ai.results.> or _INBOX.>", f))
		}
	}
	for _, m := range c.AllowedModels {
		if strings.TrimSpace(m) == "" || strings.TrimSpace(m) != m {
			errs = append(errs, fmt.Errorf("AllowedModels holds %q, want model names (or %q for any)", m, AnyModel))
		}
	}
	if c.MaxOutputTokensLimit < 0 {
		errs = append(errs, fmt.Errorf("MaxOutputTokensLimit is %d, want 0 (no limit) or more", c.MaxOutputTokensLimit))
	}
	return errors.Join(errs...)
}

// RedeliveryWindow is the longest time between a request's first delivery
// and its last, when nothing crashes: every attempt may hold the request for
// a call and a publish, and wait out the longest backoff. The results and
// dead-letter streams keep their duplicate windows at least this long so a
// redelivered request never stores a second result.
func (c Config) RedeliveryWindow() time.Duration {
	hold := max(c.AckWait, c.CallTimeout+c.AckWait)
	return time.Duration(c.MaxDeliver) * (hold + c.RetryMaxBackoff)
}
