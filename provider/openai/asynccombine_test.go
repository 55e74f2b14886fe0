package openai_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/openaitest"
)

// combinedLines makes lines of the given sizes, keyed as
// provider.CombinedKey says, over the inputs "l<n> i<i>".
func combinedLines(sizes ...int) []provider.Batch {
	lines := make([]provider.Batch, len(sizes))
	for n, size := range sizes {
		lines[n] = provider.Batch{ID: "batch-7", Model: "gpt-test", Instructions: longInstructions}
		for i := range size {
			lines[n].Requests = append(lines[n].Requests, provider.Request{Key: provider.CombinedKey(n, i), Input: fmt.Sprintf("l%d i%d", n, i)})
		}
	}
	return lines
}

func TestCombinedJobAnswersEveryLine(t *testing.T) {
	t.Parallel()
	srv, p := asyncSetup(t)
	lines := combinedLines(3, 2)
	id, err := p.SubmitCombinedJob(t.Context(), lines)
	if err != nil {
		t.Fatalf("SubmitCombinedJob: %v", err)
	}
	reqs := srv.JobRequests(id)
	if len(reqs) != 2 || reqs[0].CustomID != "c0_3" || reqs[1].CustomID != "c1_2" {
		t.Fatalf("job lines %+v, want c0_3 and c1_2", reqs)
	}
	for _, r := range reqs {
		if len(r.IDEnum) == 0 || r.PromptCacheKey == "" || r.PromptCacheKey != reqs[0].PromptCacheKey || !strings.HasPrefix(r.Messages[0].Content, longInstructions) {
			t.Fatalf("line %s is not the combined call with the shared prefix: %+v", r.CustomID, r.Request)
		}
	}
	srv.CompleteJobs()
	st := pollDone(t, p, id)
	got := map[string]provider.Result{}
	var usage provider.Usage
	for _, r := range st.Results {
		got[r.Key] = r
		usage = usage.Add(r.Usage)
	}
	for _, line := range lines {
		for _, r := range line.Requests {
			if res := got[r.Key]; res.Err != nil || res.Output != openaitest.Answer(r.Input) {
				t.Fatalf("%s: %+v", r.Key, res)
			}
		}
	}
	if len(got) != 5 || st.Failed {
		t.Fatalf("%d results, failed %v", len(got), st.Failed)
	}
	// The second line repeats the first one's prefix.
	if usage.CachedInputTokens == 0 {
		t.Errorf("usage %+v: no cached tokens read back", usage)
	}
}

func TestCombinedJobLinesCarryTheSamplingParameters(t *testing.T) {
	t.Parallel()
	srv, p := asyncSetup(t)
	temperature, topP, seed := 0.3, 0.8, int64(7)
	lines := combinedLines(2, 2)
	for n := range lines {
		lines[n].Params = provider.Params{Temperature: &temperature, TopP: &topP, Seed: &seed}
	}
	id, err := p.SubmitCombinedJob(t.Context(), lines)
	if err != nil {
		t.Fatalf("SubmitCombinedJob: %v", err)
	}
	for _, r := range srv.JobRequests(id) {
		if r.Temperature == nil || *r.Temperature != temperature || r.TopP == nil || *r.TopP != topP || r.Seed == nil || *r.Seed != seed {
			t.Fatalf("line %s: temperature %v, top_p %v, seed %v; want %v, %v, %v", r.CustomID, r.Temperature, r.TopP, r.Seed, temperature, topP, seed)
		}
	}
}

func TestCombinedJobLinesThatFailHaveBatchScope(t *testing.T) {
	t.Parallel()
	t.Run("cut off", func(t *testing.T) {
		t.Parallel()
		srv, p := asyncSetup(t)
		srv.SetOutputCap(2)
		id, err := p.SubmitCombinedJob(t.Context(), combinedLines(4))
		if err != nil {
			t.Fatal(err)
		}
		srv.CompleteJobs()
		st := pollDone(t, p, id)
		var answered, cut int
		for _, r := range st.Results {
			switch {
			case r.Err == nil:
				answered++
			case provider.ScopeOf(r.Err) == provider.ScopeBatch && errors.Is(r.Err, provider.ErrCutOff):
				cut++
			default:
				t.Fatalf("result %+v", r)
			}
		}
		if answered == 0 || answered+cut != 4 || cut == 0 {
			t.Fatalf("%d answered, %d cut off, want both and 4 in all", answered, cut)
		}
	})
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		srv, p := asyncSetup(t)
		srv.RefuseInput("l0 i1")
		id, err := p.SubmitCombinedJob(t.Context(), combinedLines(3, 1))
		if err != nil {
			t.Fatal(err)
		}
		srv.CompleteJobs()
		st := pollDone(t, p, id)
		for _, r := range st.Results {
			inLine0 := strings.HasPrefix(r.Key, "0-")
			if inLine0 != (r.Err != nil) || (r.Err != nil && (provider.ScopeOf(r.Err) != provider.ScopeBatch || !errors.Is(r.Err, provider.ErrRefused))) {
				t.Fatalf("result %+v: want line 0 refused with batch scope, line 1 answered", r)
			}
		}
		if len(st.Results) != 4 {
			t.Fatalf("%d results", len(st.Results))
		}
	})
	t.Run("keys not laid out as CombinedKey", func(t *testing.T) {
		t.Parallel()
		_, p := asyncSetup(t)
		lines := combinedLines(2)
		lines[0].Requests[1].Key = "x"
		if _, err := p.SubmitCombinedJob(t.Context(), lines); !provider.IsPermanent(err) {
			t.Fatalf("SubmitCombinedJob: %v, want a permanent error", err)
		}
	})
}
