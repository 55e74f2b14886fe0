package wire_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
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
