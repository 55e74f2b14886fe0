package batch

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

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
func (m fakeMessage) Ack(context.Context) error { return nil }
func (m fakeMessage) Nak(time.Duration) error   { return nil }
func (m fakeMessage) InProgress() error         { return nil }

func TestDecodeRequestInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		body     []byte
		maxBytes int
		wantErr  string // substring naming the problem
	}{
		{"one byte over the limit", []byte(`{"input":"hello"}`), 16, "17 bytes, over MAX_REQUEST_BYTES (16)"},
		{"far over the limit", []byte(`{"input":"` + strings.Repeat("x", 1000) + `"}`), 100, "over MAX_REQUEST_BYTES (100)"},
		{"oversize is checked before anything else", []byte("   "), 2, "over MAX_REQUEST_BYTES"},
		{"nil body", nil, 0, "empty body"},
		{"empty body", []byte{}, 1024, "empty body"},
		{"whitespace body", []byte(" \n\t\r "), 1024, "empty body"},
		{"truncated JSON", []byte(`{"input":`), 1024, "not a JSON request object"},
		{"unquoted keys", []byte(`{input: "x"}`), 1024, "not a JSON request object"},
		{"binary garbage", []byte{0x00, 0xff, 0xfe, 0x01, 0x7f}, 1024, "not a JSON request object"},
		{"JSON array", []byte(`[{"input":"x"}]`), 1024, "not a JSON request object"},
		{"JSON string", []byte(`"hello"`), 1024, "not a JSON request object"},
		{"JSON number", []byte(`42`), 1024, "not a JSON request object"},
		{"input of the wrong type", []byte(`{"input":5}`), 1024, "not a JSON request object"},
		{"trailing garbage after the object", []byte(`{"input":"x"} extra`), 1024, "not a JSON request object"},
		{"JSON null", []byte(`null`), 1024, `"input" is missing or empty`},
		{"empty object", []byte(`{}`), 1024, `"input" is missing or empty`},
		{"input missing", []byte(`{"model":"m","instructions":"be brief"}`), 1024, `"input" is missing or empty`},
		{"input empty", []byte(`{"input":""}`), 1024, `"input" is missing or empty`},
		{"input blank", []byte(`{"input":" \n\t "}`), 1024, `"input" is missing or empty`},
		{"negative max_output_tokens", []byte(`{"input":"x","max_output_tokens":-1}`), 1024, `"max_output_tokens" is -1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := decodeRequest(tt.body, tt.maxBytes)
			if err == nil {
				t.Fatalf("decodeRequest(%q) = nil error, want one about %q", tt.body, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("decodeRequest(%q) error %v does not wrap ErrInvalidRequest", tt.body, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("decodeRequest(%q) error = %q, want it to contain %q", tt.body, err, tt.wantErr)
			}
		})
	}
}

func TestDecodeRequestValid(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("y", 100_000)
	tests := []struct {
		name     string
		body     string
		maxBytes int
		want     Request
	}{
		{"input only", `{"input":"hi"}`, 1024, Request{Input: "hi"}},
		{"exactly at the limit", `{"input":"hello"}`, 17, Request{Input: "hello"}},
		{"no limit", `{"input":"` + big + `"}`, 0, Request{Input: big}},
		{"negative limit means none", `{"input":"` + big + `"}`, -1, Request{Input: big}},
		{"surrounding whitespace", "\n  {\"input\":\"hi\"}  \n", 1024, Request{Input: "hi"}},
		{"input with surrounding spaces kept as sent", `{"input":"  hi  "}`, 1024, Request{Input: "  hi  "}},
		{"zero max_output_tokens", `{"input":"x","max_output_tokens":0}`, 1024, Request{Input: "x"}},
		{"unknown fields ignored", `{"input":"x","priority":"high","n":3}`, 1024, Request{Input: "x"}},
		{"every field",
			`{"id":"r-1","input":"Summarise","instructions":"Be brief.","model":"gpt-x","max_output_tokens":256,"metadata":{"trace": [1, 2], "k": "v"}}`,
			1024,
			Request{ID: "r-1", Input: "Summarise", Instructions: "Be brief.", Model: "gpt-x", MaxOutputTokens: 256,
				// Kept byte for byte, spacing included.
				Metadata: json.RawMessage(`{"trace": [1, 2], "k": "v"}`)}},
		{"scalar metadata kept raw", `{"input":"x","metadata":"tag-7"}`, 1024,
			Request{Input: "x", Metadata: json.RawMessage(`"tag-7"`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodeRequest([]byte(tt.body), tt.maxBytes)
			if err != nil {
				t.Fatalf("decodeRequest: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("decodeRequest = %+v (metadata %s), want %+v (metadata %s)", got, got.Metadata, tt.want, tt.want.Metadata)
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	d := Delivery{Stream: "AI_REQUESTS", StreamSeq: 42}
	tests := []struct {
		name   string
		req    Request
		header map[string]string
		d      Delivery
		want   string
	}{
		{"body id wins", Request{ID: "body-1"}, map[string]string{HeaderMsgID: "hdr-1"}, d, "body-1"},
		{"body id without header", Request{ID: "body-1"}, nil, d, "body-1"},
		{"Nats-Msg-Id when the body has none", Request{}, map[string]string{HeaderMsgID: "hdr-1"}, d, "hdr-1"},
		{"stream sequence when neither", Request{}, nil, d, "42"},
		{"other headers are not ids", Request{}, map[string]string{HeaderReplyTo: "replies.x"}, d, "42"},
		{"largest sequence", Request{}, nil, Delivery{StreamSeq: 18446744073709551615}, "18446744073709551615"},
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

func TestOutcomeMsgIDs(t *testing.T) {
	t.Parallel()
	// Pairs chosen so that naive concatenation of stream and sequence would
	// collide ("S1"+"12" == "S11"+"2").
	deliveries := []Delivery{
		{Stream: "S1", StreamSeq: 1},
		{Stream: "S1", StreamSeq: 2},
		{Stream: "S1", StreamSeq: 12},
		{Stream: "S11", StreamSeq: 2},
		{Stream: "S2", StreamSeq: 1},
		{Stream: "S2", StreamSeq: 2},
		{Stream: "AI_REQUESTS", StreamSeq: 1},
	}
	seen := make(map[string]Delivery)
	for _, d := range deliveries {
		for _, id := range []string{resultMsgID(d), deadMsgID(d)} {
			if id == "" {
				t.Fatalf("empty message id for %+v", d)
			}
			if prev, ok := seen[id]; ok {
				t.Errorf("message id %q used for both %+v and %+v", id, prev, d)
			}
			seen[id] = d
		}
	}
	if len(seen) != 2*len(deliveries) {
		t.Errorf("%d distinct ids for %d deliveries, want %d", len(seen), len(deliveries), 2*len(deliveries))
	}

	// A redelivery of the same request must map to the same ids, so the
	// stream's deduplication catches a second result.
	first := Delivery{Stream: "AI_REQUESTS", StreamSeq: 9, NumDelivered: 1, Published: t0}
	again := Delivery{Stream: "AI_REQUESTS", StreamSeq: 9, NumDelivered: 4, Published: t0}
	if resultMsgID(first) != resultMsgID(again) {
		t.Errorf("result id changed across deliveries: %q vs %q", resultMsgID(first), resultMsgID(again))
	}
	if deadMsgID(first) != deadMsgID(again) {
		t.Errorf("dead-letter id changed across deliveries: %q vs %q", deadMsgID(first), deadMsgID(again))
	}
}
