package batch

import (
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// Observer is told what the engine does, for metrics and cost accounting.
// Its methods are called from many goroutines, on the engine's hot path: they
// must be safe for concurrent use and return quickly.
type Observer interface {
	// BatchFetched reports a fetched set of requests handed to calls.
	BatchFetched(trigger wire.Trigger, size int)
	// CallFinished reports one provider call.
	CallFinished(c CallReport)
	// RequestFinished reports a request whose outcome was stored and acked.
	RequestFinished(r RequestReport)
	// RequestRetried reports a request handed back for a later attempt.
	RequestRetried()
	// RequestDeferred reports a request handed back, without spending an
	// attempt, because the provider could serve no one.
	RequestDeferred()
	// BacklogRead reports the batch lane's backlog at a poll.
	BacklogRead(b Backlog)
	// BreakerChanged reports a circuit breaker that opened or closed.
	BreakerChanged(b BreakerState)
	// GroupResized reports a group whose call size changed.
	GroupResized(g GroupState)
	// ShadowSampled reports a request answered in a combined call and
	// again alone, compared (WithShadow).
	ShadowSampled(s ShadowSample)
	// QualityLimited reports a change the quality guard made to a group's
	// call size; GroupResized reports the group's new state too.
	QualityLimited(c QualityChange)
}

// CallReport describes one provider call.
type CallReport struct {
	Provider string
	Model    string
	Trigger  wire.Trigger
	// Size is the number of requests in the call.
	Size    int
	Latency time.Duration
	// Err is the whole-call error; nil when the call was answered.
	Err error
	// Usage sums the tokens the answer reported.
	Usage provider.Usage
	// Async is true for a Batch API job (reported once its waiting ends,
	// with the usage of the answers it gave), false for a synchronous call.
	Async bool
	// Resumed is true for a job a previous worker submitted: it is not a
	// new call, but its answers' usage is reported here.
	Resumed bool
	// Probe is true for a call made to find out whether an unavailable
	// provider is back; it answers no request.
	Probe bool
	// Shadow is true for a shadow sample's call, made again alone to
	// compare answers (WithShadow), and for the embedding call that scored
	// it: it answers no request, and its cost is counted apart.
	Shadow bool
	// SoloPromptTokens estimates the prompt tokens the same requests would
	// have needed sent one per call (each repeating the instructions and the
	// call's framing), for the saving batching makes.
	SoloPromptTokens int64
}

// RequestReport describes a request whose outcome was stored.
type RequestReport struct {
	// Status is wire.StatusOK or wire.StatusError.
	Status string
	// DeadLettered is true when a dead letter was stored for it.
	DeadLettered bool
	// QueueWait is the time from the request's arrival to its call.
	QueueWait time.Duration
	// Attempts counts deliveries, 1 on the first.
	Attempts int
}

// WithObserver adds an observer the engine reports to; with several, each
// is told everything, in the order they were added.
func WithObserver(o Observer) Option {
	return func(e *Engine) {
		if fan, ok := e.observer.(observers); ok {
			e.observer = append(fan, o)
			return
		}
		if _, ok := e.observer.(NopObserver); ok {
			e.observer = o
			return
		}
		e.observer = observers{e.observer, o}
	}
}

type observers []Observer

func (os observers) BatchFetched(t wire.Trigger, n int) {
	for _, o := range os {
		o.BatchFetched(t, n)
	}
}

func (os observers) CallFinished(c CallReport) {
	for _, o := range os {
		o.CallFinished(c)
	}
}

func (os observers) RequestFinished(r RequestReport) {
	for _, o := range os {
		o.RequestFinished(r)
	}
}

func (os observers) RequestRetried() {
	for _, o := range os {
		o.RequestRetried()
	}
}

func (os observers) RequestDeferred() {
	for _, o := range os {
		o.RequestDeferred()
	}
}

func (os observers) BacklogRead(b Backlog) {
	for _, o := range os {
		o.BacklogRead(b)
	}
}

func (os observers) BreakerChanged(b BreakerState) {
	for _, o := range os {
		o.BreakerChanged(b)
	}
}

func (os observers) GroupResized(g GroupState) {
	for _, o := range os {
		o.GroupResized(g)
	}
}

func (os observers) ShadowSampled(s ShadowSample) {
	for _, o := range os {
		o.ShadowSampled(s)
	}
}

func (os observers) QualityLimited(c QualityChange) {
	for _, o := range os {
		o.QualityLimited(c)
	}
}

// NopObserver does nothing with what it is told. Embed it in an Observer
// that cares about some reports only; methods added to Observer later then
// need no change.
type NopObserver struct{}

func (NopObserver) BatchFetched(wire.Trigger, int) {}
func (NopObserver) CallFinished(CallReport)        {}
func (NopObserver) RequestFinished(RequestReport)  {}
func (NopObserver) RequestRetried()                {}
func (NopObserver) RequestDeferred()               {}
func (NopObserver) BacklogRead(Backlog)            {}
func (NopObserver) BreakerChanged(BreakerState)    {}
func (NopObserver) GroupResized(GroupState)        {}
func (NopObserver) ShadowSampled(ShadowSample)     {}
func (NopObserver) QualityLimited(QualityChange)   {}
