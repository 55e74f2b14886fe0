package wire

import (
	"strconv"
	"strings"
)

// Default subjects, streams and consumer. A worker, a producer and the
// publisher command agree on these unless each is configured otherwise.
const (
	// RequestPrefix is where requests are published: <RequestPrefix>.<topic>.
	RequestPrefix = "ai.requests"
	// UrgentPrefix is where urgent requests are published, sent as soon as
	// they arrive: <UrgentPrefix>.<topic>.
	UrgentPrefix = "ai.urgent"
	// ResultPrefix is where a result goes when its request names no
	// Batch-Reply-To: <ResultPrefix>.<topic>.
	ResultPrefix = "ai.results"
	// DeadPrefix is where dead letters go: <DeadPrefix>.<topic>.
	DeadPrefix = "ai.dead"

	// RequestSubjects and UrgentSubjects are the default filters of the two
	// lanes; the topic of a request is what their > covers.
	RequestSubjects = RequestPrefix + ".>"
	UrgentSubjects  = UrgentPrefix + ".>"
	// ResultSubjects and DeadSubjects are what the result and dead-letter
	// streams capture by default.
	ResultSubjects = ResultPrefix + ".>"
	DeadSubjects   = DeadPrefix + ".>"
	// InboxSubjects are NATS clients' private inboxes (nats.go's NewInbox,
	// the nats CLI's requests).
	InboxSubjects = "_INBOX.>"
	// ReplySubjects is the default allow-list of Batch-Reply-To subjects,
	// comma-separated: results go to the results subjects or a private
	// inbox, and nowhere else.
	ReplySubjects = ResultSubjects + "," + InboxSubjects

	// RequestStream holds requests until they are answered.
	RequestStream = "AI_REQUESTS"
	// ResultStream stores results.
	ResultStream = "AI_RESULTS"
	// DeadStream stores dead letters.
	DeadStream = "AI_DEAD"
	// Consumer is the durable consumer of the batch lane shared by every
	// worker; the urgent lane's is Consumer + "_urgent".
	Consumer = "aibatch"

	// ControlFlushSubject is where every worker listens for flush requests
	// (core NATS request and reply, no stream). Request subjects must not
	// capture it.
	ControlFlushSubject = "ai.control.flush"
)

// RequestSubject is the subject a request of topic is published to,
// urgent or not.
func RequestSubject(topic string, urgent bool) string {
	if urgent {
		return UrgentPrefix + "." + topic
	}
	return RequestPrefix + "." + topic
}

// ResultSubject is the subject a result of topic goes to when its request
// names no Batch-Reply-To.
func ResultSubject(topic string) string { return ResultPrefix + "." + topic }

// DeadSubject is the subject of a dead letter of topic.
func DeadSubject(topic string) string { return DeadPrefix + "." + topic }

// TopicOf returns the topic of a subject under the default request or urgent
// prefix ("ai.requests.billing.eu" gives "billing.eu"), and false for any
// other subject.
func TopicOf(subject string) (string, bool) {
	for _, p := range []string{RequestPrefix + ".", UrgentPrefix + "."} {
		if topic, ok := strings.CutPrefix(subject, p); ok && topic != "" {
			return topic, true
		}
	}
	return "", false
}

// ResultMsgID is the Nats-Msg-Id of the result of the request stored at seq
// in stream. It is derived from the request's place in its stream, so two
// producers that reuse an id still get two results, and a redelivered
// request never stores a second one.
func ResultMsgID(stream string, seq uint64) string {
	return "result:" + stream + ":" + strconv.FormatUint(seq, 10)
}

// DeadMsgID is the Nats-Msg-Id of the dead letter of the request stored at
// seq in stream.
func DeadMsgID(stream string, seq uint64) string {
	return "dead:" + stream + ":" + strconv.FormatUint(seq, 10)
}

// SubjectMatches reports whether the literal subject is matched by filter,
// which may hold the NATS wildcards * (one token) and > (one or more tokens,
// last).
func SubjectMatches(subject, filter string) bool {
	// Token by token, without splitting: the worker matches every request.
	for {
		f, fRest, fMore := strings.Cut(filter, ".")
		if f == ">" {
			return true // subject still has a token: the loop ends when it has none
		}
		s, sRest, sMore := strings.Cut(subject, ".")
		if f != "*" && f != s {
			return false
		}
		if !fMore || !sMore {
			return fMore == sMore
		}
		filter, subject = fRest, sRest
	}
}
