package main

import (
	"context"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/provider/ratelimit"
)

func TestNewProviderWrapsTheRateLimiter(t *testing.T) {
	t.Parallel()
	fake := openaitest.NewServer()
	t.Cleanup(fake.Close)
	tests := []struct {
		name        string
		mode        string
		rpm         int
		wantAsync   bool
		wantLimited bool
	}{
		{"combined, no limits", "combined", 0, false, false},
		{"combined, limited", "combined", 60, false, true},
		{"async, no limits", "async", 0, true, false},
		{"async, limited: the fallback calls are limited, jobs still async", "async", 60, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := config{Provider: "openai", BatchMode: tt.mode, OpenAIBaseURL: fake.URL, OpenAIAPIKey: "k", ProviderRPM: tt.rpm}
			p, err := newProvider(c)
			if err != nil {
				t.Fatal(err)
			}
			_, isAsync := p.(provider.AsyncProvider)
			_, plainLimited := p.(*ratelimit.Provider)
			_, asyncLimited := p.(limitedAsync)
			// The SDK providers always have the job methods; what matters is
			// that async mode keeps them through the limiter.
			if (tt.wantAsync && !isAsync) || (plainLimited || asyncLimited) != tt.wantLimited {
				t.Fatalf("%T: async %v, limited %v; want %v, %v", p, isAsync, plainLimited || asyncLimited, tt.wantAsync, tt.wantLimited)
			}
		})
	}

	// The wrapped async provider's jobs reach the Batch API.
	p, err := newProvider(config{Provider: "openai", BatchMode: "async", OpenAIBaseURL: fake.URL, OpenAIAPIKey: "k", ProviderRPM: 60})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := p.(provider.AsyncProvider).SubmitJob(ctx, provider.Batch{Model: "m", Requests: []provider.Request{{Key: "0", Input: "x"}}})
	if err != nil || id == "" || fake.Jobs() != 1 {
		t.Fatalf("SubmitJob through the limiter: %q, %v, jobs %d", id, err, fake.Jobs())
	}
}
