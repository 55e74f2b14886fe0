package wire_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/aibatch/aibatch/wire"
)

const schemaDir = "../docs/schema"

func loadSchema(t *testing.T, name string) (*jsonschema.Schema, map[string]any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(schemaDir, name))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(name, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(name)
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	var plain map[string]any
	if err := json.Unmarshal(raw, &plain); err != nil {
		t.Fatal(err)
	}
	return s, plain
}

func validate(t *testing.T, s *jsonschema.Schema, v any) error {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return s.Validate(inst)
}

// jsonNames lists the JSON names of a struct type's fields.
func jsonNames(typ reflect.Type) []string {
	var names []string
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func schemaNames(schema map[string]any, path ...string) []string {
	node := schema
	for _, p := range path {
		node = node["properties"].(map[string]any)[p].(map[string]any)
	}
	var names []string
	for k := range node["properties"].(map[string]any) {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// TestTypesAndSchemasHaveTheSameFields fails when a field is added to a type
// or a schema and not to the other.
func TestTypesAndSchemasHaveTheSameFields(t *testing.T) {
	t.Parallel()
	_, req := loadSchema(t, "request.schema.json")
	_, res := loadSchema(t, "result.schema.json")
	tests := []struct {
		name   string
		typ    reflect.Type
		schema map[string]any
		path   []string
	}{
		{"Request", reflect.TypeFor[wire.Request](), req, nil},
		{"Result", reflect.TypeFor[wire.Result](), res, nil},
		{"Usage", reflect.TypeFor[wire.Usage](), res, []string{"usage"}},
		{"BatchInfo", reflect.TypeFor[wire.BatchInfo](), res, []string{"batch"}},
	}
	for _, tt := range tests {
		if got, want := jsonNames(tt.typ), schemaNames(tt.schema, tt.path...); !slices.Equal(got, want) {
			t.Errorf("%s has JSON fields %v, the schema %v", tt.name, got, want)
		}
	}
}

// TestTriggersMatchTheSchema fails when a trigger is added to one side only.
func TestTriggersMatchTheSchema(t *testing.T) {
	t.Parallel()
	_, res := loadSchema(t, "result.schema.json")
	batch := res["properties"].(map[string]any)["batch"].(map[string]any)
	var inSchema []string
	for _, v := range batch["properties"].(map[string]any)["trigger"].(map[string]any)["enum"].([]any) {
		inSchema = append(inSchema, v.(string))
	}
	all := []wire.Trigger{wire.TriggerSize, wire.TriggerInterval, wire.TriggerMaxWait, wire.TriggerUrgent,
		wire.TriggerForced, wire.TriggerImmediate, wire.TriggerRetry, wire.TriggerWindowFull, wire.TriggerCache}
	var inCode []string
	for _, tr := range all {
		inCode = append(inCode, string(tr))
	}
	sort.Strings(inSchema)
	sort.Strings(inCode)
	if !slices.Equal(inSchema, inCode) {
		t.Errorf("triggers in wire %v, in the schema %v", inCode, inSchema)
	}
}

func TestValuesMatchTheSchemas(t *testing.T) {
	t.Parallel()
	reqSchema, _ := loadSchema(t, "request.schema.json")
	resSchema, _ := loadSchema(t, "result.schema.json")
	requests := []struct {
		name  string
		req   wire.Request
		valid bool
	}{
		{"minimal", wire.Request{Input: "x"}, true},
		{"every field", wire.Request{ID: "r-1", Input: "x", Instructions: "be brief", Model: "m", MaxOutputTokens: 64,
			Metadata: json.RawMessage(`{"k":[1,2]}`)}, true},
		{"scalar metadata", wire.Request{Input: "x", Metadata: json.RawMessage(`"tag"`)}, true},
		{"array metadata", wire.Request{Input: "x", Metadata: json.RawMessage(`[1]`)}, true},
		{"blank input", wire.Request{Input: "  "}, false},
		{"negative max tokens", wire.Request{Input: "x", MaxOutputTokens: -1}, false},
	}
	for _, tt := range requests {
		err := validate(t, reqSchema, tt.req)
		if (err == nil) != tt.valid {
			t.Errorf("request %s: schema says %v, want valid=%v", tt.name, err, tt.valid)
		}
		// The schema and Validate agree on what the worker accepts.
		if verr := tt.req.Validate(); (verr == nil) != tt.valid {
			t.Errorf("request %s: Validate says %v, want valid=%v", tt.name, verr, tt.valid)
		}
	}
	results := []struct {
		name  string
		res   wire.Result
		valid bool
	}{
		{"ok", wire.Result{ID: "a", Status: wire.StatusOK, Output: "y", Model: "m", Metadata: json.RawMessage(`{"k":1}`),
			Usage: wire.Usage{InputTokens: 3, OutputTokens: 4}, Batch: wire.BatchInfo{ID: "b-1", Size: 2, Trigger: wire.TriggerSize},
			QueuedMS: 5, Attempts: 1}, true},
		{"cache hit", wire.Result{ID: "a", Status: wire.StatusOK, Output: "y", Model: "m", Cached: true,
			Batch: wire.BatchInfo{ID: "b-2", Size: 1, Trigger: wire.TriggerCache}, Attempts: 1}, true},
		{"cached prompt tokens", wire.Result{ID: "a", Status: wire.StatusOK, Output: "y",
			Usage: wire.Usage{InputTokens: 2000, CachedInputTokens: 1536, OutputTokens: 4}, Batch: wire.BatchInfo{ID: "b-1", Size: 2}, Attempts: 1}, true},
		{"error before any call", wire.Result{ID: "a", Status: wire.StatusError, Error: "invalid request", Attempts: 1}, true},
		{"unknown status", wire.Result{ID: "a", Status: "maybe", Attempts: 1}, false},
		{"error without a reason", wire.Result{ID: "a", Status: wire.StatusError, Attempts: 1}, false},
	}
	for _, tt := range results {
		if err := validate(t, resSchema, tt.res); (err == nil) != tt.valid {
			t.Errorf("result %s: schema says %v, want valid=%v", tt.name, err, tt.valid)
		}
	}
}
