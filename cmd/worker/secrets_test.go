package main

import (
	"maps"
	"slices"
	"testing"

	"github.com/aibatch/aibatch/internal/admin"
)

// secretVars are the settings that hold secrets, and the only ones
// batch-stats redacts. A new setting holding a key, token or password
// belongs here and gets the secret:"true" tag.
var secretVars = []string{
	"ADMIN_TOKEN",
	"ANTHROPIC_API_KEY",
	"HTTP_PROVIDER_TOKEN",
	"NATS_PASSWORD",
	"NATS_TOKEN",
	"OPENAI_API_KEY",
}

// shownVars are settings named like secrets that are not: counts of
// tokens, and paths of credential files (their contents are never among
// the settings). batch-stats shows them.
var shownVars = []string{
	"MAX_BATCH_TOKENS", "PROVIDER_TPM", "PROVIDER_QUEUE_TOKENS", "DEFAULT_OUTPUT_TOKENS", "MODEL_MAX_OUTPUT_TOKENS",
	"MAX_OUTPUT_TOKENS_LIMIT", "TOPIC_BUDGETS", "NATS_CREDS", "NATS_NKEY_SEED", "NATS_TLS_KEY",
	"NATS_TLS_CERT", "NATS_TLS_CA", "NATS_USER", "HTTP_PROVIDER_URL",
}

func TestSecretSettingsAreExactlyTheSecrets(t *testing.T) {
	t.Parallel()
	got := secretSettings()
	slices.Sort(got)
	if !slices.Equal(got, secretVars) {
		t.Fatalf("settings tagged secret:\"true\" = %q, want %q", got, secretVars)
	}
}

// TestBatchStatsRedactsExactlyTheSecrets gives every setting a value of its
// own and checks both ways what batch-stats would show: every secret
// redacted, every other setting as it is.
func TestBatchStatsRedactsExactlyTheSecrets(t *testing.T) {
	t.Parallel()
	c, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	settings := c.settings()
	vars := envVars(t)
	if len(settings) != len(vars) {
		t.Fatalf("settings() has %d entries, config reads %d variables", len(settings), len(vars))
	}
	for name := range settings {
		settings[name] = name + "-value!"
	}
	shown := admin.Redact(settings, secretSettings())
	for _, name := range slices.Sorted(maps.Keys(vars)) {
		secret := slices.Contains(secretVars, name)
		switch got := shown[name]; {
		case secret && got != admin.Redacted:
			t.Errorf("%s is a secret, shown as %q", name, got)
		case !secret && got != settings[name]:
			t.Errorf("%s is no secret, shown as %q, want %q", name, got, settings[name])
		}
	}
	for _, name := range shownVars {
		if _, ok := vars[name]; !ok {
			t.Errorf("%s: no such setting", name)
		} else if shown[name] != settings[name] {
			t.Errorf("%s shown as %q, want its value", name, shown[name])
		}
	}
}
