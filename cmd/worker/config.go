package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/sethvargo/go-envconfig"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/admin"
	"github.com/aibatch/aibatch/internal/envconf"
	"github.com/aibatch/aibatch/internal/fleet"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/wire"
)

// config is every setting the worker reads from its environment. Only this
// command reads the environment; packages take plain structs. A field
// tagged secret:"true" holds a secret (a key, token or password): it is
// never logged, and batch-stats shows it as [redacted]. Paths of
// credential files are not secrets.
type config struct {
	UseBatchedClient   bool          `env:"USE_BATCHED_CLIENT, default=true"`
	BatchInterval      time.Duration `env:"BATCH_INTERVAL, default=1h"`
	BatchIntervalHours string        `env:"BATCH_INTERVAL_HOURS"`
	MaxBatchSize       int           `env:"MAX_BATCH_SIZE, default=50"`
	HoldMaxRequests    int           `env:"HOLD_MAX_REQUESTS, default=5000"`
	HoldMaxBytes       byteSize      `env:"HOLD_MAX_BYTES, default=32MiB"`
	IsolateTopics      bool          `env:"ISOLATE_TOPICS, default=true"`
	MaxWait            time.Duration `env:"MAX_WAIT, default=5m"`
	MaxDeliver         int           `env:"MAX_DELIVER, default=5"`
	MaxRequestBytes    byteSize      `env:"MAX_REQUEST_BYTES, default=64KiB"`
	MaxInflight        int           `env:"MAX_INFLIGHT_BATCHES, default=4"`
	PollInterval       time.Duration `env:"POLL_INTERVAL, default=250ms"`
	AckWait            time.Duration `env:"ACK_WAIT, default=60s"`
	ProviderTimeout    time.Duration `env:"PROVIDER_TIMEOUT, default=2m"`
	RetryBackoff       time.Duration `env:"RETRY_BACKOFF, default=1s"`
	RetryMaxBackoff    time.Duration `env:"RETRY_MAX_BACKOFF, default=1m"`
	ShutdownTimeout    time.Duration `env:"SHUTDOWN_TIMEOUT, default=30s"`
	RequestTTL         time.Duration `env:"REQUEST_TTL, default=24h"`
	ProbeInterval      time.Duration `env:"PROVIDER_PROBE_INTERVAL, default=1m"`
	// ModelMaxOutputTokens is "model=tokens,..."; parsed by validate.
	ModelMaxOutputTokens string `env:"MODEL_MAX_OUTPUT_TOKENS"`
	DefaultOutputTokens  int    `env:"DEFAULT_OUTPUT_TOKENS, default=256"`
	AttemptsBucket       string `env:"ATTEMPTS_BUCKET, default=AI_ATTEMPTS"`

	NATSURL         string        `env:"NATS_URL"`
	NATSListen      string        `env:"NATS_LISTEN, default=127.0.0.1:4222"`
	StoreDir        string        `env:"STORE_DIR, default=./data"`
	Stream          string        `env:"STREAM, default=AI_REQUESTS"`
	RequestSubjects []string      `env:"REQUEST_SUBJECTS, default=ai.requests.>"`
	UrgentSubjects  []string      `env:"URGENT_SUBJECTS, default=ai.urgent.>"`
	DedupeWindow    time.Duration `env:"DEDUPE_WINDOW, default=2m"`
	ResultsStream   string        `env:"RESULTS_STREAM, default=AI_RESULTS"`
	ResultsPrefix   string        `env:"RESULTS_PREFIX, default=ai.results"`
	ResultsMaxAge   time.Duration `env:"RESULTS_MAX_AGE, default=24h"`
	DeadStream      string        `env:"DEAD_STREAM, default=AI_DEAD"`
	DeadPrefix      string        `env:"DEAD_PREFIX, default=ai.dead"`
	Consumer        string        `env:"CONSUMER, default=aibatch"`
	StreamReplicas  int           `env:"STREAM_REPLICAS, default=1"`
	// StreamMaxMsgs and StreamMaxBytes bound the request stream (0: no
	// limit); when it is full, publishers get an error.
	StreamMaxMsgs  int64    `env:"STREAM_MAX_MSGS, default=0"`
	StreamMaxBytes byteSize `env:"STREAM_MAX_BYTES, default=0"`

	NATSCreds    string `env:"NATS_CREDS"`
	NATSNKeySeed string `env:"NATS_NKEY_SEED"`
	NATSUser     string `env:"NATS_USER"`
	NATSPassword string `env:"NATS_PASSWORD" secret:"true"`
	NATSToken    string `env:"NATS_TOKEN" secret:"true"`
	NATSTLSCA    string `env:"NATS_TLS_CA"`
	NATSTLSCert  string `env:"NATS_TLS_CERT"`
	NATSTLSKey   string `env:"NATS_TLS_KEY"`

	Provider       string `env:"PROVIDER, default=openai"`
	BatchMode      string `env:"BATCH_MODE, default=combined"`
	Model          string `env:"MODEL, default=gpt-4o-mini"`
	EmbeddingModel string `env:"EMBEDDING_MODEL, default=text-embedding-3-small"`
	// EmbeddingMaxInputs is the most inputs of one embeddings call.
	EmbeddingMaxInputs int    `env:"EMBEDDING_MAX_INPUTS, default=2048"`
	OpenAIAPIKey       string `env:"OPENAI_API_KEY" secret:"true"`
	OpenAIBaseURL      string `env:"OPENAI_BASE_URL"`
	AnthropicAPIKey    string `env:"ANTHROPIC_API_KEY" secret:"true"`
	AnthropicBaseURL   string `env:"ANTHROPIC_BASE_URL"`
	HTTPProviderURL    string `env:"HTTP_PROVIDER_URL"`
	HTTPProviderToken  string `env:"HTTP_PROVIDER_TOKEN" secret:"true"`
	ProviderRPM        int    `env:"PROVIDER_RPM, default=0"`
	ProviderTPM        int    `env:"PROVIDER_TPM, default=0"`
	// The fleet's share of them and the Batch API queue (quota.go).
	QuotaScope            string        `env:"QUOTA_SCOPE"`
	QuotaHeartbeat        time.Duration `env:"QUOTA_HEARTBEAT, default=1s"`
	ProviderQueueTokens   int           `env:"PROVIDER_QUEUE_TOKENS, default=0"`
	ProviderQueueRequests int           `env:"PROVIDER_QUEUE_REQUESTS, default=0"`
	MaxBatchTokens        int           `env:"MAX_BATCH_TOKENS, default=100000"`
	JobPollInterval       time.Duration `env:"JOB_POLL_INTERVAL, default=30s"`
	JobsBucket            string        `env:"JOBS_BUCKET, default=AI_JOBS"`
	Prices                string        `env:"PRICES"`
	BatchDiscount         float64       `env:"BATCH_DISCOUNT, default=0.5"`

	LogLevel  string `env:"LOG_LEVEL, default=info"`
	LogFormat string `env:"LOG_FORMAT, default=json"`

	// AdminAddr is where the admin API listens; "" turns it off.
	AdminAddr          string        `env:"ADMIN_ADDR, default=127.0.0.1:8080"`
	AdminToken         string        `env:"ADMIN_TOKEN" secret:"true"`
	StatsBucket        string        `env:"STATS_BUCKET, default=AI_STATS"`
	StatsFlushInterval time.Duration `env:"STATS_FLUSH_INTERVAL, default=5s"`

	// What a producer may ask of the worker (security.go).
	ReplySubjects []string `env:"REPLY_SUBJECTS, default=ai.results.>,_INBOX.>"`
	// AllowedModels empty means MODEL and the models priced in PRICES.
	AllowedModels        []string `env:"ALLOWED_MODELS"`
	MaxOutputTokensLimit int      `env:"MAX_OUTPUT_TOKENS_LIMIT, default=0"`
	// TopicBudgets is "topic=tokens,..."; parsed by validateSecurity.
	TopicBudgets string `env:"TOPIC_BUDGETS"`

	// What the worker does to spend less (cost.go).
	ResponseCacheTTL              time.Duration `env:"RESPONSE_CACHE_TTL, default=0"`
	ResponseCacheNondeterministic bool          `env:"RESPONSE_CACHE_NONDETERMINISTIC, default=false"`
	CacheBucket                   string        `env:"CACHE_BUCKET, default=AI_CACHE"`
	AsyncCombine                  bool          `env:"ASYNC_COMBINE, default=false"`
	BatchServiceTier              string        `env:"BATCH_SERVICE_TIER"`
	UrgentServiceTier             string        `env:"URGENT_SERVICE_TIER"`
	// Shadow sampling and the quality guard (shadow.go).
	ShadowRate           float64 `env:"SHADOW_RATE, default=0"`
	ShadowAgreeAt        float64 `env:"SHADOW_AGREE_AT, default=0.9"`
	ShadowEmbeddingModel string  `env:"SHADOW_EMBEDDING_MODEL"`
	QualityFloor         float64 `env:"QUALITY_FLOOR, default=0"`
	ShadowWindow         int     `env:"SHADOW_WINDOW, default=50"`
}

