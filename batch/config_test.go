package batch

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestWithDefaults(t *testing.T) {
	t.Parallel()
	// The defaults as the field comments document them.
	want := Config{
		JobPollInterval:     30 * time.Second,
		MaxBatchSize:        50,
		HoldMaxRequests:     5000,
		HoldMaxBytes:        32 << 20,
		Interval:            time.Hour,
		MaxWait:             5 * time.Minute,
		PollInterval:        250 * time.Millisecond,
		MaxDeliver:          5,
		MaxRequestBytes:     64 * 1024,
		MaxResultBytes:      1<<20 - 8<<10,
		MaxInflight:         4,
		CallTimeout:         2 * time.Minute,
		AckWait:             60 * time.Second,
		RetryBackoff:        time.Second,
		RetryMaxBackoff:     time.Minute,
		ShutdownTimeout:     30 * time.Second,
		RequestTTL:          24 * time.Hour,
		ProbeInterval:       time.Minute,
		DefaultOutputTokens: 256,
		EmbeddingModel:      "text-embedding-3-small",
		EmbeddingMaxInputs:  2048,
		RequestSubjects:     []string{"ai.requests.>"},
		UrgentSubjects:      []string{"ai.urgent.>"},
		ResultPrefix:        "ai.results",
		DeadPrefix:          "ai.dead",
		ReplySubjects:       []string{"ai.results.>", "_INBOX.>"},
	}
	if got := (Config{}).WithDefaults(); !reflect.DeepEqual(got, want) {
		t.Errorf("Config{}.WithDefaults() =\n%+v\nwant\n%+v", got, want)
	}
}

func TestWithDefaultsKeepsSetFields(t *testing.T) {
	t.Parallel()
	set := Config{
		Immediate:            true,
		JobPollInterval:      time.Second,
		MaxBatchTokens:       1000,
		MaxBatchSize:         7,
		HoldMaxRequests:      70,
		HoldMaxBytes:         7000,
		MixTopics:            true,
		Interval:             3 * time.Second,
		MaxWait:              2 * time.Second,
		PollInterval:         time.Millisecond,
		MaxDeliver:           9,
		MaxRequestBytes:      100,
		MaxResultBytes:       200,
		MaxInflight:          1,
		CallTimeout:          time.Second,
		AckWait:              4 * time.Second,
		RetryBackoff:         10 * time.Millisecond,
		RetryMaxBackoff:      20 * time.Millisecond,
		ShutdownTimeout:      5 * time.Second,
		RequestTTL:           time.Minute,
		ProbeInterval:        2 * time.Second,
		ModelMaxOutputTokens: map[string]int{"m": 100},
		DefaultOutputTokens:  17,
		DefaultModel:         "m",
		EmbeddingModel:       "e",
		EmbeddingMaxInputs:   9,
		RequestSubjects:      []string{"jobs.>"},
		UrgentSubjects:       []string{"hot.>", "pager.>"},
		ResultPrefix:         "out",
		DeadPrefix:           "graveyard",
		ReplySubjects:        []string{"replies.>"},
		AllowedModels:        []string{"m", "m2"},
		MaxOutputTokensLimit: 4096,
	}
	want := set
	want.RequestSubjects = []string{"jobs.>"}
	want.UrgentSubjects = []string{"hot.>", "pager.>"}
	if got := set.WithDefaults(); !reflect.DeepEqual(got, want) {
		t.Errorf("WithDefaults changed set fields:\n%+v\nwant\n%+v", got, want)
	}

	// Out-of-range values are not defaults: they stay for Validate to report.
	neg := Config{MaxBatchSize: -1, Interval: -time.Second}.WithDefaults()
	if neg.MaxBatchSize != -1 || neg.Interval != -time.Second {
		t.Errorf("WithDefaults replaced negative values: MaxBatchSize %d, Interval %v", neg.MaxBatchSize, neg.Interval)
	}
}

