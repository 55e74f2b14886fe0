package fake

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// quota is an account's rate limits as the real APIs keep them: a bucket
// of requests and one of tokens, each holding a minute's worth (RPM, TPM),
// refilled continuously at RPM/60 and TPM/60 a second. A call takes one
// request and its tokens, or is refused (429) when either bucket holds too
// little. The headers of every answer say what is left and when each
// bucket is whole again, as OpenAI's x-ratelimit-* and Anthropic's
// anthropic-ratelimit-* headers do. Controls embeds it; its zero value
// limits nothing.
type quota struct {
	mu       sync.Mutex
	rpm, tpm int64
	requests float64 // what the buckets hold
	tokens   float64
	last     time.Time // when they were last refilled
	refused  int64
	low      int64 // the fewest requests left after an admitted call; -1 before one
}

// SetRateLimit makes Admit keep to rpm requests and tpm tokens a minute
// (either 0: no limit of that kind), starting with full buckets. Both 0
// remove the limits.
func (q *quota) SetRateLimit(rpm, tpm int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.rpm, q.tpm = int64(max(rpm, 0)), int64(max(tpm, 0))
	q.requests, q.tokens = float64(q.rpm), float64(q.tpm)
	q.last, q.refused, q.low = time.Now(), 0, -1
}

// RateLimited returns how many calls Admit refused since SetRateLimit.
func (q *quota) RateLimited() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.refused
}

// LowestRemaining returns the fewest requests the bucket held after a call
// it admitted since SetRateLimit, or -1 before the first (or without an
// RPM limit).
func (q *quota) LowestRemaining() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.low
}

// QuotaState is what an answer's rate-limit headers say.
type QuotaState struct {
	// Requests and Tokens are the buckets after the call; a bucket without
	// a limit is not Set.
	Requests, Tokens Bucket
	// RetryAfter is how long a refused call should wait before it could be
	// admitted; 0 for an admitted call.
	RetryAfter time.Duration
}

// Bucket is one bucket of QuotaState.
type Bucket struct {
	// Set is false when there is no limit of this kind.
	Set bool
	// Limit is the limit per minute, Remaining what the bucket holds
	// (rounded down), Reset how long until it is full again.
	Limit, Remaining int64
	Reset            time.Duration
}

// Admit charges a call of tokens against the limits SetRateLimit set and
// reports whether it may go ahead, with the state after it. A refused call
// takes nothing. Without limits every call is admitted and the state has
// no bucket Set.
func (q *quota) Admit(tokens int64) (QuotaState, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.rpm == 0 && q.tpm == 0 {
		return QuotaState{}, true
	}
	now := time.Now()
	elapsed := now.Sub(q.last).Seconds()
	q.last = now
	q.requests = math.Min(float64(q.rpm), q.requests+elapsed*float64(q.rpm)/60)
	q.tokens = math.Min(float64(q.tpm), q.tokens+elapsed*float64(q.tpm)/60)
	// A call larger than the whole token bucket is charged the bucket, as
	// it could never be admitted otherwise.
	tokens = min(tokens, q.tpm)
	var wait time.Duration
	if q.rpm > 0 && q.requests < 1 {
		wait = max(wait, fill(1-q.requests, q.rpm))
	}
	if q.tpm > 0 && q.tokens < float64(tokens) {
		wait = max(wait, fill(float64(tokens)-q.tokens, q.tpm))
	}
	admitted := wait == 0
	if admitted {
		if q.rpm > 0 {
			q.requests--
		}
		if q.tpm > 0 {
			q.tokens -= float64(tokens)
		}
	} else {
		q.refused++
	}
	st := QuotaState{RetryAfter: wait}
	if q.rpm > 0 {
		st.Requests = Bucket{Set: true, Limit: q.rpm, Remaining: int64(q.requests), Reset: fill(float64(q.rpm)-q.requests, q.rpm)}
		if admitted && (q.low < 0 || st.Requests.Remaining < q.low) {
			q.low = st.Requests.Remaining
		}
	}
	if q.tpm > 0 {
		st.Tokens = Bucket{Set: true, Limit: q.tpm, Remaining: int64(q.tokens), Reset: fill(float64(q.tpm)-q.tokens, q.tpm)}
	}
	return st, admitted
}

// fill is how long a bucket of perMinute takes to gain n.
func fill(n float64, perMinute int64) time.Duration {
	if n <= 0 {
		return 0
	}
	return time.Duration(n * 60 / float64(perMinute) * float64(time.Second))
}

// OpenAIRateHeaders writes st as OpenAI does: x-ratelimit-limit-,
// -remaining- and -reset-requests and -tokens, the resets as durations such
// as "1s", "6m0s" or "250ms"; and, for a refused call, Retry-After in whole
// seconds (rounded up).
func OpenAIRateHeaders(h http.Header, st QuotaState) {
	for _, b := range []struct {
		kind string
		b    Bucket
	}{{"requests", st.Requests}, {"tokens", st.Tokens}} {
		if !b.b.Set {
			continue
		}
		h.Set("x-ratelimit-limit-"+b.kind, strconv.FormatInt(b.b.Limit, 10))
		h.Set("x-ratelimit-remaining-"+b.kind, strconv.FormatInt(b.b.Remaining, 10))
		h.Set("x-ratelimit-reset-"+b.kind, openAIDuration(b.b.Reset))
	}
	retryAfterHeader(h, st)
}

// openAIDuration writes d as OpenAI's reset headers do: whole milliseconds
// below a second ("250ms"), else Go's duration text ("1.5s", "6m0s").
func openAIDuration(d time.Duration) string {
	d = d.Round(time.Millisecond)
	if d < time.Second {
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	}
	return d.String()
}

// AnthropicRateHeaders writes st as Anthropic does:
// anthropic-ratelimit-requests- and -tokens- (and -input-tokens-) -limit,
// -remaining and -reset, the resets as RFC 3339 times from now; and, for a
// refused call, retry-after in whole seconds (rounded up).
func AnthropicRateHeaders(h http.Header, st QuotaState, now time.Time) {
	for _, b := range []struct {
		kinds []string
		b     Bucket
	}{{[]string{"requests"}, st.Requests}, {[]string{"tokens", "input-tokens"}, st.Tokens}} {
		if !b.b.Set {
			continue
		}
		for _, kind := range b.kinds {
			h.Set("anthropic-ratelimit-"+kind+"-limit", strconv.FormatInt(b.b.Limit, 10))
			h.Set("anthropic-ratelimit-"+kind+"-remaining", strconv.FormatInt(b.b.Remaining, 10))
			// Rounded up to the second, as the API writes it: the
			// bucket is whole by then.
			h.Set("anthropic-ratelimit-"+kind+"-reset", now.Add(b.b.Reset+time.Second-1).Truncate(time.Second).UTC().Format(time.RFC3339))
		}
	}
	retryAfterHeader(h, st)
}

func retryAfterHeader(h http.Header, st QuotaState) {
	if st.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(st.RetryAfter.Seconds())), 10))
	}
}