// loadConfig reads the environment through lookup, with a .env file in the
// working directory underneath it (the real environment wins), and checks
// every value. Errors name the variable, its value and what is allowed.
func loadConfig(ctx context.Context, lookup envconfig.Lookuper) (config, error) {
	lookup = envconf.EmptyIsUnset{L: lookup, Except: emptyMeansOff}
	var c config
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &c, Lookuper: lookup}); err != nil {
		return c, fmt.Errorf("configuration: %s", envErrorText(err))
	}
	if err := c.resolveInterval(lookup); err != nil {
		return c, fmt.Errorf("configuration: %w", err)
	}
	if err := c.validate(); err != nil {
		return c, fmt.Errorf("configuration: %w", err)
	}
	return c, nil
}

// withDotEnv layers a .env file in the working directory under lookup.
func withDotEnv(lookup envconfig.Lookuper, path string) (envconfig.Lookuper, error) {
	vals, err := godotenv.Read(path)
	if errors.Is(err, os.ErrNotExist) {
		return lookup, nil
	}
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %s (want KEY=value lines; the text is not shown, it may hold a secret)", path, dotEnvProblem(err))
	}
	// An empty variable in the environment lets the file's value through.
	return envconfig.MultiLookuper(envconf.EmptyIsUnset{L: lookup, Except: emptyMeansOff}, envconfig.MapLookuper(vals)), nil
}

