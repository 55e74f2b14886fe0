package main

import (
	"strings"

	"github.com/aibatch/aibatch/wire"
)

// Subject prefixes of the default topology, as the publisher's flags spell
// them.
const (
	requestsPrefix     = wire.RequestPrefix + "."
	urgentPrefix       = wire.UrgentPrefix + "."
	publisherReplyBase = wire.ResultPrefix + ".publisher."
)

// defaultReplyTo derives the results subject for a request subject without
// --wait: ai.requests.<topic> and ai.urgent.<topic> answer to
// ai.results.<topic>. ok is false for subjects outside those prefixes.
func defaultReplyTo(subject string) (replyTo string, ok bool) {
	topic, ok := wire.TopicOf(subject)
	if !ok {
		return "", false
	}
	return wire.ResultSubject(topic), true
}

// validSubject reports whether s can be published to: non-empty tokens,
// no wildcards, no whitespace.
func validSubject(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n*>") {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" {
			return false
		}
	}
	return true
}
