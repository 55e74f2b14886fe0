package fake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Instance returns the JSON text of a small value valid against schema, as
// a model in strict mode would write it: every property of an object (so
// that a strict schema, where all are required, is met), minItems items of
// an array, the first branch of an anyOf or oneOf, the first value of an
// enum, a const, and for a string text standing for the answer (Answer-
// like, so that a test can tell whose answer it is), padded or cut to its
// minLength and maxLength. Numbers keep to minimum, maximum and their
// exclusive forms. "$ref"s are resolved against root (the whole schema
// the request declared; schema itself when root is nil). Keywords it does
// not know ("pattern", "format", ...) are not honoured. It fails when
// schema is not JSON or a $ref leads nowhere.
func Instance(schema, root json.RawMessage, text string) (string, error) {
	var s, r any
	if err := decodeNumbers(schema, &s); err != nil {
		return "", fmt.Errorf("schema: %w", err)
	}
	r = s
	if len(root) > 0 {
		if err := decodeNumbers(root, &r); err != nil {
			return "", fmt.Errorf("root schema: %w", err)
		}
	}
	g := generator{root: r, text: text}
	v, err := g.value(s, 0)
	if err != nil {
		return "", err
	}
	return string(MarshalJSON(v)), nil
}

func decodeNumbers(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
}

type generator struct {
	root any
	text string
}

// maxDepth stops a recursive schema.
const maxDepth = 32

func (g generator) value(schema any, depth int) (any, error) {
	if depth > maxDepth {
		return nil, nil
	}
	s, ok := schema.(map[string]any)
	if !ok {
		return nil, nil // true, or a schema that allows anything
	}
	if ref, ok := s["$ref"].(string); ok {
		target, err := g.resolve(ref)
		if err != nil {
			return nil, err
		}
		return g.value(target, depth+1)
	}
	if c, ok := s["const"]; ok {
		return c, nil
	}
	if enum, ok := s["enum"].([]any); ok && len(enum) > 0 {
		return enum[0], nil
	}
	for _, k := range []string{"anyOf", "oneOf", "allOf"} {
		if branches, ok := s[k].([]any); ok && len(branches) > 0 {
			return g.value(branches[0], depth+1)
		}
	}
	switch typ := typeOf(s); typ {
	case "object":
		out := map[string]any{}
		props, _ := s["properties"].(map[string]any)
		for name, p := range props {
			v, err := g.value(p, depth+1)
			if err != nil {
				return nil, err
			}
			out[name] = v
		}
		return out, nil
	case "array":
		n := intOf(s["minItems"], 0)
		out := make([]any, 0, n)
		for range n {
			v, err := g.value(s["items"], depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case "string":
		text := g.text
		if n := intOf(s["minLength"], 0); len([]rune(text)) < n {
			text += strings.Repeat(".", n-len([]rune(text)))
		}
		if n := intOf(s["maxLength"], -1); n >= 0 && len([]rune(text)) > n {
			text = string([]rune(text)[:n])
		}
		return text, nil
	case "integer", "number":
		return number(s, typ == "integer"), nil
	case "boolean":
		return false, nil
	}
	return nil, nil
}

// typeOf is s's type; of a list of types the first that is not "null".
func typeOf(s map[string]any) string {
	switch t := s["type"].(type) {
	case string:
		return t
	case []any:
		for _, v := range t {
			if name, ok := v.(string); ok && name != "null" {
				return name
			}
		}
	}
	if _, ok := s["properties"]; ok {
		return "object"
	}
	return "null"
}

// number is the smallest value s allows from 0 up (or its maximum).
func number(s map[string]any, integer bool) json.Number {
	v := 0.0
	if m, ok := floatOf(s["minimum"]); ok && v < m {
		v = m
	}
	if m, ok := floatOf(s["exclusiveMinimum"]); ok && v <= m {
		v = m + 1
	}
	if m, ok := floatOf(s["maximum"]); ok && v > m {
		v = m
	}
	if m, ok := floatOf(s["exclusiveMaximum"]); ok && v >= m {
		v = m - 1
	}
	if integer {
		v = math.Ceil(v)
	}
	return json.Number(strconv.FormatFloat(v, 'f', -1, 64))
}

func floatOf(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

func intOf(v any, def int) int {
	if f, ok := floatOf(v); ok {
		return int(f)
	}
	return def
}

// resolve follows a local $ref ("#/$defs/x", "#/properties/...") in root.
func (g generator) resolve(ref string) (any, error) {
	if !strings.HasPrefix(ref, "#") {
		return nil, fmt.Errorf("$ref %q is not local", ref)
	}
	node := g.root
	for _, tok := range strings.Split(strings.TrimPrefix(ref, "#"), "/")[1:] {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch n := node.(type) {
		case map[string]any:
			next, ok := n[tok]
			if !ok {
				return nil, fmt.Errorf("$ref %q leads nowhere", ref)
			}
			node = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(n) {
				return nil, fmt.Errorf("$ref %q leads nowhere", ref)
			}
			node = n[i]
		default:
			return nil, fmt.Errorf("$ref %q leads nowhere", ref)
		}
	}
	return node, nil
}
