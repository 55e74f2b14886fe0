package gateway_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/internal/gateway"
)

func TestParseKeys(t *testing.T) {
	t.Parallel()
	k, err := gateway.ParseKeys(" sk-one=billing , sk-two=billing.eu,sk-three=billing", ',', "GATEWAY_KEYS")
	if err != nil || k.Len() != 3 {
		t.Fatalf("ParseKeys: %v, %d keys", err, k.Len())
	}
	for key, want := range map[string]string{"sk-one": "billing", "sk-two": "billing.eu", "sk-three": "billing"} {
		if topic, ok := k.Topic(key); !ok || topic != want {
			t.Errorf("Topic(%s) = %q %v, want %q", key, topic, ok, want)
		}
	}
	for _, key := range []string{"", "sk-on", "sk-one ", "SK-ONE", "sk-one=billing"} {
		if _, ok := k.Topic(key); ok {
			t.Errorf("Topic(%q) matched", key)
		}
	}
	file, err := gateway.ParseKeys("# tenants\n\nsk-a=alpha\n  sk-b = beta  \n", '\n', "GATEWAY_KEYS_FILE=keys")
	if err != nil || file.Len() != 2 {
		t.Fatalf("file: %v, %d keys", err, file.Len())
	}
	if s := k.String() + " " + k.GoString(); strings.Contains(s, "sk-") {
		t.Errorf("String shows a key: %s", s)
	}
}

func TestParseKeysErrorsNeverShowAKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		text string
		sep  rune
		want string
	}{
		{"sk-secret-1", ',', "entry 1 is not key=topic"},
		{"sk-ok=a,sk-secret-2=", ',', "entry 2 is not key=topic"},
		{"sk-secret-3=bad topic", ',', `topic "bad topic"`},
		{"sk-secret-4=a.>", ',', `topic "a.>"`},
		{"sk-secret-5=a,sk-secret-5=b", ',', "entry 2 repeats the key of entry 1"},
		{"sk-ok=a\n\nsk secret 6=b", '\n', "line 3: a key may not hold blanks"},
		{"# only comments\n", '\n', "holds no key=topic entry"},
	}
	for _, tt := range tests {
		_, err := gateway.ParseKeys(tt.text, tt.sep, "GATEWAY_KEYS")
		if !errors.Is(err, gateway.ErrBadKeys) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error saying %q", tt.text, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: the error shows the key: %v", tt.text, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	keys, err := gateway.ParseKeys("sk-a=alpha", ',', "test")
	if err != nil {
		t.Fatal(err)
	}
	ok := gateway.Config{Timeout: time.Minute}.WithDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for addr, exposed := range map[string]bool{"0.0.0.0:8090": true, "[::]:8090": true, ":8090": true, "10.0.0.5:8090": true,
		"127.0.0.1:8090": false, "localhost:8090": false, "[::1]:8090": false} {
		c := ok
		c.Addr = addr
		if err := c.Validate(); errors.Is(err, gateway.ErrExposed) != exposed {
			t.Errorf("%s without keys: %v, want exposed=%v", addr, err, exposed)
		}
		c.Keys = keys
		if err := c.Validate(); err != nil {
			t.Errorf("%s with keys: %v", addr, err)
		}
	}
	bad := ok
	bad.Timeout, bad.Addr = 0, "nohost"
	err = bad.Validate()
	for _, want := range []string{"GATEWAY_TIMEOUT", "GATEWAY_ADDR"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v does not name %s", err, want)
		}
	}
	if got := gateway.DefaultTimeout(5*time.Minute, 2*time.Minute); got != 7*time.Minute+gateway.TimeoutMargin {
		t.Errorf("DefaultTimeout = %s", got)
	}
}
