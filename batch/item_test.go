package batch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
	"go.uber.org/zap"
)

func TestItemFailed(t *testing.T) {
	t.Parallel()
	cause := errors.New("upstream said no")
	rateLimited := &provider.Error{StatusCode: 429, RetryAfter: 7 * time.Second, Err: cause}
	permanent := &provider.Error{Permanent: true, StatusCode: 400, RetryAfter: 3 * time.Second, Err: cause}
	tests := []struct {
		name           string
		err            error
		wantOutcome    outcome
		wantRetryAfter time.Duration
	}{
		{name: "permanent is rejected",
			err: permanent, wantOutcome: outcomeRejected},
		{name: "wrapped permanent is rejected",
			err: fmt.Errorf("call: %w", provider.Permanent(cause)), wantOutcome: outcomeRejected},
		{name: "transient may be retried, with Retry-After",
			err: rateLimited, wantOutcome: outcomeFailed, wantRetryAfter: 7 * time.Second},
		{name: "wrapped transient carries Retry-After",
			err: fmt.Errorf("batch 3: %w", rateLimited), wantOutcome: outcomeFailed, wantRetryAfter: 7 * time.Second},
		{name: "explicitly transient",
			err: provider.Transient(cause), wantOutcome: outcomeFailed},
		{name: "unmarked error may be retried, without a wait",
			err: cause, wantOutcome: outcomeFailed},
		{name: "missing from the answer may be retried",
			err: errMissing, wantOutcome: outcomeFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			it := &item{}
			it.failed(tt.err)
			if it.outcome != tt.wantOutcome {
				t.Errorf("outcome = %d, want %d", it.outcome, tt.wantOutcome)
			}
			if it.retryAfter != tt.wantRetryAfter {
				t.Errorf("retryAfter = %v, want %v", it.retryAfter, tt.wantRetryAfter)
			}
			if !errors.Is(it.err, tt.err) {
				t.Errorf("err = %v, does not wrap the cause %v", it.err, tt.err)
			}
		})
	}
}