// joined returns the errors errors.Join combined, or the error alone.
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	base := Config{DefaultModel: "m"}.WithDefaults()
	if err := base.Validate(); err != nil {
		t.Fatalf("defaults with a model: Validate() = %v, want nil", err)
	}

	tests := []struct {
		name      string
		mutate    func(*Config)
		wantField string // "" means valid
		wantErrs  int
	}{
		{"MaxBatchSize zero", func(c *Config) { c.MaxBatchSize = 0 }, "MaxBatchSize", 1},
		{"MaxBatchSize negative", func(c *Config) { c.MaxBatchSize = -5 }, "MaxBatchSize", 1},
		{"MaxDeliver zero", func(c *Config) { c.MaxDeliver = 0 }, "MaxDeliver", 1},
		{"MaxRequestBytes negative", func(c *Config) { c.MaxRequestBytes = -1 }, "MaxRequestBytes", 1},
		{"MaxInflight zero", func(c *Config) { c.MaxInflight = 0 }, "MaxInflight", 1},
		{"Interval zero", func(c *Config) { c.Interval = 0 }, "Interval", 1},
		{"Interval negative", func(c *Config) { c.Interval = -time.Second }, "Interval", 1},
		{"MaxWait zero", func(c *Config) { c.MaxWait = 0 }, "MaxWait", 1},
		{"PollInterval negative", func(c *Config) { c.PollInterval = -time.Millisecond }, "PollInterval", 1},
		{"CallTimeout zero", func(c *Config) { c.CallTimeout = 0 }, "CallTimeout", 1},
		{"ShutdownTimeout zero", func(c *Config) { c.ShutdownTimeout = 0 }, "ShutdownTimeout", 1},
		{"RetryBackoff zero", func(c *Config) { c.RetryBackoff = 0 }, "RetryBackoff", 1},
		{"RetryBackoff negative", func(c *Config) { c.RetryBackoff = -time.Second }, "RetryBackoff", 1},
		// Zero is out of range and below the 1s floor: two errors.
		{"AckWait zero", func(c *Config) { c.AckWait = 0 }, "AckWait", 2},
		{"AckWait just under 1s", func(c *Config) { c.AckWait = time.Second - time.Nanosecond }, "AckWait", 1},
		{"AckWait exactly 1s", func(c *Config) { c.AckWait = time.Second }, "", 0},
		{"RetryMaxBackoff below RetryBackoff", func(c *Config) {
			c.RetryBackoff, c.RetryMaxBackoff = 2*time.Minute, time.Minute
		}, "RetryMaxBackoff", 1},
		{"RetryMaxBackoff 1ns below RetryBackoff", func(c *Config) {
			c.RetryBackoff, c.RetryMaxBackoff = time.Second, time.Second-time.Nanosecond
		}, "RetryMaxBackoff", 1},
		{"RetryMaxBackoff equal to RetryBackoff", func(c *Config) {
			c.RetryBackoff, c.RetryMaxBackoff = time.Second, time.Second
		}, "", 0},
		{"RetryMaxBackoff negative", func(c *Config) { c.RetryMaxBackoff = -time.Second }, "RetryMaxBackoff", 1},
		{"DefaultModel empty", func(c *Config) { c.DefaultModel = "" }, "DefaultModel", 1},
		{"ResultPrefix empty", func(c *Config) { c.ResultPrefix = "" }, "ResultPrefix", 1},
		{"DeadPrefix empty", func(c *Config) { c.DeadPrefix = "" }, "DeadPrefix", 1},
		{"two bad fields", func(c *Config) { c.MaxBatchSize, c.MaxWait = 0, 0 }, "MaxWait", 2},
		{"ReplySubjects any subject", func(c *Config) { c.ReplySubjects = []string{">"} }, "", 0},
		{"ReplySubjects with * and >", func(c *Config) { c.ReplySubjects = []string{"replies.*.>", "_INBOX.>"} }, "", 0},
		{"ReplySubjects empty filter", func(c *Config) { c.ReplySubjects = []string{"ai.results.>", ""} }, "ReplySubjects", 1},
		{"ReplySubjects > in the middle", func(c *Config) { c.ReplySubjects = []string{"ai.>.x"} }, "ReplySubjects", 1},
		{"ReplySubjects empty token", func(c *Config) { c.ReplySubjects = []string{"ai..x"} }, "ReplySubjects", 1},
		{"ReplySubjects with a space", func(c *Config) { c.ReplySubjects = []string{"ai results"} }, "ReplySubjects", 1},
		{"AllowedModels any", func(c *Config) { c.AllowedModels = []string{AnyModel} }, "", 0},
		{"AllowedModels empty name", func(c *Config) { c.AllowedModels = []string{"m", ""} }, "AllowedModels", 1},
		{"AllowedModels padded name", func(c *Config) { c.AllowedModels = []string{" m"} }, "AllowedModels", 1},
		{"MaxOutputTokensLimit negative", func(c *Config) { c.MaxOutputTokensLimit = -1 }, "MaxOutputTokensLimit", 1},
		{"MaxOutputTokensLimit 1", func(c *Config) { c.MaxOutputTokensLimit = 1 }, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := base
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error naming %s", tt.wantField)
			}
			if !strings.Contains(err.Error(), tt.wantField) {
				t.Errorf("Validate() = %q, want it to name %s", err, tt.wantField)
			}
			if n := len(joined(err)); n != tt.wantErrs {
				t.Errorf("Validate() reported %d errors, want %d: %v", n, tt.wantErrs, err)
			}
		})
	}
}

