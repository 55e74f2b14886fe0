package batch_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/batch/batchtest"
	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// Wire format 1.1 in the engine: what shares a call (the group key holds
// every answer-changing parameter), what goes alone, and embeddings.

func publishRequest(t *testing.T, b *batchtest.Broker, r wire.Request) {
	t.Helper()
	body, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	mustPublish(t, b, reqSubject, string(body), nil)
}

func ptr[T any](v T) *T { return &v }

func TestEngineSharesCallsOnlyAmongEqualParameters(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		schema := func(raw string) *wire.ResponseFormat {
			return &wire.ResponseFormat{Type: wire.FormatJSONSchema, JSONSchema: &wire.JSONSchema{Name: "s", Schema: json.RawMessage(raw)}}
		}
		variants := []struct {
			name string
			req  wire.Request
		}{
			{"plain", wire.Request{}},
			{"cold", wire.Request{Temperature: ptr(0.2)}},
			{"hot", wire.Request{Temperature: ptr(0.9)}},
			{"seeded", wire.Request{Temperature: ptr(0.2), Seed: ptr(int64(7))}},
			{"stopped", wire.Request{Stop: []string{"\n"}}},
			{"schema", wire.Request{ResponseFormat: schema(`{"type":"object","properties":{"a":{"type":"string"}},"required":["a"],"additionalProperties":false}`)}},
			// The same schema, spaced and ordered otherwise: the same group.
			{"schema-again", wire.Request{ResponseFormat: schema(`{ "additionalProperties": false, "required": ["a"], "properties": {"a": {"type": "string"}}, "type": "object" }`)}},
			{"object", wire.Request{ResponseFormat: &wire.ResponseFormat{Type: wire.FormatJSONObject}}},
		}
		for _, v := range variants {
			for i := range 5 {
				r := v.req
				r.ID, r.Input = fmt.Sprintf("%s-%d", v.name, i), fmt.Sprintf("%s %d", v.name, i)
				publishRequest(t, b, r)
			}
		}
		startEngine(t, b, p, engineConfig(b))
		time.Sleep(batch.DefaultMaxWait + time.Second)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 40 || len(b.DeadLetters()) != 0 {
			t.Fatalf("%d results, %d dead letters", len(got), len(b.DeadLetters()))
		}
		for id, r := range got {
			if r.Status != wire.StatusOK || r.FinishReason != "stop" {
				t.Fatalf("%s: %+v", id, r)
			}
		}
		batches := p.Batches()
		if len(batches) != 7 {
			t.Fatalf("%d calls, want 7: one per distinct set of parameters", len(batches))
		}
		for _, call := range batches {
			first := variantOf(call.Requests[0].Input)
			for _, r := range call.Requests {
				if v := variantOf(r.Input); v != first && !(v == "schema-again" && first == "schema" || v == "schema" && first == "schema-again") {
					t.Fatalf("one call carried %q and %q", first, v)
				}
			}
			want := variants[slices.IndexFunc(variants, func(v struct {
				name string
				req  wire.Request
			}) bool {
				return v.name == first
			})].req
			if !sameParams(call.Params, want) || (call.Format == nil) != (want.ResponseFormat == nil) {
				t.Fatalf("call of %q: params %+v, format %v", first, call.Params, call.Format)
			}
		}
	})
}

// variantOf is the variant name of an input "<name> <i>".
func variantOf(input string) string {
	for i := len(input) - 1; i >= 0; i-- {
		if input[i] == ' ' {
			return input[:i]
		}
	}
	return input
}

