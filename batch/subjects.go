package batch

import (
	"fmt"
	"strings"

	"github.com/aibatch/aibatch/wire"
)

// topicOf returns the part of subject that the first matching filter's >
// wildcard covers ("ai.requests.billing.eu" under "ai.requests.>" gives
// "billing.eu"). Without a > wildcard, or when no filter matches, it returns
// the subject's last token.
func topicOf(subject string, filters []string) string {
	for _, f := range filters {
		if !wire.SubjectMatches(subject, f) || !strings.HasSuffix(f, ">") {
			continue
		}
		// The topic is what follows the filter's tokens before ">".
		rest := subject
		for range strings.Count(f, ".") {
			_, rest, _ = strings.Cut(rest, ".")
		}
		return rest
	}
	return subject[strings.LastIndexByte(subject, '.')+1:]
}

// maxReplySubjectBytes bounds a Batch-Reply-To subject. The subject goes
// into the protocol line of the result's publish, and a server closes the
// connection of a client whose protocol line passes its max_control_line
// (4096 bytes by default): an unbounded subject would let one request
// disconnect the worker on every delivery.
const maxReplySubjectBytes = 1024

// checkReplySubject refuses reply subjects that would let a producer make the
// worker publish somewhere harmful: wildcards, system and API subjects, the
// request subjects themselves (a result there would loop back in), and
// subjects too long for a protocol line.
func checkReplySubject(subject string, forbidden []string) error {
	if len(subject) > maxReplySubjectBytes {
		return fmt.Errorf("%w: %s is %d bytes, over %d", wire.ErrInvalidRequest, wire.HeaderReplyTo, len(subject), maxReplySubjectBytes)
	}
	if subject == "" || strings.ContainsAny(subject, " \t\r\n") {
		return fmt.Errorf("%w: %s %q is not a valid subject", wire.ErrInvalidRequest, wire.HeaderReplyTo, subject)
	}
	for _, tok := range strings.Split(subject, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return fmt.Errorf("%w: %s %q has an empty token or a wildcard", wire.ErrInvalidRequest, wire.HeaderReplyTo, subject)
		}
	}
	if strings.HasPrefix(subject, "$") {
		return fmt.Errorf("%w: %s %q is a system subject", wire.ErrInvalidRequest, wire.HeaderReplyTo, subject)
	}
	for _, f := range forbidden {
		if wire.SubjectMatches(subject, f) {
			return fmt.Errorf("%w: %s %q is a request or dead-letter subject (%s)", wire.ErrInvalidRequest, wire.HeaderReplyTo, subject, f)
		}
	}
	return nil
}

// checkReplyAllowed refuses a reply subject that no filter of allowed
// (REPLY_SUBJECTS) matches: a producer may have its result sent to the
// results subjects or its own inbox, not to any subject the worker's
// credentials reach. Call it on subjects checkReplySubject accepted.
func checkReplyAllowed(subject string, allowed []string) error {
	for _, f := range allowed {
		if wire.SubjectMatches(subject, f) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s %q is not in REPLY_SUBJECTS (%s)", wire.ErrInvalidRequest, wire.HeaderReplyTo, subject, strings.Join(allowed, ","))
}

// validFilter reports whether f is a subject filter: non-empty tokens
// without whitespace, > only as the last token.
func validFilter(f string) bool {
	if f == "" || strings.ContainsAny(f, " \t\r\n") {
		return false
	}
	toks := strings.Split(f, ".")
	for i, tok := range toks {
		if tok == "" || (tok == ">" && i != len(toks)-1) {
			return false
		}
	}
	return true
}
