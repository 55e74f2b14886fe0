package wire_test

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/aibatch/aibatch/wire"
)

// checkSameAsMarshal fails t unless AppendResult writes what json.Marshal
// writes for r, or fails where it fails.
func checkSameAsMarshal(t *testing.T, r wire.Result) {
	t.Helper()
	want, wantErr := json.Marshal(r)
	prefix := []byte("prefix")
	got, err := wire.AppendResult(prefix, &r)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("AppendResult error %v, json.Marshal error %v, for %+v", err, wantErr, r)
	}
	if !bytes.HasPrefix(got, []byte("prefix")) {
		t.Fatalf("AppendResult lost dst's contents: %q", got)
	}
	if err != nil {
		if string(got) != "prefix" {
			t.Fatalf("AppendResult failed but left %q after dst", got[len("prefix"):])
		}
		return
	}
	// encoding/json without the JSON v2 experiment escapes the U+FFFD that
	// replaces invalid UTF-8; v2 and AppendResult write it as is.
	fffd := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte(`\ufffd`), []byte("\ufffd")) }
	if got := got[len("prefix"):]; !bytes.Equal(fffd(got), fffd(want)) {
		t.Fatalf("AppendResult wrote\n%s\njson.Marshal wrote\n%s", got, want)
	}
	if n, exact := wire.EncodedResultSize(&r), !hasEscapes(r) && !compactable(r); exact && len(r.Embedding) == 0 && n != len(want) ||
		exact && n < len(want) {
		t.Fatalf("EncodedResultSize = %d, encoding is %d bytes", n, len(want))
	}
}

// compactable reports whether encoding r compacts its raw JSON.
func compactable(r wire.Result) bool {
	for _, raw := range [][]byte{r.Metadata, r.Message} {
		var b bytes.Buffer
		if json.Compact(&b, raw) == nil && b.Len() != len(raw) {
			return true
		}
	}
	return false
}

func hasEscapes(r wire.Result) bool {
	for _, s := range []string{r.ID, r.Status, r.Output, r.FinishReason, r.Error, r.Model, string(r.Metadata), string(r.Message), r.Batch.ID, string(r.Batch.Trigger)} {
		if strings.ContainsAny(s, "\"\\<>&\u2028\u2029\ufffd") || strings.IndexFunc(s, func(c rune) bool { return c < 0x20 }) >= 0 {
			return true
		}
	}
	return false
}

