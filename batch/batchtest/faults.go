package batchtest

import (
	"errors"
	"fmt"
)

// Fault is a kind of broker misbehaviour a test can inject with
// Broker.Inject. Each injected fault is used up by the next operation of its
// kind, whichever queue, message or publisher makes it.
type Fault int

// The faults a Broker can be told to commit.
const (
	// RejectPublish: a published message (result, dead letter or plain) is
	// neither stored nor sent, and its PublishAck.Err says so.
	RejectPublish Fault = iota + 1
	// LosePubAck: a published message is stored (or sent), but its
	// PublishAck.Err says the acknowledgement was lost, as when the
	// connection drops between the store and the ack.
	LosePubAck
	// LoseAck: an Ack returns nil but never reaches the broker, so the
	// request stays and is delivered again after AckWait.
	LoseAck
	// FailAck: an Ack returns an error and is not applied.
	FailAck
	// FailNak: a Nak returns an error and is not applied, so the request is
	// delivered again after AckWait rather than after its delay.
	FailNak
	// FailInProgress: an InProgress returns an error and is not applied.
	FailInProgress
	// FailFetch: a Fetch or a Wait returns an error at once.
	FailFetch
	// FailBacklog: a Backlog returns an error.
	FailBacklog
	// FailStoredResult: a Publisher's StoredResult returns an error.
	FailStoredResult
)

var faultNames = map[Fault]string{
	RejectPublish:    "reject publish",
	LosePubAck:       "lose publish ack",
	LoseAck:          "lose ack",
	FailAck:          "fail ack",
	FailNak:          "fail nak",
	FailInProgress:   "fail in-progress",
	FailFetch:        "fail fetch",
	FailBacklog:      "fail backlog",
	FailStoredResult: "fail stored result",
}

// String names the fault, as subtests and errors show it.
func (f Fault) String() string {
	if s, ok := faultNames[f]; ok {
		return s
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// ErrInjected is wrapped by every error a Broker, Provider or JobStore
// returns because a test told it to fail.
var ErrInjected = errors.New("batchtest: injected fault")

// Inject makes the next n operations of kind f misbehave, on top of any
// injected before. n of 0 or less clears f.
func (b *Broker) Inject(f Fault, n int) {
	if _, ok := faultNames[f]; !ok {
		panic(fmt.Sprintf("batchtest: Inject: unknown %v", f))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if n <= 0 {
		delete(b.faults, f)
		return
	}
	b.faults[f] += n
}

// faultLocked uses up one injection of f and returns its error, or returns
// nil when none is left.
func (b *Broker) faultLocked(f Fault) error {
	if b.faults[f] == 0 {
		return nil
	}
	b.faults[f]--
	return fmt.Errorf("%v: %w", f, ErrInjected)
}
