package providertest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/fake"
	"github.com/aibatch/aibatch/wire"
)

// The conformance of wire format 1.1: conversations, finish reasons,
// structured output, and embeddings (or their refusal by a provider that
// has none), under the faults of the API.

// answerSchema is the structured-output schema the suite asks for: the
// fakes fill "answer" with the answer to the request.
const answerSchema = `{"type":"object","properties":{"answer":{"type":"string"},"rank":{"type":"integer","minimum":1}},` +
	`"required":["answer","rank"],"additionalProperties":false}`

// embeddingDims is the vector length the suite asks for.
const embeddingDims = 24

func (s suite) testWire11(t *testing.T) {
	t.Run("Conversation", s.testConversation)
	t.Run("StructuredOutput", s.testStructuredOutput)
	t.Run("StructuredOutputFaults", s.testStructuredFaults)
	t.Run("Embeddings", s.testEmbeddings)
	t.Run("EmbeddingFaults", s.testEmbeddingFaults)
}

// testConversation sends a conversation beside a plain input: each is
// answered for its own last user turn, with finish reason stop.
func (s suite) testConversation(t *testing.T) {
	t.Parallel()
	p, _ := s.tg.New(t)
	b := newBatch(2)
	b.Requests = append(b.Requests, provider.Request{Key: "talk", Messages: []wire.Message{
		wire.TextMessage(wire.RoleUser, "hello"), wire.TextMessage(wire.RoleAssistant, "hi"), wire.TextMessage(wire.RoleUser, "the last turn"),
	}})
	results, err := p.Complete(t.Context(), b)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if len(results) != 3 {
		t.Fatalf("%d results, want 3", len(results))
	}
	for _, r := range results {
		want := s.tg.Answer("the last turn")
		if i := slices.IndexFunc(b.Requests, func(q provider.Request) bool { return q.Key == r.Key }); b.Requests[i].Input != "" {
			want = s.tg.Answer(b.Requests[i].Input)
		}
		if r.Err != nil || r.Output != want || (r.FinishReason != "" && r.FinishReason != "stop") {
			t.Errorf("key %q: %+v, want %q with finish reason stop", r.Key, r, want)
		}
	}
}

// testStructuredOutput asks for one json_schema: every output is JSON of
// that schema answering its own request.
func (s suite) testStructuredOutput(t *testing.T) {
	t.Parallel()
	strict := true
	p, _ := s.tg.New(t)
	b := newBatch(batchSize)
	b.Format = &wire.ResponseFormat{Type: wire.FormatJSONSchema, JSONSchema: &wire.JSONSchema{Name: "answer", Strict: &strict, Schema: json.RawMessage(answerSchema)}}
	results, err := p.Complete(t.Context(), b)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if len(results) != batchSize {
		t.Fatalf("%d results, want %d", len(results), batchSize)
	}
	for _, r := range results {
		i := slices.IndexFunc(b.Requests, func(q provider.Request) bool { return q.Key == r.Key })
		var out map[string]any
		if r.Err != nil || json.Unmarshal([]byte(r.Output), &out) != nil || len(out) != 2 ||
			out["answer"] != s.tg.Answer(b.Requests[i].Input) || out["rank"] != 1.0 {
			t.Errorf("key %q: output %q (err %v), want JSON of the schema answering its input", r.Key, r.Output, r.Err)
		}
	}
}

