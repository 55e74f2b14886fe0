package openai_test

import (
	"testing"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/provider/providertest"
)

var _ providertest.AsyncFake = (*openaitest.Server)(nil)

func TestConformance(t *testing.T) {
	t.Parallel()
	targets := []struct {
		name string
		mode openai.Mode
		pt   providertest.Mode
	}{
		{"combined", openai.ModeCombined, providertest.Combined},
		{"single", openai.ModeSingle, providertest.Single},
		// Complete in async mode is the engine's synchronous fallback.
		{"async", openai.ModeAsync, providertest.Combined},
	}
	for _, tt := range targets {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const concurrency = 3
			providertest.Run(t, providertest.Target{
				Name:          "openai",
				Mode:          tt.pt,
				PerItemErrors: false, // a strict json_schema answer has no per-item error
				Embeddings:    true,
				IDEnum:        true,
				Concurrency:   concurrency,
				Secret:        testKey,
				Answer:        openaitest.Answer,
				New: func(t *testing.T) (provider.Provider, providertest.Fake) {
					srv := openaitest.NewServer(openaitest.WithAPIKey(testKey))
					t.Cleanup(srv.Close)
					p, err := openai.New(openai.Config{APIKey: testKey, BaseURL: srv.URL, Mode: tt.mode, Concurrency: concurrency})
					if err != nil {
						t.Fatalf("New: %v", err)
					}
					return p, srv
				},
				Sent: sent,
			})
		})
	}
}

// sent reads what the fake's chat completion calls asked for.
func sent(f providertest.Fake) []providertest.Call {
	var calls []providertest.Call
	for _, r := range f.(*openaitest.Server).Requests() {
		calls = append(calls, providertest.Call{IDs: r.IDEnum, MaxOutputTokens: int(r.MaxCompletionTokens)})
	}
	return calls
}

func TestAsyncConformance(t *testing.T) {
	t.Parallel()
	providertest.RunAsync(t, providertest.AsyncTarget{
		Name:   "openai",
		Secret: testKey,
		Answer: openaitest.Answer,
		New: func(t *testing.T) (provider.AsyncProvider, providertest.AsyncFake) {
			srv := openaitest.NewServer(openaitest.WithAPIKey(testKey))
			t.Cleanup(srv.Close)
			p, err := openai.New(openai.Config{APIKey: testKey, BaseURL: srv.URL, Mode: openai.ModeAsync})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			return p, srv
		},
	})
}
