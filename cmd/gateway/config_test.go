package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/aibatch/aibatch/internal/gateway"
)

func TestRefusesBadSettings(t *testing.T) {
	t.Parallel()
	keysFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keysFile, []byte("sk-file-secret=files\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"beyond loopback without keys", map[string]string{"GATEWAY_ADDR": "0.0.0.0:8090"}, []string{"GATEWAY_ADDR", "GATEWAY_KEYS"}},
		{"both keys settings", map[string]string{"GATEWAY_KEYS": "sk-env-secret=a", "GATEWAY_KEYS_FILE": keysFile}, []string{"GATEWAY_KEYS and GATEWAY_KEYS_FILE"}},
		{"a key without topic", map[string]string{"GATEWAY_KEYS": "sk-env-secret"}, []string{"GATEWAY_KEYS", "entry 1"}},
		{"missing keys file", map[string]string{"GATEWAY_KEYS_FILE": "/nonexistent/keys"}, []string{"GATEWAY_KEYS_FILE=/nonexistent/keys"}},
		{"bad timeout", map[string]string{"GATEWAY_TIMEOUT": "soon"}, []string{"GATEWAY_TIMEOUT"}},
		{"bad NATS URL", map[string]string{"NATS_URL": "user:pw@nats"}, []string{"NATS_URL", "(a server address that is not a URL)"}},
		{"bad log level", map[string]string{"LOG_LEVEL": "loud"}, []string{"LOG_LEVEL=loud"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Nothing listens here: a gateway that got as far as
			// connecting would hang, not fail.
			env := map[string]string{"NATS_URL": "nats://127.0.0.1:1"}
			for k, v := range tt.env {
				env[k] = v
			}
			err := run(context.Background(), envconfig.MapLookuper(env), func(string) { t.Error("the gateway listened") })
			if err == nil {
				t.Fatal("run accepted the settings")
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "pw") {
				t.Errorf("error %q shows a secret", err)
			}
		})
	}
	_, _, err := loadConfig(context.Background(), envconfig.MapLookuper(map[string]string{"GATEWAY_ADDR": "0.0.0.0:8090"}))
	if !errors.Is(err, gateway.ErrExposed) {
		t.Errorf("an exposed gateway: %v, want gateway.ErrExposed", err)
	}
}

func TestSettings(t *testing.T) {
	t.Parallel()
	keysFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keysFile, []byte("# tenants\nsk-a=alpha\nsk-b=beta.eu\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, gc, err := loadConfig(context.Background(), envconfig.MapLookuper(map[string]string{
		"GATEWAY_ADDR": "0.0.0.0:8090", "GATEWAY_KEYS_FILE": keysFile, "MAX_WAIT": "30s", "PROVIDER_TIMEOUT": "",
		"ALLOWED_MODELS": "gpt-4o,*,gpt-4o-mini", "EMBEDDING_MODEL": "text-embedding-3-large",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if topic, ok := gc.Keys.Topic("sk-b"); !ok || topic != "beta.eu" || gc.Keys.Len() != 2 {
		t.Errorf("keys from the file: %s, sk-b → %q %v", gc.Keys, topic, ok)
	}
	// MAX_WAIT + PROVIDER_TIMEOUT (its default, an empty value being
	// unset) + the margin.
	if want := 30*time.Second + 2*time.Minute + gateway.TimeoutMargin; gc.Timeout != want {
		t.Errorf("timeout %s, want %s", gc.Timeout, want)
	}
	if want := []string{"gpt-4o-mini", "text-embedding-3-large", "gpt-4o"}; !slices.Equal(gc.Models, want) {
		t.Errorf("models %v, want %v", gc.Models, want)
	}
	_, gc, err = loadConfig(context.Background(), envconfig.MapLookuper(map[string]string{
		"GATEWAY_TIMEOUT": "45s", "PRICES": "gpt-4o=2.5/10,gpt-4o-mini=0.15/0.6,o3=2/8",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if gc.Timeout != 45*time.Second || gc.Keys.Len() != 0 {
		t.Errorf("timeout %s keys %d", gc.Timeout, gc.Keys.Len())
	}
	if want := []string{"gpt-4o-mini", "text-embedding-3-small", "gpt-4o", "o3"}; !slices.Equal(gc.Models, want) {
		t.Errorf("models from PRICES %v, want %v", gc.Models, want)
	}
}
