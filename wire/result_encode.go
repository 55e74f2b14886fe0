package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// AppendResult appends the JSON encoding of r to dst and returns the
// extended buffer. The bytes are those json.Marshal(r) writes, byte for
// byte, without reflection: the worker encodes every result it publishes
// with it, and json.Marshal cost a tenth of the worker's CPU.
//
// It fails, returning dst unchanged, when Message or Metadata is not
// valid JSON or Embedding holds NaN or an infinity, as json.Marshal does.
func AppendResult(dst []byte, r *Result) ([]byte, error) {
	start := len(dst)
	b := append(dst, `{"id":`...)
	b = appendString(b, r.ID)
	b = append(b, `,"status":`...)
	b = appendString(b, r.Status)
	if r.Output != "" {
		b = append(b, `,"output":`...)
		b = appendString(b, r.Output)
	}
	if r.FinishReason != "" {
		b = append(b, `,"finish_reason":`...)
		b = appendString(b, r.FinishReason)
	}
	if len(r.Embedding) > 0 {
		b = append(b, `,"embedding":[`...)
		for i, f := range r.Embedding {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendFloat32(b, f); err != nil {
				return dst[:start], err
			}
		}
		b = append(b, ']')
	}
	if r.Cached {
		b = append(b, `,"cached":true`...)
	}
	var err error
	if len(r.Message) > 0 {
		b = append(b, `,"message":`...)
		if b, err = appendRaw(b, r.Message); err != nil {
			return dst[:start], fmt.Errorf("encode result message: %w", err)
		}
	}
	if r.Error != "" {
		b = append(b, `,"error":`...)
		b = appendString(b, r.Error)
	}
	if r.Model != "" {
		b = append(b, `,"model":`...)
		b = appendString(b, r.Model)
	}
	if len(r.Metadata) > 0 {
		b = append(b, `,"metadata":`...)
		if b, err = appendRaw(b, r.Metadata); err != nil {
			return dst[:start], fmt.Errorf("encode result metadata: %w", err)
		}
	}
	b = append(b, `,"usage":{"input_tokens":`...)
	b = strconv.AppendInt(b, r.Usage.InputTokens, 10)
	if r.Usage.CachedInputTokens != 0 {
		b = append(b, `,"cached_input_tokens":`...)
		b = strconv.AppendInt(b, r.Usage.CachedInputTokens, 10)
	}
	b = append(b, `,"output_tokens":`...)
	b = strconv.AppendInt(b, r.Usage.OutputTokens, 10)
	b = append(b, `},"batch":{`...)
	if r.Batch.ID != "" {
		b = append(b, `"id":`...)
		b = appendString(b, r.Batch.ID)
		b = append(b, ',')
	}
	b = append(b, `"size":`...)
	b = strconv.AppendInt(b, int64(r.Batch.Size), 10)
	if r.Batch.Trigger != "" {
		b = append(b, `,"trigger":`...)
		b = appendString(b, string(r.Batch.Trigger))
	}
	b = append(b, `},"queued_ms":`...)
	b = strconv.AppendInt(b, r.QueuedMS, 10)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(r.Attempts), 10)
	return append(b, '}'), nil
}

// EncodedResultSize is the length of r's encoding when its strings need
// no escaping (and close to it otherwise; an embedding's numbers are
// counted at their longest), to size a buffer for AppendResult in one
// allocation.
func EncodedResultSize(r *Result) int {
	n := len(`{"id":"","status":"","usage":{"input_tokens":,"output_tokens":},"batch":{"size":},"queued_ms":,"attempts":}`) +
		len(r.ID) + len(r.Status) + intLen(r.Usage.InputTokens) + intLen(r.Usage.OutputTokens) +
		intLen(int64(r.Batch.Size)) + intLen(r.QueuedMS) + intLen(int64(r.Attempts))
	optional := func(field string, value int) {
		if value > 0 {
			n += len(field) + value
		}
	}
	optional(`,"output":""`, len(r.Output))
	optional(`,"finish_reason":""`, len(r.FinishReason))
	if len(r.Embedding) > 0 {
		// -1.2345678e-38 is the longest float32.
		n += len(`,"embedding":[]`) + len(r.Embedding)*len(`-1.2345678e-38,`) - 1
	}
	if r.Cached {
		n += len(`,"cached":true`)
	}
	optional(`,"message":`, len(r.Message))
	optional(`,"error":""`, len(r.Error))
	optional(`,"model":""`, len(r.Model))
	optional(`,"metadata":`, len(r.Metadata))
	if r.Usage.CachedInputTokens != 0 {
		n += len(`,"cached_input_tokens":`) + intLen(r.Usage.CachedInputTokens)
	}
	optional(`"id":"",`, len(r.Batch.ID))
	optional(`,"trigger":""`, len(r.Batch.Trigger))
	return n
}

// intLen is the number of bytes strconv.AppendInt writes for v.
func intLen(v int64) int {
	n := 1
	if v < 0 {
		n++
		if v == math.MinInt64 {
			return 20
		}
		v = -v
	}
	for ; v >= 10; v /= 10 {
		n++
	}
	return n
}

// appendRaw appends raw compacted, with <, >, & and U+2028/U+2029 in its
// strings escaped, as json.Marshal writes a json.RawMessage.
func appendRaw(b []byte, raw []byte) ([]byte, error) {
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, raw); err != nil {
		return b, err
	}
	out := buf.Bytes()
	if !needsHTMLEscape(out[len(b):]) {
		return out, nil
	}
	compacted := bytes.Clone(out[len(b):])
	buf = bytes.NewBuffer(out[:len(b)])
	json.HTMLEscape(buf, compacted)
	return buf.Bytes(), nil
}

func needsHTMLEscape(s []byte) bool {
	for i, c := range s {
		switch c {
		case '<', '>', '&':
			return true
		case 0xE2: // the first byte of U+2028 and U+2029
			if i+2 < len(s) && s[i+1] == 0x80 && s[i+2]&^1 == 0xA8 {
				return true
			}
		}
	}
	return false
}

// appendString appends s as a JSON string the way json.Marshal does:
// control characters, <, >, &, U+2028 and U+2029 escaped and invalid
// UTF-8 replaced by U+FFFD (written as itself, as JSON v2 does; v1 wrote
// the escape \ufffd, which reads back the same).
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	plain := 0 // s[plain:i] needs no escaping and is not yet appended
	for i := 0; i < len(s); {
		for i < len(s) && plainASCII[s[i]] {
			i++
		}
		if i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			b = append(b, s[plain:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			plain = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[plain:i]...)
			b = append(b, "\ufffd"...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[plain:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		plain = i
	}
	b = append(b, s[plain:]...)
	return append(b, '"')
}

// plainASCII tells the bytes json.Marshal writes as they are: ASCII
// other than control characters, quotes, backslashes, <, > and &.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendFloat32 appends f as json.Marshal writes a float32: the shortest
// decimal that reads back as f, in exponent form only for very large or
// very small magnitudes.
func appendFloat32(b []byte, f float32) ([]byte, error) {
	f64 := float64(f)
	if math.IsNaN(f64) || math.IsInf(f64, 0) {
		return b, fmt.Errorf("encode result embedding: unsupported value %v", f)
	}
	format := byte('f')
	if abs := math.Abs(f64); abs != 0 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f64, format, -1, 32)
	if format == 'e' {
		// Like json.Marshal, write 1e-07 as 1e-7.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}
