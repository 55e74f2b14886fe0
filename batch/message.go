package batch

import (
	"context"
	"time"
)

// Message is one delivered request as the engine sees it. The jetstream
// package adapts JetStream messages to it.
type Message interface {
	// Data is the request body as published.
	Data() []byte
	// Subject is the subject the request was published on.
	Subject() string
	// Header returns the first value of the named header, or "".
	Header(name string) string
	// Delivery describes where the message sits in the stream and how often
	// it was delivered.
	Delivery() Delivery
	// Ack tells the broker the request is done, as nats.go's Msg.Ack does:
	// it is sent, not confirmed. A lost ack means a redelivery after the
	// ack wait, which the engine recognises by the stored result's
	// Nats-Msg-Id.
	Ack() error
	// Nak asks the broker to deliver the request again after delay.
	Nak(delay time.Duration) error
	// InProgress resets the broker's redelivery timer while work goes on.
	InProgress() error
}

// Delivery is the broker's bookkeeping for one delivered message.
type Delivery struct {
	// Stream is the name of the stream holding the request.
	Stream string
	// StreamSeq is the request's sequence in its stream; unique per stream.
	StreamSeq uint64
	// NumDelivered counts deliveries including this one (1 on the first).
	NumDelivered uint64
	// Published is when the broker stored the request.
	Published time.Time
}

// Queue is one lane of the request stream (the batch lane or the urgent
// lane) as the engine reads it.
type Queue interface {
	// Backlog reports what waits in the lane without taking anything.
	Backlog(ctx context.Context) (Backlog, error)
	// Fetch returns up to max requests available now; it does not wait for
	// more to arrive and returns an empty slice when none are available.
	Fetch(ctx context.Context, max int) ([]Message, error)
	// Wait blocks until at least one request is available or ctx ends, and
	// then returns up to max requests available at that moment.
	Wait(ctx context.Context, max int) ([]Message, error)
}

// Backlog describes the requests waiting in a lane.
type Backlog struct {
	// Pending counts requests that were never delivered.
	Pending int
	// Oldest is when the oldest never-delivered request was published; zero
	// when Pending is 0.
	Oldest time.Time
	// AckPending counts requests delivered to some worker and not yet
	// acknowledged (in a call now, or waiting for a retry).
	AckPending int
}

// Outgoing is one message the engine publishes: a result or a dead letter.
type Outgoing struct {
	Subject string
	// MsgID deduplicates the message in its stream (Nats-Msg-Id).
	MsgID string
	// Header holds the message's other headers, each name once.
	Header []HeaderField
	Data   []byte
}

// HeaderField is one header of an Outgoing message. A message has a few,
// so a slice costs less than a map for every result the engine publishes.
type HeaderField struct {
	Name, Value string
}

// HeaderValue returns the value of o's header name, "" when it has none.
func (o Outgoing) HeaderValue(name string) string {
	for _, f := range o.Header {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// PublishAck is the broker's answer to one Outgoing.
type PublishAck struct {
	// Err is non-nil when the message may not be stored.
	Err error
	// Duplicate is true when the stream already held a message with the same
	// MsgID, which happens when a request is redelivered after its result was
	// stored; Sequence then names the stored message.
	Duplicate bool
	// Sequence is the stored message's stream sequence (0 when the subject is
	// not captured by a stream).
	Sequence uint64
}

// Publisher stores results and dead letters.
type Publisher interface {
	// Publish sends every message and waits until the broker has stored each
	// (or, for a subject no stream captures, until it was sent). The returned
	// slice has one PublishAck per message, in order. Publish must not keep
	// the Data of a message it acked without error: the engine reuses it.
	Publish(ctx context.Context, msgs []Outgoing) []PublishAck
	// StoredResult returns the body of the result stored at seq in the
	// results stream.
	StoredResult(ctx context.Context, seq uint64) ([]byte, error)
}

// ResultFinder is implemented by Publishers that can look up a stored
// result by its Nats-Msg-Id. The engine asks before storing the result of a
// request that may have been answered by a delivery that ended without an
// outcome on record (its worker died after storing, before acking), longer
// ago than the result stream's duplicate window: a second result would not
// be caught by Nats-Msg-Id then.
type ResultFinder interface {
	// FindResult returns the stream sequence of the message stored on
	// subject since since with the Nats-Msg-Id msgID, and false when there
	// is none (or subject is not stored).
	FindResult(ctx context.Context, subject, msgID string, since time.Time) (uint64, bool, error)
}
