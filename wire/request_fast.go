package wire

import (
	"encoding/binary"
	"encoding/json"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeRequestFast decodes the common shape of a request body without
// reflection: an object whose members are id, kind, input, instructions,
// model, max_output_tokens, dimensions and metadata, spelled exactly so.
// It reports false for anything else (another member, another spelling,
// null, a malformed value, invalid UTF-8, trailing data), and the caller
// decodes the body with encoding/json, which also says what is wrong.
// Where it reports true, the Request is the one encoding/json decodes:
// the worker decodes every request, and reflection cost about a twentieth
// of its CPU per request.
func decodeRequestFast(body []byte) (Request, bool) {
	var r Request
	d := fastDecoder{data: body}
	d.space()
	if !d.consume('{') {
		return r, false
	}
	d.space()
	if d.consume('}') {
		return r, d.end()
	}
	for {
		d.space()
		name, ok := d.rawString()
		if !ok {
			return r, false
		}
		d.space()
		if !d.consume(':') {
			return r, false
		}
		d.space()
		switch string(name) {
		case "id":
			r.ID, ok = d.string()
		case "kind":
			r.Kind, ok = d.string()
		case "input":
			r.Input, ok = d.string()
		case "instructions":
			r.Instructions, ok = d.string()
		case "model":
			r.Model, ok = d.string()
		case "max_output_tokens":
			r.MaxOutputTokens, ok = d.int()
		case "dimensions":
			r.Dimensions, ok = d.int()
		case "metadata":
			var raw []byte
			if raw, ok = d.value(0); ok {
				r.Metadata = json.RawMessage(append([]byte(nil), raw...))
			}
		default:
			ok = false
		}
		if !ok {
			return r, false
		}
		d.space()
		if d.consume(',') {
			continue
		}
		if d.consume('}') {
			return r, d.end()
		}
		return r, false
	}
}

// fastDecoder reads JSON from data at pos. Every method that reads a value
// reports false, rather than an error, on anything it does not accept.
type fastDecoder struct {
	data []byte
	pos  int
}

func (d *fastDecoder) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *fastDecoder) consume(c byte) bool {
	if d.pos < len(d.data) && d.data[d.pos] == c {
		d.pos++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (d *fastDecoder) end() bool {
	d.space()
	return d.pos == len(d.data)
}

// rawString reads a string with no escapes, as an object member's name
// usually is, without copying it.
func (d *fastDecoder) rawString() ([]byte, bool) {
	if !d.consume('"') {
		return nil, false
	}
	start := d.pos
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			s := d.data[start:d.pos]
			d.pos++
			return s, true
		case c < 0x20 || c == '\\' || c >= utf8.RuneSelf:
			return nil, false
		}
		d.pos++
	}
	return nil, false
}

// string reads a string value, resolving escapes.
func (d *fastDecoder) string() (string, bool) {
	raw, escaped, ok := d.scanString()
	if !ok {
		return "", false
	}
	if !escaped {
		return string(raw), true
	}
	return unescape(raw), true
}

// scanString reads and checks a string, and returns what is between its
// quotes and whether that holds escapes. Invalid UTF-8 and lone
// surrogates are left to encoding/json, which replaces them.
func (d *fastDecoder) scanString() (raw []byte, escaped, ok bool) {
	if !d.consume('"') {
		return nil, false, false
	}
	data, start := d.data, d.pos
	for i := start; i < len(data); {
		for i+8 <= len(data) && plainWord(binary.LittleEndian.Uint64(data[i:])) {
			i += 8
		}
		for i < len(data) && plainInString[data[i]] {
			i++
		}
		if i == len(data) {
			break
		}
		switch c := data[i]; {
		case c == '"':
			d.pos = i + 1
			return data[start:i], escaped, true
		case c == '\\':
			escaped = true
			d.pos = i
			if !d.escape() {
				return nil, false, false
			}
			i = d.pos
		case c < 0x20:
			return nil, false, false
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				return nil, false, false
			}
			i += size
		}
	}
	return nil, false, false
}

// plainWord reports whether none of the 8 bytes in x is a control
// character, a quote, a backslash or non-ASCII. It may report false for a
// plain word (then the bytes are looked at one by one), never true for
// another.
func plainWord(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote, backslash := x^(ones*'"'), x^(ones*'\\')
	control := (x - ones*0x20) &^ x
	return (x|control|((quote-ones)&^quote)|((backslash-ones)&^backslash))&highs == 0
}

