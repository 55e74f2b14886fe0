package client_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/aibatch/aibatch/client"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/wire"
)

// schemaDir holds the published JSON Schemas.
const schemaDir = "../docs/schema"

// compileSchema compiles one schema file of docs/schema.
func compileSchema(t *testing.T, name string) *jsonschema.Schema {
	t.Helper()
	path := filepath.Join(schemaDir, name)
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open schema: %v", err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("decode schema %s: %v", path, err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(name, doc); err != nil {
		t.Fatalf("add schema %s: %v", path, err)
	}
	s, err := c.Compile(name)
	if err != nil {
		t.Fatalf("compile schema %s: %v", path, err)
	}
	return s
}

// validate checks one JSON document against s.
func validate(s *jsonschema.Schema, data []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

// headerJSON turns NATS headers into the object the header schema describes:
// name to first value.
func headerJSON(t *testing.T, h nats.Header) []byte {
	t.Helper()
	m := make(map[string]string, len(h))
	for k := range h {
		m[k] = h.Get(k)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSchemasMatchRealMessages validates what a real client publishes and
// what a real engine stores (ok and error results, dead letters) against
// docs/schema, and checks that the schemas refuse what the worker would not
// produce or accept.
func TestSchemasMatchRealMessages(t *testing.T) {
	t.Parallel()
	reqSchema := compileSchema(t, "request.schema.json")
	resSchema := compileSchema(t, "result.schema.json")
	deadSchema := compileSchema(t, "dead-letter-headers.schema.json")

	e := setup(t, jetstream.Topology{})
	c := e.newClient(t, client.WithTopic("schema"))
	ctx := ctxFor(t, 30*time.Second)
	var pending []*client.Pending
	for _, r := range []wire.Request{
		{Input: "minimal"},
		{ID: "full", Input: "every field", Instructions: "be brief", Model: "m-1", MaxOutputTokens: 64, Metadata: json.RawMessage(`{"k":[1,2]}`)},
		{ID: "refused", Input: "unknown model", Model: "unknown-model"},
		{ID: "urgent", Input: "urgent one"},
	} {
		submit := c.Submit
		if r.ID == "urgent" {
			submit = c.SubmitUrgent
		}
		p, err := submit(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, p)
	}
	// Requests the worker dead-letters at once, published without a client.
	for _, body := range []string{`not json`, `{"id":"no-input"}`} {
		if err := e.nc.Publish("ai.requests.schema", []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	jetstreamtest.Eventually(t, 10*time.Second, "requests stored", func() bool {
		return jetstreamtest.Count(t, e.js, e.topo.RequestStream) == 6
	})
	var valid, invalid int
	for _, m := range jetstreamtest.Messages(t, e.js, e.topo.RequestStream) {
		err := validate(reqSchema, m.Data)
		if fromClient := m.Header.Get(wire.HeaderReplyTo) != ""; fromClient {
			valid++
			if err != nil {
				t.Errorf("request %s does not match the schema: %v", m.Data, err)
			}
		} else {
			invalid++
			if err == nil {
				t.Errorf("request %s matches the schema; the worker refuses it", m.Data)
			}
		}
	}
	if valid != 4 || invalid != 2 {
		t.Fatalf("%d client requests and %d raw ones, want 4 and 2", valid, invalid)
	}

	e.start(t, engineConfig())
	for _, p := range pending {
		_, _ = p.Wait(ctx) // ok or ErrFailed; the stream is what is checked
	}
	jetstreamtest.Eventually(t, 10*time.Second, "every result and dead letter stored", func() bool {
		return jetstreamtest.Count(t, e.js, e.topo.ResultStream) == 6 && jetstreamtest.Count(t, e.js, e.topo.DeadStream) == 3
	})
	statuses := map[string]int{}
	for _, m := range jetstreamtest.Messages(t, e.js, e.topo.ResultStream) {
		if err := validate(resSchema, m.Data); err != nil {
			t.Errorf("result on %s does not match the schema: %v\n%s", m.Subject, err, m.Data)
		}
		var r wire.Result
		_ = json.Unmarshal(m.Data, &r)
		statuses[r.Status]++
	}
	if statuses[wire.StatusOK] != 3 || statuses[wire.StatusError] != 3 {
		t.Errorf("result statuses %v, want 3 ok and 3 error", statuses)
	}
	withReply := 0
	for _, m := range jetstreamtest.Messages(t, e.js, e.topo.DeadStream) {
		if err := validate(deadSchema, headerJSON(t, m.Header)); err != nil {
			t.Errorf("dead letter headers %v do not match the schema: %v", m.Header, err)
		}
		if m.Header.Get(wire.HeaderReplyTo) != "" {
			withReply++
		}
	}
	if withReply != 1 {
		t.Errorf("%d dead letters with Batch-Reply-To, want 1 (the refused model)", withReply)
	}

	// The schemas are not vacuous.
	refused := []struct {
		name   string
		schema *jsonschema.Schema
		doc    string
	}{
		{"request with an unknown field", reqSchema, `{"input":"x","instruction":"typo"}`},
		{"request with blank input", reqSchema, `{"input":"  "}`},
		{"request with negative max tokens", reqSchema, `{"input":"x","max_output_tokens":-1}`},
		{"result with an unknown status", resSchema, `{"id":"a","status":"maybe","usage":{"input_tokens":0,"output_tokens":0},"batch":{"size":1},"queued_ms":0,"attempts":1}`},
		{"error result without error", resSchema, `{"id":"a","status":"error","usage":{"input_tokens":0,"output_tokens":0},"batch":{"size":0},"queued_ms":0,"attempts":1}`},
		{"error result with output", resSchema, `{"id":"a","status":"error","error":"x","output":"y","usage":{"input_tokens":0,"output_tokens":0},"batch":{"size":0},"queued_ms":0,"attempts":1}`},
		{"ok result with error", resSchema, `{"id":"a","status":"ok","error":"x","usage":{"input_tokens":0,"output_tokens":0},"batch":{"size":1},"queued_ms":0,"attempts":1}`},
		{"result without usage", resSchema, `{"id":"a","status":"ok","batch":{"size":1},"queued_ms":0,"attempts":1}`},
		{"dead letter without error", deadSchema, `{"Nats-Msg-Id":"dead:S:1","Batch-Attempts":"1","Batch-Subject":"ai.requests.x","Batch-Stream-Seq":"1"}`},
		{"dead letter with zero attempts", deadSchema, `{"Nats-Msg-Id":"dead:S:1","Batch-Error":"e","Batch-Attempts":"0","Batch-Subject":"ai.requests.x","Batch-Stream-Seq":"1"}`},
		{"dead letter with a wildcard subject", deadSchema, `{"Nats-Msg-Id":"dead:S:1","Batch-Error":"e","Batch-Attempts":"1","Batch-Subject":"ai.requests.*","Batch-Stream-Seq":"1"}`},
	}
	for _, tc := range refused {
		if err := validate(tc.schema, []byte(tc.doc)); err == nil {
			t.Errorf("%s: the schema accepts %s", tc.name, tc.doc)
		}
	}
}
