package batch

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

func TestGroupForCalls(t *testing.T) {
	t.Parallel()
	// it builds an item named id asking model with instructions.
	it := func(id, model, instructions string, o outcome) *item {
		return &item{id: id, req: wire.Request{Model: model, Instructions: instructions}, outcome: o}
	}
	p := outcomePending
	tests := []struct {
		name  string
		items []*item
		want  [][]string // ids per group
	}{
		{"none", nil, nil},
		{"one", []*item{it("a", "m1", "", p)}, [][]string{{"a"}}},
		{"same model and instructions share a call",
			[]*item{it("a", "m1", "i", p), it("b", "m1", "i", p), it("c", "m1", "i", p)},
			[][]string{{"a", "b", "c"}}},
		{"groups in order of first arrival, items in arrival order",
			[]*item{it("a", "m1", "i1", p), it("b", "m2", "i1", p), it("c", "m1", "i1", p), it("d", "m1", "i2", p), it("e", "m2", "i1", p)},
			[][]string{{"a", "c"}, {"b", "e"}, {"d"}}},
		{"no instructions differ from some",
			[]*item{it("a", "m1", "", p), it("b", "m1", "be brief", p), it("c", "m1", "", p)},
			[][]string{{"a", "c"}, {"b"}}},
		{"model names compared exactly",
			[]*item{it("a", "gpt", "", p), it("b", "GPT", "", p)},
			[][]string{{"a"}, {"b"}}},
		{"model and instructions are not concatenated",
			[]*item{it("a", "ab", "c", p), it("b", "a", "bc", p)},
			[][]string{{"a"}, {"b"}}},
		{"items already decided are skipped",
			[]*item{
				it("a", "m1", "", p),
				it("b", "m1", "", outcomeFailed),
				it("c", "m2", "", outcomeAnswered),
				it("d", "m1", "", outcomeRetry),
				it("e", "m3", "", outcomeHandBack),
				it("f", "m1", "", p),
			},
			[][]string{{"a", "f"}}},
		{"a key seen only on skipped items makes no group",
			[]*item{it("a", "m9", "", outcomeFailed), it("b", "m1", "", p), it("c", "m9", "", p)},
			[][]string{{"b"}, {"c"}}},
		{"nothing pending",
			[]*item{it("a", "m1", "", outcomeFailed), it("b", "m1", "", outcomeFailed)},
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			groups := groupForCalls(tt.items)
			var got [][]string
			for _, g := range groups {
				if len(g) == 0 {
					t.Fatal("groupForCalls returned an empty group")
				}
				var ids []string
				for _, x := range g {
					ids = append(ids, x.id)
					if x.req.Model != g[0].req.Model || x.req.Instructions != g[0].req.Instructions {
						t.Errorf("item %s (%q, %q) grouped with %s (%q, %q)",
							x.id, x.req.Model, x.req.Instructions, g[0].id, g[0].req.Model, g[0].req.Instructions)
					}
				}
				got = append(got, ids)
			}
			if !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("groupForCalls = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFailOrRetry(t *testing.T) {
	t.Parallel()
	cause := errors.New("upstream said no")
	rateLimited := &provider.Error{StatusCode: 429, RetryAfter: 7 * time.Second, Err: cause}
	permanent := &provider.Error{Permanent: true, StatusCode: 400, RetryAfter: 3 * time.Second, Err: cause}
	tests := []struct {
		name           string
		err            error
		delivered      uint64
		maxDeliver     int
		wantOutcome    outcome
		wantRetryAfter time.Duration
		wantGaveUp     string // substring of the error when attempts ran out
	}{
		{name: "permanent on the first attempt fails",
			err: permanent, delivered: 1, maxDeliver: 5, wantOutcome: outcomeFailed},
		{name: "permanent on the last attempt fails with its own reason",
			err: permanent, delivered: 5, maxDeliver: 5, wantOutcome: outcomeFailed},
		{name: "wrapped permanent fails",
			err: fmt.Errorf("call: %w", provider.Permanent(cause)), delivered: 2, maxDeliver: 5, wantOutcome: outcomeFailed},
		{name: "transient below MaxDeliver retries with Retry-After",
			err: rateLimited, delivered: 1, maxDeliver: 5, wantOutcome: outcomeRetry, wantRetryAfter: 7 * time.Second},
		{name: "wrapped transient carries Retry-After",
			err: fmt.Errorf("batch 3: %w", rateLimited), delivered: 4, maxDeliver: 5, wantOutcome: outcomeRetry, wantRetryAfter: 7 * time.Second},
		{name: "unmarked error is retried without a wait",
			err: cause, delivered: 1, maxDeliver: 5, wantOutcome: outcomeRetry},
		{name: "missing from the answer is retried",
			err: errMissing, delivered: 2, maxDeliver: 3, wantOutcome: outcomeRetry},
		{name: "transient at MaxDeliver gives up",
			err: rateLimited, delivered: 5, maxDeliver: 5, wantOutcome: outcomeFailed, wantGaveUp: "gave up after 5 attempts"},
		{name: "missing at MaxDeliver gives up",
			err: errMissing, delivered: 3, maxDeliver: 3, wantOutcome: outcomeFailed, wantGaveUp: "gave up after 3 attempts"},
		{name: "unmarked beyond MaxDeliver gives up",
			err: cause, delivered: 7, maxDeliver: 5, wantOutcome: outcomeFailed, wantGaveUp: "gave up after 7 attempts"},
		{name: "MaxDeliver 1 never retries",
			err: provider.Transient(cause), delivered: 1, maxDeliver: 1, wantOutcome: outcomeFailed, wantGaveUp: "gave up after 1 attempts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			it := &item{d: Delivery{NumDelivered: tt.delivered}}
			it.failOrRetry(tt.err, tt.maxDeliver)
			if it.outcome != tt.wantOutcome {
				t.Errorf("outcome = %d, want %d", it.outcome, tt.wantOutcome)
			}
			if it.retryAfter != tt.wantRetryAfter {
				t.Errorf("retryAfter = %v, want %v", it.retryAfter, tt.wantRetryAfter)
			}
			if !errors.Is(it.err, tt.err) {
				t.Errorf("err = %v, does not wrap the cause %v", it.err, tt.err)
			}
			if gaveUp := strings.Contains(errText(it.err), "gave up"); gaveUp != (tt.wantGaveUp != "") {
				t.Errorf("err = %q, want \"gave up\" in it: %v", it.err, tt.wantGaveUp != "")
			}
			if tt.wantGaveUp != "" {
				if !strings.Contains(it.err.Error(), tt.wantGaveUp) || !strings.Contains(it.err.Error(), tt.err.Error()) {
					t.Errorf("err = %q, want %q and the cause %q", it.err, tt.wantGaveUp, tt.err)
				}
			}
		})
	}
}

// TestDecode covers what the engine makes of one delivered message before any
// call: its topic, id, model and reply subject, and whether it fails at once.
func TestDecode(t *testing.T) {
	t.Parallel()
	cfg := Config{DefaultModel: "default-model", MaxDeliver: 3, MaxRequestBytes: 256}.WithDefaults()
	lanes := []string{"ai.requests.>", "ai.urgent.>"}
	e := &Engine{
		cfg:              cfg,
		laneFilters:      lanes,
		forbiddenReplies: append(slices.Clone(lanes), "ai.dead.>"),
	}
	d := func(seq, n uint64) Delivery { return Delivery{Stream: "AI_REQUESTS", StreamSeq: seq, NumDelivered: n} }
	tests := []struct {
		name        string
		msg         fakeMessage
		wantOutcome outcome
		wantErr     string // substring; "" when the item is still pending
		wantTopic   string
		wantID      string
		wantModel   string
		wantReplyTo string
	}{
		{name: "valid, default model, topic from the lane",
			msg:         fakeMessage{subject: "ai.requests.billing.eu", data: []byte(`{"input":"hi"}`), d: d(11, 1)},
			wantOutcome: outcomePending, wantTopic: "billing.eu", wantID: "11", wantModel: "default-model"},
		{name: "valid on the urgent lane with its own model and id",
			msg:         fakeMessage{subject: "ai.urgent.ops", data: []byte(`{"id":"r1","input":"hi","model":"m2"}`), d: d(12, 1)},
			wantOutcome: outcomePending, wantTopic: "ops", wantID: "r1", wantModel: "m2"},
		{name: "reply subject accepted",
			msg: fakeMessage{subject: "ai.requests.billing", data: []byte(`{"input":"hi"}`), d: d(13, 1),
				header: map[string]string{wire.HeaderReplyTo: "_INBOX.x1", wire.HeaderMsgID: "hdr-13"}},
			wantOutcome: outcomePending, wantTopic: "billing", wantID: "hdr-13", wantModel: "default-model", wantReplyTo: "_INBOX.x1"},
		{name: "reply subject on a request lane fails the request",
			msg: fakeMessage{subject: "ai.requests.billing", data: []byte(`{"input":"hi"}`), d: d(14, 1),
				header: map[string]string{wire.HeaderReplyTo: "ai.requests.billing"}},
			wantOutcome: outcomeFailed, wantErr: "request or dead-letter subject", wantTopic: "billing", wantID: "14", wantModel: "default-model"},
		{name: "reply subject with a wildcard fails the request",
			msg: fakeMessage{subject: "ai.requests.billing", data: []byte(`{"input":"hi"}`), d: d(15, 1),
				header: map[string]string{wire.HeaderReplyTo: "replies.>"}},
			wantOutcome: outcomeFailed, wantErr: "wildcard", wantTopic: "billing", wantID: "15", wantModel: "default-model"},
		{name: "invalid body: its reason wins over a bad reply subject",
			msg: fakeMessage{subject: "ai.requests.billing", data: []byte(`{"model":"m3"}`), d: d(16, 1),
				header: map[string]string{wire.HeaderReplyTo: "$JS.API.INFO"}},
			wantOutcome: outcomeFailed, wantErr: `"input" is missing`, wantTopic: "billing", wantID: "16", wantModel: "m3"},
		{name: "invalid body keeps a valid reply subject for its error result",
			msg: fakeMessage{subject: "ai.requests.billing", data: []byte(`{"id":"r17","input":""}`), d: d(17, 1),
				header: map[string]string{wire.HeaderReplyTo: "replies.r17"}},
			wantOutcome: outcomeFailed, wantErr: `"input" is missing`, wantTopic: "billing", wantID: "r17", wantModel: "default-model", wantReplyTo: "replies.r17"},
		{name: "oversize body fails",
			msg:         fakeMessage{subject: "ai.requests.billing", data: []byte(`{"input":"` + strings.Repeat("x", 300) + `"}`), d: d(18, 1)},
			wantOutcome: outcomeFailed, wantErr: "MAX_REQUEST_BYTES", wantTopic: "billing", wantID: "18", wantModel: "default-model"},
		{name: "last allowed delivery is still tried",
			msg:         fakeMessage{subject: "ai.requests.billing", data: []byte(`{"input":"hi"}`), d: d(19, 3)},
			wantOutcome: outcomePending, wantTopic: "billing", wantID: "19", wantModel: "default-model"},
		{name: "delivery past MaxDeliver fails without a call",
			msg:         fakeMessage{subject: "ai.requests.billing", data: []byte(`{"input":"hi"}`), d: d(20, 4)},
			wantOutcome: outcomeFailed, wantErr: "gave up after 3 deliveries", wantTopic: "billing", wantID: "20", wantModel: "default-model"},
		{name: "subject outside the lanes: last token is the topic",
			msg:         fakeMessage{subject: "legacy.jobs", data: []byte(`{"input":"hi"}`), d: d(21, 1)},
			wantOutcome: outcomePending, wantTopic: "jobs", wantID: "21", wantModel: "default-model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			it := e.decode(tt.msg)
			if it.outcome != tt.wantOutcome {
				t.Errorf("outcome = %d, want %d (err %v)", it.outcome, tt.wantOutcome, it.err)
			}
			switch {
			case tt.wantErr == "" && it.err != nil:
				t.Errorf("err = %v, want nil", it.err)
			case tt.wantErr != "" && (it.err == nil || !strings.Contains(it.err.Error(), tt.wantErr)):
				t.Errorf("err = %v, want one containing %q", it.err, tt.wantErr)
			case tt.wantErr != "" && tt.wantErr != "gave up after 3 deliveries" && !errors.Is(it.err, wire.ErrInvalidRequest):
				t.Errorf("err = %v, want it to wrap wire.ErrInvalidRequest", it.err)
			}
			if it.topic != tt.wantTopic || it.id != tt.wantID || it.req.Model != tt.wantModel || it.replyTo != tt.wantReplyTo {
				t.Errorf("topic, id, model, replyTo = %q, %q, %q, %q; want %q, %q, %q, %q",
					it.topic, it.id, it.req.Model, it.replyTo, tt.wantTopic, tt.wantID, tt.wantModel, tt.wantReplyTo)
			}
			if it.d != tt.msg.d {
				t.Errorf("delivery = %+v, want %+v", it.d, tt.msg.d)
			}
		})
	}
}
