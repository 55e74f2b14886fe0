package anthropic_test

import (
	"testing"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/anthropic"
	"github.com/aibatch/aibatch/provider/anthropictest"
	"github.com/aibatch/aibatch/provider/providertest"
)

var _ providertest.Fake = (*anthropictest.Server)(nil)

func TestConformance(t *testing.T) {
	t.Parallel()
	targets := []struct {
		name string
		mode anthropic.Mode
		pt   providertest.Mode
	}{
		{"combined", anthropic.ModeCombined, providertest.Combined},
		{"single", anthropic.ModeSingle, providertest.Single},
		// Complete in async mode is the engine's synchronous fallback.
		{"async", anthropic.ModeAsync, providertest.Combined},
	}
	for _, tt := range targets {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const concurrency = 3
			providertest.Run(t, providertest.Target{
				Name:          "anthropic",
				Mode:          tt.pt,
				PerItemErrors: false, // a forced tool_use answer has no per-item error
				Embeddings:    false,
				IDEnum:        true,
				Concurrency:   concurrency,
				Secret:        testKey,
				Answer:        anthropictest.Answer,
				New: func(t *testing.T) (provider.Provider, providertest.Fake) {
					srv := anthropictest.NewServer(anthropictest.WithAPIKey(testKey))
					t.Cleanup(srv.Close)
					p, err := anthropic.New(anthropic.Config{APIKey: testKey, BaseURL: srv.URL, Mode: tt.mode, Concurrency: concurrency})
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

// sent reads what the fake's Messages calls asked for.
func sent(f providertest.Fake) []providertest.Call {
	var calls []providertest.Call
	for _, r := range f.(*anthropictest.Server).Requests() {
		calls = append(calls, providertest.Call{IDs: r.IDEnum, MaxOutputTokens: int(r.MaxTokens)})
	}
	return calls
}

// asyncFake gives an anthropictest.Server the control names of
// providertest.AsyncFake.
type asyncFake struct{ *anthropictest.Server }

func (f asyncFake) CompleteJobs() { f.CompleteBatches() }

func (f asyncFake) ExpireJob(id string, answered int) error { return f.ExpireBatch(id, answered) }

// FailJob fails every request of batch id: the Message Batches API has no
// failed state for a whole batch.
func (f asyncFake) FailJob(id string) error { return f.FailBatch(id, "api_error") }

func TestAsyncConformance(t *testing.T) {
	t.Parallel()
	providertest.RunAsync(t, providertest.AsyncTarget{
		Name:   "anthropic",
		Secret: testKey,
		Answer: anthropictest.Answer,
		New: func(t *testing.T) (provider.AsyncProvider, providertest.AsyncFake) {
			srv := anthropictest.NewServer(anthropictest.WithAPIKey(testKey))
			t.Cleanup(srv.Close)
			p, err := anthropic.New(anthropic.Config{APIKey: testKey, BaseURL: srv.URL, Mode: anthropic.ModeAsync})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			return p, asyncFake{srv}
		},
	})
}
