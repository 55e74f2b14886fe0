package anthropic_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/anthropic"
	"github.com/aibatch/aibatch/provider/anthropictest"
)

// combinedLines makes lines of the given sizes, keyed as
// provider.CombinedKey says, over the inputs "l<n> i<i>".
func combinedLines(sizes ...int) []provider.Batch {
	lines := make([]provider.Batch, len(sizes))
	for n, size := range sizes {
		lines[n] = provider.Batch{ID: "batch-7", Model: "claude-sonnet-test", Instructions: longInstructions}
		for i := range size {
			lines[n].Requests = append(lines[n].Requests, provider.Request{Key: provider.CombinedKey(n, i), Input: fmt.Sprintf("l%d i%d", n, i)})
		}
	}
	return lines
}

func TestCombinedMessageBatchAnswersEveryLine(t *testing.T) {
	t.Parallel()
	srv, p := setup(t, anthropic.Config{Mode: anthropic.ModeAsync})
	lines := combinedLines(3, 3)
	id, err := p.SubmitCombinedJob(t.Context(), lines)
	if err != nil {
		t.Fatalf("SubmitCombinedJob: %v", err)
	}
	reqs := srv.BatchRequests(id)
	if len(reqs) != 2 || reqs[0].CustomID != "c0_3" || reqs[1].CustomID != "c1_3" {
		t.Fatalf("batch requests %+v, want c0_3 and c1_3", reqs)
	}
	for _, r := range reqs {
		if len(r.IDEnum) != 3 || r.ToolChoice == nil || r.ToolChoice.Name != anthropictest.ToolName || !r.CacheControl {
			t.Fatalf("request %s is not the combined call with a cached prefix: %+v", r.CustomID, r.Request)
		}
	}
	srv.CompleteBatches()
	st := pollDone(t, p, id)
	got := map[string]provider.Result{}
	var usage provider.Usage
	for _, r := range st.Results {
		got[r.Key] = r
		usage = usage.Add(r.Usage)
	}
	for _, line := range lines {
		for _, r := range line.Requests {
			if res := got[r.Key]; res.Err != nil || res.Output != anthropictest.Answer(r.Input) {
				t.Fatalf("%s: %+v", r.Key, res)
			}
		}
	}
	// One line writes the shared prefix, the other reads it.
	if usage.CacheWriteTokens == 0 || usage.CachedInputTokens == 0 {
		t.Errorf("usage %+v: want a cache write and a cache read", usage)
	}
}

func TestCombinedMessageBatchLinesCarryTheSamplingParameters(t *testing.T) {
	t.Parallel()
	srv, p := setup(t, anthropic.Config{Mode: anthropic.ModeAsync})
	temperature, topP := 0.3, 0.8
	lines := combinedLines(2, 2)
	for n := range lines {
		lines[n].Params = provider.Params{Temperature: &temperature, TopP: &topP}
	}
	id, err := p.SubmitCombinedJob(t.Context(), lines)
	if err != nil {
		t.Fatalf("SubmitCombinedJob: %v", err)
	}
	for _, r := range srv.BatchRequests(id) {
		if r.Temperature == nil || *r.Temperature != temperature || r.TopP == nil || *r.TopP != topP {
			t.Fatalf("request %s: temperature %v, top_p %v; want %v and %v", r.CustomID, r.Temperature, r.TopP, temperature, topP)
		}
	}
}

func TestCombinedMessageBatchLinesThatFailHaveBatchScope(t *testing.T) {
	t.Parallel()
	t.Run("cut off", func(t *testing.T) {
		t.Parallel()
		srv, p := setup(t, anthropic.Config{Mode: anthropic.ModeAsync})
		srv.SetOutputCap(2)
		id, err := p.SubmitCombinedJob(t.Context(), combinedLines(4))
		if err != nil {
			t.Fatal(err)
		}
		srv.CompleteBatches()
		var answered, cut int
		for _, r := range pollDone(t, p, id).Results {
			switch {
			case r.Err == nil:
				answered++
			case provider.ScopeOf(r.Err) == provider.ScopeBatch && errors.Is(r.Err, provider.ErrCutOff):
				cut++
			default:
				t.Fatalf("result %+v", r)
			}
		}
		if answered == 0 || cut == 0 || answered+cut != 4 {
			t.Fatalf("%d answered, %d cut off; want both, 4 in all", answered, cut)
		}
	})
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		srv, p := setup(t, anthropic.Config{Mode: anthropic.ModeAsync})
		srv.RefuseInput("l1 i0")
		id, err := p.SubmitCombinedJob(t.Context(), combinedLines(2, 2))
		if err != nil {
			t.Fatal(err)
		}
		srv.CompleteBatches()
		st := pollDone(t, p, id)
		for _, r := range st.Results {
			inLine1 := strings.HasPrefix(r.Key, "1-")
			if inLine1 != (r.Err != nil) || (r.Err != nil && (provider.ScopeOf(r.Err) != provider.ScopeBatch || !errors.Is(r.Err, provider.ErrRefused))) {
				t.Fatalf("result %+v: want line 1 refused with batch scope, line 0 answered", r)
			}
		}
		if len(st.Results) != 4 {
			t.Fatalf("%d results", len(st.Results))
		}
	})
}
