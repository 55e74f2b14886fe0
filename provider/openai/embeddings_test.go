package openai_test

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/openaitest"
)

// Embeddings returns the fake model's vector of each input, in order, with
// the usage it reported.
func TestEmbeddings(t *testing.T) {
	t.Parallel()
	b := setup(t)
	inputs := []string{"the cat sat on the mat", "a dog ran", "the cat sat on the mat"}
	vecs, usage, err := b.p.Embeddings(t.Context(), "text-embedding-3-small", inputs)
	if err != nil {
		t.Fatal(err)
	}
	if len(vecs) != 3 || usage.InputTokens <= 0 || usage.OutputTokens != 0 {
		t.Fatalf("%d vectors, usage %+v", len(vecs), usage)
	}
	for i, in := range inputs {
		if !slices.Equal(vecs[i], openaitest.Embedding(in)) {
			t.Errorf("vector %d is not the embedding of %q", i, in)
		}
	}
	if b.srv.EmbeddingCalls() != 1 || len(b.srv.Requests()) != 0 {
		t.Errorf("%d embeddings calls, %d chat calls; want 1 and 0", b.srv.EmbeddingCalls(), len(b.srv.Requests()))
	}
	if got, _, err := b.p.Embeddings(t.Context(), "m", nil); got != nil || err != nil || b.srv.EmbeddingCalls() != 1 {
		t.Errorf("no inputs: %v, %v, and %d calls; want nothing called", got, err, b.srv.EmbeddingCalls())
	}
}

// Its errors are classified as Complete's and never hold the key.
func TestEmbeddingsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		arrange   func(*openaitest.Server)
		model     string
		wantScope provider.Scope
		wantIs    error
	}{
		{"rate limited", func(s *openaitest.Server) { s.FailNext(1, http.StatusTooManyRequests) }, "e", provider.ScopeProvider, provider.ErrTransient},
		{"key rejected", func(s *openaitest.Server) { s.RequireKey("another-key") }, "e", provider.ScopeProvider, provider.ErrTransient},
		{"unknown model", func(*openaitest.Server) {}, "unknown-embedder", provider.ScopeUnknown, provider.ErrUnknownModel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			tt.arrange(b.srv)
			_, _, err := b.p.Embeddings(t.Context(), tt.model, []string{"x"})
			if err == nil || provider.ScopeOf(err) != tt.wantScope || !errors.Is(err, tt.wantIs) {
				t.Fatalf("err %v (scope %s), want scope %s wrapping %v", err, provider.ScopeOf(err), tt.wantScope, tt.wantIs)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Fatalf("the error shows the key: %v", err)
			}
		})
	}
}
