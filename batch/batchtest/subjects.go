package batchtest

import (
	"strings"

	"github.com/aibatch/aibatch/wire"
)

// NATS subject rules, written out here so that batchtest needs neither the
// NATS server nor its client: a subject is dot-separated tokens; in a filter
// the token "*" matches exactly one token and ">", last only, one or more.

// validSubject reports whether s is a well-formed subject: non-empty tokens
// without white space and, unless wildcards is set, without "*" or ">".
// With wildcards, "*" may stand for any token and ">" for the last.
func validSubject(s string, wildcards bool) bool {
	if s == "" {
		return false
	}
	toks := strings.Split(s, ".")
	for i, tok := range toks {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
			return false
		}
		switch {
		case tok == "*":
			if !wildcards {
				return false
			}
		case tok == ">":
			if !wildcards || i != len(toks)-1 {
				return false
			}
		case strings.ContainsAny(tok, "*>"):
			// A wildcard character inside a token is a literal to NATS, but
			// no subject aibatch uses has one; refusing it catches typos.
			return false
		}
	}
	return true
}

// matchesAny reports whether subject is matched by one of filters.
func matchesAny(subject string, filters []string) bool {
	for _, f := range filters {
		if wire.SubjectMatches(subject, f) {
			return true
		}
	}
	return false
}

// filtersCollide reports whether some subject is matched by both filters.
func filtersCollide(a, b string) bool {
	at := strings.Split(a, ".")
	bt := strings.Split(b, ".")
	for i := 0; i < len(at) && i < len(bt); i++ {
		if at[i] == ">" || bt[i] == ">" {
			return true
		}
		if at[i] != "*" && bt[i] != "*" && at[i] != bt[i] {
			return false
		}
	}
	return len(at) == len(bt)
}

// filterWithin reports whether every subject filter f matches is also
// matched by s.
func filterWithin(f, s string) bool {
	ft := strings.Split(f, ".")
	st := strings.Split(s, ".")
	for i, tok := range st {
		if tok == ">" {
			return len(ft) > i
		}
		if i >= len(ft) || ft[i] == ">" {
			return false
		}
		if tok != "*" && (ft[i] == "*" || ft[i] != tok) {
			return false
		}
	}
	return len(ft) == len(st)
}
