package main

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
)

// secret is the API key every case carries; no error may show it.
const secret = "sk-test-do-not-print-4f1c"

// load runs loadConfig on env plus OPENAI_API_KEY=secret (env may override
// or, with "", clear it).
func load(t *testing.T, env map[string]string) (config, error) {
	t.Helper()
	m := map[string]string{"OPENAI_API_KEY": secret}
	for k, v := range env {
		m[k] = v
	}
	if m["OPENAI_API_KEY"] == "" {
		delete(m, "OPENAI_API_KEY")
	}
	return loadConfig(context.Background(), envconfig.MapLookuper(m))
}

// defaults is the configuration of an environment that only sets the key.
func defaults() config {
	return config{
		UseBatchedClient:    true,
		BatchInterval:       time.Hour,
		MaxBatchSize:        50,
		MaxWait:             5 * time.Minute,
		MaxDeliver:          5,
		MaxRequestBytes:     65536,
		HoldMaxRequests:     5000,
		HoldMaxBytes:        32 << 20,
		IsolateTopics:       true,
		MaxInflight:         4,
		PollInterval:        250 * time.Millisecond,
		AckWait:             60 * time.Second,
		ProviderTimeout:     2 * time.Minute,
		RetryBackoff:        time.Second,
		RetryMaxBackoff:     time.Minute,
		ShutdownTimeout:     30 * time.Second,
		RequestTTL:          24 * time.Hour,
		ProbeInterval:       time.Minute,
		DefaultOutputTokens: 256,
		AttemptsBucket:      "AI_ATTEMPTS",
		NATSListen:          "127.0.0.1:4222",
		StoreDir:            "./data",
		Stream:              "AI_REQUESTS",
		RequestSubjects:     []string{"ai.requests.>"},
		UrgentSubjects:      []string{"ai.urgent.>"},
		DedupeWindow:        2 * time.Minute,
		ResultsStream:       "AI_RESULTS",
		ResultsPrefix:       "ai.results",
		ResultsMaxAge:       24 * time.Hour,
		DeadStream:          "AI_DEAD",
		DeadPrefix:          "ai.dead",
		Consumer:            "aibatch",
		StreamReplicas:      1,
		Provider:            "openai",
		BatchMode:           "combined",
		Model:               "gpt-4o-mini",
		EmbeddingModel:      "text-embedding-3-small",
		EmbeddingMaxInputs:  2048,
		MaxBatchTokens:      100000,
		JobPollInterval:     30 * time.Second,
		JobsBucket:          "AI_JOBS",
		BatchDiscount:       0.5,
		OpenAIAPIKey:        secret,
		LogLevel:            "info",
		LogFormat:           "json",

		AdminAddr:          "127.0.0.1:8080",
		StatsBucket:        "AI_STATS",
		StatsFlushInterval: 5 * time.Second,
		QuotaHeartbeat:     time.Second,

		ReplySubjects: []string{"ai.results.>", "_INBOX.>"},

		CacheBucket:   "AI_CACHE",
		ShadowAgreeAt: 0.9,
		ShadowWindow:  50,
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	got, err := load(t, nil)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	want := defaults()
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range gv.NumField() {
		f := gv.Type().Field(i)
		if g, w := gv.Field(i).Interface(), wv.Field(i).Interface(); !reflect.DeepEqual(g, w) {
			t.Errorf("%s (%s) = %v, want %v", f.Name, f.Tag.Get("env"), g, w)
		}
	}
	// The defaults make a valid engine and topology.
	if err := got.engine().Validate(); err != nil {
		t.Fatalf("engine config: %v", err)
	}
	if err := got.topology().Validate(); err != nil {
		t.Fatalf("topology: %v", err)
	}
}

func TestConfigValidValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		env   map[string]string
		check func(config) bool
	}{
		{"hours", map[string]string{"BATCH_INTERVAL_HOURS": "0.5"},
			func(c config) bool { return c.BatchInterval == 30*time.Minute }},
		{"hours whole", map[string]string{"BATCH_INTERVAL_HOURS": "2"},
			func(c config) bool { return c.BatchInterval == 2*time.Hour }},
		{"interval and hours agree", map[string]string{"BATCH_INTERVAL": "30m", "BATCH_INTERVAL_HOURS": "0.5"},
			func(c config) bool { return c.BatchInterval == 30*time.Minute }},
		{"interval", map[string]string{"BATCH_INTERVAL": "90s"},
			func(c config) bool { return c.BatchInterval == 90*time.Second }},
		{"embeddings", map[string]string{"PROVIDER": "http", "HTTP_PROVIDER_URL": "http://127.0.0.1:1/bulk", "EMBEDDING_MAX_INPUTS": "5000", "EMBEDDING_MODEL": "e5"},
			func(c config) bool {
				return c.engine().EmbeddingMaxInputs == 5000 && c.engine().EmbeddingModel == "e5"
			}},
		{"sizes", map[string]string{"MAX_BATCH_SIZE": "10000", "MAX_WAIT": "1ms"},
			func(c config) bool { return c.MaxBatchSize == 10000 && c.MaxWait == time.Millisecond }},
		{"bytes KiB", map[string]string{"MAX_REQUEST_BYTES": "64KiB"},
			func(c config) bool { return c.MaxRequestBytes == 64<<10 }},
		{"bytes MiB", map[string]string{"MAX_REQUEST_BYTES": "1MiB"},
			func(c config) bool { return c.MaxRequestBytes == 1<<20 }},
		{"bytes KB", map[string]string{"MAX_REQUEST_BYTES": "64KB"},
			func(c config) bool { return c.MaxRequestBytes == 64000 }},
		{"bytes plain", map[string]string{"MAX_REQUEST_BYTES": "16"},
			func(c config) bool { return c.MaxRequestBytes == 16 }},
		{"unbatched", map[string]string{"USE_BATCHED_CLIENT": "false"},
			func(c config) bool { return !c.UseBatchedClient && c.engine().Immediate }},
		{"base URL without key", map[string]string{"OPENAI_API_KEY": "", "OPENAI_BASE_URL": "http://127.0.0.1:1/v1"},
			func(c config) bool { return c.OpenAIAPIKey == "" && c.OpenAIBaseURL == "http://127.0.0.1:1/v1" }},
		{"external server ignores NATS_LISTEN", map[string]string{"NATS_URL": "nats://127.0.0.1:4222", "NATS_LISTEN": "bad"},
			func(c config) bool { return c.NATSURL == "nats://127.0.0.1:4222" }},
		{"subject lists", map[string]string{"REQUEST_SUBJECTS": "jobs.a.>,jobs.b.>", "URGENT_SUBJECTS": "jobs.now.>"},
			func(c config) bool {
				return reflect.DeepEqual(c.RequestSubjects, []string{"jobs.a.>", "jobs.b.>"}) &&
					reflect.DeepEqual(c.engine().RequestSubjects, c.RequestSubjects)
			}},
		{"log level any case", map[string]string{"LOG_LEVEL": "DEBUG", "LOG_FORMAT": "console"},
			func(c config) bool { return c.LogLevel == "DEBUG" && c.LogFormat == "console" }},
		{"results kept as long as the duplicate window", map[string]string{"RESULTS_MAX_AGE": "20m"},
			func(c config) bool { return c.topology().OutcomeDedupeWindow == 20*time.Minute }},
		{"stream limits", map[string]string{"STREAM_MAX_MSGS": "100000", "STREAM_MAX_BYTES": "1GiB"},
			func(c config) bool {
				top := c.topology()
				return c.StreamMaxMsgs == 100000 && c.StreamMaxBytes == 1<<30 && top.MaxMsgs == 100000 && top.MaxBytes == 1<<30
			}},
		{"stream limits at their least", map[string]string{"STREAM_MAX_MSGS": "50", "STREAM_MAX_BYTES": "64KiB"},
			func(c config) bool { return c.topology().MaxMsgs == 50 && c.topology().MaxBytes == 64<<10 }},
		{"stream limits in decimal units", map[string]string{"STREAM_MAX_BYTES": "2GB", "MAX_BATCH_SIZE": "10", "STREAM_MAX_MSGS": "10"},
			func(c config) bool { return c.topology().MaxBytes == 2_000_000_000 && c.topology().MaxMsgs == 10 }},
		{"reply subjects by default", nil,
			func(c config) bool {
				return reflect.DeepEqual(c.engine().ReplySubjects, []string{"ai.results.>", "_INBOX.>"})
			}},
		{"reply subjects set", map[string]string{"REPLY_SUBJECTS": "replies.*.>,_INBOX.>"},
			func(c config) bool {
				return reflect.DeepEqual(c.engine().ReplySubjects, []string{"replies.*.>", "_INBOX.>"})
			}},
		{"reply subjects: any", map[string]string{"REPLY_SUBJECTS": ">"},
			func(c config) bool { return reflect.DeepEqual(c.engine().ReplySubjects, []string{">"}) }},
		{"allowed models by default: MODEL", nil,
			func(c config) bool { return reflect.DeepEqual(c.engine().AllowedModels, []string{"gpt-4o-mini"}) }},
		{"allowed models by default: MODEL and the priced models, sorted", map[string]string{
			"MODEL": "gpt-4o", "PRICES": "gpt-4o-mini=0.15/0.60,gpt-4o=2.5/10,claude-3-5-haiku-latest=0.80/4"},
			func(c config) bool {
				return reflect.DeepEqual(c.engine().AllowedModels, []string{"gpt-4o", "claude-3-5-haiku-latest", "gpt-4o-mini"}) &&
					c.settings()["ALLOWED_MODELS"] == "gpt-4o,claude-3-5-haiku-latest,gpt-4o-mini"
			}},
		{"allowed models set", map[string]string{"ALLOWED_MODELS": "gpt-4o, o3-mini", "PRICES": "gpt-4o-mini=0.15/0.60"},
			func(c config) bool {
				// The engine adds MODEL (gpt-4o-mini) itself.
				return reflect.DeepEqual(c.engine().AllowedModels, []string{"gpt-4o", "o3-mini"})
			}},
		{"allowed models: any", map[string]string{"ALLOWED_MODELS": "*"},
			func(c config) bool { return reflect.DeepEqual(c.engine().AllowedModels, []string{"*"}) }},
		{"output limit", map[string]string{"MAX_OUTPUT_TOKENS_LIMIT": "4096"},
			func(c config) bool { return c.engine().MaxOutputTokensLimit == 4096 }},
		{"topic budgets", map[string]string{"TOPIC_BUDGETS": "billing=2000000, support.eu = 500000"},
			func(c config) bool {
				b, err := parseTopicBudgets(c.TopicBudgets)
				return err == nil && reflect.DeepEqual(b, map[string]int64{"billing": 2_000_000, "support.eu": 500_000})
			}},
		{"stream limits off", map[string]string{"STREAM_MAX_MSGS": "0", "STREAM_MAX_BYTES": "0"},
			func(c config) bool {
				// 0 reaches the server as -1: no limit.
				req := c.topology().Streams()[0]
				return req.MaxMsgs == -1 && req.MaxBytes == -1
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := load(t, tt.env)
			if err != nil {
				t.Fatalf("%v: %v", tt.env, err)
			}
			if !tt.check(c) {
				t.Fatalf("%v: unexpected config %+v", tt.env, c)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want []string // every one appears in the error
	}{
		{"batch size zero", map[string]string{"MAX_BATCH_SIZE": "0"},
			[]string{"MAX_BATCH_SIZE=0", "from 1 to 10000"}},
		{"batch size too big", map[string]string{"MAX_BATCH_SIZE": "10001"},
			[]string{"MAX_BATCH_SIZE=10001", "from 1 to 10000"}},
		{"batch size not a number", map[string]string{"MAX_BATCH_SIZE": "abc"},
			[]string{"MAX_BATCH_SIZE", `"abc"`, "want a whole number"}},
		{"max deliver", map[string]string{"MAX_DELIVER": "0"},
			[]string{"MAX_DELIVER=0", "from 1 to 100"}},
		{"model limits without tokens", map[string]string{"MODEL_MAX_OUTPUT_TOKENS": "gpt-4o"},
			[]string{"MODEL_MAX_OUTPUT_TOKENS=gpt-4o", "model=tokens"}},
		{"model limit of zero", map[string]string{"MODEL_MAX_OUTPUT_TOKENS": "gpt-4o=16384,mine=0"},
			[]string{"MODEL_MAX_OUTPUT_TOKENS=gpt-4o=16384,mine=0", "1 or more"}},
		{"request TTL of zero", map[string]string{"REQUEST_TTL": "0s"},
			[]string{"REQUEST_TTL=0s", "at least 1s"}},
		{"probe interval of zero", map[string]string{"PROVIDER_PROBE_INTERVAL": "0"},
			[]string{"PROVIDER_PROBE_INTERVAL=0s"}},
		{"default output tokens of zero", map[string]string{"DEFAULT_OUTPUT_TOKENS": "0"},
			[]string{"DEFAULT_OUTPUT_TOKENS=0", "from 1"}},
		{"embedding inputs of zero", map[string]string{"EMBEDDING_MAX_INPUTS": "0"},
			[]string{"EMBEDDING_MAX_INPUTS=0", "from 1 to 100000"}},
		{"embedding inputs over OpenAI's", map[string]string{"EMBEDDING_MAX_INPUTS": "2049"},
			[]string{"EMBEDDING_MAX_INPUTS=2049", "PROVIDER=openai takes at most 2048"}},
		{"attempts bucket with a dot", map[string]string{"ATTEMPTS_BUCKET": "AI.ATTEMPTS"},
			[]string{"ATTEMPTS_BUCKET", "AI.ATTEMPTS", "letters, digits"}},
		{"cache bucket with a dot", map[string]string{"CACHE_BUCKET": "AI.CACHE"},
			[]string{"CACHE_BUCKET", "AI.CACHE", "letters, digits"}},
		{"async combine without async mode", map[string]string{"ASYNC_COMBINE": "true"},
			[]string{"ASYNC_COMBINE=true", "BATCH_MODE=async and PROVIDER=openai or anthropic"}},
		{"unknown service tier", map[string]string{"BATCH_SERVICE_TIER": "cheap"},
			[]string{"BATCH_SERVICE_TIER=\"cheap\"", "flex, default, priority"}},
		{"service tier of another provider", map[string]string{"URGENT_SERVICE_TIER": "flex", "PROVIDER": "anthropic", "ANTHROPIC_API_KEY": "k"},
			[]string{"URGENT_SERVICE_TIER=\"flex\"", "PROVIDER=anthropic has none"}},
		{"response cache TTL below a second", map[string]string{"RESPONSE_CACHE_TTL": "10ms"},
			[]string{"RESPONSE_CACHE_TTL=10ms", "0 (no response cache)", "24h"}},
		{"negative wait", map[string]string{"MAX_WAIT": "-1s"},
			[]string{"MAX_WAIT=-1s", "at least 1ms", "5m"}},
		{"wait in words", map[string]string{"MAX_WAIT": "5 minutes"},
			[]string{"MAX_WAIT", `"5 minutes"`, "Go duration such as 90s, 5m"}},
		{"bool", map[string]string{"USE_BATCHED_CLIENT": "maybe"},
			[]string{"USE_BATCHED_CLIENT", `"maybe"`, "want true or false"}},
		{"bytes in words", map[string]string{"MAX_REQUEST_BYTES": "lots"},
			[]string{"MAX_REQUEST_BYTES", `"lots"`, "65536", "64KiB"}},
		{"bytes too small", map[string]string{"MAX_REQUEST_BYTES": "8"},
			[]string{"MAX_REQUEST_BYTES=8", "16 bytes to 8MiB"}},
		{"bytes too big", map[string]string{"MAX_REQUEST_BYTES": "9MiB"},
			[]string{"MAX_REQUEST_BYTES=9437184", "16 bytes to 8MiB"}},
		{"ack wait", map[string]string{"ACK_WAIT": "500ms"},
			[]string{"ACK_WAIT=500ms", "at least 1s"}},
		{"log level", map[string]string{"LOG_LEVEL": "loud"},
			[]string{"LOG_LEVEL=loud", "debug, info, warn or error"}},
		{"log format", map[string]string{"LOG_FORMAT": "xml"},
			[]string{"LOG_FORMAT=xml", "json or console"}},
		{"provider", map[string]string{"PROVIDER": "foo"},
			[]string{"PROVIDER=foo", "want openai, anthropic or http"}},
		{"no key", map[string]string{"OPENAI_API_KEY": ""},
			[]string{"OPENAI_API_KEY is empty", "OPENAI_BASE_URL"}},
		{"URL without scheme", map[string]string{"NATS_URL": "127.0.0.1:4222"},
			[]string{"NATS_URL=127.0.0.1:4222", "nats://127.0.0.1:4222", "empty for the embedded server"}},
		{"listen address", map[string]string{"NATS_LISTEN": "localhost"},
			[]string{"NATS_LISTEN=localhost", "host:port"}},
		{"overlapping lanes", map[string]string{"URGENT_SUBJECTS": "ai.requests.urgent.>"},
			[]string{"URGENT_SUBJECTS", `"ai.requests.>" overlaps "ai.requests.urgent.>"`}},
		{"requests overlap results", map[string]string{"RESULTS_PREFIX": "ai.requests.out"},
			[]string{"RESULTS_PREFIX", `overlaps "ai.requests.out.>"`}},
		{"invalid subject", map[string]string{"REQUEST_SUBJECTS": "ai..requests"},
			[]string{"REQUEST_SUBJECTS", `"ai..requests" is not a valid subject`}},
		{"backoff", map[string]string{"RETRY_BACKOFF": "10s", "RETRY_MAX_BACKOFF": "5s"},
			[]string{"RETRY_MAX_BACKOFF=5s", "at least 10s"}},
		{"results kept too briefly", map[string]string{"RESULTS_MAX_AGE": "10m"},
			[]string{"RESULTS_MAX_AGE", "kept for 10m0s", "duplicate window 20m0s"}},
		{"results kept too briefly for a long ack wait", map[string]string{"ACK_WAIT": "1h", "RESULTS_MAX_AGE": "5h"},
			// 5 deliveries × (2m call + 1h ack wait + 1m backoff)
			[]string{"RESULTS_MAX_AGE", "kept for 5h0m0s", "duplicate window 5h15m0s"}},
		{"hours negative", map[string]string{"BATCH_INTERVAL_HOURS": "-1"},
			[]string{`BATCH_INTERVAL_HOURS="-1"`, "number of hours above 0"}},
		{"hours zero", map[string]string{"BATCH_INTERVAL_HOURS": "0"},
			[]string{`BATCH_INTERVAL_HOURS="0"`, "number of hours above 0"}},
		{"hours in words", map[string]string{"BATCH_INTERVAL_HOURS": "half"},
			[]string{`BATCH_INTERVAL_HOURS="half"`, "such as 0.5 or 2"}},
		{"hours not a number", map[string]string{"BATCH_INTERVAL_HOURS": "NaN"},
			[]string{`BATCH_INTERVAL_HOURS="NaN"`, "number of hours above 0"}},
		{"hours infinite", map[string]string{"BATCH_INTERVAL_HOURS": "+Inf"},
			[]string{`BATCH_INTERVAL_HOURS="+Inf"`, "number of hours above 0"}},
		{"interval and hours disagree", map[string]string{"BATCH_INTERVAL": "1h", "BATCH_INTERVAL_HOURS": "0.5"},
			[]string{"BATCH_INTERVAL=1h0m0s", "BATCH_INTERVAL_HOURS=0.5", "disagree"}},
		{"interval zero", map[string]string{"BATCH_INTERVAL": "0s"},
			[]string{"BATCH_INTERVAL=0s", "at least 1ms"}},
		{"mode", map[string]string{"BATCH_MODE": "fast"},
			[]string{"BATCH_MODE=fast", "combined, single, async"}},
		{"http has no async", map[string]string{"PROVIDER": "http", "HTTP_PROVIDER_URL": "http://127.0.0.1:1/bulk", "BATCH_MODE": "async"},
			[]string{"BATCH_MODE=async", "PROVIDER=http supports combined"}},
		{"http needs a URL", map[string]string{"PROVIDER": "http"},
			[]string{"HTTP_PROVIDER_URL is empty"}},
		{"anthropic needs a key", map[string]string{"PROVIDER": "anthropic"},
			[]string{"ANTHROPIC_API_KEY is empty"}},
		{"async is batched", map[string]string{"BATCH_MODE": "async", "USE_BATCHED_CLIENT": "false"},
			[]string{"BATCH_MODE=async", "USE_BATCHED_CLIENT=false"}},
		{"rpm", map[string]string{"PROVIDER_RPM": "-1"},
			[]string{"PROVIDER_RPM=-1", "from 0 to"}},
		{"quota scope", map[string]string{"QUOTA_SCOPE": "openai.prod"},
			[]string{`QUOTA_SCOPE="openai.prod"`, "letters, digits, - and _"}},
		{"quota heartbeat", map[string]string{"QUOTA_HEARTBEAT": "10ms"},
			[]string{"QUOTA_HEARTBEAT=10ms", "at least 100ms"}},
		{"queue tokens", map[string]string{"PROVIDER_QUEUE_TOKENS": "-1"},
			[]string{"PROVIDER_QUEUE_TOKENS=-1", "from 0 to"}},
		{"batch tokens", map[string]string{"MAX_BATCH_TOKENS": "-5"},
			[]string{"MAX_BATCH_TOKENS=-5", "from 0 to"}},
		{"prices", map[string]string{"PRICES": "gpt-4o-mini=cheap"},
			[]string{"PRICES", "model=input/output"}},
		{"discount", map[string]string{"BATCH_DISCOUNT": "1.5"},
			[]string{"BATCH_DISCOUNT=1.5", "below 1"}},
		{"job poll", map[string]string{"JOB_POLL_INTERVAL": "1ms"},
			[]string{"JOB_POLL_INTERVAL=1ms", "at least 10ms"}},
		{"NATS user without password", map[string]string{"NATS_URL": "nats://127.0.0.1:4222", "NATS_USER": "svc"},
			[]string{"NATS_USER", "NATS_PASSWORD"}},
		{"NATS TLS cert file missing", map[string]string{"NATS_URL": "nats://127.0.0.1:4222", "NATS_TLS_CA": "/no/such/ca.pem"},
			[]string{"NATS_TLS_CA", "/no/such/ca.pem"}},
		{"stream max msgs negative", map[string]string{"STREAM_MAX_MSGS": "-1"},
			[]string{"STREAM_MAX_MSGS=-1", "0 (no limit) or at least MAX_BATCH_SIZE (50)"}},
		{"stream max msgs under a batch", map[string]string{"STREAM_MAX_MSGS": "49"},
			[]string{"STREAM_MAX_MSGS=49", "at least MAX_BATCH_SIZE (50)"}},
		{"stream max msgs in words", map[string]string{"STREAM_MAX_MSGS": "lots"},
			[]string{"STREAM_MAX_MSGS", `"lots"`, "want a whole number"}},
		{"stream max bytes negative", map[string]string{"STREAM_MAX_BYTES": "-1"},
			[]string{"STREAM_MAX_BYTES", `"-1"`, "1GiB"}},
		{"stream max bytes under a request", map[string]string{"STREAM_MAX_BYTES": "1KiB"},
			[]string{"STREAM_MAX_BYTES=1024", "at least MAX_REQUEST_BYTES (65536)"}},
		{"stream max bytes overflow", map[string]string{"STREAM_MAX_BYTES": "9000000000GiB"},
			[]string{"STREAM_MAX_BYTES", `"9000000000GiB"`, "not a size"}},
		{"reply subject filter with an empty token", map[string]string{"REPLY_SUBJECTS": "ai.results.>,replies..x"},
			[]string{"REPLY_SUBJECTS=ai.results.>,replies..x", `"replies..x" is not a subject filter`, "ai.results.>,_INBOX.>"}},
		{"reply subjects under $", map[string]string{"REPLY_SUBJECTS": "$JS.API.>"},
			[]string{"REPLY_SUBJECTS", `"$JS.API.>"`}},
		{"allowed models with a blank", map[string]string{"ALLOWED_MODELS": "gpt-4o,,o3"},
			[]string{"ALLOWED_MODELS=gpt-4o,,o3", "model names separated by commas", "* for any model"}},
		{"output limit negative", map[string]string{"MAX_OUTPUT_TOKENS_LIMIT": "-1"},
			[]string{"MAX_OUTPUT_TOKENS_LIMIT=-1", "0 (no limit but the model's own)"}},
		{"output limit in words", map[string]string{"MAX_OUTPUT_TOKENS_LIMIT": "many"},
			[]string{"MAX_OUTPUT_TOKENS_LIMIT", `"many"`, "want a whole number"}},
		{"topic budget without tokens", map[string]string{"TOPIC_BUDGETS": "billing"},
			[]string{"TOPIC_BUDGETS=billing", "topic=tokens", "billing=2000000"}},
		{"topic budget of zero", map[string]string{"TOPIC_BUDGETS": "billing=0"},
			[]string{"TOPIC_BUDGETS=billing=0", "1 or more"}},
		{"topic budget with a wildcard", map[string]string{"TOPIC_BUDGETS": "billing.*=10"},
			[]string{"TOPIC_BUDGETS=billing.*=10", "letters, digits"}},
		{"topic budget twice", map[string]string{"TOPIC_BUDGETS": "a=1,a=2"},
			[]string{"TOPIC_BUDGETS=a=1,a=2", `"a" has two budgets`}},
		{"topic budgets without the fleet bucket", map[string]string{"TOPIC_BUDGETS": "a=1", "STATS_BUCKET": ""},
			[]string{"TOPIC_BUDGETS", "STATS_BUCKET is empty"}},
		{"several at once", map[string]string{"MAX_BATCH_SIZE": "0", "LOG_LEVEL": "loud"},
			[]string{"MAX_BATCH_SIZE=0", "LOG_LEVEL=loud"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := load(t, tt.env)
			if err == nil {
				t.Fatalf("%v: no error", tt.env)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "configuration: ") {
				t.Errorf("error does not start with %q: %s", "configuration: ", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain %q: %s", w, msg)
				}
			}
			if strings.Contains(msg, secret) {
				t.Errorf("error shows the API key: %s", msg)
			}
		})
	}
}

func TestDotEnv(t *testing.T) {
	t.Parallel()
	write := func(t *testing.T, text string) string {
		t.Helper()
		path := filepath.Join(t.TempDir(), ".env")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	t.Run("read under the environment", func(t *testing.T) {
		t.Parallel()
		path := write(t, "# worker settings\nMAX_BATCH_SIZE=7\nLOG_LEVEL=debug\nOPENAI_API_KEY="+secret+"\nexport MODEL=from-file\n")
		real := envconfig.MapLookuper(map[string]string{"MAX_BATCH_SIZE": "9", "MODEL": "from-env"})
		lookup, err := withDotEnv(real, path)
		if err != nil {
			t.Fatalf("withDotEnv: %v", err)
		}
		c, err := loadConfig(context.Background(), lookup)
		if err != nil {
			t.Fatalf("loadConfig: %v", err)
		}
		if c.MaxBatchSize != 9 || c.Model != "from-env" {
			t.Errorf("the environment must win over .env: MAX_BATCH_SIZE=%d MODEL=%q", c.MaxBatchSize, c.Model)
		}
		if c.LogLevel != "debug" || c.OpenAIAPIKey != secret {
			t.Errorf(".env values not read: LOG_LEVEL=%q key set=%t", c.LogLevel, c.OpenAIAPIKey == secret)
		}
	})

	t.Run("interval from file", func(t *testing.T) {
		t.Parallel()
		// resolveInterval looks BATCH_INTERVAL up through the same layers.
		path := write(t, "BATCH_INTERVAL=30m\nBATCH_INTERVAL_HOURS=0.5\nOPENAI_API_KEY=k\n")
		lookup, err := withDotEnv(envconfig.MapLookuper(nil), path)
		if err != nil {
			t.Fatalf("withDotEnv: %v", err)
		}
		c, err := loadConfig(context.Background(), lookup)
		if err != nil || c.BatchInterval != 30*time.Minute {
			t.Fatalf("interval %s, err %v", c.BatchInterval, err)
		}
	})

	t.Run("missing file", func(t *testing.T) {
		t.Parallel()
		real := envconfig.MapLookuper(map[string]string{"OPENAI_API_KEY": "k", "MAX_BATCH_SIZE": "3"})
		lookup, err := withDotEnv(real, filepath.Join(t.TempDir(), ".env"))
		if err != nil {
			t.Fatalf("withDotEnv: %v", err)
		}
		c, err := loadConfig(context.Background(), lookup)
		if err != nil || c.MaxBatchSize != 3 {
			t.Fatalf("MAX_BATCH_SIZE=%d, err %v", c.MaxBatchSize, err)
		}
	})

	t.Run("unreadable", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), ".env")
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		_, err := withDotEnv(envconfig.MapLookuper(nil), path)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("want an error naming %s, got %v", path, err)
		}
	})

	// A parse error must say what is wrong where, without quoting the file:
	// godotenv's own messages quote everything from the bad line on.
	malformed := []struct{ name, text, want string }{
		{"bad name before the key", "MAX-BATCH-SIZE=5\nOPENAI_API_KEY=" + secret + "\n", "unexpected character"},
		{"unterminated quote", "OPENAI_API_KEY='" + secret + "\nMODEL=x\n", "unterminated quoted value"},
	}
	for _, m := range malformed {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			path := write(t, m.text)
			_, err := withDotEnv(envconfig.MapLookuper(nil), path)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, path) || !strings.Contains(msg, m.want) {
				t.Errorf("error does not name %s and %q: %s", path, m.want, msg)
			}
			if strings.Contains(msg, secret) {
				t.Errorf("error shows the API key: %s", msg)
			}
		})
	}
}

