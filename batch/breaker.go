package batch

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/aibatch/aibatch/provider"
)

// Breaker states, as Stats and metrics report them.
const (
	BreakerClosed = "closed"
	BreakerOpen   = "open"
)

// BreakerState is one circuit breaker's state.
type BreakerState struct {
	// Model is the model the breaker guards; empty for the provider as a
	// whole.
	Model string `json:"model,omitempty"`
	// State is BreakerClosed or BreakerOpen.
	State string `json:"state"`
	// Reason says why it opened, such as "provider failing: HTTP 500 ×3
	// since 12:01:02Z" or "provider rejected the API key (HTTP 401)".
	Reason string `json:"reason,omitempty"`
	// Since is when it last changed state.
	Since time.Time `json:"since"`
	// Failures counts the provider-scope failures since it opened.
	Failures int `json:"failures,omitempty"`
	// NextProbe is when an open breaker next tries a call.
	NextProbe time.Time `json:"next_probe,omitempty"`

	// probeModel is the model a probe calls: the one whose call failed.
	probeModel string
}

// breakers keeps one circuit breaker for the provider and one per model that
// an error named. A provider-scope failure opens one: the lanes stop fetching
// for it, requests go back to the stream without spending an attempt, and a
// probe call at growing intervals (up to maxProbe) closes it on its first
// success.
type breakers struct {
	firstProbe, maxProbe time.Duration
	// changed is told of every state change, once per change.
	changed func(BreakerState)

	mu     sync.Mutex
	byName map[string]*breaker // "" is the provider
}

type breaker struct {
	state      BreakerState
	lastStatus int
	interval   time.Duration
	// streak counts provider-scope failures since the last success, while
	// closed.
	streak int
}

// openAfter is how many provider-scope failures in a row, with no success
// between them, open a breaker: a lone 5xx among healthy calls does not stop
// the lanes. A rejected key, a refused access or an unknown default model
// open it at once: they will not pass on their own.
const openAfter = 3

// opensAtOnce reports whether err opens a breaker on its own.
func opensAtOnce(err error) bool {
	switch statusOf(err) {
	case http.StatusUnauthorized, http.StatusForbidden:
		return true
	}
	return errors.Is(err, provider.ErrUnknownModel)
}

// errBreakerOpen is the cause recorded on requests handed back because a
// breaker is open.
var errBreakerOpen = errors.New("the provider is unavailable; the request waits in the stream")

func newBreakers(firstProbe, maxProbe time.Duration, changed func(BreakerState)) *breakers {
	return &breakers{firstProbe: firstProbe, maxProbe: maxProbe, changed: changed, byName: map[string]*breaker{}}
}

// open returns the open breaker that stops calls to model (the provider's
// own, or the model's), or false.
func (b *breakers) open(model string) (BreakerState, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, name := range []string{"", model} {
		if br, ok := b.byName[name]; ok && br.state.State == BreakerOpen {
			return br.state, true
		}
	}
	return BreakerState{}, false
}

// anyOpen reports whether any breaker is open, and the provider's (or the
// first model's) state.
func (b *breakers) anyOpen() (BreakerState, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if br, ok := b.byName[""]; ok && br.state.State == BreakerOpen {
		return br.state, true
	}
	for _, name := range b.sortedNames() {
		if br := b.byName[name]; br.state.State == BreakerOpen {
			return br.state, true
		}
	}
	return BreakerState{}, false
}

