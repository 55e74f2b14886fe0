package batchtest

import (
	"testing"

	"github.com/aibatch/aibatch/wire"
)

func TestSubjectRules(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		subject, filter string
		match           bool
	}{
		{"ai.requests.t", "ai.requests.>", true},
		{"ai.requests.a.b", "ai.requests.>", true},
		{"ai.requests", "ai.requests.>", false},
		{"ai.requests.t", "ai.*.t", true},
		{"ai.requests.t.u", "ai.*.t", false},
		{"ai.requests.t", "ai.requests.t", true},
		{"ai.requests.t", "ai.requests.u", false},
		{"ai.requests.t", ">", true},
	} {
		if got := wire.SubjectMatches(tt.subject, tt.filter); got != tt.match {
			t.Errorf("wire.SubjectMatches(%q, %q) = %v", tt.subject, tt.filter, got)
		}
	}
	for _, tt := range []struct {
		a, b    string
		collide bool
	}{
		{"ai.requests.>", "ai.urgent.>", false},
		{"ai.requests.>", "ai.*.t", true},
		{"ai.requests.>", "ai.requests", false},
		{"ai.requests.>", "ai.requests.x.y", true},
		{"ai.*", "ai.requests.>", false},
		{"a.b", "a.b", true},
		{">", "x", true},
	} {
		if got := filtersCollide(tt.a, tt.b); got != tt.collide {
			t.Errorf("filtersCollide(%q, %q) = %v", tt.a, tt.b, got)
		}
		if got := filtersCollide(tt.b, tt.a); got != tt.collide {
			t.Errorf("filtersCollide(%q, %q) = %v", tt.b, tt.a, got)
		}
	}
	for _, tt := range []struct {
		f, s   string
		within bool
	}{
		{"ai.requests.>", "ai.requests.>", true},
		{"ai.requests.t", "ai.requests.>", true},
		{"ai.requests.*", "ai.requests.>", true},
		{"ai.>", "ai.requests.>", false},
		{"ai.*.t", "ai.requests.>", false},
		{"ai.requests.t", "ai.*.t", true},
		{"ai.requests", "ai.requests.>", false},
		{"ai.requests.>", "ai.requests.*", false},
	} {
		if got := filterWithin(tt.f, tt.s); got != tt.within {
			t.Errorf("filterWithin(%q, %q) = %v", tt.f, tt.s, got)
		}
	}
	for _, tt := range []struct {
		s         string
		wildcards bool
		valid     bool
	}{
		{"ai.requests.t", false, true},
		{"ai.requests.>", true, true},
		{"ai.requests.>", false, false},
		{"ai.*.t", true, true},
		{"ai.>.t", true, false},
		{"ai..t", true, false},
		{"", true, false},
		{"ai.re quests", false, false},
		{"ai.t*", true, false},
	} {
		if got := validSubject(tt.s, tt.wildcards); got != tt.valid {
			t.Errorf("validSubject(%q, %v) = %v", tt.s, tt.wildcards, got)
		}
	}
}
