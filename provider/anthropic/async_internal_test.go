package anthropic

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/anthropics/anthropic-sdk-go"

	"github.com/aibatch/aibatch/provider"
)

// TestResultOf covers result lines the fake does not write.
func TestResultOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		line       string
		wantOK     bool
		wantOutput string
		wantErr    string // "", "permanent" or "transient"
		wantUsage  provider.Usage
	}{
		{"succeeded", `{"custom_id":"k","result":{"type":"succeeded","message":{"id":"m","type":"message","role":"assistant","model":"c","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}],"stop_reason":"end_turn","usage":{"input_tokens":2,"cache_read_input_tokens":1,"output_tokens":1}}}}`,
			true, "hi there", "", provider.Usage{InputTokens: 3, CachedInputTokens: 1, OutputTokens: 1}},
		{"cut off by max_tokens is an answer", `{"custom_id":"k","result":{"type":"succeeded","message":{"content":[{"type":"text","text":"hi there"}],"stop_reason":"max_tokens","usage":{"input_tokens":3,"output_tokens":1}}}}`,
			true, "hi there", "", provider.Usage{InputTokens: 3, OutputTokens: 1}},
		{"refusal", `{"custom_id":"k","result":{"type":"succeeded","message":{"content":[],"stop_reason":"refusal"}}}`, true, "", "permanent", provider.Usage{}},
		{"no text", `{"custom_id":"k","result":{"type":"succeeded","message":{"content":[],"stop_reason":"end_turn"}}}`, true, "", "transient", provider.Usage{}},
		{"errored", `{"custom_id":"k","result":{"type":"errored","error":{"type":"error","error":{"type":"invalid_request_error","message":"bad"},"request_id":null}}}`, true, "", "permanent", provider.Usage{}},
		{"errored overloaded", `{"custom_id":"k","result":{"type":"errored","error":{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}}}`, true, "", "transient", provider.Usage{}},
		{"canceled", `{"custom_id":"k","result":{"type":"canceled"}}`, false, "", "", provider.Usage{}},
		{"expired", `{"custom_id":"k","result":{"type":"expired"}}`, false, "", "", provider.Usage{}},
		{"unknown type", `{"custom_id":"k","result":{"type":"postponed"}}`, true, "", "transient", provider.Usage{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var line anthropic.MessageBatchIndividualResponse
			if err := json.Unmarshal([]byte(tt.line), &line); err != nil {
				t.Fatal(err)
			}
			r, ok := resultOf(line)
			if ok != tt.wantOK {
				t.Fatalf("resultOf ok = %v, want %v (result %+v)", ok, tt.wantOK, r)
			}
			if !ok {
				return
			}
			if r.Key != "k" || r.Output != tt.wantOutput {
				t.Errorf("result %+v, want key k, output %q", r, tt.wantOutput)
			}
			if tt.wantErr == "" {
				if r.Err != nil {
					t.Errorf("Err = %v, want none", r.Err)
				}
				if r.Usage != tt.wantUsage {
					t.Errorf("Usage = %+v, want %+v (cache reads counted in the input and apart)", r.Usage, tt.wantUsage)
				}
				return
			}
			var pe *provider.Error
			if !errors.As(r.Err, &pe) || pe.Permanent != (tt.wantErr == "permanent") {
				t.Errorf("Err = %v, want a %s *provider.Error", r.Err, tt.wantErr)
			}
		})
	}
}
