package wire_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/aibatch/aibatch/wire"
)

// readmeJSON returns the first ```json block after heading in README.md.
func readmeJSON(t *testing.T, heading string) string {
	t.Helper()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(raw), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no heading %q", heading)
	}
	_, block, ok := strings.Cut(after, "```json\n")
	if !ok {
		t.Fatalf("README.md: no json example after %q", heading)
	}
	block, _, _ = strings.Cut(block, "```")
	return block
}

// The README's request and result examples are valid by the schemas that
// describe the wire format: a result example with "error": "" or an empty
// metadata object, which real results leave out, would fail.
func TestREADMEExamplesMatchTheSchemas(t *testing.T) {
	t.Parallel()
	for _, ex := range []struct{ heading, schema string }{
		{"### Requests", "request.schema.json"},
		{"### Results", "result.schema.json"},
	} {
		s, _ := loadSchema(t, ex.schema)
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(readmeJSON(t, ex.heading))))
		if err != nil {
			t.Fatalf("README.md example under %s is not JSON: %v", ex.heading, err)
		}
		if err := s.Validate(inst); err != nil {
			t.Errorf("README.md example under %s does not match %s: %v", ex.heading, ex.schema, err)
		}
	}
}

// The examples of docs/wire-format.md's "Wire format 1.1" section are
// valid by the schemas and accepted by the worker: each request example
// decodes with DecodeRequest, and each result example (those with a
// "status") matches the result schema.
func TestWireFormat11ExamplesMatchTheSchemas(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../docs/wire-format.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## Wire format 1.1\n")
	if !ok {
		t.Fatal(`docs/wire-format.md has no "## Wire format 1.1" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	reqSchema, _ := loadSchema(t, "request.schema.json")
	resSchema, _ := loadSchema(t, "result.schema.json")
	var requests, results int
	for _, chunk := range strings.Split(section, "```json\n")[1:] {
		block, _, _ := strings.Cut(chunk, "```")
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(block)))
		if err != nil {
			t.Fatalf("example is not JSON: %v\n%s", err, block)
		}
		if obj, _ := inst.(map[string]any); obj["status"] != nil {
			results++
			if err := resSchema.Validate(inst); err != nil {
				t.Errorf("result example does not match the schema: %v\n%s", err, block)
			}
			continue
		}
		requests++
		if err := reqSchema.Validate(inst); err != nil {
			t.Errorf("request example does not match the schema: %v\n%s", err, block)
		}
		if _, err := wire.DecodeRequest([]byte(block), 0); err != nil {
			t.Errorf("the worker refuses the request example: %v\n%s", err, block)
		}
	}
	if requests < 4 || results < 4 {
		t.Fatalf("%d request and %d result examples, want one of each kind", requests, results)
	}
}