// emptyMeansOff are the variables whose empty value means something of its
// own: the feature is off. Every other variable set to "" (or to blanks)
// reads as unset, so its default applies: docker-compose's ${VAR} of an
// unset VAR and an empty ConfigMap key give "".
var emptyMeansOff = map[string]bool{"ADMIN_ADDR": true, "STATS_BUCKET": true}

// dotEnvProblem says what is wrong with a .env file without quoting it:
// godotenv's parse errors quote the file from the bad line on, secrets
// included.
func dotEnvProblem(err error) string {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "unexpected character"):
		// `unexpected character "-" in variable name near "<rest of file>"`
		msg, _, _ = strings.Cut(msg, " near ")
		return msg
	case strings.HasPrefix(msg, "unterminated quoted value"):
		return "unterminated quoted value"
	}
	return "not a valid .env file"
}

// resolveInterval accepts BATCH_INTERVAL (a Go duration) or the seed's
// BATCH_INTERVAL_HOURS (a number of hours); both may be set only if they
// agree. With neither set, BATCH_INTERVAL's default stands.
func (c *config) resolveInterval(lookup envconfig.Lookuper) error {
	_, durSet := lookup.Lookup("BATCH_INTERVAL")
	if c.BatchIntervalHours != "" {
		h, err := strconv.ParseFloat(c.BatchIntervalHours, 64)
		if err != nil || !(h > 0) || math.IsInf(h, 0) || h > 24*365 { // !(h > 0) also rejects NaN
			return fmt.Errorf("BATCH_INTERVAL_HOURS=%q: want a number of hours above 0, such as 0.5 or 2", c.BatchIntervalHours)
		}
		fromHours := time.Duration(h * float64(time.Hour))
		if durSet && fromHours != c.BatchInterval {
			return fmt.Errorf("BATCH_INTERVAL=%s and BATCH_INTERVAL_HOURS=%s disagree: set one of them", c.BatchInterval, c.BatchIntervalHours)
		}
		c.BatchInterval = fromHours
	}
	return nil
}

