package jetstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/jsutil"
	"github.com/aibatch/aibatch/wire"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// Topology names the streams and consumers aibatch uses and how they keep
// their messages. The zero value of every field means its default; see
// WithDefaults.
type Topology struct {
	// RequestStream holds requests until they are answered (WorkQueue
	// retention). Default "AI_REQUESTS".
	RequestStream string
	// RequestSubjects feed the batch lane. Default ["ai.requests.>"].
	RequestSubjects []string
	// UrgentSubjects feed the urgent lane, in the same stream.
	// Default ["ai.urgent.>"].
	UrgentSubjects []string
	// DedupeWindow is the request stream's duplicate window for producers'
	// Nats-Msg-Id. Default 2m.
	DedupeWindow time.Duration
	// ResultStream stores results (limits retention) so a subscriber that
	// was down can read them. Default "AI_RESULTS" on ["ai.results.>"].
	ResultStream   string
	ResultSubjects []string
	// ResultMaxAge is how long results are kept. Default 24h.
	ResultMaxAge time.Duration
	// OutcomeDedupeWindow is the duplicate window of the result and
	// dead-letter streams; it must cover the longest time a request can be
	// redelivered (batch.Config.RedeliveryWindow). Default 1h.
	OutcomeDedupeWindow time.Duration
	// DeadStream stores dead letters until an operator removes them.
	// Default "AI_DEAD" on ["ai.dead.>"].
	DeadStream   string
	DeadSubjects []string
	// Consumer is the durable consumer of the batch lane, shared by every
	// worker; the urgent lane's is Consumer + "_urgent". Default "aibatch".
	Consumer string
	// AckWait is how long a delivered request may go without an ack or a
	// progress report before the broker redelivers it. Default 60s.
	AckWait time.Duration
	// Replicas is the number of copies of every stream (3 on a cluster).
	// Default DefaultReplicas (1).
	Replicas int
	// MaxMsgs and MaxBytes bound the request stream; when it is full,
	// publishers get an error instead of old requests being dropped.
	// NoLimit (0), the default, means no limit.
	MaxMsgs  int64
	MaxBytes int64
}

// Defaults of Topology's durations and sizes; its names default to the
// wire package's (wire.RequestStream, wire.RequestSubjects, ...) and AckWait
// to batch.DefaultAckWait.
const (
	DefaultDedupeWindow        = 2 * time.Minute
	DefaultResultMaxAge        = 24 * time.Hour
	DefaultOutcomeDedupeWindow = time.Hour
	// DefaultReplicas is the number of copies of every stream and
	// key-value bucket: one, for a single NATS server.
	DefaultReplicas = 1
	// NoLimit is the value of Topology.MaxMsgs and MaxBytes that leaves
	// the request stream unbounded, and their default.
	NoLimit = 0
)

// WithDefaults returns t with every unset field given its default.
func (t Topology) WithDefaults() Topology {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defs := func(s *[]string, v string) {
		if len(*s) == 0 {
			*s = []string{v}
		}
	}
	defd := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&t.RequestStream, wire.RequestStream)
	defs(&t.RequestSubjects, wire.RequestSubjects)
	defs(&t.UrgentSubjects, wire.UrgentSubjects)
	defd(&t.DedupeWindow, DefaultDedupeWindow)
	def(&t.ResultStream, wire.ResultStream)
	defs(&t.ResultSubjects, wire.ResultSubjects)
	defd(&t.ResultMaxAge, DefaultResultMaxAge)
	defd(&t.OutcomeDedupeWindow, DefaultOutcomeDedupeWindow)
	def(&t.DeadStream, wire.DeadStream)
	defs(&t.DeadSubjects, wire.DeadSubjects)
	def(&t.Consumer, wire.Consumer)
	defd(&t.AckWait, batch.DefaultAckWait)
	if t.Replicas == 0 {
		t.Replicas = DefaultReplicas
	}
	return t
}

// UrgentConsumer is the durable name of the urgent lane's consumer.
func (t Topology) UrgentConsumer() string { return t.Consumer + "_urgent" }

