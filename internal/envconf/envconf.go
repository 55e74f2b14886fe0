// Package envconf holds what the worker's and the gateway's settings share
// beyond go-envconfig: a variable set to blanks read as unset, and sizes
// in bytes with a unit.
package envconf

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/sethvargo/go-envconfig"
)

// EmptyIsUnset is a Lookuper that reads a variable set to "" (or blanks) as
// unset, so its default applies: docker-compose's ${VAR} of an unset VAR
// and an empty ConfigMap key give "". Variables in Except keep "" as
// their value (where empty means off).
type EmptyIsUnset struct {
	L      envconfig.Lookuper
	Except map[string]bool
}

// Lookup implements envconfig.Lookuper.
func (e EmptyIsUnset) Lookup(key string) (string, bool) {
	v, ok := e.L.Lookup(key)
	if ok && strings.TrimSpace(v) == "" && !e.Except[key] {
		return "", false
	}
	return v, ok
}

// ByteSize is a size in bytes written as a number with an optional unit:
// 65536, 64KiB, 1MiB, 1GiB, 64KB, 1MB, 1GB.
type ByteSize int64

// EnvDecode implements envconfig.Decoder.
func (b *ByteSize) EnvDecode(val string) error {
	s := strings.TrimSpace(val)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return fmt.Errorf("%q is not a size: want bytes such as 65536, or 64KiB, 1MiB, 1GiB", val)
	}
	*b = ByteSize(n * mult)
	return nil
}
