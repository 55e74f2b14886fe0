package client

import (
	"fmt"
	"strings"
	"time"

	"github.com/aibatch/aibatch/wire"
	"github.com/nats-io/nuid"
)

// Defaults of the options.
const (
	// DefaultTopic is the topic of a client without WithTopic or
	// WithSubjects: it publishes to ai.requests.default and ai.urgent.default.
	DefaultTopic = "default"
	// DefaultReplyPrefix is where a client's reply subject lives:
	// <DefaultReplyPrefix>.<name>. It is under ai.results., so the
	// AI_RESULTS stream stores every result the client is sent.
	DefaultReplyPrefix = wire.ResultPrefix + ".client"
	// DefaultPubAckTimeout bounds the wait for the broker to confirm
	// storing a request.
	DefaultPubAckTimeout = 10 * time.Second
	// DefaultMaxPending is how many requests may wait for their PubAck at
	// once; Submit blocks while that many do.
	DefaultMaxPending = 1024
	// DefaultSetupTimeout bounds New's look-ups of the streams.
	DefaultSetupTimeout = 10 * time.Second
)

// Option configures a Client; pass options to New.
type Option func(*config)

type config struct {
	name          string
	topic         string
	requestSubj   string
	urgentSubj    string
	replySubj     string
	pubAckTimeout time.Duration
	maxPending    int
	setupTimeout  time.Duration
	errHandler    func(error)
}

// WithTopic publishes requests to ai.requests.<topic> and urgent requests to
// ai.urgent.<topic>. Without a Batch-Reply-To the worker would answer on
// ai.results.<topic>; a client always names its own reply subject instead.
// Default DefaultTopic.
func WithTopic(topic string) Option {
	return func(c *config) { c.topic = topic }
}

// WithSubjects sets the request and urgent subjects directly, for workers
// configured with other REQUEST_SUBJECTS and URGENT_SUBJECTS. It overrides
// WithTopic.
func WithSubjects(request, urgent string) Option {
	return func(c *config) { c.requestSubj, c.urgentSubj = request, urgent }
}

// WithName names the client: its reply subject is
// ai.results.client.<name> and the Nats-Msg-Id of its requests is
// "<name>:<request id>". A service that restarts with the same name reads
// its earlier results with Fetch, and a request it re-sends within the
// request stream's duplicate window is not stored twice. Two clients
// running at the same time must not share a name. Default: a random,
// unique name (nuid).
func WithName(name string) Option {
	return func(c *config) { c.name = name }
}

// WithReplySubject sets the reply subject (Batch-Reply-To) instead of
// ai.results.client.<name>. A stream must store it (New checks), since the
// client reads its results from the stream.
func WithReplySubject(subject string) Option {
	return func(c *config) { c.replySubj = subject }
}

// WithPubAckTimeout bounds the wait for the broker to confirm storing a
// request; a wait then fails with ErrNotConfirmed. Default
// DefaultPubAckTimeout.
func WithPubAckTimeout(d time.Duration) Option {
	return func(c *config) { c.pubAckTimeout = d }
}

// WithMaxPending bounds the requests waiting for their PubAck at once;
// Submit blocks (until its context ends) while that many do. It does not
// bound the requests waiting for results. Default DefaultMaxPending.
func WithMaxPending(n int) Option {
	return func(c *config) { c.maxPending = n }
}

// WithSetupTimeout bounds New's look-ups of the streams. Default
// DefaultSetupTimeout.
func WithSetupTimeout(d time.Duration) Option {
	return func(c *config) { c.setupTimeout = d }
}

// WithErrorHandler receives errors that belong to no call: the results
// consumer's (a missed heartbeat, a reconnect) and the failed look-ups of
// stored results for re-sent requests. The client never logs; without a
// handler these errors are dropped. f must not block.
func WithErrorHandler(f func(error)) Option {
	return func(c *config) { c.errHandler = f }
}

func newConfig(opts []Option) (config, error) {
	c := config{
		topic:         DefaultTopic,
		pubAckTimeout: DefaultPubAckTimeout,
		maxPending:    DefaultMaxPending,
		setupTimeout:  DefaultSetupTimeout,
	}
	for _, o := range opts {
		o(&c)
	}
	if c.name == "" {
		c.name = nuid.Next()
	}
	if c.requestSubj == "" && c.urgentSubj == "" {
		if !validToken(c.topic, true) {
			return c, fmt.Errorf("%w: WithTopic(%q): want dot-separated tokens without spaces or wildcards", ErrInvalidOption, c.topic)
		}
		c.requestSubj, c.urgentSubj = wire.RequestSubject(c.topic, false), wire.RequestSubject(c.topic, true)
	}
	if c.replySubj == "" {
		if !validToken(c.name, false) {
			return c, fmt.Errorf("%w: WithName(%q): want letters, digits, '-' and '_' only", ErrInvalidOption, c.name)
		}
		c.replySubj = DefaultReplyPrefix + "." + c.name
	}
	for _, s := range []struct{ opt, subj string }{
		{"WithSubjects request", c.requestSubj}, {"WithSubjects urgent", c.urgentSubj}, {"WithReplySubject", c.replySubj},
	} {
		if !validToken(s.subj, true) {
			return c, fmt.Errorf("%w: %s subject %q: want dot-separated tokens without spaces or wildcards", ErrInvalidOption, s.opt, s.subj)
		}
	}
	switch {
	case c.replySubj == c.requestSubj || c.replySubj == c.urgentSubj:
		return c, fmt.Errorf("%w: reply subject %q is a request subject", ErrInvalidOption, c.replySubj)
	case c.pubAckTimeout <= 0:
		return c, fmt.Errorf("%w: WithPubAckTimeout(%s): want above 0", ErrInvalidOption, c.pubAckTimeout)
	case c.maxPending < 1:
		return c, fmt.Errorf("%w: WithMaxPending(%d): want 1 or more", ErrInvalidOption, c.maxPending)
	case c.setupTimeout <= 0:
		return c, fmt.Errorf("%w: WithSetupTimeout(%s): want above 0", ErrInvalidOption, c.setupTimeout)
	}
	return c, nil
}

// validToken reports whether s is a literal subject (dots allowed) or a
// single token of letters, digits, '-' and '_' (dots not allowed).
func validToken(s string, dots bool) bool {
	if s == "" {
		return false
	}
	if !dots {
		for _, r := range s {
			if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
		return true
	}
	if strings.HasPrefix(s, "$") || strings.ContainsAny(s, " \t\r\n*>") {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" {
			return false
		}
	}
	return true
}
