package batch

import (
	"context"
	"errors"
)

// ErrBudgetExceeded is wrapped by a Budget's refusal: the request's topic
// has spent its token budget for the day. Such a request ends, before any
// call, as an error result and a dead letter ("budget exceeded: ...").
var ErrBudgetExceeded = errors.New("budget exceeded")

// Budget limits the tokens each topic may spend (TOPIC_BUDGETS). The intake
// asks Allow before a request is called; the settler tells Spend what the
// calls' answers used, by topic. The jetstream side keeps the usage in the
// fleet's key-value bucket so every worker shares it (internal/fleet);
// batchtest has one in memory.
//
// A budget is checked, not reserved: requests admitted before a topic's
// usage reaches its budget are still called, so a topic may pass it by what
// its calls in flight use.
type Budget interface {
	// Allow returns nil when topic may spend more, an error wrapping
	// ErrBudgetExceeded when it has spent its budget, and any other error
	// when the usage cannot be read (the request is then allowed, and the
	// error logged).
	Allow(ctx context.Context, topic string) error
	// Spend adds tokens to topic's usage.
	Spend(ctx context.Context, topic string, tokens int64) error
}

// WithBudget sets the per-topic token budgets the engine keeps to. Without
// one, no topic has a budget.
func WithBudget(b Budget) Option { return func(e *Engine) { e.budget = b } }
