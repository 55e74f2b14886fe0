package envconf_test

import (
	"testing"

	"github.com/sethvargo/go-envconfig"
	"go.uber.org/goleak"

	"github.com/aibatch/aibatch/internal/envconf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestByteSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    envconf.ByteSize
		wantErr bool
	}{
		{"65536", 65536, false},
		{" 64KiB ", 64 << 10, false},
		{"1MiB", 1 << 20, false},
		{"2GiB", 2 << 30, false},
		{"64KB", 64000, false},
		{"1 MB", 1000000, false},
		{"12B", 12, false},
		{"", 0, true},
		{"-1", 0, true},
		{"1.5MiB", 0, true},
		{"9223372036854775807KiB", 0, true},
		{"lots", 0, true},
	}
	for _, tt := range tests {
		var got envconf.ByteSize
		err := got.EnvDecode(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && got != tt.want) {
			t.Errorf("EnvDecode(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestEmptyIsUnset(t *testing.T) {
	t.Parallel()
	l := envconf.EmptyIsUnset{
		L:      envconfig.MapLookuper(map[string]string{"BLANK": "  ", "SET": "x", "OFF": ""}),
		Except: map[string]bool{"OFF": true},
	}
	for key, want := range map[string]struct {
		v  string
		ok bool
	}{"BLANK": {"", false}, "SET": {"x", true}, "OFF": {"", true}, "ABSENT": {"", false}} {
		if v, ok := l.Lookup(key); v != want.v || ok != want.ok {
			t.Errorf("Lookup(%s) = %q, %v; want %q, %v", key, v, ok, want.v, want.ok)
		}
	}
}