func TestModelOutputLimitsReachTheEngine(t *testing.T) {
	t.Parallel()
	cfg, err := load(t, map[string]string{"MODEL_MAX_OUTPUT_TOKENS": " gpt-4o=16384, my-model = 8192 ", "REQUEST_TTL": "2h"})
	if err != nil {
		t.Fatal(err)
	}
	ec := cfg.engine()
	want := map[string]int{"gpt-4o": 16384, "my-model": 8192}
	if !reflect.DeepEqual(ec.ModelMaxOutputTokens, want) || ec.RequestTTL != 2*time.Hour {
		t.Fatalf("engine config: limits %v, TTL %v; want %v and 2h", ec.ModelMaxOutputTokens, ec.RequestTTL, want)
	}
}

// A variable set to "" is unset: docker-compose's ${VAR} and an empty
// ConfigMap key give "", and the default must apply, not 0 or an error.
// ADMIN_ADDR and STATS_BUCKET keep "" as "off".
func TestEmptyMeansUnset(t *testing.T) {
	t.Parallel()
	empty := map[string]string{}
	for name := range envVars(t) {
		if name != "OPENAI_API_KEY" {
			empty[name] = ""
		}
	}
	empty["BATCH_INTERVAL"] = "  " // blanks too
	got, err := load(t, empty)
	if err != nil {
		t.Fatalf("every variable set to \"\": %v", err)
	}
	want := defaults()
	want.AdminAddr, want.StatsBucket = "", ""
	if !reflect.DeepEqual(got, want) {
		t.Errorf("every variable set to \"\":\n got %+v\nwant %+v", got, want)
	}

	for _, name := range []string{"MAX_BATCH_SIZE", "MAX_WAIT", "MODEL", "STORE_DIR", "MAX_REQUEST_BYTES", "REQUEST_SUBJECTS"} {
		c, err := load(t, map[string]string{name: ""})
		if err != nil {
			t.Errorf("%s=: %v", name, err)
			continue
		}
		if !reflect.DeepEqual(c, defaults()) {
			t.Errorf("%s=: configuration differs from the defaults: %+v", name, c)
		}
	}

	// An empty variable in the environment lets .env's value through; a set
	// one still wins.
	path := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(path, []byte("MAX_BATCH_SIZE=7\nMAX_WAIT=9s\nADMIN_ADDR=127.0.0.1:9999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	real := envconfig.MapLookuper(map[string]string{"OPENAI_API_KEY": secret, "MAX_BATCH_SIZE": "", "MAX_WAIT": "3s", "ADMIN_ADDR": ""})
	lookup, err := withDotEnv(real, path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(context.Background(), lookup)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxBatchSize != 7 || c.MaxWait != 3*time.Second || c.AdminAddr != "" {
		t.Errorf("MAX_BATCH_SIZE=%d MAX_WAIT=%s ADMIN_ADDR=%q; want 7 from .env, 3s and \"\" (off) from the environment", c.MaxBatchSize, c.MaxWait, c.AdminAddr)
	}
}
