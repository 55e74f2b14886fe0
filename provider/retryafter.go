package provider

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxRetryAfter caps the wait ParseRetryAfter returns, so a broken or hostile
// header cannot park requests for ever.
const MaxRetryAfter = 24 * time.Hour

// ParseRetryAfter reads the wait an HTTP answer's header h asks for:
// retry-after-ms (milliseconds, sent by OpenAI) first, then Retry-After
// (seconds, possibly fractional, or an HTTP date taken relative to now).
// It returns 0 when h is nil or neither header holds a positive wait, and
// caps the wait at MaxRetryAfter.
func ParseRetryAfter(h http.Header, now time.Time) time.Duration {
	if h == nil {
		return 0
	}
	if d, ok := parseAmount(h.Get("retry-after-ms"), time.Millisecond); ok {
		return d
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if d, ok := parseAmount(v, time.Second); ok {
		return d
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), MaxRetryAfter)
	}
	return 0
}

// parseAmount parses v as a positive number of units, capped at MaxRetryAfter.
func parseAmount(v string, unit time.Duration) (time.Duration, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(f) || f <= 0 {
		return 0, false
	}
	if f >= float64(MaxRetryAfter/unit) {
		return MaxRetryAfter, true
	}
	return time.Duration(f * float64(unit)), true
}
