package batch

import (
	"time"

	"github.com/aibatch/aibatch/provider"
)

// Observer is told what the engine does, for metrics and cost accounting.
// Its methods are called from many goroutines, on the engine's hot path: they
// must be safe for concurrent use and return quickly.
type Observer interface {
	// BatchFetched reports a fetched set of requests handed to calls.
	BatchFetched(trigger Trigger, size int)
	// CallFinished reports one provider call.
	CallFinished(c CallReport)
	// RequestFinished reports a request whose outcome was stored and acked.
	RequestFinished(r RequestReport)
	// RequestRetried reports a request handed back for a later attempt.
	RequestRetried()
	// BacklogRead reports the batch lane's backlog at a poll.
	BacklogRead(b Backlog)
}

// CallReport describes one provider call.
type CallReport struct {
	Provider string
	Model    string
	Trigger  Trigger
	// Size is the number of requests in the call.
	Size    int
	Latency time.Duration
	// Err is the whole-call error; nil when the call was answered.
	Err error
	// Usage sums the tokens the answer reported.
	Usage provider.Usage
}

// RequestReport describes a request whose outcome was stored.
type RequestReport struct {
	// Status is StatusOK or StatusError.
	Status string
	// DeadLettered is true when a dead letter was stored for it.
	DeadLettered bool
	// QueueWait is the time from the request's arrival to its call.
	QueueWait time.Duration
	// Attempts counts deliveries, 1 on the first.
	Attempts int
}

// WithObserver sets the observer the engine reports to; the default
// observes nothing.
func WithObserver(o Observer) Option { return func(e *Engine) { e.observer = o } }

type nopObserver struct{}

func (nopObserver) BatchFetched(Trigger, int)     {}
func (nopObserver) CallFinished(CallReport)       {}
func (nopObserver) RequestFinished(RequestReport) {}
func (nopObserver) RequestRetried()               {}
func (nopObserver) BacklogRead(Backlog)           {}