// Validate reports settings that cannot work together. It expects defaults
// to be filled in. Every error wraps ErrInvalidTopology.
func (t Topology) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidTopology}, args...)...))
	}
	for _, group := range [][]string{t.RequestSubjects, t.UrgentSubjects, t.ResultSubjects, t.DeadSubjects} {
		for _, s := range group {
			if !server.IsValidSubject(s) {
				bad("%q is not a valid subject filter", s)
			}
		}
	}
	// The two lanes share a WorkQueue stream, whose consumers may not overlap,
	// and results or dead letters must never land back in the request stream.
	for _, r := range t.RequestSubjects {
		for _, other := range append(append(append([]string{}, t.UrgentSubjects...), t.ResultSubjects...), t.DeadSubjects...) {
			if server.SubjectsCollide(r, other) {
				bad("request subject %q overlaps %q", r, other)
			}
		}
	}
	for _, u := range t.UrgentSubjects {
		for _, other := range append(append([]string{}, t.ResultSubjects...), t.DeadSubjects...) {
			if server.SubjectsCollide(u, other) {
				bad("urgent subject %q overlaps %q", u, other)
			}
		}
	}
	if t.ResultMaxAge < t.OutcomeDedupeWindow {
		bad("results are kept for %s, shorter than the duplicate window %s they need", t.ResultMaxAge, t.OutcomeDedupeWindow)
	}
	if t.Replicas < 1 || t.Replicas > 5 {
		bad("replicas is %d, want 1 to 5", t.Replicas)
	}
	if t.MaxMsgs < 0 || t.MaxBytes < 0 {
		bad("stream limits must be 0 (none) or more")
	}
	return errors.Join(errs...)
}

// Streams returns the configurations of the request, result and dead-letter
// streams.
func (t Topology) Streams() []jetstream.StreamConfig {
	req := jetstream.StreamConfig{
		Name:        t.RequestStream,
		Description: "aibatch requests waiting for a batch",
		Subjects:    append(append([]string{}, t.RequestSubjects...), t.UrgentSubjects...),
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  t.DedupeWindow,
		Replicas:    t.Replicas,
		Discard:     jetstream.DiscardNew,
		MaxMsgs:     orUnlimited(t.MaxMsgs),
		MaxBytes:    orUnlimited(t.MaxBytes),
	}
	res := jetstream.StreamConfig{
		Name:        t.ResultStream,
		Description: "aibatch results, one per request",
		Subjects:    t.ResultSubjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      t.ResultMaxAge,
		Duplicates:  t.OutcomeDedupeWindow,
		Replicas:    t.Replicas,
	}
	dead := jetstream.StreamConfig{
		Name:        t.DeadStream,
		Description: "aibatch requests that failed for good, with the reason",
		Subjects:    t.DeadSubjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  t.OutcomeDedupeWindow,
		Replicas:    t.Replicas,
	}
	return []jetstream.StreamConfig{req, res, dead}
}

func orUnlimited(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}

// ConsumerConfig returns the durable pull consumer of a lane. Deliveries are
// not capped by the broker (MaxDeliver -1): the engine counts attempts and
// dead-letters a request itself, so a request whose last attempt died with
// its worker is still answered instead of staying in the stream for ever.
func (t Topology) ConsumerConfig(name string, filters []string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        name,
		Description:    "aibatch workers",
		FilterSubjects: filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        t.AckWait,
		MaxDeliver:     -1,
		MaxAckPending:  -1,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
}

// Ensure creates the streams and both lanes' consumers, or updates them to
// t, and returns the two lanes' queues and the publisher for results and dead
// letters.
func Ensure(ctx context.Context, js jetstream.JetStream, t Topology) (batchLane, urgentLane *Queue, pub *Publisher, err error) {
	t = t.WithDefaults()
	if err := t.Validate(); err != nil {
		return nil, nil, nil, err
	}
	streams := make(map[string]jetstream.Stream, 3)
	for _, cfg := range t.Streams() {
		s, err := jsutil.OpenStream(ctx, js, cfg)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("jetstream: create or update stream %q: %w", cfg.Name, err)
		}
		streams[cfg.Name] = s
	}
	reqStream := streams[t.RequestStream]
	batchLane, err = newQueue(ctx, reqStream, t.ConsumerConfig(t.Consumer, t.RequestSubjects))
	if err != nil {
		return nil, nil, nil, err
	}
	urgentLane, err = newQueue(ctx, reqStream, t.ConsumerConfig(t.UrgentConsumer(), t.UrgentSubjects))
	if err != nil {
		return nil, nil, nil, err
	}
	pub = &Publisher{
		js:       js,
		results:  streams[t.ResultStream],
		captured: append(append([]string{}, t.ResultSubjects...), t.DeadSubjects...),
	}
	return batchLane, urgentLane, pub, nil
}