func sameParams(p provider.Params, r wire.Request) bool {
	eqF := func(a, b *float64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
	return eqF(p.Temperature, r.Temperature) && eqF(p.TopP, r.TopP) &&
		(p.Seed == nil) == (r.Seed == nil) && (p.Seed == nil || *p.Seed == *r.Seed) && slices.Equal(p.Stop, r.Stop)
}

func TestEngineSendsAloneWhatCannotBeCombined(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		image := json.RawMessage(`[{"type":"text","text":"what is this"},{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]`)
		for i := range 3 {
			publishRequest(t, b, wire.Request{ID: "tools-" + strconv.Itoa(i), Input: "tools " + strconv.Itoa(i),
				ProviderOptions: json.RawMessage(`{"tools":[{"type":"function","function":{"name":"f"}}]}`)})
			publishRequest(t, b, wire.Request{ID: "image-" + strconv.Itoa(i), Messages: []wire.Message{{Role: wire.RoleUser, Content: image}}})
		}
		for i := range 10 {
			publishRequest(t, b, wire.Request{ID: "plain-" + strconv.Itoa(i), Input: "plain " + strconv.Itoa(i)})
		}
		startEngine(t, b, p, engineConfig(b))
		synctest.Wait()
		// The six that go alone go at once: their call is full at one.
		got := results(t, b)
		if len(got) != 6 || p.Calls() != 6 {
			t.Fatalf("%d results in %d calls before MaxWait, want the 6 sent alone", len(got), p.Calls())
		}
		for id, r := range got {
			if r.Status != wire.StatusOK || r.Batch.Size != 1 || r.Batch.Trigger != wire.TriggerSize {
				t.Fatalf("%s: %+v", id, r)
			}
		}
		for _, call := range p.Batches() {
			r := call.Requests[0]
			if len(call.Requests) != 1 || (r.Options == nil) == (r.Messages == nil) {
				t.Fatalf("call %+v: want one request with its options or its messages", call)
			}
		}
		time.Sleep(batch.DefaultMaxWait + time.Second)
		synctest.Wait()
		if got := results(t, b); len(got) != 16 || p.Calls() != 7 || got["plain-3"].Batch.Size != 10 {
			t.Fatalf("%d results in %d calls; plain-3 %+v", len(got), p.Calls(), got["plain-3"])
		}
	})
}

func TestEngineCarriesConversationsAsMessages(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		publishRequest(t, b, wire.Request{ID: "lone", Messages: []wire.Message{wire.TextMessage(wire.RoleUser, "lone question")}})
		conversation := []wire.Message{
			wire.TextMessage(wire.RoleUser, "first"), wire.TextMessage(wire.RoleAssistant, "answer"), wire.TextMessage(wire.RoleUser, "follow-up"),
		}
		publishRequest(t, b, wire.Request{ID: "talk", Messages: conversation})
		publishRequest(t, b, wire.Request{ID: "input", Input: "plain"})
		startEngine(t, b, p, engineConfig(b))
		time.Sleep(batch.DefaultMaxWait + time.Second)
		synctest.Wait()
		batches := p.Batches()
		if len(batches) != 1 || len(batches[0].Requests) != 3 {
			t.Fatalf("calls %+v, want the three combined in one", batches)
		}
		reqs := batches[0].Requests
		if reqs[0].Input != "lone question" || reqs[0].Messages != nil {
			t.Errorf("a lone user message travels as input: %+v", reqs[0])
		}
		if reqs[1].Input != "" || len(reqs[1].Messages) != 3 {
			t.Errorf("a conversation travels as messages: %+v", reqs[1])
		}
		got := results(t, b)
		if got["talk"].Output != batchtest.Echo("follow-up") || got["lone"].Output != batchtest.Echo("lone question") {
			t.Errorf("results %+v", got)
		}
	})
}

func TestEngineBatchesEmbeddingsNatively(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		for i := range 250 {
			publishRequest(t, b, wire.Request{ID: "e-" + strconv.Itoa(i), Kind: wire.KindEmbedding, Input: "text " + strconv.Itoa(i), Dimensions: 8})
		}
		publishRequest(t, b, wire.Request{ID: "chat", Input: "a question"})
		cfg := engineConfig(b)
		cfg.EmbeddingMaxInputs = 100
		startEngine(t, b, p, cfg)
		synctest.Wait()
		if got := results(t, b); len(got) != 200 || p.Calls() != 2 {
			t.Fatalf("%d results in %d calls, want two full embeddings calls of 100 at once", len(got), p.Calls())
		}
		time.Sleep(batch.DefaultMaxWait + time.Second)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 251 || len(b.DeadLetters()) != 0 {
			t.Fatalf("%d results, %d dead letters", len(got), len(b.DeadLetters()))
		}
		for i := range 250 {
			r := got["e-"+strconv.Itoa(i)]
			if r.Status != wire.StatusOK || !slices.Equal(r.Embedding, batchtest.Vector("text "+strconv.Itoa(i))) ||
				r.Output != "" || r.FinishReason != "" || r.Model != batch.DefaultEmbeddingModel {
				t.Fatalf("e-%d: %+v", i, r)
			}
		}
		if r := got["chat"]; r.Model != "test-model" || r.Embedding != nil || r.Output != batchtest.Echo("a question") {
			t.Fatalf("chat: %+v", r)
		}
		for _, call := range p.Batches() {
			if call.Kind == wire.KindEmbedding && (call.Dimensions != 8 || call.MaxOutputTokens != 0 || call.Model != batch.DefaultEmbeddingModel) {
				t.Fatalf("embedding call %+v", call)
			}
		}
	})
}

