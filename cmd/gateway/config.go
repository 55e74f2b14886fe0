package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/aibatch/aibatch/internal/cost"
	"github.com/aibatch/aibatch/internal/envconf"
	"github.com/aibatch/aibatch/internal/gateway"
	"github.com/aibatch/aibatch/jetstream"
)

// config is every setting the gateway reads from its environment. Some are
// the workers' own settings (MAX_WAIT, PROVIDER_TIMEOUT, MODEL,
// EMBEDDING_MODEL, ALLOWED_MODELS, PRICES, MAX_REQUEST_BYTES,
// SHUTDOWN_TIMEOUT), read with the workers' defaults, so that a gateway
// given the workers' environment (in Kubernetes, their ConfigMap) agrees
// with them. Fields tagged secret:"true" are never logged.
type config struct {
	NATSURL      string `env:"NATS_URL, default=nats://127.0.0.1:4222"`
	NATSCreds    string `env:"NATS_CREDS"`
	NATSNKeySeed string `env:"NATS_NKEY_SEED"`
	NATSUser     string `env:"NATS_USER"`
	NATSPassword string `env:"NATS_PASSWORD" secret:"true"`
	NATSToken    string `env:"NATS_TOKEN" secret:"true"`
	NATSTLSCA    string `env:"NATS_TLS_CA"`
	NATSTLSCert  string `env:"NATS_TLS_CERT"`
	NATSTLSKey   string `env:"NATS_TLS_KEY"`

	Addr     string `env:"GATEWAY_ADDR, default=127.0.0.1:8090"`
	Keys     string `env:"GATEWAY_KEYS" secret:"true"`
	KeysFile string `env:"GATEWAY_KEYS_FILE"`
	// Timeout 0 means gateway.DefaultTimeout(MaxWait, ProviderTimeout).
	Timeout time.Duration `env:"GATEWAY_TIMEOUT"`

	MaxWait         time.Duration `env:"MAX_WAIT, default=5m"`
	ProviderTimeout time.Duration `env:"PROVIDER_TIMEOUT, default=2m"`
	Model           string        `env:"MODEL, default=gpt-4o-mini"`
	EmbeddingModel  string        `env:"EMBEDDING_MODEL, default=text-embedding-3-small"`
	AllowedModels   []string      `env:"ALLOWED_MODELS"`
	Prices          string        `env:"PRICES"`
	MaxRequestBytes byteSize      `env:"MAX_REQUEST_BYTES, default=64KiB"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT, default=30s"`

	LogLevel  string `env:"LOG_LEVEL, default=info"`
	LogFormat string `env:"LOG_FORMAT, default=json"`
}

// loadConfig reads the environment through lookup and checks every value.
// A variable set to an empty value counts as unset. Errors name the
// variable and what is allowed, never a key.
func loadConfig(ctx context.Context, lookup envconfig.Lookuper) (config, gateway.Config, error) {
	var c config
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &c, Lookuper: envconf.EmptyIsUnset{L: lookup}}); err != nil {
		return c, gateway.Config{}, fmt.Errorf("configuration: %s", envErrorText(err))
	}
	gc, err := c.gateway()
	if err != nil {
		return c, gc, fmt.Errorf("configuration: %w", err)
	}
	return c, gc, nil
}

