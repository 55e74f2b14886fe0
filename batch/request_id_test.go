package batch

import (
	"testing"
	"time"

	"github.com/aibatch/aibatch/wire"
)

// fakeMessage is a delivered request with fixed contents. It records nothing:
// the tests that use it check what the engine computes from a message, not
// what it does to one.
type fakeMessage struct {
	data    []byte
	subject string
	header  map[string]string
	d       Delivery
}

var _ Message = fakeMessage{}

func (m fakeMessage) Data() []byte              { return m.data }
func (m fakeMessage) Subject() string           { return m.subject }
func (m fakeMessage) Header(name string) string { return m.header[name] }
func (m fakeMessage) Delivery() Delivery        { return m.d }
func (m fakeMessage) Ack() error                { return nil }
func (m fakeMessage) Nak(time.Duration) error   { return nil }
func (m fakeMessage) InProgress() error         { return nil }

func TestRequestID(t *testing.T) {
	t.Parallel()
	d := Delivery{Stream: "AI_REQUESTS", StreamSeq: 42}
	tests := []struct {
		name   string
		req    wire.Request
		header map[string]string
		d      Delivery
		want   string
	}{
		{"body id wins", wire.Request{ID: "body-1"}, map[string]string{wire.HeaderMsgID: "hdr-1"}, d, "body-1"},
		{"body id without header", wire.Request{ID: "body-1"}, nil, d, "body-1"},
		{"Nats-Msg-Id when the body has none", wire.Request{}, map[string]string{wire.HeaderMsgID: "hdr-1"}, d, "hdr-1"},
		{"stream sequence when neither", wire.Request{}, nil, d, "42"},
		{"other headers are not ids", wire.Request{}, map[string]string{wire.HeaderReplyTo: "replies.x"}, d, "42"},
		{"largest sequence", wire.Request{}, nil, Delivery{StreamSeq: 18446744073709551615}, "18446744073709551615"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := fakeMessage{header: tt.header, d: tt.d}
			if got := requestID(tt.req, m, tt.d); got != tt.want {
				t.Errorf("requestID = %q, want %q", got, tt.want)
			}
		})
	}
}
