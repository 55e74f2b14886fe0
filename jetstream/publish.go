package jetstream

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/wire"
)

// Publisher stores results and dead letters. It implements batch.Publisher.
//
// Subjects captured by the result or dead-letter stream are published with
// JetStream and count as stored once the server acknowledges them; a reply
// subject no stream captures (a producer's private inbox) gets a plain NATS
// publish, flushed to the server, which is all NATS can promise there.
// Every message carries its Nats-Msg-Id header, captured or not, so a
// subscriber on a private inbox can de-duplicate on it too.
type Publisher struct {
	js       jetstream.JetStream
	results  jetstream.Stream
	captured []string
}

var _ batch.Publisher = (*Publisher)(nil)

// Publish sends msgs and waits for every acknowledgement.
func (p *Publisher) Publish(ctx context.Context, msgs []batch.Outgoing) []batch.PublishAck {
	acks := make([]batch.PublishAck, len(msgs))
	futures := make([]jetstream.PubAckFuture, len(msgs))
	var plain []int
	nc := p.js.Conn()
	for i, o := range msgs {
		m := &nats.Msg{Subject: o.Subject, Data: o.Data, Header: make(nats.Header, len(o.Header)+1)}
		for _, f := range o.Header {
			m.Header.Set(f.Name, f.Value)
		}
		if o.MsgID != "" {
			m.Header.Set(wire.HeaderMsgID, o.MsgID) // what jetstream.WithMsgID sets
		}
		if !p.isCaptured(o.Subject) {
			if err := nc.PublishMsg(m); err != nil {
				acks[i].Err = fmt.Errorf("jetstream: publish to %q: %w", o.Subject, err)
			}
			plain = append(plain, i)
			continue
		}
		// No options: they cost an allocation per message, and the
		// Nats-Msg-Id header is set above.
		f, err := p.js.PublishMsgAsync(m)
		if err != nil {
			acks[i].Err = fmt.Errorf("jetstream: publish to %q: %w", o.Subject, err)
			continue
		}
		futures[i] = f
	}
	if len(plain) > 0 {
		if err := nc.FlushWithContext(ctx); err != nil {
			for _, i := range plain {
				if acks[i].Err == nil {
					acks[i].Err = fmt.Errorf("jetstream: flush publish to %q: %w", msgs[i].Subject, err)
				}
			}
		}
	}
	// A PubAck lost with a server restart or a leader change never comes:
	// give up on it after PubAckTimeout, so its request is handed back and
	// stored by the next delivery (deduplicated by Nats-Msg-Id), instead of
	// holding the whole batch until ctx ends.
	wait, cancel := context.WithTimeout(ctx, PubAckTimeout)
	defer cancel()
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case a := <-f.Ok():
			acks[i] = batch.PublishAck{Duplicate: a.Duplicate, Sequence: a.Sequence}
		case err := <-f.Err():
			acks[i].Err = fmt.Errorf("jetstream: store message on %q: %w", msgs[i].Subject, err)
		case <-wait.Done():
			acks[i].Err = fmt.Errorf("jetstream: wait for ack on %q: %w", msgs[i].Subject, wait.Err())
		}
	}
	return acks
}

// PubAckTimeout bounds the wait for the broker's acknowledgements of one
// Publish call.
const PubAckTimeout = 10 * time.Second

func (p *Publisher) isCaptured(subject string) bool {
	for _, f := range p.captured {
		if server.SubjectMatchesFilter(subject, f) {
			return true
		}
	}
	return false
}

// StoredResult returns the body of the message at seq in the result stream.
func (p *Publisher) StoredResult(ctx context.Context, seq uint64) ([]byte, error) {
	m, err := p.results.GetMsg(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("jetstream: read stored result %d: %w", seq, err)
	}
	return m.Data, nil
}

// FindResult looks for a message stored on subject since since with the
// Nats-Msg-Id msgID, reading headers only, and returns its sequence. It
// implements batch.ResultFinder: the engine asks it before storing the
// result of a request that may have been answered before, longer ago than
// the stream's duplicate window remembers.
func (p *Publisher) FindResult(ctx context.Context, subject, msgID string, since time.Time) (uint64, bool, error) {
	if !p.isCaptured(subject) {
		return 0, false, nil
	}
	c, err := p.results.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &since,
		HeadersOnly:    true,
	})
	if err != nil {
		return 0, false, fmt.Errorf("jetstream: look for stored result %s: %w", msgID, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("jetstream: look for stored result %s: %w", msgID, err)
	}
	left := info.NumPending
	for left > 0 {
		batch, err := c.Fetch(int(min(left, 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return 0, false, fmt.Errorf("jetstream: look for stored result %s: %w", msgID, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if m.Headers().Get(nats.MsgIdHdr) == msgID {
				meta, err := m.Metadata()
				if err != nil {
					return 0, false, fmt.Errorf("jetstream: look for stored result %s: %w", msgID, err)
				}
				return meta.Sequence.Stream, true, nil
			}
		}
		if err := batch.Error(); err != nil || n == 0 {
			if err == nil {
				err = fmt.Errorf("%d messages left unread", left)
			}
			return 0, false, fmt.Errorf("jetstream: look for stored result %s: %w", msgID, err)
		}
		left -= uint64(n)
	}
	return 0, false, nil
}