// TestIntake covers what the engine makes of one delivered message before any
// call: its topic, id, model and reply subject, and whether it fails at once.
func TestIntake(t *testing.T) {
	t.Parallel()
	cfg := Config{DefaultModel: "default-model", MaxDeliver: 3, MaxRequestBytes: 256}.WithDefaults()
	lanes := []string{"ai.requests.>", "ai.urgent.>"}
	in := newIntake(cfg, nil, nil, nil, zap.NewNop())
	if !slices.Equal(in.laneFilters, lanes) || !slices.Equal(in.forbiddenReplies, append(slices.Clone(lanes), "ai.dead.>")) {
		t.Fatalf("intake filters %v, forbidden replies %v", in.laneFilters, in.forbiddenReplies)
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
			wantOutcome: outcomeNone, wantTopic: "billing.eu", wantID: "11", wantModel: "default-model"},
		{name: "valid on the urgent lane with its own model and id",
			msg:         fakeMessage{subject: "ai.urgent.ops", data: []byte(`{"id":"r1","input":"hi","model":"m2"}`), d: d(12, 1)},
			wantOutcome: outcomeNone, wantTopic: "ops", wantID: "r1", wantModel: "m2"},
		{name: "reply subject accepted",
			msg: fakeMessage{subject: "ai.requests.billing", data: []byte(`{"input":"hi"}`), d: d(13, 1),
				header: map[string]string{wire.HeaderReplyTo: "_INBOX.x1", wire.HeaderMsgID: "hdr-13"}},
			wantOutcome: outcomeNone, wantTopic: "billing", wantID: "hdr-13", wantModel: "default-model", wantReplyTo: "_INBOX.x1"},
		{name: "reply subject on a request lane fails the request",
			msg: fakeMessage{subject: "ai.requests.billing", data: []byte(`{"input":"hi"}`), d: d(14, 1),
				header: map[string]string{wire.HeaderReplyTo: "ai.requests.billing"}},
			wantOutcome: outcomeRejected, wantErr: "request or dead-letter subject", wantTopic: "billing", wantID: "14", wantModel: "default-model"},
		{name: "reply subject with a wildcard fails the request",
			msg: fakeMessage{subject: "ai.requests.billing", data: []byte(`{"input":"hi"}`), d: d(15, 1),
				header: map[string]string{wire.HeaderReplyTo: "replies.>"}},
			wantOutcome: outcomeRejected, wantErr: "wildcard", wantTopic: "billing", wantID: "15", wantModel: "default-model"},
		{name: "invalid body: its reason wins over a bad reply subject",
			msg: fakeMessage{subject: "ai.requests.billing", data: []byte(`{"model":"m3"}`), d: d(16, 1),
				header: map[string]string{wire.HeaderReplyTo: "$JS.API.INFO"}},
			wantOutcome: outcomeRejected, wantErr: `"input" is missing`, wantTopic: "billing", wantID: "16", wantModel: "m3"},
		{name: "invalid body keeps a valid reply subject for its error result",
			msg: fakeMessage{subject: "ai.requests.billing", data: []byte(`{"id":"r17","input":""}`), d: d(17, 1),
				header: map[string]string{wire.HeaderReplyTo: "ai.results.r17"}},
			wantOutcome: outcomeRejected, wantErr: `"input" is missing`, wantTopic: "billing", wantID: "r17", wantModel: "default-model", wantReplyTo: "ai.results.r17"},
		{name: "oversize body fails",
			msg:         fakeMessage{subject: "ai.requests.billing", data: []byte(`{"input":"` + strings.Repeat("x", 300) + `"}`), d: d(18, 1)},
			wantOutcome: outcomeRejected, wantErr: "MAX_REQUEST_BYTES", wantTopic: "billing", wantID: "18", wantModel: "default-model"},
		{name: "last allowed delivery is still tried",
			msg:         fakeMessage{subject: "ai.requests.billing", data: []byte(`{"input":"hi"}`), d: d(19, 3)},
			wantOutcome: outcomeNone, wantTopic: "billing", wantID: "19", wantModel: "default-model"},
		{name: "delivery past MaxDeliver fails without a call",
			msg:         fakeMessage{subject: "ai.requests.billing", data: []byte(`{"input":"hi"}`), d: d(20, 4)},
			wantOutcome: outcomeRejected, wantErr: "gave up after 3 deliveries", wantTopic: "billing", wantID: "20", wantModel: "default-model"},
		{name: "reply subject outside REPLY_SUBJECTS fails the request; its result goes to the default subject",
			msg: fakeMessage{subject: "ai.requests.billing", data: []byte(`{"input":"hi"}`), d: d(22, 1),
				header: map[string]string{wire.HeaderReplyTo: "orders.create"}},
			wantOutcome: outcomeRejected, wantErr: `"orders.create" is not in REPLY_SUBJECTS (ai.results.>,_INBOX.>)`, wantTopic: "billing", wantID: "22", wantModel: "default-model"},
		{name: "invalid body: its reason wins over a reply subject outside REPLY_SUBJECTS",
			msg: fakeMessage{subject: "ai.requests.billing", data: []byte(`{"input":" "}`), d: d(23, 1),
				header: map[string]string{wire.HeaderReplyTo: "orders.create"}},
			wantOutcome: outcomeRejected, wantErr: `"input" is missing`, wantTopic: "billing", wantID: "23", wantModel: "default-model"},
		{name: "subject outside the lanes: last token is the topic",
			msg:         fakeMessage{subject: "legacy.jobs", data: []byte(`{"input":"hi"}`), d: d(21, 1)},
			wantOutcome: outcomeNone, wantTopic: "jobs", wantID: "21", wantModel: "default-model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			it := in.read(context.Background(), tt.msg)
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

// TestIntakeChecksWhatARequestAsks covers ALLOWED_MODELS,
// MAX_OUTPUT_TOKENS_LIMIT and a topic's budget: each rejects at intake,
// before any call.
func TestIntakeChecksWhatARequestAsks(t *testing.T) {
	t.Parallel()
	budget := &fakeBudget{refuse: map[string]error{
		"spent":  fmt.Errorf("%w: topic \"spent\" has used 1200 of its 1000 tokens", ErrBudgetExceeded),
		"broken": errors.New("budget store unreachable"),
	}}
	tests := []struct {
		name     string
		cfg      Config
		subject  string
		body     string
		delivery uint64 // NumDelivered; 1 when 0
		wantErr  string // substring; "" when the request goes on
		budgeted bool   // Allow was asked
	}{
		{name: "any model by default", subject: "ai.requests.t", body: `{"input":"x","model":"whatever"}`, budgeted: true},
		{name: "model in the list", cfg: Config{AllowedModels: []string{"m1", "m2"}},
			subject: "ai.requests.t", body: `{"input":"x","model":"m2"}`, budgeted: true},
		{name: "no model: the default model is always allowed", cfg: Config{AllowedModels: []string{"m1"}},
			subject: "ai.requests.t", body: `{"input":"x"}`, budgeted: true},
		{name: "the default model named", cfg: Config{AllowedModels: []string{"m1"}},
			subject: "ai.requests.t", body: `{"input":"x","model":"default-model"}`, budgeted: true},
		{name: "* allows any model", cfg: Config{AllowedModels: []string{"m1", AnyModel}},
			subject: "ai.requests.t", body: `{"input":"x","model":"gpt-5-pro"}`, budgeted: true},
		{name: "model outside the list", cfg: Config{AllowedModels: []string{"m1", "m2"}},
			subject: "ai.requests.t", body: `{"input":"x","model":"gpt-5-pro"}`,
			wantErr: `model "gpt-5-pro" is not in ALLOWED_MODELS (m1,m2,default-model)`},
		{name: "model names are exact", cfg: Config{AllowedModels: []string{"m1"}},
			subject: "ai.requests.t", body: `{"input":"x","model":"M1"}`, wantErr: `model "M1" is not in ALLOWED_MODELS`},
		{name: "no output limit by default", subject: "ai.requests.t", body: `{"input":"x","max_output_tokens":1000000}`, budgeted: true},
		{name: "max_output_tokens at the limit", cfg: Config{MaxOutputTokensLimit: 4096},
			subject: "ai.requests.t", body: `{"input":"x","max_output_tokens":4096}`, budgeted: true},
		{name: "no max_output_tokens under a limit", cfg: Config{MaxOutputTokensLimit: 4096},
			subject: "ai.requests.t", body: `{"input":"x"}`, budgeted: true},
		{name: "max_output_tokens over the limit", cfg: Config{MaxOutputTokensLimit: 4096},
			subject: "ai.requests.t", body: `{"input":"x","max_output_tokens":4097}`,
			wantErr: `"max_output_tokens" is 4097, over MAX_OUTPUT_TOKENS_LIMIT (4096)`},
		{name: "topic over its budget", subject: "ai.requests.spent", body: `{"input":"x"}`,
			wantErr: "budget exceeded: topic \"spent\"", budgeted: true},
		{name: "urgent lane shares the topic's budget", subject: "ai.urgent.spent", body: `{"input":"x"}`,
			wantErr: "budget exceeded", budgeted: true},
		{name: "an unreadable budget lets the request go on", subject: "ai.requests.broken", body: `{"input":"x"}`, budgeted: true},
		{name: "a rejected request is not checked against the budget", cfg: Config{AllowedModels: []string{"m1"}},
			subject: "ai.requests.spent", body: `{"input":"x","model":"m9"}`, wantErr: "ALLOWED_MODELS"},
		{name: "a request out of attempts is not checked against the budget", subject: "ai.requests.spent",
			body: `{"input":"x"}`, delivery: 9, wantErr: "gave up after"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			cfg.DefaultModel = "default-model"
			b := &fakeBudget{refuse: budget.refuse}
			in := newIntake(cfg.WithDefaults(), nil, nil, b, zap.NewNop())
			n := max(tt.delivery, 1)
			it := in.read(context.Background(), fakeMessage{subject: tt.subject, data: []byte(tt.body),
				d: Delivery{Stream: "AI_REQUESTS", StreamSeq: uint64(i + 1), NumDelivered: n}})
			if tt.wantErr == "" {
				if it.outcome != outcomeNone || it.err != nil {
					t.Fatalf("outcome %d, err %v; want the request to go on", it.outcome, it.err)
				}
			} else {
				if it.outcome != outcomeRejected || it.err == nil || !strings.Contains(it.err.Error(), tt.wantErr) {
					t.Fatalf("outcome %d, err %v; want rejected with %q", it.outcome, it.err, tt.wantErr)
				}
			}
			if asked := b.asked.Load() > 0; asked != tt.budgeted {
				t.Errorf("budget asked: %v, want %v", asked, tt.budgeted)
			}
		})
	}
}

// fakeBudget refuses the topics in refuse with their error and counts the
// Allow calls.
type fakeBudget struct {
	refuse map[string]error
	asked  atomic.Int64
}

func (b *fakeBudget) Allow(_ context.Context, topic string) error {
	b.asked.Add(1)
	return b.refuse[topic]
}

func (b *fakeBudget) Spend(context.Context, string, int64) error { return nil }

// fakeMessage is a delivered request with fixed contents. It records nothing:
// the tests that use it check what the engine computes from a message, not
// what it does to one.
type fakeMessage struct {
	data    []byte
	subject string
	header  map[string]string
	d       Delivery
}

var _ Message = fakeMessage{}

func (m fakeMessage) Data() []byte              { return m.data }
func (m fakeMessage) Subject() string           { return m.subject }
func (m fakeMessage) Header(name string) string { return m.header[name] }
func (m fakeMessage) Delivery() Delivery        { return m.d }
func (m fakeMessage) Ack() error                { return nil }
func (m fakeMessage) Nak(time.Duration) error   { return nil }
func (m fakeMessage) InProgress() error         { return nil }

func TestRequestID(t *testing.T) {
	t.Parallel()
	d := Delivery{Stream: "AI_REQUESTS", StreamSeq: 42}
	tests := []struct {
		name   string
		req    wire.Request
		header map[string]string
		d      Delivery
		want   string
	}{
		{"body id wins", wire.Request{ID: "body-1"}, map[string]string{wire.HeaderMsgID: "hdr-1"}, d, "body-1"},
		{"body id without header", wire.Request{ID: "body-1"}, nil, d, "body-1"},
		{"Nats-Msg-Id when the body has none", wire.Request{}, map[string]string{wire.HeaderMsgID: "hdr-1"}, d, "hdr-1"},
		{"stream sequence when neither", wire.Request{}, nil, d, "42"},
		{"other headers are not ids", wire.Request{}, map[string]string{wire.HeaderReplyTo: "replies.x"}, d, "42"},
		{"largest sequence", wire.Request{}, nil, Delivery{StreamSeq: 18446744073709551615}, "18446744073709551615"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := fakeMessage{header: tt.header, d: tt.d}
			if got := requestID(tt.req, m, tt.d); got != tt.want {
				t.Errorf("requestID = %q, want %q", got, tt.want)
			}
		})
	}
}
