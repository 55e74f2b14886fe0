package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/combined"
	"github.com/aibatch/aibatch/wire"
)

// The limits of OpenAI's strict mode on a json_schema (the Structured
// Outputs guide, "Supported schemas"): object properties in all, levels of
// nesting, enum values in all, and characters of every property name,
// definition name, enum value and const value together; an enum of more
// than longEnumValues string values may hold maxEnumChars characters in
// all. A combined call's schema must keep to them: the id enum is left out
// when it would not, and a request schema that would not fit once combined
// is sent alone (see CombinesFormat).
const (
	maxSchemaProperties = 5000
	maxSchemaDepth      = 10
	maxEnumValues       = 1000
	maxSchemaChars      = 120_000
	longEnumValues      = 250
	maxEnumChars        = 15_000
)

// unsupported are the JSON Schema keywords strict mode refuses: a schema
// using one cannot be combined under a strict answer schema.
var unsupported = []string{
	"allOf", "oneOf", "not", "if", "then", "else", "dependentRequired", "dependentSchemas",
	"patternProperties", "unevaluatedProperties", "unevaluatedItems", "propertyNames",
	"minProperties", "maxProperties", "contains", "minContains", "maxContains",
}

var _ provider.FormatCombiner = (*Provider)(nil)

// CombinesFormat reports whether requests asking for f may share a
// combined call: free text and json_object always may; a json_schema may
// when strict mode takes it (every object closed with additionalProperties
// false and every property required, a root of type object, no keyword
// strict mode refuses) and the combined answer schema built around it keeps
// to the limits above. Otherwise it says why, and the request is sent alone
// with its response_format as it gave it (strict or not): the API then
// judges the schema itself. It implements provider.FormatCombiner.
func (p *Provider) CombinesFormat(f wire.ResponseFormat) error {
	if f.Type != wire.FormatJSONSchema || f.JSONSchema == nil {
		return nil
	}
	var schema any
	if err := decodeSchema(f.JSONSchema.Schema, &schema); err != nil {
		return err
	}
	if err := strictIssue(schema); err != nil {
		return fmt.Errorf("schema %q is not one strict mode takes: %w", f.JSONSchema.Name, err)
	}
	answer, err := combined.Schema(provider.Batch{Format: &f}, map[string]any{"type": "string"})
	if err != nil {
		return err
	}
	if err := checkLimits(answer, 0, 0); err != nil {
		return fmt.Errorf("schema %q does not fit a combined answer: %w", f.JSONSchema.Name, err)
	}
	return nil
}

func decodeSchema(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("response_format schema is not JSON: %w", err)
	}
	return nil
}

// strictIssue returns what keeps strict mode from taking schema, or nil.
func strictIssue(schema any) error {
	root, ok := schema.(map[string]any)
	if !ok || root["type"] != "object" {
		return errors.New(`the root must be {"type":"object",...}`)
	}
	return walkStrict(root, "#")
}

func walkStrict(v any, at string) error {
	switch t := v.(type) {
	case []any:
		for i, c := range t {
			if err := walkStrict(c, fmt.Sprintf("%s/%d", at, i)); err != nil {
				return err
			}
		}
	case map[string]any:
		for _, k := range unsupported {
			if _, has := t[k]; has {
				return fmt.Errorf("%s uses %q", at, k)
			}
		}
		if props, isObject := t["properties"].(map[string]any); isObject || t["type"] == "object" {
			if t["additionalProperties"] != false {
				return fmt.Errorf(`%s: an object needs "additionalProperties": false`, at)
			}
			required := map[string]bool{}
			list, _ := t["required"].([]any)
			for _, r := range list {
				if s, ok := r.(string); ok {
					required[s] = true
				}
			}
			for name := range props {
				if !required[name] {
					return fmt.Errorf("%s: property %q is not in \"required\" (strict mode requires every property; make it nullable instead)", at, name)
				}
			}
		}
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if k == "enum" || k == "const" || k == "default" || k == "examples" {
				continue // values, not schemas
			}
			if err := walkStrict(t[k], at+"/"+k); err != nil {
				return err
			}
		}
	}
	return nil
}

