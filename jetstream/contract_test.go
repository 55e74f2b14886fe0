package jetstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/aibatch/aibatch/batch/batchtest"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
)

// TestBrokerContract runs batchtest's broker contract against the real
// adapter on an embedded server, so what engine tests rely on in the
// in-memory Broker is what JetStream does. Every subtest gets its own
// server.
func TestBrokerContract(t *testing.T) {
	t.Parallel()
	batchtest.RunBrokerContract(t, func(t *testing.T) batchtest.Harness {
		ns := jetstreamtest.RunServer(t, "")
		_, js := jetstreamtest.Connect(t, ns)
		topo := jetstream.Topology{AckWait: time.Second}.WithDefaults()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		bq, uq, pub, err := jetstream.Ensure(ctx, js, topo)
		if err != nil {
			t.Fatalf("ensure topology: %v", err)
		}
		return batchtest.Harness{
			Batch:     bq,
			Urgent:    uq,
			Publisher: pub,
			Publish: func(subject string, data []byte, header map[string]string) (uint64, error) {
				m := nats.NewMsg(subject)
				m.Data = data
				for k, v := range header {
					m.Header.Set(k, v)
				}
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				ack, err := js.PublishMsg(ctx, m)
				if err != nil {
					return 0, err
				}
				return ack.Sequence, nil
			},
			Requests: func() int { return int(jetstreamtest.Count(t, js, topo.RequestStream)) },
			Stream:   topo.RequestStream,
			AckWait:  topo.AckWait,
		}
	})
}