func (c config) validate() error {
	var errs []error
	bad := func(name string, value any, want string) {
		errs = append(errs, fmt.Errorf("%s=%v: want %s", name, value, want))
	}
	ints := []struct {
		name     string
		v, lo, h int
	}{
		{"MAX_BATCH_SIZE", c.MaxBatchSize, 1, 10000},
		{"MAX_DELIVER", c.MaxDeliver, 1, 100},
		{"MAX_INFLIGHT_BATCHES", c.MaxInflight, 1, 1024},
		{"PROVIDER_RPM", c.ProviderRPM, 0, 1_000_000},
		{"PROVIDER_TPM", c.ProviderTPM, 0, 1_000_000_000},
		{"PROVIDER_QUEUE_TOKENS", c.ProviderQueueTokens, 0, 1_000_000_000_000},
		{"PROVIDER_QUEUE_REQUESTS", c.ProviderQueueRequests, 0, 1_000_000_000},
		{"MAX_BATCH_TOKENS", c.MaxBatchTokens, 0, 10_000_000},
		{"STREAM_REPLICAS", c.StreamReplicas, 1, 5},
		{"DEFAULT_OUTPUT_TOKENS", c.DefaultOutputTokens, 1, 10_000_000},
		{"HOLD_MAX_REQUESTS", c.HoldMaxRequests, 1, 10_000_000},
		{"EMBEDDING_MAX_INPUTS", c.EmbeddingMaxInputs, 1, 100_000},
	}
	for _, i := range ints {
		if i.v < i.lo || i.v > i.h {
			bad(i.name, i.v, fmt.Sprintf("a whole number from %d to %d", i.lo, i.h))
		}
	}
	durs := []struct {
		name   string
		v, min time.Duration
	}{
		{"BATCH_INTERVAL", c.BatchInterval, time.Millisecond},
		{"MAX_WAIT", c.MaxWait, time.Millisecond},
		{"POLL_INTERVAL", c.PollInterval, time.Millisecond},
		{"ACK_WAIT", c.AckWait, time.Second},
		{"PROVIDER_TIMEOUT", c.ProviderTimeout, time.Millisecond},
		{"RETRY_BACKOFF", c.RetryBackoff, time.Millisecond},
		{"RETRY_MAX_BACKOFF", c.RetryMaxBackoff, c.RetryBackoff},
		{"SHUTDOWN_TIMEOUT", c.ShutdownTimeout, time.Millisecond},
		{"JOB_POLL_INTERVAL", c.JobPollInterval, 10 * time.Millisecond},
		{"DEDUPE_WINDOW", c.DedupeWindow, time.Second},
		{"RESULTS_MAX_AGE", c.ResultsMaxAge, time.Minute},
		{"STATS_FLUSH_INTERVAL", c.StatsFlushInterval, 100 * time.Millisecond},
		{"REQUEST_TTL", c.RequestTTL, time.Second},
		{"PROVIDER_PROBE_INTERVAL", c.ProbeInterval, 10 * time.Millisecond},
		{"QUOTA_HEARTBEAT", c.QuotaHeartbeat, 100 * time.Millisecond},
	}
	for _, d := range durs {
		if d.v < d.min {
			bad(d.name, d.v, fmt.Sprintf("a duration of at least %s, such as 90s, 5m or 1h30m", d.min))
		}
	}
	if _, err := parseModelLimits(c.ModelMaxOutputTokens); err != nil {
		errs = append(errs, err)
	}
	if !bucketName.MatchString(c.AttemptsBucket) {
		bad("ATTEMPTS_BUCKET", fmt.Sprintf("%q", c.AttemptsBucket), "letters, digits, - and _ only, such as AI_ATTEMPTS")
	}
	if c.HoldMaxBytes < c.MaxRequestBytes {
		bad("HOLD_MAX_BYTES", int64(c.HoldMaxBytes), fmt.Sprintf("at least MAX_REQUEST_BYTES (%d), such as 32MiB", int64(c.MaxRequestBytes)))
	}
	if c.MaxRequestBytes < 16 || c.MaxRequestBytes > 8<<20 {
		bad("MAX_REQUEST_BYTES", int64(c.MaxRequestBytes), "a size from 16 bytes to 8MiB, such as 65536 or 64KiB")
	}
	// A full request stream must still hold one batch, and one request of
	// the largest size.
	if c.StreamMaxMsgs != 0 && c.StreamMaxMsgs < int64(max(c.MaxBatchSize, 1)) {
		bad("STREAM_MAX_MSGS", c.StreamMaxMsgs, fmt.Sprintf("0 (no limit) or at least MAX_BATCH_SIZE (%d)", c.MaxBatchSize))
	}
	if c.StreamMaxBytes != 0 && c.StreamMaxBytes < c.MaxRequestBytes {
		bad("STREAM_MAX_BYTES", int64(c.StreamMaxBytes), fmt.Sprintf("0 (no limit) or at least MAX_REQUEST_BYTES (%d), such as 1GiB", int64(c.MaxRequestBytes)))
	}
	if c.NATSURL == "" {
		if _, _, err := net.SplitHostPort(c.NATSListen); err != nil {
			bad("NATS_LISTEN", c.NATSListen, "host:port for the embedded server, such as 127.0.0.1:4222")
		}
		if c.StoreDir == "" {
			bad("STORE_DIR", `""`, "a directory for the embedded server's files")
		}
	} else if !strings.Contains(c.NATSURL, "://") {
		bad("NATS_URL", c.NATSURL, "a URL such as nats://127.0.0.1:4222, or empty for the embedded server")
	}
	errs = append(errs, c.validateProvider()...)
	if err := c.auth().Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Model == "" {
		errs = append(errs, errors.New(`MODEL="": want the model name for requests that name none`))
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("LOG_LEVEL", c.LogLevel, "debug, info, warn or error")
	}
	switch c.LogFormat {
	case "json", "console":
	default:
		bad("LOG_FORMAT", c.LogFormat, "json or console")
	}
	errs = append(errs, c.validateOps()...)
	errs = append(errs, c.validateSecurity()...)
	errs = append(errs, c.validateCost()...)
	errs = append(errs, c.validateShadow()...)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := c.topology().Validate(); err != nil {
		return fmt.Errorf("streams (STREAM, REQUEST_SUBJECTS, URGENT_SUBJECTS, RESULTS_PREFIX, DEAD_PREFIX, RESULTS_MAX_AGE): %w", err)
	}
	return c.engine().Validate()
}

