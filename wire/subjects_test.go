package wire

import (
	"fmt"
	"testing"
)

func TestOutcomeMsgIDs(t *testing.T) {
	t.Parallel()
	// Pairs chosen so that naive concatenation of stream and sequence would
	// collide ("S1"+"12" == "S11"+"2").
	deliveries := []struct {
		Stream    string
		StreamSeq uint64
	}{
		{Stream: "S1", StreamSeq: 1},
		{Stream: "S1", StreamSeq: 2},
		{Stream: "S1", StreamSeq: 12},
		{Stream: "S11", StreamSeq: 2},
		{Stream: "S2", StreamSeq: 1},
		{Stream: "S2", StreamSeq: 2},
		{Stream: "AI_REQUESTS", StreamSeq: 1},
	}
	seen := make(map[string]string)
	for _, d := range deliveries {
		for _, id := range []string{ResultMsgID(d.Stream, d.StreamSeq), DeadMsgID(d.Stream, d.StreamSeq)} {
			if id == "" {
				t.Fatalf("empty message id for %+v", d)
			}
			if prev, ok := seen[id]; ok {
				t.Errorf("message id %q used for both %+v and %+v", id, prev, d)
			}
			seen[id] = fmt.Sprintf("%+v", d)
		}
	}
	if len(seen) != 2*len(deliveries) {
		t.Errorf("%d distinct ids for %d deliveries, want %d", len(seen), len(deliveries), 2*len(deliveries))
	}

}

func TestSubjects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		subject string
		topic   string
		ok      bool
	}{
		{"ai.requests.billing", "billing", true},
		{"ai.requests.billing.eu", "billing.eu", true},
		{"ai.urgent.billing", "billing", true},
		{"ai.requests.", "", false},
		{"ai.results.billing", "", false},
		{"other", "", false},
	}
	for _, tt := range tests {
		topic, ok := TopicOf(tt.subject)
		if topic != tt.topic || ok != tt.ok {
			t.Errorf("TopicOf(%q) = %q, %v; want %q, %v", tt.subject, topic, ok, tt.topic, tt.ok)
		}
	}
	if got := RequestSubject("t", false); got != "ai.requests.t" {
		t.Errorf("RequestSubject(t, false) = %q", got)
	}
	if got := RequestSubject("t", true); got != "ai.urgent.t" {
		t.Errorf("RequestSubject(t, true) = %q", got)
	}
	if got := ResultSubject("t"); got != "ai.results.t" {
		t.Errorf("ResultSubject(t) = %q", got)
	}
	if got := DeadSubject("t"); got != "ai.dead.t" {
		t.Errorf("DeadSubject(t) = %q", got)
	}
}
