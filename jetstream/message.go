package jetstream

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/batch"
)

// message adapts a JetStream message to batch.Message.
type message struct {
	msg      jetstream.Msg
	delivery batch.Delivery
}

func adapt(m jetstream.Msg) (*message, error) {
	meta, err := m.Metadata()
	if err != nil {
		// Not a JetStream delivery; it cannot be acked either, so say so.
		return nil, fmt.Errorf("jetstream: read delivery metadata: %w", err)
	}
	return &message{msg: m, delivery: batch.Delivery{
		Stream:       meta.Stream,
		StreamSeq:    meta.Sequence.Stream,
		NumDelivered: meta.NumDelivered,
		Published:    meta.Timestamp,
	}}, nil
}

func (m *message) Data() []byte              { return m.msg.Data() }
func (m *message) Subject() string           { return m.msg.Subject() }
func (m *message) Delivery() batch.Delivery  { return m.delivery }
func (m *message) Nak(d time.Duration) error { return m.msg.NakWithDelay(d) }
func (m *message) InProgress() error         { return m.msg.InProgress() }

// Ack acknowledges without waiting for the server's confirmation: the outcome
// is already stored, and if the ack is lost the redelivery finds it by its
// Nats-Msg-Id.
func (m *message) Ack() error { return m.msg.Ack() }

func (m *message) Header(name string) string {
	h := m.msg.Headers()
	if h == nil {
		return ""
	}
	return h.Get(name)
}