// validateOps checks the admin API, fleet statistics and control settings.
func (c config) validateOps() []error {
	var errs []error
	if c.AdminAddr != "" {
		// A non-loopback address without a token is refused: the admin API
		// can flush the fleet and shows the configuration.
		if err := admin.CheckExposure(c.AdminAddr, c.AdminToken); err != nil {
			errs = append(errs, err)
		}
	}
	if c.QuotaScope != "" && !fleet.ValidQuotaScope(c.QuotaScope) {
		errs = append(errs, fmt.Errorf("QUOTA_SCOPE=%q: want letters, digits, - and _ only, such as openai-prod, or empty for <STREAM>-<PROVIDER>", c.QuotaScope))
	}
	if c.StatsBucket != "" && !bucketName.MatchString(c.StatsBucket) {
		errs = append(errs, fmt.Errorf("STATS_BUCKET=%q: want letters, digits, - and _ only, such as AI_STATS, or empty to turn fleet totals off", c.StatsBucket))
	}
	// Flush requests must not be captured as AI requests.
	for _, group := range []struct {
		name     string
		subjects []string
	}{{"REQUEST_SUBJECTS", c.RequestSubjects}, {"URGENT_SUBJECTS", c.UrgentSubjects}} {
		for _, s := range group.subjects {
			if server.IsValidSubject(s) && server.SubjectsCollide(s, wire.ControlFlushSubject) {
				errs = append(errs, fmt.Errorf("%s=%s: captures %s, the workers' control subject; narrow it, such as ai.requests.>", group.name, strings.Join(group.subjects, ","), wire.ControlFlushSubject))
			}
		}
	}
	return errs
}

// bucketName is what JetStream accepts as a key-value bucket name.
var bucketName = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// settings returns every setting by its variable name, as the admin API
// shows them (it redacts the secrets).
func (c config) settings() map[string]string {
	out := make(map[string]string)
	v := reflect.ValueOf(c)
	t := v.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("env"), ",")
		if name == "" {
			continue
		}
		switch f := v.Field(i).Interface().(type) {
		case []string:
			out[name] = strings.Join(f, ",")
		case byteSize:
			out[name] = strconv.FormatInt(int64(f), 10)
		default:
			out[name] = fmt.Sprint(f)
		}
	}
	// The models in effect, when they come from MODEL and PRICES.
	out["ALLOWED_MODELS"] = strings.Join(c.allowedModels(), ",")
	return out
}

// secretSettings names the settings that hold secrets: the fields tagged
// secret:"true".
func secretSettings() []string {
	var out []string
	t := reflect.TypeFor[config]()
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Tag.Get("secret") == "true" {
			name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
			out = append(out, name)
		}
	}
	return out
}

