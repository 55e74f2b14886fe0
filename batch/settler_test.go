package batch

import (
	"testing"
	"time"
)

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	small := Config{RetryBackoff: time.Second, RetryMaxBackoff: 10 * time.Second}
	odd := Config{RetryBackoff: 3 * time.Second, RetryMaxBackoff: 10 * time.Second}
	tests := []struct {
		name       string
		cfg        Config
		attempt    int
		retryAfter time.Duration
		jitter     float64
		want       time.Duration
	}{
		{name: "first attempt is RetryBackoff", cfg: small, attempt: 1, jitter: 1, want: time.Second},
		{name: "attempt 0 counts as the first", cfg: small, attempt: 0, jitter: 1, want: time.Second},
		{name: "second attempt doubles", cfg: small, attempt: 2, jitter: 1, want: 2 * time.Second},
		{name: "third attempt doubles again", cfg: small, attempt: 3, jitter: 1, want: 4 * time.Second},
		{name: "fourth attempt", cfg: small, attempt: 4, jitter: 1, want: 8 * time.Second},
		{name: "fifth attempt is capped (16s > 10s)", cfg: small, attempt: 5, jitter: 1, want: 10 * time.Second},
		{name: "many attempts stay capped", cfg: small, attempt: 1000, jitter: 1, want: 10 * time.Second},
		{name: "cap that is not a power of two", cfg: odd, attempt: 3, jitter: 1, want: 10 * time.Second},
		{name: "below a cap that is not a power of two", cfg: odd, attempt: 2, jitter: 1, want: 6 * time.Second},
		{name: "low jitter scales down", cfg: small, attempt: 3, jitter: 0.8, want: 3200 * time.Millisecond},
		{name: "high jitter scales up", cfg: small, attempt: 3, jitter: 1.2, want: 4800 * time.Millisecond},
		{name: "jitter scales the capped value", cfg: small, attempt: 9, jitter: 0.8, want: 8 * time.Second},
		{name: "Retry-After above the backoff wins", cfg: small, attempt: 1, retryAfter: 30 * time.Second, jitter: 1, want: 30 * time.Second},
		{name: "Retry-After above the cap wins", cfg: small, attempt: 20, retryAfter: time.Minute, jitter: 1.2, want: time.Minute},
		{name: "Retry-After below the backoff is a floor only", cfg: small, attempt: 2, retryAfter: 500 * time.Millisecond, jitter: 1, want: 2 * time.Second},
		{name: "Retry-After above the jittered backoff wins", cfg: small, attempt: 2, retryAfter: 1900 * time.Millisecond, jitter: 0.8, want: 1900 * time.Millisecond},
		{name: "defaults: first attempt 1s", cfg: Config{}, attempt: 1, jitter: 1, want: time.Second},
		{name: "defaults: seventh attempt capped at 1m (64s)", cfg: Config{}, attempt: 7, jitter: 1, want: time.Minute},
		{name: "defaults: sixth attempt 32s", cfg: Config{}, attempt: 6, jitter: 1, want: 32 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg.WithDefaults()
			p := retryPolicy{base: cfg.RetryBackoff, max: cfg.RetryMaxBackoff}
			if got := p.delay(tt.attempt, tt.retryAfter, tt.jitter); got != tt.want {
				t.Errorf("backoff(%d, %v, %v) = %v, want %v", tt.attempt, tt.retryAfter, tt.jitter, got, tt.want)
			}
		})
	}
}

// TestRetryDelayNeverShrinks checks that a later attempt never waits less than
// an earlier one with the same jitter.
func TestRetryDelayNeverShrinks(t *testing.T) {
	t.Parallel()
	p := retryPolicy{base: 700 * time.Millisecond, max: 45 * time.Second}
	prev := time.Duration(0)
	for attempt := 1; attempt <= 64; attempt++ {
		d := p.delay(attempt, 0, 1)
		if d < prev {
			t.Fatalf("backoff(%d) = %v, below backoff(%d) = %v", attempt, d, attempt-1, prev)
		}
		if d > p.max {
			t.Fatalf("backoff(%d) = %v, above RetryMaxBackoff %v", attempt, d, p.max)
		}
		prev = d
	}
	if prev != 45*time.Second {
		t.Errorf("backoff after 64 attempts = %v, want the cap 45s", prev)
	}
}