// TestEngineEndsAnAnswerThatCannotBeEncoded: a vector holding NaN has no
// JSON form; its request ends with an error result and a dead letter, and
// the rest of the call is answered.
func TestEngineEndsAnAnswerThatCannotBeEncoded(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		p.SetVector(func(input string) []float32 {
			if input == "text 2" {
				return []float32{0.5, float32(math.NaN())}
			}
			return batchtest.Vector(input)
		})
		for i := range 4 {
			publishRequest(t, b, wire.Request{ID: "e-" + strconv.Itoa(i), Kind: wire.KindEmbedding, Input: "text " + strconv.Itoa(i)})
		}
		cfg := engineConfig(b)
		cfg.EmbeddingMaxInputs = 4
		startEngine(t, b, p, cfg)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 4 || len(b.DeadLetters()) != 1 || b.Requests() != 0 {
			t.Fatalf("%d results, %d dead letters, %d left", len(got), len(b.DeadLetters()), b.Requests())
		}
		if r := got["e-2"]; r.Status != wire.StatusError || !strings.Contains(r.Error, "encode the provider's answer") || r.Embedding != nil {
			t.Fatalf("e-2: %+v", r)
		}
		for _, id := range []string{"e-0", "e-1", "e-3"} {
			if r := got[id]; r.Status != wire.StatusOK || len(r.Embedding) == 0 {
				t.Fatalf("%s: %+v", id, r)
			}
		}
	})
}

func TestEngineEndsAtOnceWhatTheProviderCannotServe(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		noEmbeddings := fmt.Errorf("%w: this provider has no embeddings API", provider.ErrUnsupported)
		p.RefuseKind(wire.KindEmbedding, noEmbeddings)
		for i := range 3 {
			publishRequest(t, b, wire.Request{ID: "e-" + strconv.Itoa(i), Kind: wire.KindEmbedding, Input: "text"})
		}
		publishRequest(t, b, wire.Request{ID: "chat", Input: "a question"})
		startEngine(t, b, p, engineConfig(b))
		synctest.Wait()
		got := results(t, b)
		if len(got) != 3 || len(b.DeadLetters()) != 3 || p.Calls() != 0 {
			t.Fatalf("%d results, %d dead letters, %d calls; want the 3 embeddings ended without a call", len(got), len(b.DeadLetters()), p.Calls())
		}
		for id, r := range got {
			if r.Status != wire.StatusError || r.Error != noEmbeddings.Error() || r.Batch.Size != 0 || r.Attempts != 1 {
				t.Fatalf("%s: %+v", id, r)
			}
		}
	})
}

func TestEngineEmbeddingOutageDefersWithoutDeadLetters(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		p.FailFor(20*time.Second, nil)
		for i := range 30 {
			publishRequest(t, b, wire.Request{ID: "e-" + strconv.Itoa(i), Kind: wire.KindEmbedding, Input: "text " + strconv.Itoa(i)})
		}
		cfg := engineConfig(b)
		cfg.EmbeddingMaxInputs = 10
		attempts := batchtest.NewAttemptStore()
		e, _ := startEngine(t, b, p, cfg, batch.WithAttemptStore(attempts))
		synctest.Wait()
		if s := e.Stats(); s.Deferred == 0 || len(b.Results()) != 0 || len(b.DeadLetters()) != 0 {
			t.Fatalf("during the outage: %d deferred, %d results, %d dead letters", s.Deferred, len(b.Results()), len(b.DeadLetters()))
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 30 || len(b.DeadLetters()) != 0 || b.Requests() != 0 {
			t.Fatalf("%d results, %d dead letters, %d left", len(got), len(b.DeadLetters()), b.Requests())
		}
		for id, r := range got {
			if r.Status != wire.StatusOK || r.Embedding == nil {
				t.Fatalf("%s: %+v", id, r)
			}
		}
		if attempts.Len() != 0 {
			t.Errorf("%d attempt records left", attempts.Len())
		}
	})
}

func TestEngineEmbeddingRejectedAloneEndsAlone(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		bad := &provider.Error{Permanent: true, Err: errors.New("input too long for the model")}
		p.FailItem("text 3", bad, -1)
		for i := range 8 {
			publishRequest(t, b, wire.Request{ID: "e-" + strconv.Itoa(i), Kind: wire.KindEmbedding, Input: "text " + strconv.Itoa(i)})
		}
		cfg := engineConfig(b)
		cfg.EmbeddingMaxInputs = 8
		startEngine(t, b, p, cfg)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 8 || len(b.DeadLetters()) != 1 || got["e-3"].Status != wire.StatusError {
			t.Fatalf("%d results, %d dead letters, e-3 %+v", len(got), len(b.DeadLetters()), got["e-3"])
		}
		for id, r := range got {
			if id != "e-3" && (r.Status != wire.StatusOK || r.Batch.Size != 8) {
				t.Fatalf("%s: %+v", id, r)
			}
		}
	})
}