func TestAppendResultMatchesMarshal(t *testing.T) {
	tests := []struct {
		name string
		r    wire.Result
	}{
		{"empty", wire.Result{}},
		{"ok", wire.Result{
			ID: "req-1", Status: wire.StatusOK, Output: "answer", FinishReason: "stop", Model: "gpt-4o-mini",
			Metadata: json.RawMessage(`{"k": [1, 2, {"x": null}]}`),
			Usage:    wire.Usage{InputTokens: 125, CachedInputTokens: 64, OutputTokens: 10},
			Batch:    wire.BatchInfo{ID: "0123abcd-1", Size: 50, Trigger: wire.TriggerSize},
			QueuedMS: 1234, Attempts: 2,
		}},
		{"error", wire.Result{ID: "7", Status: wire.StatusError, Error: "gave up after 3 attempts: \"quoted\"\n", Batch: wire.BatchInfo{Size: 1}}},
		{"cached", wire.Result{ID: "c", Status: wire.StatusOK, Output: "x", Cached: true, Batch: wire.BatchInfo{Trigger: wire.TriggerCache}}},
		{"message", wire.Result{ID: "m", Status: wire.StatusOK, Message: json.RawMessage("{\n \"role\": \"assistant\",\n \"content\": \"a<b & c>d \u2028\"\n}")}},
		{"escapes", wire.Result{ID: "\x00\x01\x1f\b\f\t\r\n\"\\/", Output: "<script>&amp;</script> \u2028\u2029 é 日本 😀 \x7f", Model: "a\xffb\xc3", Error: "\xed\xa0\x80 surrogate"}},
		{"metadata html", wire.Result{ID: "h", Metadata: json.RawMessage(`{"html":"<b>&</b>","sep":"` + "\u2028" + `"}`)}},
		{"metadata null", wire.Result{ID: "n", Metadata: json.RawMessage(`null`)}},
		{"metadata invalid", wire.Result{ID: "bad", Metadata: json.RawMessage(`{"open":`)}},
		{"message invalid", wire.Result{ID: "bad", Message: json.RawMessage(`nope`)}},
		{"embedding", wire.Result{ID: "e", Status: wire.StatusOK, Embedding: []float32{0, -0.5, 1, 3.4028235e38, 1e-7, -1e-7, 1e21, 1e20, 1.5e-45, 0.1, 123456.79, float32(math.Copysign(0, -1))}}},
		{"embedding nan", wire.Result{ID: "e", Embedding: []float32{1, float32(math.NaN())}}},
		{"embedding inf", wire.Result{ID: "e", Embedding: []float32{float32(math.Inf(-1))}}},
		{"negative numbers", wire.Result{ID: "neg", Usage: wire.Usage{InputTokens: -1, OutputTokens: math.MinInt64}, QueuedMS: -5, Attempts: -1, Batch: wire.BatchInfo{Size: -2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkSameAsMarshal(t, tt.r) })
	}
}

// TestAppendResultMatchesMarshalRandom compares the two on many random
// results whose strings mix every kind of character that needs care.
func TestAppendResultMatchesMarshalRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"a", "Z", " ", "\"", "\\", "<", ">", "&", "\n", "\x00", "\x1f", "\x7f", "é", "日", "😀", "\u2028", "\u2029", "\xff", "\xc3", "\xe2\x80", "\ufffd"}
	str := func() string {
		var sb strings.Builder
		for range rng.IntN(12) {
			sb.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return sb.String()
	}
	for range 5000 {
		r := wire.Result{
			ID: str(), Status: str(), Output: str(), FinishReason: str(), Error: str(), Model: str(),
			Cached: rng.IntN(2) == 0,
			Usage:  wire.Usage{InputTokens: rng.Int64N(1e6), CachedInputTokens: rng.Int64N(3), OutputTokens: rng.Int64()},
			Batch:  wire.BatchInfo{ID: str(), Size: rng.IntN(100), Trigger: wire.Trigger(str())},
		}
		if rng.IntN(3) == 0 {
			meta, _ := json.Marshal(map[string]string{str(): str()})
			r.Metadata = meta
		}
		for range rng.IntN(3) {
			r.Embedding = append(r.Embedding, math.Float32frombits(rng.Uint32()))
		}
		checkSameAsMarshal(t, r)
	}
}

func FuzzAppendResult(f *testing.F) {
	f.Add("id", "out", "err", []byte(`{"a":1}`), float32(0.25))
	f.Add("<&>", "\u2028", "\xff", []byte(` [ 1 , "x" ] `), float32(1e-9))
	f.Fuzz(func(t *testing.T, id, output, errText string, meta []byte, x float32) {
		checkSameAsMarshal(t, wire.Result{ID: id, Output: output, Error: errText, Metadata: meta, Embedding: []float32{x}})
	})
}

func BenchmarkAppendResult(b *testing.B) {
	r := wire.Result{
		ID: "0b7f6c1e-5d1a-4c55-9f4e-3f4e8d1c2b7a", Status: wire.StatusOK, Output: strings.Repeat("answer text ", 40),
		FinishReason: "stop", Model: "gpt-4o-mini", Metadata: json.RawMessage(`{"tenant":"a","trace":"abc"}`),
		Usage: wire.Usage{InputTokens: 125, OutputTokens: 10}, Batch: wire.BatchInfo{ID: "0123abcd-1", Size: 50, Trigger: wire.TriggerSize},
		QueuedMS: 1234, Attempts: 1,
	}
	b.Run("AppendResult", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := wire.AppendResult(make([]byte, 0, wire.EncodedResultSize(&r)), &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := json.Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
