package openai

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/aibatch/aibatch/provider"
)

// TestLineResult covers output-file lines the fake does not write.
func TestLineResult(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		line       string
		wantOK     bool
		wantOutput string
		wantErr    string // "", "permanent" or "transient"
		wantStatus int
	}{
		{"answered", `{"custom_id":"k","response":{"status_code":200,"body":{"object":"chat.completion","choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}},"error":null}`,
			true, "hi", "", 0},
		{"cut off by length is an answer", `{"custom_id":"k","response":{"status_code":200,"body":{"choices":[{"message":{"content":"hi"},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}}}`,
			true, "hi", "", 0},
		{"refusal", `{"custom_id":"k","response":{"status_code":200,"body":{"choices":[{"message":{"content":null,"refusal":"no"},"finish_reason":"stop"}]}}}`,
			true, "", "permanent", 0},
		{"no choices", `{"custom_id":"k","response":{"status_code":200,"body":{"choices":[]}}}`, true, "", "transient", 0},
		{"body not an answer", `{"custom_id":"k","response":{"status_code":200,"body":"oops"}}`, true, "", "transient", 0},
		{"error status with OpenAI's error body", `{"custom_id":"k","response":{"status_code":400,"body":{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}}}`,
			true, "", "permanent", 400},
		{"error status without a body", `{"custom_id":"k","response":{"status_code":502,"body":null}}`, true, "", "transient", 502},
		{"expired", `{"custom_id":"k","response":null,"error":{"code":"batch_expired","message":"This request could not be executed before the completion window expired."}}`,
			false, "", "", 0},
		{"cancelled", `{"custom_id":"k","response":null,"error":{"code":"batch_cancelled","message":"cancelled"}}`, false, "", "", 0},
		{"other error line", `{"custom_id":"k","response":null,"error":{"code":"server_error","message":"boom"}}`, true, "", "transient", 0},
		{"neither response nor error", `{"custom_id":"k"}`, true, "", "transient", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var line outputLine
			if err := json.Unmarshal([]byte(tt.line), &line); err != nil {
				t.Fatal(err)
			}
			r, ok := lineResult(line)
			if ok != tt.wantOK {
				t.Fatalf("lineResult ok = %v, want %v (result %+v)", ok, tt.wantOK, r)
			}
			if !ok {
				return
			}
			if r.Key != "k" || r.Output != tt.wantOutput {
				t.Errorf("result %+v, want key k, output %q", r, tt.wantOutput)
			}
			switch tt.wantErr {
			case "":
				if r.Err != nil {
					t.Errorf("Err = %v, want none", r.Err)
				}
				if r.Usage != (provider.Usage{InputTokens: 3, OutputTokens: 1}) {
					t.Errorf("Usage = %+v, want the line's 3/1 tokens", r.Usage)
				}
			default:
				var pe *provider.Error
				if !errors.As(r.Err, &pe) || pe.Permanent != (tt.wantErr == "permanent") || pe.StatusCode != tt.wantStatus {
					t.Errorf("Err = %#v, want a %s *provider.Error with StatusCode %d", r.Err, tt.wantErr, tt.wantStatus)
				}
			}
		})
	}
}
