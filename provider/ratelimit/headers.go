package ratelimit

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Reading is what one answer's rate-limit headers said about the account's
// limits. OpenAI sends x-ratelimit-limit-requests,
// x-ratelimit-remaining-requests and x-ratelimit-reset-requests (a
// duration such as "1s" or "6m0s"), and the same for -tokens; Anthropic
// sends anthropic-ratelimit-requests-limit, -requests-remaining and
// -requests-reset (an RFC 3339 time), and the same for -tokens- (or
// -input-tokens-). Both define the reset as the moment the limit is whole
// again.
type Reading struct {
	// At is when the answer arrived.
	At time.Time `json:"at"`
	// Requests and Tokens are the two limits; a limit the answer did not
	// report is the zero Window.
	Requests Window `json:"requests,omitzero"`
	Tokens   Window `json:"tokens,omitzero"`
}

// Window is one limit of a Reading.
type Window struct {
	// Limit is the limit per minute; 0 when not reported.
	Limit int64 `json:"limit,omitempty"`
	// Remaining is what is left of it.
	Remaining int64 `json:"remaining"`
	// Reset is when it is whole again.
	Reset time.Time `json:"reset"`
}

// IsZero reports whether the window was not reported.
func (w Window) IsZero() bool { return w.Reset.IsZero() }

// IsZero reports whether the reading holds no limit.
func (r Reading) IsZero() bool { return r.Requests.IsZero() && r.Tokens.IsZero() }

// ParseHeaders reads the rate-limit headers of an answer that arrived at
// now, in OpenAI's or Anthropic's form. A limit counts only when both its
// remaining and its reset are present and well formed; ok is false when
// neither limit does.
func ParseHeaders(h http.Header, now time.Time) (r Reading, ok bool) {
	r.At = now
	r.Requests = openAIWindow(h, "requests", now)
	if r.Requests.IsZero() {
		r.Requests = anthropicWindow(h, "requests")
	}
	r.Tokens = openAIWindow(h, "tokens", now)
	if r.Tokens.IsZero() {
		r.Tokens = anthropicWindow(h, "tokens")
	}
	if r.Tokens.IsZero() {
		r.Tokens = anthropicWindow(h, "input-tokens")
	}
	return r, !r.IsZero()
}

// openAIWindow reads x-ratelimit-{limit,remaining,reset}-<kind>.
func openAIWindow(h http.Header, kind string, now time.Time) Window {
	remaining, okR := count(h.Get("x-ratelimit-remaining-" + kind))
	reset, okT := openAIDuration(h.Get("x-ratelimit-reset-" + kind))
	if !okR || !okT {
		return Window{}
	}
	limit, _ := count(h.Get("x-ratelimit-limit-" + kind))
	return Window{Limit: limit, Remaining: remaining, Reset: now.Add(reset)}
}

// anthropicWindow reads anthropic-ratelimit-<kind>-{limit,remaining,reset}.
func anthropicWindow(h http.Header, kind string) Window {
	remaining, okR := count(h.Get("anthropic-ratelimit-" + kind + "-remaining"))
	reset, err := time.Parse(time.RFC3339, strings.TrimSpace(h.Get("anthropic-ratelimit-"+kind+"-reset")))
	if !okR || err != nil {
		return Window{}
	}
	limit, _ := count(h.Get("anthropic-ratelimit-" + kind + "-limit"))
	return Window{Limit: limit, Remaining: remaining, Reset: reset}
}

// count parses a whole number of 0 or more.
func count(v string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	return n, err == nil && n >= 0
}

// openAIDuration parses OpenAI's reset durations: Go duration text ("1s",
// "6m0s", "59.5s", "250ms", "1h2m3s"), never negative, at most a day.
func openAIDuration(v string) (time.Duration, bool) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d < 0 || d > 24*time.Hour {
		return 0, false
	}
	return d, true
}

// Readings keeps the latest Reading of a provider's answers. Its Transport
// reads the headers of every answer that passes through it; a Provider
// built WithReadings paces its calls by them. The zero value is ready to
// use; it is safe for concurrent use.
type Readings struct {
	mu     sync.Mutex
	latest Reading
}

// Latest returns the newest reading, and false when no answer carried one.
func (r *Readings) Latest() (Reading, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.latest, !r.latest.IsZero()
}

// Observe keeps rd when it is newer than the reading kept.
func (r *Readings) Observe(rd Reading) {
	if rd.IsZero() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !rd.At.Before(r.latest.At) {
		r.latest = rd
	}
}

// Transport returns an http.RoundTripper that sends requests through base
// (http.DefaultTransport when nil) and observes the rate-limit headers of
// every answer, refusals included. Give it to a provider's HTTP client
// (openai.Config.HTTPClient, anthropic.Config.HTTPClient,
// httpapi.Config.HTTPClient): the providers need no change to be read.
func (r *Readings) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{base: base, readings: r}
}

type transport struct {
	base     http.RoundTripper
	readings *Readings
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err == nil {
		if rd, ok := ParseHeaders(resp.Header, time.Now()); ok {
			t.readings.Observe(rd)
		}
	}
	return resp, err
}

// pace is what w, read at at, allows the account's callers as of now: a
// rate (per second; +Inf when w sets none) and the end of a pause (zero
// when none).
//
// The rule spreads what is left over the time until the reset: a rate of
// Remaining / (Reset - At). A caller that keeps to it never empties the
// window before it is whole again; with the providers' continuous refill
// (a window of a minute's worth refilled at Limit a minute) it settles
// with half the window left, calling at the refill rate, and it slows only
// when the calls outrun the refill. A window with nothing left pauses the
// calls for one call's worth of refill (Reset - At) / Limit, or until the
// reset when the limit is not reported, and then allows 1 / (Reset - At).
func (w Window) pace(at, now time.Time) (rate float64, pauseUntil time.Time) {
	span := w.Reset.Sub(at)
	if w.IsZero() || !now.Before(w.Reset) || span <= 0 {
		return math.Inf(1), time.Time{}
	}
	if w.Remaining <= 0 {
		pauseUntil = w.Reset
		if w.Limit > 0 {
			pauseUntil = at.Add(span / time.Duration(w.Limit))
		}
	}
	return float64(max(w.Remaining, 1)) / span.Seconds(), pauseUntil
}