// testStructuredFaults puts a structured-output batch through an outage
// and an unreadable answer: the outage is the provider's (transient,
// ScopeProvider), the unreadable answer fails transiently and the next
// call answers.
func (s suite) testStructuredFaults(t *testing.T) {
	t.Parallel()
	strict := true
	batch := func() provider.Batch {
		b := newBatch(3)
		b.Format = &wire.ResponseFormat{Type: wire.FormatJSONSchema, JSONSchema: &wire.JSONSchema{Name: "answer", Strict: &strict, Schema: json.RawMessage(answerSchema)}}
		return b
	}
	t.Run("outage", func(t *testing.T) {
		t.Parallel()
		p, f := s.tg.New(t)
		f.FailNext(len(batch().Requests), http.StatusServiceUnavailable) // every call, in either mode
		_, err := p.Complete(t.Context(), batch())
		if pe := s.checkError(t, err, false); pe.Scope != provider.ScopeProvider {
			t.Errorf("error %v: scope %s, want ScopeProvider", err, pe.Scope)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		t.Parallel()
		p, f := s.tg.New(t)
		calls := 1 // the calls the batch takes
		if s.tg.Mode == Single {
			calls = len(batch().Requests)
		}
		f.SetMalformedNext(calls)
		results, err := p.Complete(t.Context(), batch())
		if err != nil {
			s.checkError(t, err, false)
		} else {
			for _, r := range results {
				if r.Err == nil {
					t.Errorf("key %q answered %q from an unreadable answer", r.Key, r.Output)
				}
			}
		}
		if results, err := p.Complete(t.Context(), batch()); err != nil || len(results) != 3 {
			t.Errorf("after it: %d results, error %v", len(results), err)
		}
	})
}

func embeddingBatch(n int) provider.Batch {
	b := provider.Batch{ID: "embeddings", Model: "text-embedding-3-small", Kind: wire.KindEmbedding, Dimensions: embeddingDims}
	for i := range n {
		b.Requests = append(b.Requests, provider.Request{Key: fmt.Sprintf("key-%d", i), Input: fmt.Sprintf("text %d", i)})
	}
	return b
}

// testEmbeddings sends an embedding batch: with Target.Embeddings each
// request gets exactly its own vector (fake.Embedding), in any order of
// the answer; without, each fails for good, wrapping
// provider.ErrUnsupported, and no call is made.
func (s suite) testEmbeddings(t *testing.T) {
	t.Parallel()
	p, f := s.tg.New(t)
	f.Shuffle(true)
	b := embeddingBatch(batchSize)
	results, err := p.Complete(t.Context(), b)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if len(results) != batchSize {
		t.Fatalf("%d results, want %d", len(results), batchSize)
	}
	for _, r := range results {
		i := slices.IndexFunc(b.Requests, func(q provider.Request) bool { return q.Key == r.Key })
		if !s.tg.Embeddings {
			if !errors.Is(r.Err, provider.ErrUnsupported) || provider.ScopeOf(r.Err) != provider.ScopeRequest {
				t.Errorf("key %q: %+v, want a request-scope error wrapping ErrUnsupported", r.Key, r)
			}
			s.checkError(t, r.Err, true)
			continue
		}
		if r.Err != nil || !slices.Equal(r.Embedding, fake.Embedding(b.Requests[i].Input, embeddingDims)) || r.Output != "" {
			t.Errorf("key %q: %d numbers, err %v; want the input's own vector", r.Key, len(r.Embedding), r.Err)
		}
	}
	if !s.tg.Embeddings && f.Calls() != 0 {
		t.Errorf("%d calls for embeddings the provider does not serve, want none", f.Calls())
	}
	if ss, ok := p.(provider.Supporter); ok && (ss.Supports(wire.KindEmbedding) == nil) != s.tg.Embeddings {
		t.Errorf("Supports(embedding) = %v, but the target serves embeddings: %v", ss.Supports(wire.KindEmbedding), s.tg.Embeddings)
	}
}

// testEmbeddingFaults puts an embedding call through the API's faults:
// outages are ScopeProvider, transient; a request left out of the answer
// has no result.
func (s suite) testEmbeddingFaults(t *testing.T) {
	if !s.tg.Embeddings {
		return
	}
	t.Parallel()
	for _, status := range []int{http.StatusInternalServerError, http.StatusTooManyRequests, http.StatusUnauthorized} {
		t.Run(fmt.Sprintf("HTTP %d", status), func(t *testing.T) {
			t.Parallel()
			p, f := s.tg.New(t)
			f.FailNext(1, status)
			_, err := p.Complete(t.Context(), embeddingBatch(3))
			if pe := s.checkError(t, err, false); pe.Scope != provider.ScopeProvider || pe.StatusCode != status {
				t.Errorf("error %v: scope %s, status %d; want ScopeProvider, %d", err, pe.Scope, pe.StatusCode, status)
			}
		})
	}
	t.Run("left out", func(t *testing.T) {
		t.Parallel()
		p, f := s.tg.New(t)
		b := embeddingBatch(3)
		f.OmitInput(b.Requests[1].Input)
		results, err := p.Complete(t.Context(), b)
		if err != nil || len(results) != 2 || slices.ContainsFunc(results, func(r provider.Result) bool { return r.Key == b.Requests[1].Key }) {
			t.Errorf("results %+v, error %v; want the other two", results, err)
		}
	})
}