func TestValidateReportsEverything(t *testing.T) {
	t.Parallel()
	// Without defaults every numeric setting is 0 and the strings are empty.
	err := Config{}.Validate()
	if err == nil {
		t.Fatal("Config{}.Validate() = nil, want errors")
	}
	for _, field := range []string{
		"MaxBatchSize", "HoldMaxRequests", "HoldMaxBytes", "MaxDeliver", "MaxRequestBytes", "MaxResultBytes", "MaxInflight",
		"Interval", "MaxWait", "PollInterval", "CallTimeout", "AckWait", "RetryBackoff", "ShutdownTimeout", "JobPollInterval",
		"RequestTTL", "ProbeInterval", "DefaultOutputTokens", "EmbeddingMaxInputs", "DefaultModel", "ResultPrefix", "DeadPrefix",
	} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("Config{}.Validate() does not name %s: %v", field, err)
		}
	}
	// 9 counts + 10 durations + the AckWait floor + DefaultModel + prefixes;
	// RetryMaxBackoff (0) is not below RetryBackoff (0).
	if n := len(joined(err)); n != 22 {
		t.Errorf("Config{}.Validate() reported %d errors, want 22: %v", n, err)
	}
}

func TestRedeliveryWindow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want time.Duration
	}{
		// 5 attempts × (2m call + 60s ack wait + 1m backoff) = 5 × 4m.
		{"defaults", Config{}.WithDefaults(), 20 * time.Minute},
		// 1 × (10s + 5s + 2s).
		{"one attempt", Config{MaxDeliver: 1, CallTimeout: 10 * time.Second, AckWait: 5 * time.Second,
			RetryMaxBackoff: 2 * time.Second}, 17 * time.Second},
		// 3 × (30s + 30s + 90s) = 450s.
		{"three attempts", Config{MaxDeliver: 3, CallTimeout: 30 * time.Second, AckWait: 30 * time.Second,
			RetryMaxBackoff: 90 * time.Second}, 7*time.Minute + 30*time.Second},
		// 10 × (1m + 2s + 0).
		{"no backoff", Config{MaxDeliver: 10, CallTimeout: time.Minute, AckWait: 2 * time.Second}, 620 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.cfg.RedeliveryWindow(); got != tt.want {
				t.Errorf("RedeliveryWindow() = %v, want %v", got, tt.want)
			}
		})
	}
}