// TestDecide is the settler's rule book as a table: for every outcome,
// attempt count and publish result, the step that follows.
func TestDecide(t *testing.T) {
	t.Parallel()
	const maxDeliver = 3
	type want struct {
		step   step
		giveUp bool
	}
	tests := []struct {
		name string
		f    facts
		want want
	}{
		// Before anything is stored.
		{"answered: store the result", facts{outcome: outcomeAnswered, attempts: 1}, want{step: stepStoreResult}},
		{"answered on the last attempt: store the result", facts{outcome: outcomeAnswered, attempts: 3}, want{step: stepStoreResult}},
		{"rejected: store the error result", facts{outcome: outcomeRejected, attempts: 1}, want{step: stepStoreResult}},
		{"failed with attempts left: retry later", facts{outcome: outcomeFailed, attempts: 1}, want{step: stepRetryLater}},
		{"failed one attempt before the last: retry later", facts{outcome: outcomeFailed, attempts: 2}, want{step: stepRetryLater}},
		{"failed on the last attempt: give up", facts{outcome: outcomeFailed, attempts: 3}, want{step: stepStoreResult, giveUp: true}},
		{"failed past the last attempt: give up", facts{outcome: outcomeFailed, attempts: 9}, want{step: stepStoreResult, giveUp: true}},
		{"no outcome (shutdown): hand back", facts{outcome: outcomeNone, attempts: 1}, want{step: stepHandBack}},
		{"no outcome on the last attempt: hand back, not give up", facts{outcome: outcomeNone, attempts: 3}, want{step: stepHandBack}},

		// After the result's publish.
		{"ok result stored: ack", facts{outcome: outcomeAnswered, attempts: 1, result: storedNow}, want{step: stepAck}},
		{"ok result stored before: ack", facts{outcome: outcomeAnswered, attempts: 2, result: storedBefore}, want{step: stepAck}},
		{"result not stored: retry the store", facts{outcome: outcomeAnswered, attempts: 1, result: storeFailed}, want{step: stepRetryStore}},
		{"error result not stored: retry the store", facts{outcome: outcomeRejected, attempts: 1, result: storeFailed, resultIsError: true}, want{step: stepRetryStore}},
		{"error result stored: store the dead letter", facts{outcome: outcomeRejected, attempts: 1, result: storedNow, resultIsError: true}, want{step: stepStoreDeadLetter}},
		{"error result stored before: store the dead letter too", facts{outcome: outcomeFailed, attempts: 3, result: storedBefore, resultIsError: true}, want{step: stepStoreDeadLetter}},
		{"earlier delivery stored ok, this one failed: follow the stored one and ack", facts{outcome: outcomeRejected, attempts: 2, result: storedBefore, resultIsError: false}, want{step: stepAck}},
		{"earlier delivery stored an error, this one answered: dead letter as stored", facts{outcome: outcomeAnswered, attempts: 2, result: storedBefore, resultIsError: true}, want{step: stepStoreDeadLetter}},

		// After the dead letter's publish.
		{"dead letter stored: ack", facts{outcome: outcomeRejected, attempts: 1, result: storedNow, resultIsError: true, dead: storedNow}, want{step: stepAck}},
		{"dead letter stored before: ack", facts{outcome: outcomeRejected, attempts: 2, result: storedBefore, resultIsError: true, dead: storedBefore}, want{step: stepAck}},
		{"dead letter not stored: retry the store", facts{outcome: outcomeRejected, attempts: 1, result: storedNow, resultIsError: true, dead: storeFailed}, want{step: stepRetryStore}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.f.maxDeliver = maxDeliver
			got := decide(tt.f)
			if got.step != tt.want.step || got.giveUp != tt.want.giveUp {
				t.Errorf("decide(%+v) = %+v, want %+v", tt.f, got, tt.want)
			}
		})
	}
}

// TestDecideEndsEveryMessage walks every combination of facts through decide
// and checks that each message, whatever happens to its publishes, reaches
// an ack or a hand-back, and never an ack before its outcome is stored.
func TestDecideEndsEveryMessage(t *testing.T) {
	t.Parallel()
	outcomes := []outcome{outcomeNone, outcomeAnswered, outcomeRejected, outcomeFailed}
	publishes := []stored{storedNow, storedBefore, storeFailed}
	for _, o := range outcomes {
		for attempts := 1; attempts <= 4; attempts++ {
			for _, res := range publishes {
				for _, storedWasError := range []bool{false, true} {
					for _, dead := range publishes {
						f := facts{outcome: o, attempts: attempts, maxDeliver: 3}
						var trail []step
						for steps := 0; ; steps++ {
							if steps > 3 {
								t.Fatalf("%+v: no end after %v", f, trail)
							}
							v := decide(f)
							trail = append(trail, v.step)
							done := false
							switch v.step {
							case stepStoreResult:
								f.result = res
								f.resultIsError = o != outcomeAnswered || v.giveUp
								if res == storedBefore {
									f.resultIsError = storedWasError
								}
							case stepStoreDeadLetter:
								f.dead = dead
							case stepAck:
								if f.result != storedNow && f.result != storedBefore {
									t.Fatalf("%+v: ack without a stored result (%v)", f, trail)
								}
								if f.resultIsError && f.dead != storedNow && f.dead != storedBefore {
									t.Fatalf("%+v: ack of an error without a stored dead letter (%v)", f, trail)
								}
								done = true
							case stepRetryLater, stepHandBack, stepRetryStore:
								done = true
							default:
								t.Fatalf("%+v: unknown step %d", f, v.step)
							}
							if done {
								break
							}
						}
					}
				}
			}
		}
	}
}