// plainInString tells the bytes a string holds as they are: ASCII other
// than control characters, quotes and backslashes.
var plainInString = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// escape reads and checks the escape at pos.
func (d *fastDecoder) escape() bool {
	if d.pos+1 >= len(d.data) {
		return false
	}
	esc := d.data[d.pos+1]
	d.pos += 2
	switch esc {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return true
	case 'u':
		r, ok := hex4(d.data[d.pos:])
		if !ok {
			return false
		}
		d.pos += 4
		if !utf16.IsSurrogate(r) {
			return true
		}
		if !d.consume('\\') || !d.consume('u') {
			return false
		}
		low, ok := hex4(d.data[d.pos:])
		d.pos += 4
		return ok && utf16.DecodeRune(r, low) != utf8.RuneError
	}
	return false
}

// unescape resolves the escapes of a string scanString checked.
func unescape(raw []byte) string {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		esc := raw[i+1]
		i += 2
		switch esc {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, _ := hex4(raw[i:])
			i += 4
			if utf16.IsSurrogate(r) {
				low, _ := hex4(raw[i+2:])
				i += 6
				r = utf16.DecodeRune(r, low)
			}
			out = utf8.AppendRune(out, r)
		default: // " \ /
			out = append(out, esc)
		}
	}
	return string(out)
}

// hex4 reads the four hex digits of a \u escape at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// int reads an integer written without fraction or exponent that fits an
// int.
func (d *fastDecoder) int() (int, bool) {
	start := d.pos
	d.consume('-')
	first := d.pos
	if !d.digits() || (d.data[first] == '0' && d.pos-first > 1) {
		return 0, false
	}
	if d.pos < len(d.data) {
		if c := d.data[d.pos]; c == '.' || c == 'e' || c == 'E' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(string(d.data[start:d.pos]))
	return n, err == nil
}

// maxFastDepth bounds the nesting value follows; deeper metadata goes to
// encoding/json.
const maxFastDepth = 64

// value reads any JSON value, checking it, and returns its bytes.
func (d *fastDecoder) value(depth int) ([]byte, bool) {
	if depth > maxFastDepth || d.pos >= len(d.data) {
		return nil, false
	}
	start := d.pos
	var ok bool
	switch c := d.data[d.pos]; {
	case c == '{':
		ok = d.object(depth)
	case c == '[':
		ok = d.array(depth)
	case c == '"':
		_, _, ok = d.scanString()
	case c == '-' || ('0' <= c && c <= '9'):
		ok = d.number()
	default:
		ok = d.literal("true") || d.literal("false") || d.literal("null")
	}
	return d.data[start:d.pos], ok
}

func (d *fastDecoder) object(depth int) bool {
	d.pos++ // {
	d.space()
	if d.consume('}') {
		return true
	}
	for {
		d.space()
		if _, _, ok := d.scanString(); !ok {
			return false
		}
		d.space()
		if !d.consume(':') {
			return false
		}
		d.space()
		if _, ok := d.value(depth + 1); !ok {
			return false
		}
		d.space()
		if d.consume(',') {
			continue
		}
		return d.consume('}')
	}
}

func (d *fastDecoder) array(depth int) bool {
	d.pos++ // [
	d.space()
	if d.consume(']') {
		return true
	}
	for {
		d.space()
		if _, ok := d.value(depth + 1); !ok {
			return false
		}
		d.space()
		if d.consume(',') {
			continue
		}
		return d.consume(']')
	}
}

// number reads a number as JSON writes it:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *fastDecoder) number() bool {
	d.consume('-')
	if d.consume('0') {
		// no more integer digits
	} else if !d.digits() {
		return false
	}
	if d.consume('.') && !d.digits() {
		return false
	}
	if d.consume('e') || d.consume('E') {
		if !d.consume('+') {
			d.consume('-')
		}
		if !d.digits() {
			return false
		}
	}
	return true
}

// digits reads one or more decimal digits.
func (d *fastDecoder) digits() bool {
	start := d.pos
	for d.pos < len(d.data) && '0' <= d.data[d.pos] && d.data[d.pos] <= '9' {
		d.pos++
	}
	return d.pos > start
}

func (d *fastDecoder) literal(word string) bool {
	if len(d.data)-d.pos >= len(word) && string(d.data[d.pos:d.pos+len(word)]) == word {
		d.pos += len(word)
		return true
	}
	return false
}
