package jetstream_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

// combinedLineID is the custom_id of a combined job line.
var combinedLineID = regexp.MustCompile(`^c\d+_\d+$`)

// ASYNC_COMBINE with wire format 1.1: only requests whose answers can be
// read back from a combined line go in one. Embeddings and requests with
// provider options are never in a job; structured output and stop
// sequences go in plain lines, which carry them to the API.
func TestAsyncCombineKeepsWhatCannotBeCombinedOutOfCombinedLines(t *testing.T) {
	t.Parallel()
	b := setup(t, openaitest.WithCompleteAfter(1))
	strict := true
	format := &wire.ResponseFormat{Type: wire.FormatJSONSchema, JSONSchema: &wire.JSONSchema{Name: "verdict", Strict: &strict,
		Schema: json.RawMessage(`{"type":"object","properties":{"verdict":{"type":"string"}},"required":["verdict"],"additionalProperties":false}`)}}
	var reqs []wire.Request
	for i := range 4 {
		reqs = append(reqs, wire.Request{ID: "plain-" + strconv.Itoa(i), Input: "plain " + strconv.Itoa(i)})
	}
	reqs = append(reqs,
		wire.Request{ID: "e-0", Kind: wire.KindEmbedding, Input: "embed 0"},
		wire.Request{ID: "e-1", Kind: wire.KindEmbedding, Input: "embed 1"},
		wire.Request{ID: "opts", Input: "with options", ProviderOptions: json.RawMessage(`{"logprobs":true}`)},
		wire.Request{ID: "json-0", Input: "judge 0", ResponseFormat: format},
		wire.Request{ID: "json-1", Input: "judge 1", ResponseFormat: format},
		// The fake's answer is "processed: cut here"; "here" stops it.
		wire.Request{ID: "stop", Input: "cut here", Stop: []string{"here"}},
	)
	var bodies []req
	for _, r := range reqs {
		body, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, req{subject: "ai.requests.t", body: string(body)})
	}
	b.publish(t, bodies...)
	cfg := asyncConfig()
	cfg.Interval = 200 * time.Millisecond // nothing fills a group: the interval sends them
	b.startCombinedAsync(t, cfg)
	got := b.waitResults(t, len(reqs), 20*time.Second)

	for i := range 4 {
		if r := got["plain-"+strconv.Itoa(i)]; r.Status != wire.StatusOK || r.Output != openaitest.Answer("plain "+strconv.Itoa(i)) {
			t.Fatalf("plain-%d: %+v", i, r.Result)
		}
	}
	for i := range 2 {
		in := "embed " + strconv.Itoa(i)
		if r := got["e-"+strconv.Itoa(i)]; r.Status != wire.StatusOK || !slices.Equal(r.Embedding, openaitest.Vector(in, 0)) {
			t.Fatalf("e-%d: status %s, %d numbers, error %q; want the vector of %q", i, r.Status, len(r.Embedding), r.Error, in)
		}
	}
	if r := got["opts"]; r.Status != wire.StatusOK || len(r.Message) == 0 {
		t.Fatalf("opts: %+v; want an answer with the message as the API wrote it", r.Result)
	}
	for i := range 2 {
		var v struct{ Verdict string }
		if r := got["json-"+strconv.Itoa(i)]; r.Status != wire.StatusOK || json.Unmarshal([]byte(r.Output), &v) != nil || v.Verdict == "" {
			t.Fatalf("json-%d: %+v; want a JSON verdict", i, r.Result)
		}
	}
	if r := got["stop"]; r.Status != wire.StatusOK || r.Output != "processed: cut " {
		t.Fatalf("stop: %+v; want the answer cut at the stop sequence", r.Result)
	}

	// The jobs: one combined line of the four plain requests, a plain line
	// each for the structured ones and the one with stop sequences.
	var combined, plain []openaitest.JobRequest
	for _, id := range b.fake.JobIDs() {
		for _, l := range b.fake.JobRequests(id) {
			if combinedLineID.MatchString(l.CustomID) {
				combined = append(combined, l)
			} else {
				plain = append(plain, l)
			}
		}
	}
	if len(combined) != 1 || combined[0].CustomID != "c0_4" {
		t.Fatalf("combined lines %+v; want one of the 4 plain requests", combined)
	}
	if len(plain) != 3 {
		t.Fatalf("%d plain lines, want 3 (two structured, one with stop sequences)", len(plain))
	}
	for _, l := range plain {
		if len(l.ResponseFormat) == 0 && len(l.Stop) == 0 {
			t.Fatalf("plain line %s carries neither response_format nor stop: %s", l.CustomID, l.Body)
		}
	}
	// Called at once: the embeddings (one call) and the request with options.
	if n := b.fake.EmbeddingCalls(); n != 1 {
		t.Fatalf("%d embeddings calls, want 1", n)
	}
	if chat := b.fake.Requests(); len(chat) != 1 || !strings.Contains(string(chat[0].Body), `"logprobs":true`) {
		t.Fatalf("%d synchronous chat calls, want the one with options alone", len(chat))
	}
	if dead := jetstreamtest.Count(t, b.js, b.topo.DeadStream); dead != 0 {
		t.Fatalf("%d dead letters", dead)
	}
	b.waitDrained(t, 5*time.Second)
}
