package combined

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// OutputPointer is the JSON pointer, within the schema Schema builds, of
// each item's "output": where a request's own schema sits.
const OutputPointer = "/properties/results/items/properties/output"

// Schema is the JSON schema of a combined answer for b, as a value to
// marshal: {"results":[{"id":...,"output":...}]}, every object closed
// (additionalProperties false, every property required), id as given. The
// output is a string, or with a FormatJSONSchema format the request's own
// schema: its definitions ("$defs", "definitions") move to the root of the
// combined schema and its "$ref"s are rewritten to match, so that the
// combined schema means for each output what the request's schema meant
// for a whole answer. A json_object output is a string holding the object
// (strict mode has no schema for "any object"). It fails when the request's
// schema is not a JSON object.
func Schema(b provider.Batch, id map[string]any) (map[string]any, error) {
	output := map[string]any{"type": "string"}
	var defs map[string]any
	if f := b.Format; f != nil && f.Type == wire.FormatJSONSchema && f.JSONSchema != nil {
		var err error
		if output, defs, err = itemSchema(f.JSONSchema.Schema); err != nil {
			return nil, err
		}
	}
	root := map[string]any{
		"type": "object",
		"properties": map[string]any{"results": map[string]any{
			"type": "array",
			"items": map[string]any{
				"type":                 "object",
				"properties":           map[string]any{"id": id, "output": output},
				"required":             []string{"id", "output"},
				"additionalProperties": false,
			},
		}},
		"required":             []string{"results"},
		"additionalProperties": false,
	}
	for k, v := range defs {
		root[k] = v
	}
	return root, nil
}

// itemSchema decodes raw, a request's schema, for use as the output schema
// of a combined answer: its definitions taken out (returned apart, by
// keyword), the keywords that only make sense at a root ($schema, $id)
// dropped, and every local "$ref" rewritten.
func itemSchema(raw json.RawMessage) (map[string]any, map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var schema map[string]any
	if err := dec.Decode(&schema); err != nil || schema == nil {
		return nil, nil, fmt.Errorf("response_format schema is not a JSON object: %v", err)
	}
	defs := map[string]any{}
	for _, k := range []string{"$defs", "definitions"} {
		if v, ok := schema[k]; ok {
			defs[k] = rewriteRefs(v)
			delete(schema, k)
		}
	}
	delete(schema, "$schema")
	delete(schema, "$id")
	return rewriteRefs(schema).(map[string]any), defs, nil
}

// rewriteRefs rewrites the local "$ref"s of a schema moved to
// OutputPointer: "#" and "#/..." pointing into the schema itself get the
// pointer's prefix, those into the (hoisted) definitions stay.
func rewriteRefs(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, child := range t {
			if s, ok := child.(string); ok && k == "$ref" {
				t[k] = rewriteRef(s)
				continue
			}
			t[k] = rewriteRefs(child)
		}
	case []any:
		for i, child := range t {
			t[i] = rewriteRefs(child)
		}
	}
	return v
}

func rewriteRef(ref string) string {
	switch {
	case ref == "#":
		return "#" + OutputPointer
	case strings.HasPrefix(ref, "#/$defs/"), strings.HasPrefix(ref, "#/definitions/"):
		return ref
	case strings.HasPrefix(ref, "#/"):
		return "#" + OutputPointer + ref[1:]
	}
	return ref // not local: left as the request wrote it
}
