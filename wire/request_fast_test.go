package wire

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// checkFastAgrees fails t when decodeRequestFast accepts body and decodes
// something else than encoding/json does (or encoding/json refuses it),
// and reports whether the fast path took it.
func checkFastAgrees(t *testing.T, body []byte) bool {
	t.Helper()
	fast, ok := decodeRequestFast(body)
	if !ok {
		return false
	}
	var slow Request
	if err := unmarshalStrict(body, &slow); err != nil {
		t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", body, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("for %q\nfast path decoded %#v\nencoding/json     %#v", body, fast, slow)
	}
	return true
}

// fastBodies are bodies the fast path must take.
var fastBodies = []string{
	`{}`,
	` { } `,
	`{"input":"hello"}`,
	`{"id":"r-1","input":"observation: reading within range","metadata":{"sensor":"s-17"}}`,
	"{\n\t\"id\" : \"r-1\" ,\r\n \"input\":\"x\"\n}\n",
	`{"kind":"embedding","input":"text","dimensions":256,"model":"text-embedding-3-small"}`,
	`{"input":"q","instructions":"Answer briefly.","model":"gpt-4o-mini","max_output_tokens":300}`,
	`{"input":"a\"b\\c\/d\b\f\n\r\t"}`,
	`{"input":"\u00e9\u65e5\ud83d\ude00 \u2028 \u0000 \uFFFD"}`,
	`{"input":"é 日本 😀 <>&"}`,
	`{"input":"x","input":"last wins"}`,
	`{"max_output_tokens":0,"dimensions":-0}`,
	`{"max_output_tokens":-5}`,
	`{"metadata":null}`,
	`{"metadata":{"a":[1,-2.5,3e10,0.5E-3,true,false,null,"s\n",{"b":{}}],"c":[]}}`,
	`{"metadata":"just a string"}`,
	`{"metadata":  [ 1 , 2 ]  }`,
	`{"metadata":-0}`,
	`{"metadata":{"a":1},"metadata":{"b":2}}`,
}

// slowBodies are bodies the fast path must leave to encoding/json: it
// would refuse them, or decode them in a way the fast path does not.
var slowBodies = []string{
	``, `[]`, `"x"`, `null`, `{`, `{"input":"x"`, `{"input":"x"} {}`, `{"input":"x"},`,
	`{"input":"x",}`, `{,}`, `{"input" "x"}`, `{input:"x"}`,
	`{"ID":"r-1"}`, `{"Input":"x"}`, `{"unknown":1}`, `{"messages":[{"role":"user","content":"x"}]}`,
	`{"temperature":0.2}`, `{"top_p":1}`, `{"seed":1}`, `{"stop":["x"]}`, `{"response_format":{"type":"text"}}`,
	`{"provider_options":{}}`,
	`{"input":null}`, `{"input":1}`, `{"input":"a` + "\x01" + `b"}`, `{"input":"a` + "\xff" + `b"}`,
	`{"input":"\ud800"}`, `{"input":"\ud800x"}`, `{"input":"\udc00\ud800"}`, `{"input":"\x"}`, `{"input":"\u12"}`,
	`{"input":"\u12G4"}`, `{"input":"unterminated}`, `{"in\nput":"x"}`, `{"inp\u0075t":"x"}`,
	`{"max_output_tokens":1.0}`, `{"max_output_tokens":1e2}`, `{"max_output_tokens":01}`, `{"max_output_tokens":"1"}`,
	`{"max_output_tokens":null}`, `{"max_output_tokens":99999999999999999999}`, `{"max_output_tokens":-}`,
	`{"metadata":01}`, `{"metadata":1.}`, `{"metadata":.5}`, `{"metadata":1e}`, `{"metadata":+1}`, `{"metadata":[1,]}`,
	`{"metadata":{"a":1,}}`, `{"metadata":{a:1}}`, `{"metadata":tru}`, `{"metadata":nul}`, `{"metadata":}`,
	`{"metadata":{"a":"` + "\xff" + `"}}`, `{"metadata":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`,
}

func TestDecodeRequestFastAgreesWithEncodingJSON(t *testing.T) {
	for _, body := range fastBodies {
		if !checkFastAgrees(t, []byte(body)) {
			t.Errorf("fast path left %q to encoding/json", body)
		}
	}
	for _, body := range slowBodies {
		if checkFastAgrees(t, []byte(body)) {
			t.Errorf("fast path took %q", body)
		}
	}
}

// TestDecodeRequestFastAgreesOnRandomRequests encodes random requests the
// fast path knows, with strings of every kind of character, and checks the
// fast path takes each and decodes it as encoding/json does.
func TestDecodeRequestFastAgreesOnRandomRequests(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	pieces := []string{"a", "Z", " ", "\"", "\\", "/", "<", "&", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "日", "😀", "\u2028", "\ufffd", "0123456789"}
	str := func() string {
		var sb strings.Builder
		for range rng.IntN(40) {
			sb.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return sb.String()
	}
	for range 3000 {
		r := Request{ID: str(), Kind: str(), Input: str(), Instructions: str(), Model: str(),
			MaxOutputTokens: rng.IntN(1 << 20), Dimensions: rng.IntN(4096) - 100}
		if rng.IntN(2) == 0 {
			r.Metadata, _ = json.Marshal(map[string]any{str(): str(), "n": rng.NormFloat64() * 1e6, "l": []any{rng.IntN(2) == 0, nil, str()}})
		}
		body, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if !checkFastAgrees(t, body) {
			t.Fatalf("fast path left %s to encoding/json", body)
		}
	}
}

func FuzzDecodeRequestFast(f *testing.F) {
	for _, body := range append(append([]string(nil), fastBodies...), slowBodies...) {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkFastAgrees(t, body) })
}
