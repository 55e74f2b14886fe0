package wire_test

import (
	"fmt"

	"github.com/aibatch/aibatch/wire"
)

// ExampleAppendResult encodes a result into a buffer sized for it, as the
// worker does before publishing it.
func ExampleAppendResult() {
	r := wire.Result{
		ID: "req-1", Status: wire.StatusOK, Output: "42", FinishReason: "stop", Model: "gpt-4o-mini",
		Usage: wire.Usage{InputTokens: 12, OutputTokens: 1},
		Batch: wire.BatchInfo{ID: "b-1", Size: 50, Trigger: wire.TriggerSize},
	}
	body, err := wire.AppendResult(make([]byte, 0, wire.EncodedResultSize(&r)), &r)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(body))
	// Output:
	// {"id":"req-1","status":"ok","output":"42","finish_reason":"stop","model":"gpt-4o-mini","usage":{"input_tokens":12,"output_tokens":1},"batch":{"id":"b-1","size":50,"trigger":"size"},"queued_ms":0,"attempts":0}
}