func TestEngineAsyncSendsEmbeddingsAndOptionsAtOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := batchtest.NewBroker()
		api := &jobAPI{Provider: batchtest.NewProvider(), jobs: map[string]provider.Batch{}, finished: true}
		cfg := engineConfig(b)
		cfg.Async, cfg.MaxBatchSize, cfg.EmbeddingMaxInputs = true, 4, 2
		for i := range 4 {
			publishRequest(t, b, wire.Request{ID: "plain-" + strconv.Itoa(i), Input: "plain " + strconv.Itoa(i)})
		}
		publishRequest(t, b, wire.Request{ID: "e-0", Kind: wire.KindEmbedding, Input: "e 0"})
		publishRequest(t, b, wire.Request{ID: "e-1", Kind: wire.KindEmbedding, Input: "e 1"})
		publishRequest(t, b, wire.Request{ID: "tools", Input: "t", ProviderOptions: json.RawMessage(`{"tools":[]}`)})
		startEngine(t, b, api, cfg, batch.WithJobStore(batchtest.NewJobStore()))
		time.Sleep(batch.DefaultJobPollInterval + time.Second)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 7 || len(b.DeadLetters()) != 0 {
			t.Fatalf("%d results, %d dead letters", len(got), len(b.DeadLetters()))
		}
		if api.submitted() != 1 || len(api.jobs["job-1"].Requests) != 4 {
			t.Fatalf("%d jobs (%+v), want one of the 4 plain requests", api.submitted(), api.jobs)
		}
		var kinds []string
		for _, call := range api.Batches() {
			kinds = append(kinds, fmt.Sprintf("%s/%d", call.Kind, len(call.Requests)))
		}
		slices.Sort(kinds)
		// The synchronous calls: the embeddings, the request with options;
		// then the job's answers (PollJob answers through Complete).
		if want := []string{"/1", "/4", "embedding/2"}; !slices.Equal(kinds, want) {
			t.Fatalf("provider calls %v, want %v", kinds, want)
		}
		if r := got["e-1"]; !slices.Equal(r.Embedding, batchtest.Vector("e 1")) {
			t.Fatalf("e-1: %+v", r)
		}
	})
}

// pickyProvider combines only formats whose schema name is "ok", and counts
// how often it is asked.
type pickyProvider struct {
	*batchtest.Provider
	mu    sync.Mutex
	asked int
}

func (p *pickyProvider) CombinesFormat(f wire.ResponseFormat) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked++
	if f.JSONSchema != nil && f.JSONSchema.Name != "ok" {
		return errors.New("not one strict mode takes")
	}
	return nil
}

func TestEngineSendsAloneAFormatTheProviderCannotCombine(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), &pickyProvider{Provider: batchtest.NewProvider()}
		format := func(name string) *wire.ResponseFormat {
			return &wire.ResponseFormat{Type: wire.FormatJSONSchema, JSONSchema: &wire.JSONSchema{Name: name, Schema: json.RawMessage(`{"type":"object"}`)}}
		}
		for i := range 4 {
			publishRequest(t, b, wire.Request{ID: "ok-" + strconv.Itoa(i), Input: "ok " + strconv.Itoa(i), ResponseFormat: format("ok")})
			publishRequest(t, b, wire.Request{ID: "loose-" + strconv.Itoa(i), Input: "loose " + strconv.Itoa(i), ResponseFormat: format("loose")})
		}
		startEngine(t, b, p, engineConfig(b))
		time.Sleep(batch.DefaultMaxWait + time.Second)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 8 {
			t.Fatalf("%d results", len(got))
		}
		for i := range 4 {
			if r := got["ok-"+strconv.Itoa(i)]; r.Batch.Size != 4 {
				t.Errorf("ok-%d: %+v, want the four combined", i, r.Batch)
			}
			if r := got["loose-"+strconv.Itoa(i)]; r.Batch.Size != 1 {
				t.Errorf("loose-%d: %+v, want it alone", i, r.Batch)
			}
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.asked != 2 {
			t.Errorf("the provider was asked %d times, want once per format", p.asked)
		}
	})
}
