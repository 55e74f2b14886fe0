package batch

import "context"

// AttemptRecord counts how a request's earlier deliveries ended, apart from
// the broker's delivery count: a request's attempts are spent only on
// failures of its own.
type AttemptRecord struct {
	// Spent counts deliveries that ended in a failure of the request's own
	// (each spends one of MaxDeliver attempts).
	Spent int `json:"spent"`
	// Free counts deliveries handed back without spending one: the
	// provider was unavailable, or the worker was shutting down.
	Free int `json:"free"`
	// Passed counts the Free deliveries a follower handed to the holder
	// unsent, to fill the holder's groups: a request whose earlier
	// deliveries were all passed on has not waited as a retry has, and
	// joins its group like a new one.
	Passed int `json:"passed,omitempty"`
}

// AttemptStore keeps each request's AttemptRecord where a restarted worker
// finds it. The jetstream side keeps it in a key-value bucket. A delivery
// the record does not explain (its worker stopped mid-call) counts as
// neither spent nor free; MaxDeliver of those end the request, so a request
// that crashes workers cannot do so for ever.
type AttemptStore interface {
	// Get returns the record of the request at seq in stream; the zero
	// record when there is none.
	Get(ctx context.Context, stream string, seq uint64) (AttemptRecord, error)
	// Put stores the record of the request at seq in stream.
	Put(ctx context.Context, stream string, seq uint64, r AttemptRecord) error
	// Delete forgets the record once the request has ended.
	Delete(ctx context.Context, stream string, seq uint64) error
}

// WithAttemptStore sets where the engine keeps requests' attempt records.
// Without one, every delivery after the first counts as a spent attempt,
// whatever ended it.
func WithAttemptStore(s AttemptStore) Option { return func(e *Engine) { e.attempts = s } }
