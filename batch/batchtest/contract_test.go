package batchtest

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/aibatch/aibatch/wire"
)

// brokerHarness returns a fresh Broker with the given AckWait as the
// contract suite drives it.
func brokerHarness(ackWait time.Duration) func(t *testing.T) Harness {
	return func(t *testing.T) Harness {
		b := NewBroker(WithAckWait(ackWait))
		return Harness{
			Batch:     b.Queue(wire.RequestSubjects),
			Urgent:    b.Queue(wire.UrgentSubjects),
			Publisher: b.Publisher(),
			Publish:   b.PublishRequest,
			Requests:  b.Requests,
			Stream:    wire.RequestStream,
			AckWait:   b.AckWait(),
		}
	}
}

// TestBrokerContract runs the contract the real adapter passes against the
// Broker on the real clock, with a short AckWait.
func TestBrokerContract(t *testing.T) {
	t.Parallel()
	RunBrokerContract(t, brokerHarness(250*time.Millisecond))
}

// TestBrokerContractInBubble runs the same contract inside synctest bubbles
// with the default AckWait: every wait passes on the fake clock, so it
// takes no real time, and a Broker that spun or blocked other than durably
// would deadlock the bubble instead.
func TestBrokerContractInBubble(t *testing.T) {
	t.Parallel()
	runContract(t, brokerHarness(DefaultAckWait), synctest.Test)
}