// engine returns the batching engine's settings.
func (c config) engine() batch.Config {
	return batch.Config{
		Immediate:             !c.UseBatchedClient,
		Async:                 c.BatchMode == "async",
		JobPollInterval:       c.JobPollInterval,
		MaxBatchTokens:        c.MaxBatchTokens,
		MaxBatchSize:          c.MaxBatchSize,
		Interval:              c.BatchInterval,
		MaxWait:               c.MaxWait,
		PollInterval:          c.PollInterval,
		MaxDeliver:            c.MaxDeliver,
		MaxRequestBytes:       int(c.MaxRequestBytes),
		MaxInflight:           c.MaxInflight,
		CallTimeout:           c.ProviderTimeout,
		AckWait:               c.AckWait,
		RetryBackoff:          c.RetryBackoff,
		RetryMaxBackoff:       c.RetryMaxBackoff,
		ShutdownTimeout:       c.ShutdownTimeout,
		RequestTTL:            c.RequestTTL,
		ProbeInterval:         c.ProbeInterval,
		ModelMaxOutputTokens:  must(parseModelLimits(c.ModelMaxOutputTokens)),
		DefaultOutputTokens:   c.DefaultOutputTokens,
		DefaultModel:          c.Model,
		EmbeddingModel:        c.EmbeddingModel,
		EmbeddingMaxInputs:    c.EmbeddingMaxInputs,
		RequestSubjects:       c.RequestSubjects,
		UrgentSubjects:        c.UrgentSubjects,
		ResultPrefix:          c.ResultsPrefix,
		DeadPrefix:            c.DeadPrefix,
		ReplySubjects:         c.ReplySubjects,
		AllowedModels:         c.allowedModels(),
		MaxOutputTokensLimit:  c.MaxOutputTokensLimit,
		CacheNondeterministic: c.ResponseCacheNondeterministic,
		AsyncCombine:          c.AsyncCombine,
		BatchServiceTier:      c.BatchServiceTier,
		UrgentServiceTier:     c.UrgentServiceTier,
	}.WithDefaults()
}

// topology returns the streams and consumers the worker uses. The outcome
// streams' duplicate window covers the longest redelivery of a request.
func (c config) topology() jetstream.Topology {
	return jetstream.Topology{
		RequestStream:       c.Stream,
		RequestSubjects:     c.RequestSubjects,
		UrgentSubjects:      c.UrgentSubjects,
		DedupeWindow:        c.DedupeWindow,
		ResultStream:        c.ResultsStream,
		ResultSubjects:      []string{c.ResultsPrefix + ".>"},
		ResultMaxAge:        c.ResultsMaxAge,
		OutcomeDedupeWindow: c.engine().RedeliveryWindow(),
		DeadStream:          c.DeadStream,
		DeadSubjects:        []string{c.DeadPrefix + ".>"},
		Consumer:            c.Consumer,
		AckWait:             c.AckWait,
		Replicas:            c.StreamReplicas,
		MaxMsgs:             c.StreamMaxMsgs,
		MaxBytes:            int64(c.StreamMaxBytes),
	}.WithDefaults()
}

// envErrorText turns envconfig's "FieldName: cause" into "ENV_NAME: cause"
// so the message names the variable the operator set.
func envErrorText(err error) string {
	msg := err.Error()
	t := reflect.TypeFor[config]()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if strings.HasPrefix(msg, f.Name+":") {
			return name + ":" + strings.TrimPrefix(msg, f.Name+":") + wantFor(f.Type)
		}
	}
	return msg
}

// wantFor says what a field of type t accepts.
func wantFor(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[time.Duration]():
		return " (want a Go duration such as 90s, 5m or 1h30m)"
	case reflect.TypeFor[bool]():
		return " (want true or false)"
	case reflect.TypeFor[int](), reflect.TypeFor[int64]():
		return " (want a whole number)"
	}
	return ""
}

// parseModelLimits reads MODEL_MAX_OUTPUT_TOKENS: "model=tokens,..." with
// whole numbers of 1 or more; empty is none.
func parseModelLimits(v string) (map[string]int, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	limits := map[string]int{}
	for pair := range strings.SplitSeq(v, ",") {
		model, tokens, ok := strings.Cut(strings.TrimSpace(pair), "=")
		n, err := strconv.Atoi(strings.TrimSpace(tokens))
		if !ok || strings.TrimSpace(model) == "" || err != nil || n < 1 {
			return nil, fmt.Errorf("MODEL_MAX_OUTPUT_TOKENS=%s: want model=tokens pairs separated by commas, tokens a whole number of 1 or more, such as gpt-4o=16384,claude-sonnet-4-5=64000", v)
		}
		limits[strings.TrimSpace(model)] = n
	}
	return limits, nil
}

// must returns v; validate has already refused the values that fail.
func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("configuration not validated: %v", err))
	}
	return v
}

// byteSize is a size in bytes with an optional unit (envconf.ByteSize).
type byteSize = envconf.ByteSize
