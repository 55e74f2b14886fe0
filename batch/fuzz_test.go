package batch

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aibatch/aibatch/wire"
	"github.com/nats-io/nats-server/v2/server"
)

// The fuzz targets below run on their checked-in seed corpus
// (testdata/fuzz/<name>/) with every `go test`; `make fuzz` explores further.

// maxErrorBytes bounds the text of a decode error: it becomes a result's
// error and a dead letter's Batch-Error header, so it must not echo the body.
const maxErrorBytes = 512

// FuzzDecodeRequest checks decodeRequest and requestID on any body, size
// limit and id headers: they never panic; an error always wraps
// wire.ErrInvalidRequest and stays short; a decoded request has a non-blank input,
// no negative max_output_tokens, a body within the limit and metadata that
// is valid JSON, and survives a re-encode unchanged; the id it gets is never
// empty and follows the documented order (body, Batch-Request-Id,
// Nats-Msg-Id, stream sequence).
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"input":"hi"}`), 1024, "", "", uint64(1))
	f.Add([]byte(`{"id":"r-1","input":"x","metadata":{"a":[1,2]}}`), 0, "replayed-1", "msg-1", uint64(7))
	f.Fuzz(func(t *testing.T, body []byte, maxBytes int, requestIDHeader, msgIDHeader string, seq uint64) {
		r, err := wire.DecodeRequest(body, maxBytes)
		if err != nil {
			if !errors.Is(err, wire.ErrInvalidRequest) {
				t.Fatalf("error %q does not wrap wire.ErrInvalidRequest", err)
			}
			if n := len(err.Error()); n > maxErrorBytes {
				t.Fatalf("error is %d bytes, over %d: it echoes the body: %.200q", n, maxErrorBytes, err)
			}
			return
		}
		if strings.TrimSpace(r.Input) == "" {
			t.Fatalf("decoded request has blank input %q", r.Input)
		}
		if r.MaxOutputTokens < 0 {
			t.Fatalf("decoded request has max_output_tokens %d", r.MaxOutputTokens)
		}
		if maxBytes > 0 && len(body) > maxBytes {
			t.Fatalf("accepted a %d-byte body over the %d-byte limit", len(body), maxBytes)
		}
		if !json.Valid(body) {
			t.Fatalf("accepted a body that is not valid JSON: %q", body)
		}
		if len(r.Metadata) > 0 && !json.Valid(r.Metadata) {
			t.Fatalf("metadata %q is not valid JSON", r.Metadata)
		}
		for name, s := range map[string]string{"id": r.ID, "input": r.Input, "instructions": r.Instructions, "model": r.Model} {
			if !utf8.ValidString(s) {
				t.Fatalf("%s %q is not valid UTF-8", name, s)
			}
		}
		// A result carrying the request's metadata can always be encoded.
		if _, err := json.Marshal(wire.Result{ID: r.ID, Status: wire.StatusOK, Metadata: r.Metadata}); err != nil {
			t.Fatalf("result with the request's metadata does not encode: %v", err)
		}
		// Re-encoding the request gives the same request (metadata compacted).
		enc, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", r, err)
		}
		again, err := wire.DecodeRequest(enc, 0)
		if err != nil {
			t.Fatalf("re-encoded request %s does not decode: %v", enc, err)
		}
		want := r
		if len(r.Metadata) > 0 {
			var compact bytes.Buffer
			if err := json.Compact(&compact, r.Metadata); err != nil {
				t.Fatalf("compact metadata: %v", err)
			}
			want.Metadata = compact.Bytes()
		}
		if !reflect.DeepEqual(again, want) {
			t.Fatalf("re-encoded request decodes to %+v, want %+v", again, want)
		}

		header := map[string]string{wire.HeaderRequestID: requestIDHeader, wire.HeaderMsgID: msgIDHeader}
		d := Delivery{Stream: "AI_REQUESTS", StreamSeq: seq}
		id := requestID(r, fakeMessage{header: header, d: d}, d)
		var wantID string
		switch {
		case r.ID != "":
			wantID = r.ID
		case requestIDHeader != "":
			wantID = requestIDHeader
		case msgIDHeader != "":
			wantID = msgIDHeader
		default:
			wantID = strconv.FormatUint(seq, 10)
		}
		if id == "" || id != wantID {
			t.Fatalf("requestID = %q, want %q (body id %q, headers %q %q, seq %d)", id, wantID, r.ID, requestIDHeader, msgIDHeader, seq)
		}
	})
}

// FuzzSubjects checks the subject helpers on any delivered subject, lane
// filter and Batch-Reply-To value:
//   - subjectMatches agrees with a reference matcher (refMatch)
//     for every valid literal subject and valid filter;
//   - topicOf of a subject the filter matches is the non-empty, well-formed
//     tail of that subject the filter's > covers;
//   - checkReplySubject refuses with wire.ErrInvalidRequest, and whatever it
//     accepts is a literal subject the worker can publish to: no wildcard,
//     empty token or whitespace, not a system subject, short enough for a
//     protocol line, and matched by no forbidden filter.
func FuzzSubjects(f *testing.F) {
	f.Add("ai.requests.billing.eu", "ai.requests.>", "replies.billing")
	f.Add("ai.requests.a", "ai.*.a", "ai.requests.a")
	f.Fuzz(func(t *testing.T, subject, filter, reply string) {
		literal := server.IsValidLiteralSubject(subject)
		validFilter := server.IsValidSubject(filter)
		if literal && validFilter {
			got, want := wire.SubjectMatches(subject, filter), refMatch(subject, filter)
			if got != want {
				t.Fatalf("wire.SubjectMatches(%q, %q) = %t, want %t", subject, filter, got, want)
			}
		}
		if literal && validFilter && strings.HasSuffix(filter, ">") && wire.SubjectMatches(subject, filter) {
			topic := topicOf(subject, []string{filter})
			if topic == "" || !server.IsValidLiteralSubject(topic) {
				t.Fatalf("topicOf(%q, %q) = %q, want a non-empty literal subject", subject, filter, topic)
			}
			prefix := strings.TrimSuffix(filter, ">")
			if !strings.HasSuffix(subject, "."+topic) && subject != topic {
				t.Fatalf("topicOf(%q, %q) = %q, not the subject's tail", subject, filter, topic)
			}
			if got := strings.Count(subject, ".") - strings.Count(topic, "."); got != strings.Count(prefix, ".") {
				t.Fatalf("topicOf(%q, %q) = %q covers %d tokens after the filter's prefix", subject, filter, topic, got)
			}
		}
		if literal {
			// Without a matching filter the topic is the last token.
			topic := topicOf(subject, nil)
			if topic == "" || strings.Contains(topic, ".") || !strings.HasSuffix(subject, topic) {
				t.Fatalf("topicOf(%q, nil) = %q, want its last token", subject, topic)
			}
		}

		forbidden := []string{"ai.requests.>", "ai.urgent.>", "ai.dead.>"}
		if validFilter {
			forbidden = append(forbidden, filter)
		}
		err := checkReplySubject(reply, forbidden)
		if err != nil {
			if !errors.Is(err, wire.ErrInvalidRequest) {
				t.Fatalf("checkReplySubject(%q) error %q does not wrap wire.ErrInvalidRequest", reply, err)
			}
			// The error quotes the subject (%q: at most 4 bytes per byte).
			if n := len(err.Error()); n > maxErrorBytes+4*maxReplySubjectBytes {
				t.Fatalf("checkReplySubject error is %d bytes", n)
			}
			return
		}
		if len(reply) > maxReplySubjectBytes {
			t.Fatalf("accepted a %d-byte reply subject: a publish to it would pass the server's max_control_line", len(reply))
		}
		if strings.ContainsAny(reply, " \t\r\n") || strings.HasPrefix(reply, "$") {
			t.Fatalf("accepted reply subject %q: the client refuses it or it is a system subject", reply)
		}
		for _, tok := range strings.Split(reply, ".") {
			if tok == "" || tok == "*" || tok == ">" {
				t.Fatalf("accepted reply subject %q with token %q", reply, tok)
			}
		}
		for _, fl := range forbidden {
			if refMatch(reply, fl) {
				t.Fatalf("accepted reply subject %q, which %q captures", reply, fl)
			}
		}
	})
}

// refMatch is the reference matcher for a valid NATS filter, written as a
// recursion over tokens: * is one token, a final > one or more, any other
// token (even "*0") is literal. The server's SubjectMatchesFilter is no
// oracle: it takes every token that starts with * for a wildcard, unlike its
// subscription matching.
func refMatch(subject, filter string) bool {
	var match func(st, ft []string) bool
	match = func(st, ft []string) bool {
		switch {
		case len(ft) == 0:
			return len(st) == 0
		case len(ft) == 1 && ft[0] == ">":
			return len(st) >= 1
		case len(st) == 0:
			return false
		case ft[0] == "*" || ft[0] == st[0]:
			return match(st[1:], ft[1:])
		}
		return false
	}
	return match(strings.Split(subject, "."), strings.Split(filter, "."))
}