// schemaSize is what strict mode limits in a schema.
type schemaSize struct {
	properties, depth, enumValues, chars int
}

// measure adds v's size to s; depth is the nesting of objects at v.
func (s *schemaSize) measure(v any, depth int) {
	switch t := v.(type) {
	case []any:
		for _, c := range t {
			s.measure(c, depth)
		}
	case map[string]any:
		if props, ok := t["properties"].(map[string]any); ok {
			depth++
			s.depth = max(s.depth, depth)
			s.properties += len(props)
			for name, c := range props {
				s.chars += len(name)
				s.measure(c, depth)
			}
		}
		for _, k := range []string{"$defs", "definitions"} {
			if defs, ok := t[k].(map[string]any); ok {
				for name, c := range defs {
					s.chars += len(name)
					s.measure(c, depth)
				}
			}
		}
		if enum, ok := t["enum"].([]any); ok {
			s.enumValues += len(enum)
			for _, e := range enum {
				if str, ok := e.(string); ok {
					s.chars += len(str)
				}
			}
		}
		if str, ok := t["const"].(string); ok {
			s.chars += len(str)
		}
		for k, c := range t {
			switch k {
			case "properties", "$defs", "definitions", "enum", "const", "default", "examples":
			default:
				s.measure(c, depth)
			}
		}
	}
}

// checkLimits reports the first limit of strict mode schema breaks, with
// extraEnum values and extraChars characters still to be added to it.
func checkLimits(schema any, extraEnum, extraChars int) error {
	var s schemaSize
	s.measure(schema, 0)
	switch {
	case s.depth > maxSchemaDepth:
		return fmt.Errorf("%d levels of nesting, over strict mode's %d", s.depth, maxSchemaDepth)
	case s.properties > maxSchemaProperties:
		return fmt.Errorf("%d object properties, over strict mode's %d", s.properties, maxSchemaProperties)
	case s.enumValues+extraEnum > maxEnumValues:
		return fmt.Errorf("%d enum values, over strict mode's %d", s.enumValues+extraEnum, maxEnumValues)
	case s.chars+extraChars > maxSchemaChars:
		return fmt.Errorf("%d characters of names and values, over strict mode's %d", s.chars+extraChars, maxSchemaChars)
	}
	return nil
}

// answerSchema is the strict JSON schema of the answer to a combined call
// for b (combined.Schema), its "id" restricted to the requests' keys (an
// "enum") when strict mode's limits on enums and characters allow it; a
// batch over them is sent without the enum of ids.
func answerSchema(b provider.Batch) (json.RawMessage, error) {
	id := map[string]any{"type": "string"}
	var chars int
	keys := make([]string, len(b.Requests))
	for i, r := range b.Requests {
		keys[i] = r.Key
		chars += len(r.Key)
	}
	n := len(keys)
	schema, err := combined.Schema(b, id)
	if err != nil {
		return nil, err
	}
	if (n <= longEnumValues || chars <= maxEnumChars) && checkLimits(schema, n, chars) == nil {
		id["enum"] = keys
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(schema); err != nil {
		return nil, fmt.Errorf("encode the answer schema: %w", err)
	}
	return bytes.TrimSpace(buf.Bytes()), nil
}

// formatLine ends every combined system prompt: it tells the model what the
// user message holds and how to answer it.
func formatLine(b provider.Batch) string {
	return combined.Describe(b) + ` Reply with {"results":[{"id":"...","output":"..."}]}: one result per item, ` +
		`the item's id copied unchanged, your answer as output.`
}

// combinable reports whether b's requests may share one call here.
func (p *Provider) combinable(b provider.Batch) bool {
	return b.Format == nil || p.CombinesFormat(*b.Format) == nil
}
