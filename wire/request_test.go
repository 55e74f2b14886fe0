package wire

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

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
			_, err := DecodeRequest(tt.body, tt.maxBytes)
			if err == nil {
				t.Fatalf("DecodeRequest(%q) = nil error, want one about %q", tt.body, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("DecodeRequest(%q) error %v does not wrap ErrInvalidRequest", tt.body, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("DecodeRequest(%q) error = %q, want it to contain %q", tt.body, err, tt.wantErr)
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
			got, err := DecodeRequest([]byte(tt.body), tt.maxBytes)
			if err != nil {
				t.Fatalf("DecodeRequest: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecodeRequest = %+v (metadata %s), want %+v (metadata %s)", got, got.Metadata, tt.want, tt.want.Metadata)
			}
		})
	}
}