// fail records a provider-scope failure of a call to model; modelScoped
// says the error concerns that model only, probe that the call was a probe.
// A breaker opens after openAfter failures in a row (at once for a rejected
// key or an unknown default model); each failed probe doubles the wait for
// the next one. It returns the breaker's state: the caller defers the call's
// requests until NextProbe when it is open, and briefly when not.
func (b *breakers) fail(model string, modelScoped, probe bool, err error, now time.Time) BreakerState {
	name := ""
	if modelScoped {
		name = model
	}
	b.mu.Lock()
	br, ok := b.byName[name]
	if !ok {
		br = &breaker{state: BreakerState{Model: name, State: BreakerClosed}}
		b.byName[name] = br
	}
	status := statusOf(err)
	if br.state.State != BreakerOpen {
		br.streak++
		if br.streak < openAfter && !opensAtOnce(err) && !probe {
			br.lastStatus = status
			st := br.state
			b.mu.Unlock()
			return st
		}
	}
	opened := br.state.State != BreakerOpen
	switch {
	case opened:
		br.state = BreakerState{Model: name, State: BreakerOpen, Since: now, probeModel: model}
		br.interval = b.firstProbe
		br.state.NextProbe = now.Add(max(br.interval, provider.RetryAfter(err)))
	case probe:
		br.interval = min(br.interval*2, b.maxProbe)
		br.state.NextProbe = now.Add(max(br.interval, provider.RetryAfter(err)))
	}
	br.state.Failures++
	br.lastStatus = status
	br.state.Reason = reasonFor(name, err, status, br.state.Failures, br.state.Since)
	st := br.state
	b.mu.Unlock()
	if opened {
		b.changed(st)
	}
	return st
}

// succeed records a call to model that the provider served: it closes the
// provider's breaker and the model's.
func (b *breakers) succeed(model string, now time.Time) {
	var closed []BreakerState
	b.mu.Lock()
	for _, name := range []string{"", model} {
		br, ok := b.byName[name]
		if !ok {
			continue
		}
		br.streak = 0
		if br.state.State != BreakerOpen {
			continue
		}
		br.state = BreakerState{Model: name, State: BreakerClosed, Since: now}
		closed = append(closed, br.state)
	}
	b.mu.Unlock()
	for _, st := range closed {
		b.changed(st)
	}
}

// due returns the open breakers whose next probe is due at now.
func (b *breakers) due(now time.Time) []BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []BreakerState
	for _, name := range b.sortedNames() {
		if br := b.byName[name]; br.state.State == BreakerOpen && !now.Before(br.state.NextProbe) {
			out = append(out, br.state)
		}
	}
	return out
}

// nextProbe returns the earliest probe time of an open breaker, or zero.
func (b *breakers) nextProbe() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	var next time.Time
	for _, br := range b.byName {
		if br.state.State == BreakerOpen && (next.IsZero() || br.state.NextProbe.Before(next)) {
			next = br.state.NextProbe
		}
	}
	return next
}

// states returns every breaker's state, the provider's first.
func (b *breakers) states() []BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]BreakerState, 0, len(b.byName))
	for _, name := range b.sortedNames() {
		out = append(out, b.byName[name].state)
	}
	return out
}

func (b *breakers) sortedNames() []string {
	names := make([]string, 0, len(b.byName))
	for n := range b.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func statusOf(err error) int {
	var pe *provider.Error
	if errors.As(err, &pe) {
		return pe.StatusCode
	}
	return 0
}

// reasonFor says in one line why a breaker is open.
func reasonFor(model string, err error, status, failures int, since time.Time) string {
	who := "provider"
	if model != "" {
		who = fmt.Sprintf("model %q", model)
	}
	switch {
	case errors.Is(err, provider.ErrUnknownModel):
		return fmt.Sprintf("the provider does not know %s (HTTP %d)", who, status)
	case status == http.StatusUnauthorized:
		return fmt.Sprintf("%s rejected the API key (HTTP 401)", who)
	case status == http.StatusForbidden:
		return fmt.Sprintf("%s refused access with this API key (HTTP 403)", who)
	case status == http.StatusTooManyRequests:
		return fmt.Sprintf("%s rate limit reached (HTTP 429) ×%d since %s", who, failures, since.UTC().Format(time.RFC3339))
	case status != 0:
		return fmt.Sprintf("%s failing: HTTP %d ×%d since %s", who, status, failures, since.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("%s unreachable ×%d since %s: %v", who, failures, since.UTC().Format(time.RFC3339), shortErr(err))
}

func shortErr(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
