package batch

import (
	"errors"
	"strings"
	"testing"

	"github.com/aibatch/aibatch/wire"
)

func TestSubjectMatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		subject, filter string
		want            bool
	}{
		{"ai.requests.billing", "ai.requests.billing", true},
		{"ai.requests.billing", "ai.requests.other", false},
		{"ai.requests.billing", "ai.requests.>", true},
		{"ai.requests.billing.eu.prod", "ai.requests.>", true},
		{"ai.requests", "ai.requests.>", false}, // > needs at least one token
		{"ai.urgent.billing", "ai.requests.>", false},
		{"ai.requestsx.billing", "ai.requests.>", false}, // tokens, not prefixes
		{"ai.requests.billing", "ai.requests.*", true},
		{"ai.requests.billing.eu", "ai.requests.*", false}, // * is one token
		{"ai.requests", "ai.requests.*", false},
		{"ai.x.billing", "ai.*.billing", true},
		{"ai.x.other", "ai.*.billing", false},
		{"ai.x.billing.eu", "ai.*.>", true},
		{"ai.x", "ai.*.>", false},
		{"anything", ">", true},
		{"a.b.c", ">", true},
		{"a", "*", true},
		{"a.b", "*", false},
		{"ai.requests.billing", "ai.requests", false}, // filter shorter, no wildcard
		{"ai", "ai.requests", false},
	}
	for _, tt := range tests {
		t.Run(tt.subject+" vs "+tt.filter, func(t *testing.T) {
			t.Parallel()
			if got := wire.SubjectMatches(tt.subject, tt.filter); got != tt.want {
				t.Errorf("wire.SubjectMatches(%q, %q) = %v, want %v", tt.subject, tt.filter, got, tt.want)
			}
		})
	}
}

func TestTopicOf(t *testing.T) {
	t.Parallel()
	lanes := []string{"ai.requests.>", "ai.urgent.>"}
	tests := []struct {
		name    string
		subject string
		filters []string
		want    string
	}{
		{"one token under >", "ai.requests.billing", lanes, "billing"},
		{"several tokens under >", "ai.requests.billing.eu.prod", lanes, "billing.eu.prod"},
		{"second filter", "ai.urgent.ops.pager", lanes, "ops.pager"},
		{"no filter matches: last token", "other.service.jobs", lanes, "jobs"},
		{"no filter matches, one token", "plain", lanes, "plain"},
		{"no filters: last token", "ai.requests.billing.eu", nil, "eu"},
		{"* before >", "ai.requests.billing.eu", []string{"ai.*.>"}, "billing.eu"},
		{"deeper filter", "ai.requests.eu.billing.q1", []string{"ai.requests.eu.>"}, "billing.q1"},
		{"matching filter without >: last token", "tenant.acme.jobs", []string{"tenant.*.jobs"}, "jobs"},
		{"filter without > skipped for a later one with >", "tenant.acme.jobs", []string{"tenant.*.jobs", "tenant.>"}, "acme.jobs"},
		{"first matching filter wins", "ai.requests.billing", []string{"ai.>", "ai.requests.>"}, "requests.billing"},
		{"non-matching filter skipped", "ai.requests.billing", []string{"ai.urgent.>", "ai.requests.>"}, "billing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := topicOf(tt.subject, tt.filters); got != tt.want {
				t.Errorf("topicOf(%q, %q) = %q, want %q", tt.subject, tt.filters, got, tt.want)
			}
		})
	}
}