// gateway checks the settings and returns the gateway's configuration.
func (c config) gateway() (gateway.Config, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !strings.Contains(c.NATSURL, "://") {
		bad("NATS_URL=%s: want a URL such as nats://127.0.0.1:4222", redactURL(c.NATSURL))
	}
	if err := c.auth().Validate(); err != nil {
		errs = append(errs, err)
	}
	keys, err := c.keys()
	if err != nil {
		errs = append(errs, err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"MAX_WAIT", c.MaxWait}, {"PROVIDER_TIMEOUT", c.ProviderTimeout}} {
		if d.v < time.Millisecond {
			bad("%s=%s: want a duration of at least 1ms, such as 90s, 5m or 1h30m", d.name, d.v)
		}
	}
	if c.Timeout < 0 {
		bad("GATEWAY_TIMEOUT=%s: want a duration above 0, or leave it unset for MAX_WAIT + PROVIDER_TIMEOUT + %s", c.Timeout, gateway.TimeoutMargin)
	}
	if c.ShutdownTimeout < 0 {
		bad("SHUTDOWN_TIMEOUT=%s: want 0 or more", c.ShutdownTimeout)
	}
	if c.MaxRequestBytes < 16 || c.MaxRequestBytes > 8<<20 {
		bad("MAX_REQUEST_BYTES=%d: want a size from 16 bytes to 8MiB, such as 65536 or 64KiB", int64(c.MaxRequestBytes))
	}
	if c.Model == "" {
		bad(`MODEL="": want the workers' model for requests that name none`)
	}
	if _, err := cost.ParsePrices(c.Prices); err != nil {
		bad("PRICES: %v", err)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("LOG_LEVEL=%s: want debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		bad("LOG_FORMAT=%s: want json or console", c.LogFormat)
	}
	gc := gateway.Config{
		Addr: c.Addr, Keys: keys, Timeout: c.timeout(), Models: c.models(),
		MaxRequestBytes: int(min(c.MaxRequestBytes, math.MaxInt32)), ShutdownTimeout: c.ShutdownTimeout,
	}.WithDefaults()
	if len(errs) == 0 {
		if err := gc.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return gc, errors.Join(errs...)
}

// timeout is GATEWAY_TIMEOUT, or MAX_WAIT + PROVIDER_TIMEOUT + a margin.
func (c config) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return gateway.DefaultTimeout(c.MaxWait, c.ProviderTimeout)
}

// keys reads GATEWAY_KEYS or GATEWAY_KEYS_FILE; setting both is an error.
func (c config) keys() (*gateway.Keys, error) {
	switch {
	case c.Keys != "" && c.KeysFile != "":
		return nil, errors.New("GATEWAY_KEYS and GATEWAY_KEYS_FILE are both set: set one of them")
	case c.Keys != "":
		return gateway.ParseKeys(c.Keys, ',', "GATEWAY_KEYS")
	case c.KeysFile != "":
		text, err := os.ReadFile(c.KeysFile)
		if err != nil {
			return nil, fmt.Errorf("GATEWAY_KEYS_FILE=%s: %w", c.KeysFile, err)
		}
		return gateway.ParseKeys(string(text), '\n', "GATEWAY_KEYS_FILE="+c.KeysFile)
	}
	return nil, nil
}

// models are what GET /v1/models lists: MODEL, EMBEDDING_MODEL, then the
// other models the workers allow: ALLOWED_MODELS, or when it is empty the
// models priced in PRICES (as the workers take them). "*" (any model)
// lists nothing of its own.
func (c config) models() []string {
	out := []string{c.Model}
	add := func(m string) {
		if m = strings.TrimSpace(m); m != "" && m != "*" && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	add(c.EmbeddingModel)
	more := slices.Clone(c.AllowedModels)
	if len(more) == 0 {
		prices, _ := cost.ParsePrices(c.Prices)
		for m := range prices {
			more = append(more, m)
		}
		slices.Sort(more)
	}
	for _, m := range more {
		add(m)
	}
	return out
}

func (c config) auth() jetstream.AuthConfig {
	return jetstream.AuthConfig{
		CredsFile: c.NATSCreds, NKeySeedFile: c.NATSNKeySeed,
		User: c.NATSUser, Password: c.NATSPassword, Token: c.NATSToken,
		TLSCA: c.NATSTLSCA, TLSCert: c.NATSTLSCert, TLSKey: c.NATSTLSKey,
	}
}

// envErrorText turns envconfig's "FieldName: cause" into "ENV_NAME: cause".
func envErrorText(err error) string {
	msg := err.Error()
	t := reflect.TypeFor[config]()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if strings.HasPrefix(msg, f.Name+":") {
			if f.Tag.Get("secret") == "true" {
				return name + ": cannot be read (the value is not shown)"
			}
			return name + ":" + strings.TrimPrefix(msg, f.Name+":")
		}
	}
	return msg
}

// byteSize is a size in bytes with an optional unit, as the workers read
// MAX_REQUEST_BYTES (envconf.ByteSize).
type byteSize = envconf.ByteSize