func TestCheckReplySubject(t *testing.T) {
	t.Parallel()
	// What an engine with the default config forbids: both lanes and the
	// dead-letter subjects.
	forbidden := []string{"ai.requests.>", "ai.urgent.>", "ai.dead.>"}
	tests := []struct {
		name      string
		subject   string
		forbidden []string
		wantErr   string // substring of the error; "" means valid
	}{
		{"inbox", "_INBOX.abc123", forbidden, ""},
		{"results subject", "ai.results.billing", forbidden, ""},
		{"dashes and underscores", "replies.team-a.job_1", forbidden, ""},
		{"single token", "replies", forbidden, ""},
		{"lane prefix itself is not under its >", "ai.requests", forbidden, ""},
		{"token that only starts like the dead prefix", "ai.deadline.x", forbidden, ""},

		{"empty", "", forbidden, "not a valid subject"},
		{"space inside", "my reply", forbidden, "not a valid subject"},
		{"leading space", " replies.x", forbidden, "not a valid subject"},
		{"trailing newline", "replies.x\n", forbidden, "not a valid subject"},
		{"tab", "replies\tx", forbidden, "not a valid subject"},
		{"carriage return", "replies.x\r", forbidden, "not a valid subject"},

		{"* wildcard", "replies.*", forbidden, "wildcard"},
		{"> wildcard", "replies.>", forbidden, "wildcard"},
		{"bare >", ">", forbidden, "wildcard"},
		{"bare *", "*", forbidden, "wildcard"},
		{"empty middle token", "replies..x", forbidden, "empty token"},
		{"leading dot", ".replies", forbidden, "empty token"},
		{"trailing dot", "replies.", forbidden, "empty token"},
		{"wildcard with no forbidden list", "replies.>", nil, "wildcard"},

		{"JetStream API", "$JS.API.STREAM.DELETE.AI_RESULTS", forbidden, "system subject"},
		{"system account", "$SYS.REQ.SERVER.PING", forbidden, "system subject"},
		{"KV bucket", "$KV.config.key", forbidden, "system subject"},
		{"system subject with no forbidden list", "$JS.API.INFO", nil, "system subject"},

		{"request subject loops back", "ai.requests.billing", forbidden, "request or dead-letter subject"},
		{"deep request subject loops back", "ai.requests.billing.eu", forbidden, "request or dead-letter subject"},
		{"urgent subject loops back", "ai.urgent.ops", forbidden, "request or dead-letter subject"},
		{"dead-letter subject", "ai.dead.billing", forbidden, "request or dead-letter subject"},
		{"request subject allowed when not forbidden", "ai.requests.billing", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := checkReplySubject(tt.subject, tt.forbidden)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("checkReplySubject(%q) = %v, want nil", tt.subject, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("checkReplySubject(%q) = nil, want an error about %q", tt.subject, tt.wantErr)
			}
			if !errors.Is(err, wire.ErrInvalidRequest) {
				t.Errorf("checkReplySubject(%q) = %v, does not wrap wire.ErrInvalidRequest", tt.subject, err)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.wantErr) || !strings.Contains(msg, wire.HeaderReplyTo) {
				t.Errorf("checkReplySubject(%q) = %q, want it to name %s and say %q", tt.subject, msg, wire.HeaderReplyTo, tt.wantErr)
			}
		})
	}
}

func TestCheckReplyAllowed(t *testing.T) {
	t.Parallel()
	defaults := DefaultReplySubjects()
	tests := []struct {
		name    string
		subject string
		allowed []string
		want    bool
	}{
		{"results subject", "ai.results.billing", defaults, true},
		{"deep results subject", "ai.results.client.42", defaults, true},
		{"private inbox", "_INBOX.x.y", defaults, true},
		{"nats.go inbox", "_INBOX.Ab3dEf5gH7iJkLmN0pQ2sT.1", defaults, true},
		{"another service's subject", "orders.create", defaults, false},
		{"the results prefix alone", "ai.results", defaults, false},
		{"inbox prefix alone", "_INBOX", defaults, false},
		{"lookalike token", "ai.resultsx.billing", defaults, false},
		{"lowercase inbox", "_inbox.x", defaults, false},
		{"own allow-list", "replies.team-a.7", []string{"replies.*.>"}, true},
		{"own allow-list, one token short", "replies.team-a", []string{"replies.*.>"}, false},
		{"any subject", "orders.create", []string{">"}, true},
		{"empty allow-list allows nothing", "ai.results.x", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := checkReplyAllowed(tt.subject, tt.allowed)
			if tt.want {
				if err != nil {
					t.Fatalf("checkReplyAllowed(%q, %q) = %v, want nil", tt.subject, tt.allowed, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("checkReplyAllowed(%q, %q) = nil, want a refusal", tt.subject, tt.allowed)
			}
			if !errors.Is(err, wire.ErrInvalidRequest) {
				t.Errorf("error %v does not wrap wire.ErrInvalidRequest", err)
			}
			for _, want := range []string{wire.HeaderReplyTo, "REPLY_SUBJECTS", tt.subject, strings.Join(tt.allowed, ",")} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
		})
	}
}
